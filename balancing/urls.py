from django.urls import path

from balancing import views

urlpatterns = [
    path("microgrids/<mgid:microgrid_id>/cycles/", views.cycle_list_page, name="manage-cycles"),
    path(
        "microgrids/<mgid:microgrid_id>/cycles/rebalance/",
        views.rebalance_page,
        name="manage-rebalance",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/cycles/<mgid:cycle_id>/",
        views.cycle_detail_page,
        name="manage-cycle",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/breaches/", views.breach_list_page, name="manage-breaches"
    ),
    path(
        "microgrids/<mgid:microgrid_id>/breaches/<mgid:breach_id>/",
        views.breach_detail_page,
        name="manage-breach",
    ),
]
