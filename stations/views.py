"""The Manage stations page."""

from django.shortcuts import render

from microgrid.common.pages import manage_view
from microgrid.topology.card import microgrid_tabs
from microgrid.topology.selectors import microgrid_get
from stations.selectors import station_list


@manage_view()
def station_list_page(request, microgrid_id: str):
    microgrid = microgrid_get(microgrid_id, user=request.user)
    context = {
        "microgrid": microgrid,
        "tabs": microgrid_tabs(microgrid, "stations"),
        "stations": station_list(microgrid),
    }
    return render(request, "manage/stations.html", context)
