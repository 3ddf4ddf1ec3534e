"""The calendar clock both ends of a protocol run share.

Simulated time ``t_s`` [s] (since the scenario start, as everywhere in vpp)
runs at ``speed`` simulated seconds per wall second from the moment the clock
is started (:meth:`SimClock.start`). On the wire, instants are the scenario's
calendar datetimes, ``time.start + t_s`` (:meth:`SimClock.to_datetime`), so a
VTN and a VEN agree on what "18:00" means even though each maps it to its own
wall clock. A scenario without a date (only ``time.clock_start_h``) is anchored
on 2000-01-01 at that hour, UTC: both ends derive the same anchor from the
same scenario.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timedelta, timezone

__all__ = ["SimClock", "calendar_anchor", "DATELESS_ANCHOR"]

DATELESS_ANCHOR = datetime(2000, 1, 1, tzinfo=timezone.utc)
"""Midnight of the day a dateless scenario's clock hour is counted from, on the wire."""


def calendar_anchor(calendar) -> datetime:
    """The tz-aware datetime of ``t_s = 0`` for a :class:`vpp.scenario.timefmt.Calendar`."""
    if calendar.start is not None:
        return calendar.start
    return DATELESS_ANCHOR + timedelta(hours=float(calendar.clock_start_h))


class SimClock:
    """Simulated seconds <-> wall seconds (``speed`` simulated s per wall s) <-> calendar datetimes."""

    def __init__(self, calendar, speed: float):
        if not (math.isfinite(speed) and speed > 0.0):
            raise ValueError(f"--speed must be a finite number > 0 (simulated seconds per wall second), got {speed}")
        self.anchor = calendar_anchor(calendar)
        self.speed = float(speed)
        self.wall0: float | None = None  # time.monotonic() at t_s = 0; None: not started

    @property
    def started(self) -> bool:
        return self.wall0 is not None

    def start(self, t_s: float = 0.0) -> None:
        """Start (or restart) the clock so that it reads ``t_s`` [s] now."""
        self.wall0 = time.monotonic() - t_s / self.speed

    def now_s(self) -> float:
        """Simulated time now [s] (0 before the clock is started)."""
        if self.wall0 is None:
            return 0.0
        return (time.monotonic() - self.wall0) * self.speed

    def wall_until_s(self, t_s: float) -> float:
        """Wall seconds from now until the clock reads ``t_s`` (<= 0 when already past)."""
        return (t_s - self.now_s()) / self.speed

    async def sleep_until(self, t_s: float) -> None:
        """Sleep until the clock reads ``t_s`` [s] (returns at once when it is past)."""
        wait_s = self.wall_until_s(t_s)
        if wait_s > 0.0:
            await asyncio.sleep(wait_s)

    def to_datetime(self, t_s: float) -> datetime:
        """The calendar instant of ``t_s`` [s], in UTC (as sent on the wire)."""
        return (self.anchor + timedelta(seconds=float(t_s))).astimezone(timezone.utc)

    def to_t_s(self, moment: datetime) -> float:
        """Seconds since the scenario start [s] of a calendar instant (naive means UTC)."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return (moment.astimezone(timezone.utc) - self.anchor.astimezone(timezone.utc)) / timedelta(seconds=1)
