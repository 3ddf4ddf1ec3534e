"""Times and durations in a scenario: every form a time field accepts, parsed in one place.

A scenario's clock is its :class:`Calendar`: ``time.start`` (a date and time in
``time.timezone``, default ``Asia/Shanghai``) or, in scenarios written before
there was a calendar, only ``time.clock_start_h`` (the clock hour at
``t_s = 0`` on an unknown date). Inside the simulator time is always float
seconds since the start (``t_s``); this module turns what people write into
those seconds and back into timestamps.

Instants (a DR event's ``start``, ``end``, ``notification``, a modification's ``at``)
    * seconds since the scenario start: ``3600``;
    * an ISO 8601 date-time with a UTC offset: ``"2025-07-15T18:00+08:00"``
      (also ``Z``), or without one, read as wall-clock time in
      ``time.timezone``: ``"2025-07-15T18:00"``; a date alone is its midnight
      (``"2025-07-16"``). YAML and TOML date-times written without quotes are
      taken the same way;
    * a clock time ``"18:00"`` or ``"18:00:30"``: the first such wall-clock
      time at or after the scenario start (the start itself counts);
    * a day and a clock time: ``"D+1 18:00"`` (``D+0`` is the start's calendar
      day, ``D+1`` the next) or ``"day 2 18:00"`` (days counted from 1, the
      start's day being day 1: ``day 2`` = ``D+1``).

    Wall-clock times are local times in ``time.timezone``; across a daylight
    saving change they are counted in elapsed seconds, so a day with the
    change is 23 or 25 h long. A wall-clock time that does not exist (in the
    hour the clocks skip) is an error; one that occurs twice (the hour
    repeated when clocks go back) is its first occurrence. A scenario with
    only ``clock_start_h`` has no date and no zone rules: clock and day forms
    count days of 24 h from the start, and date-times are an error (the date
    is unknown; give ``time.start``).

Durations (``duration``, ``ramp_up_s``, ``recovery_s``, an interval's ``duration``)
    seconds (``7200``) or an ISO 8601 duration: ``"PT2H"``, ``"PT15M"``,
    ``"PT1H30M"``, ``"P1D"``, ``"P1DT6H"``, ``"P1W"``, ``"PT0.5H"``.
    Durations are exact elapsed time: ``P1D`` is 86,400 s even across a
    daylight saving change. Years and months (``P1M``) are refused: they have
    no fixed length.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_TIMEZONE",
    "INSTANT_FORMS",
    "DURATION_FORMS",
    "Calendar",
    "check_instant",
    "parse_duration_s",
    "parse_start",
]

DEFAULT_TIMEZONE = "Asia/Shanghai"

INSTANT_FORMS = (
    "seconds since the start (3600), an ISO 8601 date-time ('2025-07-15T18:00+08:00', or '2025-07-15T18:00' "
    "in time.timezone), a clock time ('18:00': the first at or after the start) or a day and clock time "
    "('D+1 18:00', 'day 2 18:00')"
)
DURATION_FORMS = "seconds (7200) or an ISO 8601 duration ('PT2H', 'PT15M', 'P1DT6H')"

_S_PER_DAY = 86_400.0
_MAX_DAYS = 10_000  # a day offset beyond any scenario span (366 days), kept small enough for datetime arithmetic

_CLOCK = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}(?:\.\d{1,6})?))?$")
_DAY_CLOCK = re.compile(
    r"^(?:D\s*\+\s*(?P<plus>\d{1,5})|DAY\s+(?P<day>\d{1,5}))\s+(?P<clock>\S+)$", re.IGNORECASE
)
_DURATION = re.compile(
    r"^P(?:(?P<w>\d+(?:[.,]\d+)?)W|(?:(?P<d>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:[.,]\d+)?)H)?(?:(?P<m>\d+(?:[.,]\d+)?)M)?(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?)$",
    re.IGNORECASE,
)
_CALENDAR_DURATION = re.compile(r"^P(?:\d+(?:[.,]\d+)?[YM])", re.IGNORECASE)
_MAX_TEXT = 100  # characters of a time string; anything longer is not one of the forms


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


# --- syntax (no calendar needed) ----------------------------------------------------------------------


def _clock_s(text: str) -> float | None:
    """Seconds after midnight of ``HH:MM[:SS]``, or None when ``text`` is not a clock time (ValueError if out of range)."""
    m = _CLOCK.match(text)
    if m is None:
        return None
    h, mi = int(m.group("h")), int(m.group("m"))
    s = float(m.group("s") or 0.0)
    if h > 23 or mi > 59 or s >= 60.0:
        raise ValueError(f"{_show(text)} is not a clock time: hours 0-23, minutes and seconds 0-59")
    return h * 3600.0 + mi * 60.0 + s


@dataclass(frozen=True)
class _Instant:
    """An instant as written, before the calendar places it: exactly one of the forms."""

    seconds: float | None = None  # seconds since the start
    moment: datetime | None = None  # an ISO date-time (naive: wall-clock time in the scenario's zone)
    day: int | None = None  # day offset of a day-and-clock form (0 = the start's day); None: first at or after
    clock_s: float | None = None  # seconds after local midnight of a clock form


def _parse_instant(value) -> _Instant:
    """The form of ``value`` (ValueError naming the accepted forms if it is none of them)."""
    if isinstance(value, bool):
        raise ValueError(f"must be {INSTANT_FORMS}, not true/false")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number of seconds, got {_show(value)}")
        return _Instant(seconds=float(value))
    if isinstance(value, datetime):
        return _Instant(moment=value)
    if isinstance(value, date):
        return _Instant(moment=datetime.combine(value, time()))
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ValueError(f"a clock time takes no UTC offset (it is wall-clock time in time.timezone), got {value}")
        return _Instant(clock_s=value.hour * 3600.0 + value.minute * 60.0 + value.second + value.microsecond / 1e6)
    if not isinstance(value, str):
        raise ValueError(f"must be {INSTANT_FORMS}; got a {type(value).__name__}")
    text = value.strip()
    if not text or len(text) > _MAX_TEXT:
        raise ValueError(f"must be {INSTANT_FORMS}; got {_show(value)}")
    clock = _clock_s(text)
    if clock is not None:
        return _Instant(clock_s=clock)
    m = _DAY_CLOCK.match(text)
    if m is not None:
        day = int(m.group("plus")) if m.group("plus") is not None else int(m.group("day")) - 1
        if day < 0:
            raise ValueError(f"{_show(value)}: days are counted from 1 ('day 1' is the start's day; or 'D+0')")
        if day > _MAX_DAYS:
            raise ValueError(f"{_show(value)}: day {day} is beyond any scenario")
        clock = _clock_s(m.group("clock"))
        if clock is None:
            raise ValueError(f"{_show(value)}: after the day give a clock time such as 18:00")
        return _Instant(day=day, clock_s=clock)
    if text[:1].isdigit() and ("-" in text or "T" in text.upper()):
        try:
            return _Instant(moment=datetime.fromisoformat(text.replace("z", "Z")))
        except ValueError:
            raise ValueError(f"{_show(value)} is not a valid ISO 8601 date-time (e.g. '2025-07-15T18:00+08:00')") \
                from None
    if text.upper().startswith("P"):
        raise ValueError(f"{_show(value)} is a duration, but this field is an instant: give {INSTANT_FORMS}")
    raise ValueError(f"must be {INSTANT_FORMS}; got {_show(value)}")


def check_instant(value):
    """``value`` if it is one of the instant forms (ValueError otherwise); strings come back stripped.

    Date-time objects (from YAML or TOML) come back as ISO strings, so a
    validated scenario holds only numbers and strings.
    """
    _parse_instant(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, str):
        return value.strip()
    return float(value)


def parse_duration_s(value) -> float:
    """Seconds of a duration: a number of seconds or an ISO 8601 duration (ValueError otherwise)."""
    if isinstance(value, bool):
        raise ValueError(f"must be {DURATION_FORMS}, not true/false")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number of seconds, got {_show(value)}")
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if not isinstance(value, str):
        raise ValueError(f"must be {DURATION_FORMS}; got a {type(value).__name__}")
    text = value.strip()
    m = _DURATION.match(text) if len(text) <= _MAX_TEXT else None
    if m is None or text.upper() in ("P", "PT") or text.upper().endswith("T"):
        if _CALENDAR_DURATION.match(text):
            raise ValueError(f"{_show(value)}: years and months have no fixed length; give days (P30D), hours, "
                             "minutes or seconds")
        raise ValueError(f"must be {DURATION_FORMS}; got {_show(value)}")
    num = lambda g: float(m.group(g).replace(",", ".")) if m.group(g) is not None else 0.0  # noqa: E731
    return num("w") * 7 * _S_PER_DAY + num("d") * _S_PER_DAY + num("h") * 3600.0 + num("m") * 60.0 + num("s")


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {_show(name)}; give an IANA name such as Asia/Shanghai or UTC") from None


def _localize(naive: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    """``naive`` wall-clock time in ``tz``; ValueError if the clocks skip it (the first of two if repeated)."""
    aware = naive.replace(tzinfo=tz, fold=0)
    if aware.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) != naive:
        raise ValueError(f"{naive.isoformat()} does not exist in {tz.key} (the clocks skip it when daylight saving "
                         "time starts)")
    return aware


def _elapsed_s(later: datetime, earlier: datetime) -> float:
    """Elapsed seconds between two aware datetimes.

    In UTC: Python subtracts datetimes that share a tzinfo by their wall
    clocks, which is an hour off across a daylight saving change.
    """
    return (later.astimezone(timezone.utc) - earlier.astimezone(timezone.utc)) / timedelta(seconds=1)


def parse_start(value, timezone_name: str) -> datetime:
    """``time.start`` as a tz-aware datetime in ``timezone_name`` (naive values are wall-clock time there)."""
    tz = _zone(timezone_name)
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_TEXT:
            raise ValueError("must be an ISO 8601 date-time such as '2025-07-15T12:00+08:00' or '2025-07-15T12:00'")
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise ValueError(f"must be an ISO 8601 date-time such as '2025-07-15T12:00+08:00' or '2025-07-15T12:00' "
                             f"(in time.timezone); got {_show(value)}") from None
    elif isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    else:
        raise ValueError("must be an ISO 8601 date-time such as '2025-07-15T12:00+08:00' or '2025-07-15T12:00'")
    if moment.tzinfo is None:
        return _localize(moment, tz)
    return moment.astimezone(tz)


# --- the calendar ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calendar:
    """A scenario's clock: ``t_s = 0`` is ``start`` (tz-aware), or, with no date, ``clock_start_h``.

    ``duration_s`` is the scenario's span ``[0, duration_s)``.
    """

    start: datetime | None  # tz-aware, in ``timezone``; None: only the clock hour is known
    timezone: str
    clock_start_h: float  # clock hour at t_s = 0 [h]
    duration_s: float

    @property
    def date_known(self) -> bool:
        """Whether the scenario has a date (``time.start``), not only a clock hour."""
        return self.start is not None

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def instant_s(self, value) -> float:
        """Seconds since the start of an instant in any accepted form (ValueError otherwise).

        The span is not checked here.
        """
        inst = _parse_instant(value)
        if inst.seconds is not None:
            return inst.seconds
        if inst.moment is not None:
            if self.start is None:
                raise ValueError(f"{_show(value)}: a date-time needs time.start; this scenario gives only "
                                 "time.clock_start_h, so its date is unknown (use seconds or a clock time such as "
                                 "'18:00', or give time.start)")
            moment = inst.moment
            aware = moment if moment.tzinfo is not None else _localize(moment, self.tz)
            return _elapsed_s(aware, self.start)
        start_clock_s = self.clock_start_h * 3600.0
        if self.start is None:
            # No date, no zone rules: days of 24 h from the start.
            if inst.day is None:
                t_s = inst.clock_s - start_clock_s
                return t_s if t_s >= 0.0 else t_s + _S_PER_DAY
            return inst.day * _S_PER_DAY + inst.clock_s - start_clock_s
        local = self.start.astimezone(self.tz)
        day0 = local.date()

        def at(day: int) -> float:
            naive = datetime.combine(day0 + timedelta(days=day), time()) + timedelta(seconds=inst.clock_s)
            return _elapsed_s(_localize(naive, self.tz), self.start)

        if inst.day is not None:
            return at(inst.day)
        t_s = at(0)
        return t_s if t_s >= 0.0 else at(1)

    def describe(self, t_s: float) -> str:
        """``t_s=… = <ISO time>`` for messages; only ``t_s=…`` when the date is unknown."""
        iso = self.iso(t_s)
        return f"t_s={t_s:g}" + (f" = {iso}" if iso else "")

    def timestamp(self, t_s: float) -> datetime | None:
        """The tz-aware time of ``t_s`` [s], or None when the date is unknown."""
        if self.start is None or not math.isfinite(t_s):
            return None
        return (self.start.astimezone(timezone.utc) + timedelta(seconds=float(t_s))).astimezone(self.tz)

    def iso(self, t_s: float | None) -> str | None:
        """ISO 8601 string (with the UTC offset in force then) of ``t_s``, or None when the date is unknown."""
        ts = None if t_s is None else self.timestamp(t_s)
        return None if ts is None else ts.isoformat()

    def timestamps(self, t_s: np.ndarray) -> pd.DatetimeIndex | None:
        """tz-aware timestamps of an array of ``t_s`` [s] (elapsed seconds: right across DST), or None."""
        if self.start is None:
            return None
        origin = pd.Timestamp(self.start).tz_convert("UTC")
        return (origin + pd.to_timedelta(np.asarray(t_s, dtype=float), unit="s")).tz_convert(self.timezone)

    def summary(self) -> dict:
        """What the results say about the calendar."""
        out = {
            "start": None if self.start is None else self.start.isoformat(),
            "timezone": self.timezone if self.start is not None else None,
            "clock_start_h": self.clock_start_h,
            "date_known": self.start is not None,
        }
        if self.start is None:
            out["note"] = ("time.start not given: only the clock hour at t_s = 0 is known, not the date; results "
                           "carry no timestamps (t_s only)")
        return out
