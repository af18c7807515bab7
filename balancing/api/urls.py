from django.urls import path

from balancing.api import views

urlpatterns = [
    path(
        "microgrids/<mgid:microgrid_id>/rebalance/",
        views.RebalanceView.as_view(),
        name="api-rebalance",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/cycles/", views.CycleListView.as_view(), name="api-cycles"
    ),
    path(
        "microgrids/<mgid:microgrid_id>/cycles/<mgid:cycle_id>/",
        views.CycleDetailView.as_view(),
        name="api-cycle",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/breaches/",
        views.BreachListView.as_view(),
        name="api-breaches",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/breaches/<mgid:breach_id>/",
        views.BreachDetailView.as_view(),
        name="api-breach",
    ),
]
