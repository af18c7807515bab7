from django.urls import path

from microgrid.limits import views

urlpatterns = [
    path("microgrids/<mgid:microgrid_id>/limits/", views.limits_page, name="manage-limits"),
    path(
        "microgrids/<mgid:microgrid_id>/limits/<mgid:policy_id>/",
        views.limit_edit_page,
        name="manage-limit",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/limits/<mgid:policy_id>/delete/",
        views.limit_delete,
        name="manage-limit-delete",
    ),
]
