"""Flask targets of Concurrency Lab: flask-sync, flask-gthread, flask-async-views and quart (see
targets.toml)."""
