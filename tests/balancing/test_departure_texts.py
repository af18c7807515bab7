"""Departure and finish times of many chargers at once (spec 4.3, "Departures"; issue 20).

The engine reads a cycle's departure times, and prints its projected finish times, column-wise
from the texts' bytes once there are enough of them (`balancing.isotimes`: `_READ_COLUMNWISE_MIN`,
`_PRINT_COLUMNWISE_MIN`). What it reads and prints must be exactly what numpy's own parse and
print give, which is what the engine did one text at a time, and a text numpy refuses is still
refused."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from balancing import isotimes
from balancing.engine import EngineInput, allocate
from tests.balancing.test_engine import charger, node

EPOCH_US = np.datetime64(0, "us")


def numpy_seconds(texts: list[str], suffix: str) -> np.ndarray:
    """How the engine read UTC texts before: numpy's parse of each text without its suffix."""
    parsed = np.array([t[: -len(suffix)] for t in texts], dtype="datetime64[us]")
    return (parsed - EPOCH_US).astype(np.int64) / 1e6


def numpy_stamps(seconds: np.ndarray) -> list[str]:
    moments = seconds.astype(np.int64).astype("datetime64[s]")
    return np.datetime_as_string(moments, unit="s", timezone="UTC").tolist()


def spread(n: int, seed: int) -> np.ndarray:
    """n instants (whole seconds) over years 1 to 9999, with every year end and leap day near."""
    rng = np.random.default_rng(seed)
    first, last = -62135596800, 253402300799
    s = rng.integers(first, last + 1, n)
    edges = [first, last, 0, -1, 951782400, 951868799, 4107542399, 4107542400, 1709164800]
    s[: len(edges)] = edges
    return s


@pytest.mark.parametrize("layout", ["Z", "+00:00", ".ffffffZ", ".ffffff+00:00"])
def test_many_utc_departure_texts_read_exactly_as_numpy_reads_them(layout):
    s = spread(3000, seed=len(layout))
    micros = np.random.default_rng(1).integers(0, 10**6, len(s))
    bodies = np.datetime_as_string(s.astype("datetime64[s]"), unit="s").tolist()
    suffix = layout.removeprefix(".ffffff")
    if layout.startswith(".ffffff"):
        texts = [f"{b}.{u:06d}{suffix}" for b, u in zip(bodies, micros, strict=True)]
    else:
        texts = [b + suffix for b in bodies]
    got = isotimes.epoch_seconds(texts)
    expected = numpy_seconds(texts, suffix)
    assert got.dtype == expected.dtype
    assert np.array_equal(got, expected)


@pytest.mark.parametrize(
    "bad",
    [
        "2026-02-29T08:00:00Z",  # not a leap year
        "2026-04-31T08:00:00Z",
        "2026-13-01T08:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T08:60:00Z",
        "2026-01-01T08:00:0xZ",
        "2026-1-01T08:00:00Z",
    ],
)
def test_a_departure_time_that_does_not_exist_is_refused_among_many(bad):
    texts = ["2026-03-02T08:00:00Z"] * 300 + [bad]
    with pytest.raises(ValueError):
        isotimes.epoch_seconds(texts)


