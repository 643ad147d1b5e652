"""Concurrency Lab: the Django targets.

django-sync   gunicorn sync workers, sync views, one persistent DB connection per worker
              (settings.py, urls.py, views.py, wsgi.py).
django-async  uvicorn + ASGIHandler, async views, the ORM's async API, a psycopg pool
              (settings_async.py, urls_async.py, async_views.py, asgi.py).

Shared: config.py (environment), models.py (unmanaged users/transactions), common.py (validation,
errors, prompt), postgresql/ (the database ENGINE: Django's, each wait for the server bounded).
The measured behaviour of django-async is described in async_views.py.
"""
