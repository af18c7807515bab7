from django.urls import path

from microgrid.capabilities import views

urlpatterns = [
    path(
        "microgrids/<mgid:microgrid_id>/capabilities/",
        views.capabilities_page,
        name="manage-capabilities",
    ),
]
