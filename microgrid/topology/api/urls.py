from django.urls import path

from microgrid.topology.api import views

urlpatterns = [
    # microgrids/ (the list, and POST to create) is served by microgrid.fleet, which
    # extends MicrogridListView with the fleet overview's state, filters and paging.
    path(
        "microgrids/<mgid:microgrid_id>/", views.MicrogridDetailView.as_view(), name="api-microgrid"
    ),
    path(
        "microgrids/<mgid:microgrid_id>/topology/",
        views.TopologyView.as_view(),
        name="api-topology",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/topology/revisions/",
        views.RevisionListView.as_view(),
        name="api-topology-revisions",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/topology/revisions/<int:version>/",
        views.RevisionDetailView.as_view(),
        name="api-topology-revision",
    ),
]
