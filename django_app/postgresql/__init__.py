"""Django's PostgreSQL backend with a bound on each wait for the server (base.py)."""
