from django.urls import path

from beads import views

urlpatterns = [
    path("hook/", views.hook_page, name="hook"),
]
