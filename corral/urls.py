from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from corral import audit_page, bd_import, metrics, problems_page, usage_page, views
from corral.api import api
from corral.api import not_found as api_not_found

urlpatterns = [
    path("", views.overview, name="overview"),
    path("repos/<slug:slug>/", views.repository, name="repository"),
    path("repos/<slug:slug>/dispatch/pause", views.pause_dispatch, name="dispatch-pause"),
    path("repos/<slug:slug>/dispatch/resume", views.resume_dispatch, name="dispatch-resume"),
    path("repos/<slug:slug>/beads/import", bd_import.upload, name="beads-import"),
    path("repos/<slug:slug>/beads.jsonl", bd_import.download, name="beads-export"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("agents.urls")),
    path("", include("knowledge.urls")),
    path("", include("corral.planning_urls")),
    path("hook/", views.hook_page, name="hook"),
    path("audit/", audit_page.audit_page, name="audit"),
    path("metrics", metrics.metrics, name="metrics"),
    path("usage/", usage_page.usage_page, name="usage"),
    path("problems/", problems_page.problems_page, name="problems"),
    path("problems/retry/<slug:slug>", problems_page.retry_lead, name="problem-retry"),
    path("api/v1/", api.urls),
    re_path(r"^api/v1/", api_not_found),
    path("admin/", admin.site.urls),
]
