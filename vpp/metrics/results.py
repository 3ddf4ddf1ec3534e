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
    ``branches``: peak loading of every line and transformer over the run,
    plant and twin (with a power flow). ``summary``: KPIs. ``meta``: seed,
    versions, scenario hash. ``net``: the pandapower net the run solved (for
    the network map; never written). ``settlement``: each DR event settled per
    15-min interval against the twin and each baseline (:mod:`vpp.metrics.settle`).

    A run that stopped early is partial, never silently short: ``completed``
    is False, ``stopped_by`` says why (``"SIGINT"``, ``"SIGTERM"``,
    ``"grid_not_converged"`` or ``"error"``), ``error`` says what happened, and
    ``meta["last_tick"]`` names the last tick computed (``index`` and ``t_s``;
    None if none was). Every table holds exactly the ticks up to that one.
    :meth:`status` gathers these for ``summary.json`` and ``meta.json``.
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
    stopped_by: str | None = None
    branches: pd.DataFrame | None = None
    settlement: pd.DataFrame | None = None  # per (event, reference, settlement interval): vpp.metrics.settle
    net: Any = field(default=None, repr=False)

    def status(self) -> dict[str, Any]:
        """Whether the run is complete, and if not where and why it stopped (JSON-ready)."""
        return {
            "complete": self.completed,
            "stopped_by": self.stopped_by,
            "error": self.error,
            "n_ticks_done": self.meta.get("n_ticks_done", len(self.timeseries)),
            "n_ticks_total": self.meta.get("n_ticks"),
            "last_tick": self.meta.get("last_tick"),
        }
