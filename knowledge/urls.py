from django.urls import path

from knowledge import views

urlpatterns = [
    path("knowledge/", views.learnings, name="learnings"),
    path("knowledge/why/", views.why, name="learnings-why"),
    path("knowledge/<int:pk>/", views.learning, name="learning"),
    path("knowledge/<int:pk>/edit", views.edit, name="learning-edit"),
    path("knowledge/<int:pk>/approve", views.approve, name="learning-approve"),
    path("knowledge/<int:pk>/retire", views.retire, name="learning-retire"),
    path("knowledge/<int:pk>/merge", views.merge, name="learning-merge"),
    path("knowledge/<int:pk>/helpful", views.mark, {"verdict": "helpful"}, name="learning-helpful"),
    path("knowledge/<int:pk>/harmful", views.mark, {"verdict": "harmful"}, name="learning-harmful"),
]
