"""Editor rough edges: a new row must choose its parent, no node may choose itself, summaries
in words."""

import copy
import re

import pytest

from microgrid.topology.models import TopologyRevision
from microgrid.topology.services import topology_replace

EDIT = "/manage/microgrids/MG.NORTH-1/topology/edit/"


def parent_select(html: str, row: int) -> str:
    return re.search(rf'<select name="nodes-{row}-parent_id".*?</select>', html, re.S)[0]


@pytest.mark.django_db
def test_parent_choices_exclude_the_node_itself_and_blank_rows_ask_for_a_parent(
    operator_client, microgrid
):
    html = operator_client.get(EDIT).content.decode()
    root = parent_select(html, 0)  # rows in tree order: grid first
    assert "none: the root" in root and 'value="grid"' not in root
    board = parent_select(html, 1)
    assert 'value="sb-1"' not in board and 'value="grid"' in board
    blank = parent_select(html, 4)  # the first blank row
    assert "choose a parent" in blank and "grid connection" not in blank
    assert re.search(r'<option value="" selected>— choose a parent —', blank)


@pytest.mark.django_db
def test_revision_summaries_say_what_changed_in_words(microgrid, small_topology):
    nodes = copy.deepcopy(small_topology["nodes"])
    nodes[2]["name"] = "Bay A (north)"
    topology_replace(
        microgrid=microgrid, base_version=1, nodes=nodes, assets=small_topology["assets"]
    )
    assert TopologyRevision.objects.get(version=2).summary == "changed node grp-a"
