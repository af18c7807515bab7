from django.urls import path

from microgrid.limits.api import views

urlpatterns = [
    path(
        "microgrids/<mgid:microgrid_id>/limits/",
        views.LimitListView.as_view(),
        name="api-limits",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/limits/active/",
        views.ActiveLimitsView.as_view(),
        name="api-limits-active",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/limits/<mgid:policy_id>/",
        views.LimitDetailView.as_view(),
        name="api-limit",
    ),
]
