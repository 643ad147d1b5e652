"""URLconf of django-async: the same routes, async views."""

from django_app import async_views
from django_app.urls import handler400, handler404, handler500, routes  # noqa: F401

urlpatterns = routes(async_views)