def test_texts_of_other_layouts_and_offsets_are_read_one_by_one_as_before():
    base = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
    moments = [base + timedelta(seconds=37 * i) for i in range(400)]
    z = [m.isoformat().replace("+00:00", "Z") for m in moments]
    offset = [m.astimezone(timezone_plus_two()).isoformat() for m in moments]
    short_fraction = [m.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" for m in moments]
    expected = np.array([m.timestamp() for m in moments])
    assert np.array_equal(isotimes.epoch_seconds(z), expected)
    assert np.array_equal(isotimes.epoch_seconds(offset), expected)
    assert np.array_equal(isotimes.epoch_seconds(short_fraction), expected)
    # one odd text among many: every text is read, the odd one one by one
    mixed = z[:-1] + [offset[-1]]
    assert np.array_equal(isotimes.epoch_seconds(mixed), expected)


def timezone_plus_two():
    return datetime.fromisoformat("2000-01-01T00:00:00+02:00").tzinfo


def test_many_finish_times_print_exactly_as_numpy_prints_them():
    now = datetime(2026, 3, 2, 18, 0, 0, 654321, tzinfo=UTC)
    seconds = np.round(np.random.default_rng(3).uniform(0, 30 * 86400, 2000))
    seconds[:3] = [0.0, 86399.0, 29 * 86400.0]
    base = np.datetime64(now.replace(tzinfo=None), "s")
    expected = np.datetime_as_string(
        base + seconds.astype(np.int64).astype("timedelta64[s]"), unit="s", timezone="UTC"
    ).tolist()
    assert isotimes.finish_stamps(now, seconds) == expected
    # every second of a day and the last days numpy prints with four digits
    day = np.arange(0, 86400, dtype=np.int64) + 1_772_409_600
    assert isotimes.utc_stamps(day) == numpy_stamps(day)
    last = np.arange(253402300799 - 3 * 86400, 253402300800, 997, dtype=np.int64)
    assert isotimes.utc_stamps(last) == numpy_stamps(last)
    for moments in spread(4000, seed=9).reshape(40, 100):
        near = moments[0] + np.sort(moments % (4000 * 86400))
        near = near[near <= 253402300799]
        if len(near):
            assert isotimes.utc_stamps(near) == numpy_stamps(near)


def test_finish_times_beyond_year_9999_or_years_apart_are_printed_by_numpy_as_before():
    now = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
    for far in (1.0e9, 3.0e11):  # 32 years; beyond year 9999
        seconds = np.full(200, far)
        seconds[0] = 0.0
        stamps = isotimes.finish_stamps(now, seconds)
        assert stamps[0] == "2026-03-02T18:00:00Z"
        assert stamps == numpy_stamps(np.int64(1772474400) + seconds.astype(np.int64))
    assert isotimes.utc_stamps(np.array([0, 5000 * 86400])) is None
    assert isotimes.utc_stamps(np.array([253402300800])) is None


def test_departures_in_any_utc_form_give_the_same_allocation():
    # 300 EVs on a 1.5 MW connection, departures from 20 minutes to 10 hours, some at risk: the
    # same instants written as the cycle writes them, as "+00:00" and with an offset.
    rng = np.random.default_rng(5)
    now = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
    chargers = []
    for i in range(300):
        leaves = now + timedelta(seconds=int(rng.integers(1200, 36000)), microseconds=i + 1)
        c = charger(f"CH-{i:03d}", f"n{i % 7}", float(rng.choice([11.0, 22.0, 50.0, 150.0])))
        chargers.append(
            dataclasses.replace(
                c,
                max_power_kw=150.0,
                departure_at=leaves.isoformat().replace("+00:00", "Z"),
                energy_needed_kwh=float(rng.uniform(5, 200)),
                energy_delivered_kwh=float(rng.uniform(0, 5)),
            )
        )
    nodes = [node("grid", None, 1500), *(node(f"n{k}", "grid", 300) for k in range(7))]

    def run(form):
        cs = [dataclasses.replace(c, departure_at=form(c.departure_at)) for c in chargers]
        inp = EngineInput(
            tuple(nodes), (), tuple(cs), 60, now=now.isoformat(), departure_guard_s=30
        )
        out = allocate(inp).to_dict()
        for c in out["chargers"]:
            c.pop("departure_at")  # (shown as given: everything else must be the same)
        return out

    as_cycle = run(lambda t: t)
    assert as_cycle == run(lambda t: t.replace("Z", "+00:00"))
    plus_two = timezone_plus_two()
    assert as_cycle == run(lambda t: datetime.fromisoformat(t).astimezone(plus_two).isoformat())
    served = [c for c in as_cycle["chargers"] if "DEPARTURE_PRIORITY" in c["reason_codes"]]
    assert served and any(c["at_risk"] for c in as_cycle["chargers"])
    assert all(c["projected_finish_at"].endswith("Z") for c in served if c["allocated_kw"])
