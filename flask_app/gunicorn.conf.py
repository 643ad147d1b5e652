"""gunicorn settings shared by flask-sync, flask-gthread and flask-async-views.

Workers, threads, worker class and bind come from the command line in targets.toml.
"""

accesslog = None  # access logs cost CPU per request and are not part of any model
errorlog = "-"
timeout = 120  # a worker may legitimately wait 20 s upstream plus time queued for the DB pool
backlog = 2048
# gunicorn >= 25 opens a control socket at one fixed per-user path: several targets run at once.
control_socket_disable = True


def worker_exit(server, worker):
    # Close this worker's DB pool and upstream client (built lazily after the fork), whichever
    # app module it serves.
    import sys

    for name in ("flask_app.app", "flask_app.async_views"):
        module = sys.modules.get(name)
        if module is not None:
            module.app.extensions["lab"].close()
