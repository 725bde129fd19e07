from django.urls import path

from agents import views

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
]
