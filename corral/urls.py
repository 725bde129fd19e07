from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from agents.api import git_http, upstream_hooks
from corral import health, metrics
from corral.api import api
from corral.api import not_found as api_not_found

urlpatterns = [
    path("", include("corral.pages.urls")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("metrics", metrics.metrics, name="metrics"),
    # Answered by corral.health.HealthMiddleware first; routed too, so they resolve.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    re_path(r"^git/(?P<path>.*)$", git_http.serve, name="git"),
    path("hooks/upstream/<slug:slug>/", upstream_hooks.receive, name="upstream-hook"),
    path("api/v1/", api.urls),
    re_path(r"^api/v1/", api_not_found),
    path("admin/", admin.site.urls),
]
