from django.urls import path

from microgrid.topology import editor, views

urlpatterns = [
    path("microgrids/<mgid:microgrid_id>/", views.microgrid_card_page, name="manage-microgrid"),
    path("microgrids/<mgid:microgrid_id>/topology/", views.topology_page, name="manage-topology"),
    path(
        "microgrids/<mgid:microgrid_id>/topology/revisions/",
        views.revision_list_page,
        name="manage-topology-revisions",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/topology/revisions/<int:version>/",
        views.revision_detail_page,
        name="manage-topology-revision",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/topology/edit/",
        editor.topology_edit,
        name="manage-topology-edit",
    ),
]
