from django.urls import path

from agents import views

urlpatterns = [
    path("repos/<slug:slug>/lead/", views.lead_queue, name="lead"),
    path("submissions/<int:pk>/", views.submission, name="submission"),
    path("submissions/<int:pk>/approve", views.approve, name="submission-approve"),
    path("submissions/<int:pk>/reject", views.reject, name="submission-reject"),
    path("beads/<str:bead_id>/revert", views.revert, name="bead-revert"),
]
