from django.urls import path

from stations.api import views

urlpatterns = [
    path(
        "microgrids/<mgid:microgrid_id>/stations/",
        views.StationListView.as_view(),
        name="api-stations",
    ),
]
