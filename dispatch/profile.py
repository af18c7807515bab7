"""The `dispatch:` section of depot profiles (spec 8.1), registered with the loader.

`{webhook: {url, secret}, deadband_kw, refresh_s}`, every key optional; the
section replaces the microgrid's dispatch settings (a profile without a
`webhook` has none: its setpoints are pulled). Checked whole before anything is
written, applied through the same service as admin.
"""

from __future__ import annotations

from typing import Any

from dispatch.services import check_config, dispatch_config_input, dispatch_config_set
from microgrid.common.errors import ErrorItem

SECTION = "dispatch"


def check_dispatch(value: Any, profile: dict[str, Any]) -> list[ErrorItem]:
    return check_config(value, prefix=f"{SECTION}.")[1]


def apply_dispatch(microgrid, value: Any, user) -> None:
    dispatch_config_set(microgrid=microgrid, **dispatch_config_input(value, prefix=f"{SECTION}."))


# Found by the simulator's profile loader (simulator/loader.py): the section, its order, its
# check and how it is applied.
ORDER = 60
check = check_dispatch
apply = apply_dispatch
