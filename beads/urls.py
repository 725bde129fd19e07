from django.urls import path  # noqa: F401 - the hook pages add their routes here

urlpatterns = []
