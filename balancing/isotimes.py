"""ISO 8601 UTC times as numpy columns, for the engine's sessions (pure: numpy and the
standard library only, like the engine).

A cycle carries a departure time per charger as text and answers a projected finish time per
charger as text; parsing and printing them one by one cost more than the departure-aware
allocation itself at 2,000 chargers (docs/performance.md, "The departure path, third pass").
Here UTC texts of one fixed layout are read and written column-wise, as bytes, giving exactly
what numpy's own parser and printer give (tests/balancing/test_departure_texts.py); any other
text goes the plain way.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np


def when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_UTC)


_UTC = datetime.fromisoformat("2000-01-01T00:00:00+00:00").tzinfo
_EPOCH64 = np.datetime64(0, "us")


# ISO UTC texts of one fixed layout are read and written column-wise, as bytes: a departure time
# per charger would otherwise cost a parse and a print each cycle. The layouts are those numpy
# reads: "YYYY-MM-DDTHH:MM:SS", optionally ".ffffff", then "Z" or "+00:00" (the cycle writes
# ".ffffffZ"). Per layout: the digit columns (in pairs: the year's two, month, day, hour,
# minute, second, the fraction's three), the other columns and their bytes. (Handing the bytes
# to numpy's own parser, a cast of a fixed-width bytes array to datetime64, would be simpler,
# but numpy 2.4 crashes the process in that cast when a text among a few hundred does not
# parse.) For fewer texts numpy's own parse and print cost less than the columns' fixed cost.
_READ_COLUMNWISE_MIN = 256
_PRINT_COLUMNWISE_MIN = 96
_ISO_LAYOUTS: dict[tuple[int, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_FIRST_DAY, _END_DAY = -719162, 2932897  # days since 1970-01-01 of 0001-01-01 and 10000-01-01


def _iso_layout(width: int, suffix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    layout = _ISO_LAYOUTS.get((width, suffix))
    if layout is None:
        template = "0000-00-00T00:00:00.000000"[: width - len(suffix)] + suffix
        digits = [i for i in range(width - len(suffix)) if template[i] == "0"]
        others = [i for i in range(width) if i not in digits]
        expected = np.frombuffer(template.encode(), dtype=np.uint8)[others]
        layout = _ISO_LAYOUTS[(width, suffix)] = (np.array(digits), np.array(others), expected)
    return layout


def utc_seconds(texts: list[str] | tuple[str, ...]) -> np.ndarray | None:
    """Seconds since the epoch of ISO UTC texts that all have one of the layouts above, read
    from their bytes at once: exactly what numpy's parser gives them. None when any text has
    another layout or names a time that does not exist (the caller then parses them one by one,
    as before, and refuses what it refused)."""
    try:
        first = texts[0]
        width = len(first)
        suffix = "Z" if first[-1:] == "Z" else "+00:00" if first[-6:] == "+00:00" else None
        if suffix is None or width - len(suffix) not in (19, 26) or len(set(map(len, texts))) != 1:
            return None
        raw = "".join(texts).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        return None
    digits, others, expected = _iso_layout(width, suffix)
    chars = np.frombuffer(raw, dtype=np.uint8).reshape(len(texts), width)
    if not (chars[:, others] == expected).all():
        return None
    values = chars[:, digits] - np.uint8(48)  # (wraps round below "0")
    if (values > 9).any():
        return None
    # Two digits a number (at most 99: uint8 holds it), one row per number.
    pairs = (values[:, 0::2] * np.uint8(10) + values[:, 1::2]).T.astype(np.int64)
    low = pairs.min(axis=1).tolist()
    high = pairs.max(axis=1).tolist()
    year = pairs[0] * 100 + pairs[1]
    month, day, hour, minute, second = pairs[2:7]
    if (
        low[2] < 1
        or high[2] > 12
        or low[3] < 1
        or high[4] > 23
        or high[5] > 59
        or high[6] > 59
        or year.min() < 1
    ):
        return None
    if high[3] > 28:
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        if (day > _DAYS_IN_MONTH[month - 1] + (leap & (month == 2))).any():
            return None
    # Days since 1970-01-01 of a proleptic Gregorian date, years counted from March.
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    micros = (((days * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000
    if len(pairs) > 7:
        micros += (pairs[7] * 100 + pairs[8]) * 100 + pairs[9]
    return micros / 1e6


def epoch_seconds(texts: list[str] | tuple[str, ...]) -> np.ndarray:
    """ISO times as seconds since the epoch; UTC texts (the cycle's own format) are read at once,
    any other offset one by one."""
    if len(texts) >= _READ_COLUMNWISE_MIN:
        fast = utc_seconds(texts)
        if fast is not None:
            return fast
    plain = None
    if {t[-6:] for t in texts} == {"+00:00"}:
        plain = [t[:-6] for t in texts]
    elif {t[-1:] for t in texts} == {"Z"}:
        plain = [t[:-1] for t in texts]
    if plain is not None:
        try:
            parsed = np.array(plain, dtype="datetime64[us]")
        except ValueError:
            pass
        else:
            return (parsed - _EPOCH64).astype(np.int64) / 1e6
    return np.array([when(t).timestamp() for t in texts])


# A finish time as text: the day's "YYYY-MM-DD" (from a table of the few days the finishes
# span), "T", "HH:MM" (a table of the minutes of a day), ":", the seconds, "Z", and a space
# to split on.
_STAMP = np.dtype(
    [
        ("day", "S10"),
        ("t", "S1"),
        ("hour_minute", "S5"),
        ("colon", "S1"),
        ("second", "S2"),
        ("z", "S2"),
    ]
)
_TWO_DIGITS = np.array([b"%02d" % i for i in range(60)], dtype="S2")
_HOUR_MINUTE = np.array([b"%02d:%02d" % divmod(m, 60) for m in range(1440)], dtype="S5")


def utc_stamps(moments: np.ndarray) -> list[str] | None:
    """Seconds since the epoch (int64) as "YYYY-MM-DDTHH:MM:SSZ", exactly as numpy prints them;
    None when they span more than a few years or leave the years 1 to 9999."""
    days = moments // 86400
    first = int(days.min())
    span = int(days.max()) - first + 1
    if span > 4096 or first < _FIRST_DAY or first + span > _END_DAY:
        return None
    table = np.datetime_as_string(np.arange(first, first + span).astype("datetime64[D]"))
    in_day = moments - days * 86400
    minute = in_day // 60
    rows = np.empty(len(moments), dtype=_STAMP)
    rows["day"] = table.astype("S10")[days - first]
    rows["t"] = b"T"
    rows["hour_minute"] = _HOUR_MINUTE[minute]
    rows["colon"] = b":"
    rows["second"] = _TWO_DIGITS[in_day - minute * 60]
    rows["z"] = b"Z "  # (the space: one split makes the texts)
    return rows.tobytes().decode("ascii").split()


def finish_stamps(now: datetime, seconds: np.ndarray) -> list[str]:
    """now + seconds (whole) as ISO UTC texts ("...Z")."""
    base = np.datetime64(now.astimezone(_UTC).replace(tzinfo=None), "s")
    whole = seconds.astype(np.int64)
    if (
        len(seconds) >= _PRINT_COLUMNWISE_MIN
        and np.isfinite(seconds).all()
        and np.abs(seconds).max() < 1e11
    ):
        stamps = utc_stamps(base.astype(np.int64) + whole)
        if stamps is not None:
            return stamps
    moments = base + whole.astype("timedelta64[s]")
    return np.datetime_as_string(moments, unit="s", timezone="UTC").tolist()
