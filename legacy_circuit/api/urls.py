"""Legacy paths are frozen: no trailing slash on /api/circuit/... (ids may contain dots)."""

from django.urls import path

from legacy_circuit.api import views

urlpatterns = [
    path("circuit/<mgid:circuit_id>", views.CircuitView.as_view(), name="api-legacy-circuit"),
    path(
        "circuit/<mgid:circuit_id>/rebalance_load",
        views.RebalanceLoadView.as_view(),
        name="api-legacy-rebalance-load",
    ),
    path(
        "circuit/<mgid:circuit_id>/tou_limits",
        views.TouLimitsView.as_view(),
        name="api-legacy-tou-limits",
    ),
    path("legacy/alias-usage/", views.AliasUsageView.as_view(), name="api-legacy-alias-usage"),
]
