from django.urls import path

from microgrid.envelopes.api import views

urlpatterns = [
    path(
        "microgrids/<mgid:microgrid_id>/operating-envelopes/",
        views.EnvelopeListView.as_view(),
        name="api-envelopes",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/operating-envelopes/<mgid:envelope_id>/",
        views.EnvelopeDetailView.as_view(),
        name="api-envelope",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/operating-envelopes/<mgid:envelope_id>/withdraw/",
        views.EnvelopeWithdrawView.as_view(),
        name="api-envelope-withdraw",
    ),
]
