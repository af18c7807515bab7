from django.urls import path

from dispatch.api import views

urlpatterns = [
    path(
        "microgrids/<mgid:microgrid_id>/setpoints/",
        views.SetpointsView.as_view(),
        name="api-setpoints",
    ),
]
