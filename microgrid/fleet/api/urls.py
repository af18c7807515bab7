from django.urls import path

from microgrid.fleet.api import views

urlpatterns = [
    path("microgrids/", views.FleetListView.as_view(), name="api-microgrids"),
]
