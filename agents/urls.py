from django.urls import path, re_path

from agents import changeset_views, git_http, views

urlpatterns = [
    path("repos/<slug:slug>/lead/", views.lead_queue, name="lead"),
    path("submissions/<int:pk>/", views.submission, name="submission"),
    path("submissions/<int:pk>/approve", views.approve, name="submission-approve"),
    path("submissions/<int:pk>/reject", views.reject, name="submission-reject"),
    path("beads/<str:bead_id>/revert", views.revert, name="bead-revert"),
    path("sessions/<uuid:pk>/", views.session_page, name="session"),
    path("sessions/<uuid:pk>/log", views.session_log, name="session-log"),
    path("sessions/<uuid:pk>/log.txt", views.session_log_text, name="session-log-text"),
    path("sessions/<uuid:pk>/cancel", views.cancel_session, name="session-cancel"),
    path("dispatch", views.run_dispatch, name="dispatch"),
    path("changesets/", changeset_views.changeset_list, name="changesets"),
    path("changesets/<int:pk>/", changeset_views.changeset_page, name="changeset"),
    path(
        "changesets/<int:pk>/approve",
        changeset_views.changeset_approve,
        name="changeset-approve",
    ),
    path("changesets/<int:pk>/reject", changeset_views.changeset_reject, name="changeset-reject"),
    path("changesets/<int:pk>/revert", changeset_views.changeset_revert, name="changeset-revert"),
    re_path(r"^git/(?P<path>.*)$", git_http.serve, name="git"),
]
