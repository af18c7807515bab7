"""Time-of-use schedules: pure logic on wall-clock windows in a depot's time zone.

A schedule is `{days: [MON..SUN], start: "HH:MM", end: "HH:MM"}` (spec 3.2).
`days` are the days a window *starts* on; a window is `[start, end)`; an
`end` earlier than `start` crosses midnight into the next day, so every
window is shorter than a day of wall-clock time.

Local times are resolved with the zone's rules: a local time skipped by a
DST change (e.g. 02:30 on the last Sunday of March in Europe/Amsterdam) is
taken as the first valid instant after it (03:00 CEST, the instant of the
change); a local time that occurs twice (the last Sunday of October) is its
first occurrence. A window that lies wholly inside a skipped hour is empty
that day: it never starts, so it never ends either.

Nothing here touches the database or the clock: callers pass aware
datetimes and a `ZoneInfo`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
DAY_INDEX = {name: i for i, name in enumerate(DAYS)}
MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
SCHEDULE_FIELDS = ("days", "start", "end")

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")

START = "START"
END = "END"


class ScheduleProblem(ValueError):
    """A bad schedule field: `field` is "days", "start", "end" or "" (the schedule itself)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Schedule:
    days: tuple[str, ...]  # in week order, no duplicates
    start: int  # minutes after local midnight
    end: int

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    @property
    def start_text(self) -> str:
        return minutes_to_text(self.start)

    @property
    def end_text(self) -> str:
        return minutes_to_text(self.end)

    def as_dict(self) -> dict[str, Any]:
        """The API's shape."""
        return {"days": list(self.days), "start": self.start_text, "end": self.end_text}

    def week_intervals(self) -> list[tuple[int, int]]:
        """The windows as half-open intervals of minutes from Monday 00:00, wrapped at SUN->MON."""
        out: list[tuple[int, int]] = []
        length = (self.end - self.start) % MINUTES_PER_DAY
        for day in self.days:
            begin = DAY_INDEX[day] * MINUTES_PER_DAY + self.start
            finish = begin + length
            if finish <= MINUTES_PER_WEEK:
                out.append((begin, finish))
            else:  # a Sunday window running into Monday
                out.append((begin, MINUTES_PER_WEEK))
                out.append((0, finish - MINUTES_PER_WEEK))
        return sorted(out)

    def describe(self) -> str:
        days = ", ".join(self.days)
        suffix = " (ends the next day)" if self.crosses_midnight else ""
        return f"{days} {self.start_text}–{self.end_text}{suffix}"


def minutes_to_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_time(value: Any, field: str) -> int:
    if not isinstance(value, str) or not _HHMM.match(value):
        raise ScheduleProblem(field, f'{field} must be a time "HH:MM" from 00:00 to 23:59')
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def parse_schedule(raw: Any) -> Schedule:
    """A schedule from untrusted JSON, or the first ScheduleProblem (`schedule_problems` lists all)."""
    problems = schedule_problems(raw)
    if problems:
        raise problems[0]
    days = tuple(sorted(raw["days"], key=DAY_INDEX.__getitem__))
    return Schedule(
        days=days, start=_parse_time(raw["start"], "start"), end=_parse_time(raw["end"], "end")
    )


def schedule_problems(raw: Any) -> list[ScheduleProblem]:
    """Every problem of an untrusted schedule, in field order; [] when it is valid."""
    if not isinstance(raw, dict):
        return [ScheduleProblem("", "schedule must be an object {days, start, end} or null")]
    problems = [
        ScheduleProblem(str(key), f"{key} is not a field of a schedule")
        for key in sorted(set(raw) - set(SCHEDULE_FIELDS), key=str)
    ]
    days = raw.get("days")
    if "days" not in raw:
        problems.append(ScheduleProblem("days", "days is required"))
    elif not isinstance(days, list) or not days:
        problems.append(ScheduleProblem("days", "days must be a non-empty list of MON..SUN"))
    else:
        unknown = [d for d in days if not isinstance(d, str) or d not in DAY_INDEX]
        if unknown:
            problems.append(
                ScheduleProblem(
                    "days", f"days must name days as {', '.join(DAYS)}; got {unknown!r}"
                )
            )
        elif len(set(days)) != len(days):
            repeated = sorted({d for d in days if days.count(d) > 1}, key=DAY_INDEX.__getitem__)
            problems.append(
                ScheduleProblem("days", f"days lists {', '.join(repeated)} more than once")
            )
    times: dict[str, int] = {}
    for name in ("start", "end"):
        if name not in raw:
            problems.append(ScheduleProblem(name, f"{name} is required"))
            continue
        try:
            times[name] = _parse_time(raw[name], name)
        except ScheduleProblem as exc:
            problems.append(exc)
    if len(times) == 2 and times["start"] == times["end"]:
        problems.append(
            ScheduleProblem(
                "end", "end must differ from start (a window cannot be empty or a whole day)"
            )
        )
    return problems


