"""WSGI entry point of django-bare: gunicorn django_app.wsgi_bare:application (see bare.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.bare")
application = get_wsgi_application()

# As django_app/wsgi.py does for django-sync: load the URLconf at boot, not inside the first request.
import django_app.bare  # noqa: E402, F401
