"""What a run returns: tables and dictionaries, no files (writers live in :mod:`vpp.metrics.report`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["Results"]


@dataclass
class Results:
    """Results of one scenario run.

    ``timeseries``: one row per tick (totals, per-kind and per-fleet power, DR
    requested/delivered, grid extremes). ``buses``: per-bus aggregates.
    ``bus_timeseries``: per-bus power and voltage every tick (long format), if
    recorded. ``devices``: sampled per-device power (long format), if asked.
    ``summary``: KPIs. ``meta``: seed, versions, scenario hash. ``completed`` is
    False when the run stopped early; everything up to that tick is kept and
    ``error`` says why.
    """

    scenario_name: str
    timeseries: pd.DataFrame
    buses: pd.DataFrame
    summary: dict[str, Any]
    meta: dict[str, Any]
    bus_timeseries: pd.DataFrame | None = None
    devices: pd.DataFrame | None = None
    completed: bool = True
    error: str | None = field(default=None)
