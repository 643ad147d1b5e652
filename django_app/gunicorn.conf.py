"""gunicorn settings of django-sync; bind, worker class and worker count come from targets.toml."""

accesslog = None  # access logs off (SPEC §1): they cost CPU per request
errorlog = "-"
loglevel = "warning"
# Longer than the slowest valid request (db 5 s + llm 20 s, or UPSTREAM_TIMEOUT_S = 30 s), so the
# app answers 504 itself instead of gunicorn killing the worker mid-request.
timeout = 120
