from django.urls import path

from microgrid.fleet import views

urlpatterns = [
    path("microgrids/", views.fleet_overview, name="manage-microgrids"),
]
