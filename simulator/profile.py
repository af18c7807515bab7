"""The simulator's own profile section: `scenario` (found like every app's `profile.py`).

`load_profile` accepts and checks the scenario but never runs it: `simulate` does.
"""

from __future__ import annotations

from typing import Any

from simulator import scenario

ORDER = 100
SECTION = scenario.SECTION
check = scenario.check_scenario


def apply(microgrid, value: Any, user) -> None:
    return None
