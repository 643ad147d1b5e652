"""WSGI entry point of django-sync: gunicorn django_app.wsgi:application (imported per worker)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.settings")
application = get_wsgi_application()

# Django imports the URLconf lazily, i.e. inside the first request; importing views (and openai,
# ~1 s of imports) here moves that cost to boot. Clients and connections stay lazy.
import django_app.urls  # noqa: E402, F401
