from django.urls import path

from microgrid.topology import views

urlpatterns = [
    path("microgrids/", views.microgrid_list, name="manage-microgrids"),
    path("microgrids/<mgid:microgrid_id>/", views.microgrid_card_page, name="manage-microgrid"),
    path("microgrids/<mgid:microgrid_id>/topology/", views.topology_page, name="manage-topology"),
]