def schedules_overlap(a: Schedule, b: Schedule) -> bool:
    """Whether two schedules share any minute of the week (wall clock, half-open windows)."""
    left, right = a.week_intervals(), b.week_intervals()
    i = j = 0
    while i < len(left) and j < len(right):
        (s1, e1), (s2, e2) = left[i], right[j]
        if s1 < e2 and s2 < e1:
            return True
        if e1 <= e2:
            i += 1
        else:
            j += 1
    return False


def resolve_local(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """The instant (UTC) of a wall-clock time on a local date.

    A skipped time is the first valid instant after it (the moment of the DST
    change); a repeated time is its first occurrence.
    """
    naive = datetime.combine(day, time(minutes // 60, minutes % 60))
    first = naive.replace(tzinfo=zone, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == naive:
        return instant  # exists (the first occurrence when repeated)
    # Skipped: fold=1 reads it with the offset after the change, which lands
    # before the change; fold=0 with the offset before it, which lands after.
    # The change itself lies between the two: find it by bisection on seconds.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = instant
    target_offset = high.astimezone(zone).utcoffset()
    lo_s, hi_s = 0, int((high - low).total_seconds())
    while lo_s < hi_s:
        mid = (lo_s + hi_s) // 2
        if (low + timedelta(seconds=mid)).astimezone(zone).utcoffset() == target_offset:
            hi_s = mid
        else:
            lo_s = mid + 1
    return low + timedelta(seconds=lo_s)


def windows_around(schedule: Schedule, zone: ZoneInfo, first_day: date, last_day: date):
    """Each window `(start_instant, end_instant)` starting on a local date in [first_day, last_day]."""
    day = first_day
    while day <= last_day:
        if DAYS[day.weekday()] in schedule.days:
            begin = resolve_local(day, schedule.start, zone)
            end_day = day + timedelta(days=1) if schedule.crosses_midnight else day
            end = resolve_local(end_day, schedule.end, zone)
            if begin < end:
                yield begin, end
        day += timedelta(days=1)


def _local_date(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


def is_active(schedule: Schedule, at: datetime, zone: ZoneInfo) -> bool:
    """Whether `at` (aware) lies in one of the schedule's windows."""
    if at.tzinfo is None:
        raise ValueError("at must be an aware datetime")
    today = _local_date(at, zone)
    # A window shorter than a day that contains `at` starts today or yesterday.
    return any(
        begin <= at < end
        for begin, end in windows_around(schedule, zone, today - timedelta(days=1), today)
    )


def active_window(
    schedule: Schedule, at: datetime, zone: ZoneInfo
) -> tuple[datetime, datetime] | None:
    today = _local_date(at, zone)
    for begin, end in windows_around(schedule, zone, today - timedelta(days=1), today):
        if begin <= at < end:
            return begin, end
    return None


def transitions(
    schedule: Schedule, zone: ZoneInfo, after: datetime, until: datetime
) -> list[tuple[str, datetime]]:
    """Every START and END of the schedule in the half-open interval (after, until], in time order.

    Consecutive calls over (a, b] and (b, c] report each transition exactly once.
    """
    if after.tzinfo is None or until.tzinfo is None:
        raise ValueError("after and until must be aware datetimes")
    if until <= after:
        return []
    out: list[tuple[str, datetime]] = []
    first = _local_date(after, zone) - timedelta(days=1)
    last = _local_date(until, zone)
    for begin, end in windows_around(schedule, zone, first, last):
        if after < begin <= until:
            out.append((START, begin))
        if after < end <= until:
            out.append((END, end))
    # An END and a START at one instant: the END first (windows are half-open).
    out.sort(key=lambda t: (t[1], 0 if t[0] == END else 1))
    return out
