from django.urls import path

from stations import views

urlpatterns = [
    path(
        "microgrids/<mgid:microgrid_id>/stations/",
        views.station_list_page,
        name="manage-stations",
    ),
]
