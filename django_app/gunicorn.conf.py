"""gunicorn settings of django-sync; bind, worker class and worker count come from targets.toml."""

accesslog = None  # access logs cost CPU per request and are not part of any model
errorlog = "-"
# Longer than the slowest valid request (db 5 s + llm 20 s, or UPSTREAM_TIMEOUT_S = 30 s), so the
# app answers 504 itself instead of gunicorn killing the worker mid-request.
timeout = 120
backlog = 2048
# gunicorn >= 25 opens a control socket at one fixed per-user path: several targets run at once.
control_socket_disable = True


def worker_exit(server, worker):
    # Close this worker's persistent DB connection and upstream client (both made after the fork).
    import sys

    views = sys.modules.get("django_app.views")
    if views is not None:
        from django.db import connections

        connections.close_all()
        if views.llm.cache_info().currsize:
            views.llm().close()
