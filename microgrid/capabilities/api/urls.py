from django.urls import path

from microgrid.capabilities.api import views

urlpatterns = [
    path(
        "microgrids/<mgid:microgrid_id>/capabilities/",
        views.CapabilitiesView.as_view(),
        name="api-capabilities",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/capabilities/bindings/",
        views.BindingsView.as_view(),
        name="api-capability-bindings",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/capabilities/bindings/transfer/",
        views.BindingTransferView.as_view(),
        name="api-capability-binding-transfer",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/capabilities/bindings/<mgid:binding_id>/release/",
        views.BindingReleaseView.as_view(),
        name="api-capability-binding-release",
    ),
    path(
        "microgrids/<mgid:microgrid_id>/capabilities/events/",
        views.EventsView.as_view(),
        name="api-capability-events",
    ),
]
