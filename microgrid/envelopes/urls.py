from django.urls import path

from microgrid.envelopes import views

urlpatterns = [
    path(
        "microgrids/<mgid:microgrid_id>/envelopes/", views.envelopes_page, name="manage-envelopes"
    ),
    path(
        "microgrids/<mgid:microgrid_id>/envelopes/<mgid:envelope_id>/",
        views.envelope_detail_page,
        name="manage-envelope",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/envelopes/<mgid:envelope_id>/withdraw/",
        views.envelope_withdraw_page,
        name="manage-envelope-withdraw",
    ),
]
