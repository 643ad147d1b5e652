"""Flask targets of Concurrency Lab: flask-sync and flask-gthread (see targets.toml)."""
