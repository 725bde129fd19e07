from django.urls import path  # noqa: F401 - the lead pages add their routes here

urlpatterns = []
