"""ASGI entry point of django-async: uvicorn django_app.asgi:application (no lifespan support)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.settings_async")
application = get_asgi_application()

# Django imports the URLconf lazily, i.e. inside the first request (blocking the event loop for
# ~1 s of openai imports); do it at boot. The client and the pool stay lazy (first use).
import django_app.urls_async  # noqa: E402, F401
