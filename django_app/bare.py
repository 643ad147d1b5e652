"""django-bare: Django's hello-world, context for memory claims (not a benchmark target).

This one module is the settings (DJANGO_SETTINGS_MODULE=django_app.bare), the URLconf and the views;
django_app/wsgi_bare.py is the WSGI entry. Served exactly like django-sync (gunicorn sync, same
gunicorn.conf.py, same worker count; see targets.toml), but with no installed apps, no databases, no
middleware and none of the app's imports (psycopg, the openai SDK, pydantic-settings, the models).
Its idle memory is the framework's own cost; django-sync's minus it is the app's.
"""

from django.http import JsonResponse
from django.urls import path

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "django-bare"]
SECRET_KEY = "unused: no sessions, auth, CSRF or signing in this app"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
ROOT_URLCONF = "django_app.bare"
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    return JsonResponse({"status": "ready"})  # nothing to be ready for: no DB, no upstream


urlpatterns = [path("healthz", healthz), path("readyz", readyz)]
