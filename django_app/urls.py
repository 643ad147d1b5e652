"""URLconf of django-sync; urls_async.py mounts the same routes on the async views."""

from django.urls import path, re_path

from django_app import views


def routes(views) -> list:
    # [^/]* (not <int:>) so that /recommendation/ and /recommendation/abc reach the view's 400.
    return [
        re_path(r"^recommendation/(?P<user_id>[^/]*)$", views.recommendation),
        re_path(r"^stream/(?P<user_id>[^/]*)$", views.stream),
        path("cpu", views.cpu),
        path("healthz", views.healthz),
        path("readyz", views.readyz),
    ]


urlpatterns = routes(views)
handler400 = "django_app.common.bad_request"
handler404 = "django_app.common.not_found"
handler500 = "django_app.common.server_error"
