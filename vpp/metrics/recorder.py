"""The recorder: preallocated arrays, one row per tick, filled in place.

Nothing per device is kept unless asked for (``sample_devices``): per-tick
totals of the plant and its no-call twin, per-kind and per-fleet power, per-call
requested and delivered power (measured against the twin, see
:mod:`vpp.metrics.delivery`), grid extremes with and without the calls, and
(optionally) per-bus power and voltage. Column names come from
:mod:`vpp.metrics.columns`.

With a calendar that knows the date (``time.start``), the timeseries also has
a tz-aware ``timestamp`` column (the tick's start, in the scenario's time
zone, counted in elapsed seconds so it is right across daylight saving
changes). Without a date (``time.clock_start_h`` only) there is no such
column: a date is never invented.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from vpp.dr import DRCall
from vpp.fleets.base import Fleet, FleetState
from vpp.metrics.columns import GRID, PLANT, call_col, call_kind_col, fleet_col, kind_col
from vpp.metrics.delivery import attribute, bus_shares
from vpp.units import S_PER_H

__all__ = ["Recorder", "TIMESTAMP"]

TIMESTAMP = "timestamp"  # tz-aware start of the tick, only when the scenario has a date (time.start)


class Recorder:
    """Per-tick results of a run, in arrays sized for the whole horizon."""

    def __init__(
        self,
        n_ticks: int,
        n_bus: int,
        fleets: Sequence[Fleet],
        calls: Sequence[DRCall],
        bus_timeseries: bool,
        samples: dict[str, np.ndarray] | None = None,
        kinds: Sequence[str] | None = None,
        calendar=None,
    ):
        self.calendar = calendar  # vpp.scenario.timefmt.Calendar, or None: no timestamps
        self.n_ticks = n_ticks
        self.n_bus = n_bus
        self.fleets = list(fleets)
        self.kinds = list(kinds) if kinds is not None else list(dict.fromkeys(f.kind for f in self.fleets))
        self._fleet_kind = np.array([self.kinds.index(f.kind) for f in self.fleets], dtype=np.int64)
        self.n_done = 0
        nan = lambda: np.full(n_ticks, np.nan)  # noqa: E731
        self.cols: dict[str, np.ndarray] = {name: nan() for name in PLANT}
        for kind in self.kinds:
            self.cols[kind_col(kind, "p_kw")] = nan()
            self.cols[kind_col(kind, "p_twin_kw")] = nan()
        for f in self.fleets:
            self.cols[fleet_col(f.name, "p_kw")] = nan()
            self.cols[fleet_col(f.name, "p_twin_kw")] = nan()
        self.calls = []
        for c in calls:
            self._add_call(c, 0)
        self.cols["grid_converged"] = np.zeros(n_ticks, dtype=bool)
        for name in GRID:
            self.cols[name] = nan()
        self._fleet_metric_cols: list[tuple[int, str, str]] | None = None
        self.bus_p_kw = np.full((n_ticks, n_bus), np.nan) if bus_timeseries else None
        self.bus_p_twin_kw = np.full((n_ticks, n_bus), np.nan) if bus_timeseries else None
        self.bus_vm_pu = np.full((n_ticks, n_bus), np.nan) if bus_timeseries else None
        # Per-bus accumulators (always kept: they are small).
        self.bus_e_kwh = np.zeros(n_bus)
        self.bus_e_twin_kwh = np.zeros(n_bus)
        self.bus_p_max_kw = np.full(n_bus, -np.inf)
        self.bus_vm_min_pu = np.full(n_bus, np.inf)
        self.bus_vm_max_pu = np.full(n_bus, -np.inf)
        # Per-branch peak loading over the run, by element ("line", "trafo"): one value per table row
        # (sized by the first power flow), the plant's with its time and the twin's.
        self.branch_loading_max_percent: dict[str, np.ndarray] = {}
        self.branch_t_s_at_loading_max: dict[str, np.ndarray] = {}
        self.branch_loading_max_twin_percent: dict[str, np.ndarray] = {}
        self.samples = samples or {}
        self._sampled = [(i, self.samples[f.name]) for i, f in enumerate(self.fleets) if f.name in self.samples]
        self.sample_p_kw = {name: np.full((n_ticks, idx.size), np.nan) for name, idx in self.samples.items()}

    def _add_call(self, call: DRCall, i: int) -> None:
        """Columns for a call known from tick ``i`` on (0 before it existed; its buses' change unknown then)."""
        self.calls.append(call)
        for q in ("active_fraction", "requested_kw", "delivered_kw", "target_change_kw"):
            col = np.full(self.n_ticks, np.nan)
            if q != "target_change_kw":
                col[:i] = 0.0
            self.cols[call_col(call.call_id, q)] = col
        for kind in self.kinds:
            col = np.full(self.n_ticks, np.nan)
            col[:i] = 0.0
            self.cols[call_kind_col(call.call_id, kind)] = col
        self.target_mask = np.array([c.bus_mask(self.n_bus) for c in self.calls])
        self.sign = np.array([c.direction.sign for c in self.calls])

    def _sync_calls(self, calls: Sequence[DRCall], i: int) -> None:
        """Take in calls raised during the run (new ones, and modifications of known ones)."""
        for j, call in enumerate(calls):
            if j < len(self.calls):
                self.calls[j] = call
            else:
                self._add_call(call, i)

    def record(self, outcome, states: Sequence[FleetState], grid_state=None, grid_twin_state=None,
               vm_limits_pu=(0.95, 1.05)) -> None:
        """Store one tick: the plant's and twin's outcome, the plant's fleet states, and the grid's state."""
        i = outcome.index
        if len(outcome.calls) != len(self.calls) or any(a is not b for a, b in zip(outcome.calls, self.calls)):
            self._sync_calls(outcome.calls, i)
        c = self.cols
        n_kind = len(self.kinds)
        c["t_s"][i] = outcome.t_s
        p_bus = outcome.p_bus_kw
        c["p_vpp_kw"][i] = outcome.p_fleet_kw.sum()
        c["flex_down_kw"][i] = outcome.flex_down_kw
        c["flex_up_kw"][i] = outcome.flex_up_kw
        c["p_requested_kw"][i] = outcome.requested_kw.sum()
        kind_p = np.bincount(self._fleet_kind, weights=outcome.p_fleet_kw, minlength=n_kind)
        for k, kind in enumerate(self.kinds):
            c[kind_col(kind, "p_kw")][i] = kind_p[k]
        for f, p_kw in zip(self.fleets, outcome.p_fleet_kw):
            c[fleet_col(f.name, "p_kw")][i] = p_kw
        for j, call in enumerate(self.calls):
            c[call_col(call.call_id, "active_fraction")][i] = outcome.active_fraction[j]
            c[call_col(call.call_id, "requested_kw")][i] = outcome.requested_kw[j]

        twin = outcome.p_twin_fleet_bus_kw is not None
        if twin:
            p_twin_bus = outcome.p_twin_bus_kw
            c["p_twin_kw"][i] = outcome.p_twin_fleet_kw.sum()
            c["p_change_kw"][i] = c["p_vpp_kw"][i] - c["p_twin_kw"][i]
            kind_twin = np.bincount(self._fleet_kind, weights=outcome.p_twin_fleet_kw, minlength=n_kind)
            for k, kind in enumerate(self.kinds):
                c[kind_col(kind, "p_twin_kw")][i] = kind_twin[k]
            for f, p_kw in zip(self.fleets, outcome.p_twin_fleet_kw):
                c[fleet_col(f.name, "p_twin_kw")][i] = p_kw
            change_fleet_bus = outcome.p_fleet_bus_kw - outcome.p_twin_fleet_bus_kw
            change_kind_bus = np.zeros((n_kind, self.n_bus))
            np.add.at(change_kind_bus, self._fleet_kind, change_fleet_bus)
            if self.calls:
                shares = bus_shares(self.target_mask, outcome.active_fraction, outcome.requested_kw,
                                    outcome.instructed_bus_kw)
                delivered, by_kind = attribute(change_kind_bus, shares, self.sign)
                change_bus = change_kind_bus.sum(axis=0)
                target_change = self.sign * (self.target_mask @ change_bus)
                for j, call in enumerate(self.calls):
                    cid = call.call_id
                    active = outcome.active_fraction[j] > 0.0
                    c[call_col(cid, "delivered_kw")][i] = delivered[j] if active else 0.0
                    c[call_col(cid, "target_change_kw")][i] = target_change[j]
                    for k, kind in enumerate(self.kinds):
                        c[call_kind_col(cid, kind)][i] = by_kind[j, k] if active else 0.0
                c["p_delivered_kw"][i] = float(delivered[outcome.active_fraction > 0.0].sum())
            else:
                c["p_delivered_kw"][i] = 0.0
            self.bus_e_twin_kwh += p_twin_bus * (outcome.dt_s / S_PER_H)

        if self._fleet_metric_cols is None:
            self._fleet_metric_cols = []
            for fi, f in enumerate(self.fleets):
                for key in f.tick_metrics(states[fi]):
                    col = fleet_col(f.name, key)
                    self.cols[col] = np.full(self.n_ticks, np.nan)
                    self._fleet_metric_cols.append((fi, key, col))
        metrics = [f.tick_metrics(s) for f, s in zip(self.fleets, states)]
        for fi, key, col in self._fleet_metric_cols:
            c[col][i] = metrics[fi][key]

        self.bus_e_kwh += p_bus * (outcome.dt_s / S_PER_H)
        np.maximum(self.bus_p_max_kw, p_bus, out=self.bus_p_max_kw)
        if self.bus_p_kw is not None:
            self.bus_p_kw[i] = p_bus
            if twin:
                self.bus_p_twin_kw[i] = outcome.p_twin_bus_kw
        for fi, idx in self._sampled:
            self.sample_p_kw[self.fleets[fi].name][i] = states[fi].p_kw[idx]

        if grid_state is not None:
            c["grid_converged"][i] = grid_state.converged
            if grid_state.converged:
                vm = grid_state.vm_pu
                c["vm_min_pu"][i] = np.nanmin(vm)
                c["vm_max_pu"][i] = np.nanmax(vm)
                c["line_loading_max_percent"][i] = _nanmax(grid_state.line_loading_percent)
                c["trafo_loading_max_percent"][i] = _nanmax(grid_state.trafo_loading_percent)
                c["p_ext_grid_mw"][i] = grid_state.p_ext_grid_mw
                c["p_loss_mw"][i] = grid_state.p_loss_mw
                lo, hi = vm_limits_pu
                c["n_bus_voltage_violations"][i] = float(((vm < lo) | (vm > hi)).sum())
                self._track_branches(grid_state, outcome.t_s, twin=False)
                np.fmin(self.bus_vm_min_pu, vm, out=self.bus_vm_min_pu)
                np.fmax(self.bus_vm_max_pu, vm, out=self.bus_vm_max_pu)
                if self.bus_vm_pu is not None:
                    self.bus_vm_pu[i] = vm
        if grid_twin_state is not None and grid_twin_state.converged:
            c["vm_min_twin_pu"][i] = np.nanmin(grid_twin_state.vm_pu)
            c["vm_max_twin_pu"][i] = np.nanmax(grid_twin_state.vm_pu)
            c["line_loading_max_twin_percent"][i] = _nanmax(grid_twin_state.line_loading_percent)
            c["trafo_loading_max_twin_percent"][i] = _nanmax(grid_twin_state.trafo_loading_percent)
            c["p_ext_grid_twin_mw"][i] = grid_twin_state.p_ext_grid_mw
            c["p_loss_twin_mw"][i] = grid_twin_state.p_loss_mw
            self._track_branches(grid_twin_state, outcome.t_s, twin=True)
        self.n_done = i + 1

    def _track_branches(self, state, t_s: float, twin: bool) -> None:
        """Fold one converged power flow's line and transformer loading into the per-branch peaks."""
        peaks = self.branch_loading_max_twin_percent if twin else self.branch_loading_max_percent
        for element, x in (("line", state.line_loading_percent), ("trafo", state.trafo_loading_percent)):
            peak = peaks.setdefault(element, np.full(x.shape[0], -np.inf))
            if not twin:
                t_at = self.branch_t_s_at_loading_max.setdefault(element, np.full(x.shape[0], np.nan))
                t_at[x > peak] = t_s  # NaN loading (a branch out of service) never counts
            np.fmax(peak, x, out=peak)

    def branch_table(self, elements: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
        """Peak loading of each line and transformer over the run, plant and twin [%].

        ``elements`` maps "line"/"trafo" to the pandapower (index, name) of its
        table rows, in table order. NaN where a branch never carried a solved flow.
        """
        parts = []
        for element, (index, name) in elements.items():
            n = len(index)
            fin = lambda x: np.where(np.isfinite(x), x, np.nan) if x is not None else np.full(n, np.nan)  # noqa: E731
            parts.append(pd.DataFrame({
                "element": element,
                "index": np.asarray(index, dtype=np.int64),
                "name": np.asarray(name, dtype=object),
                "loading_max_percent": fin(self.branch_loading_max_percent.get(element)),
                "t_s_at_loading_max": fin(self.branch_t_s_at_loading_max.get(element)),
                "loading_max_twin_percent": fin(self.branch_loading_max_twin_percent.get(element)),
            }))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def timeseries(self) -> pd.DataFrame:
        """One row per completed tick."""
        n = self.n_done
        cols = {k: v[:n] for k, v in self.cols.items()}
        stamps = None if self.calendar is None else self.calendar.timestamps(cols["t_s"])
        if stamps is not None:
            cols = {"t_s": cols.pop("t_s"), TIMESTAMP: stamps, **cols}
        return pd.DataFrame(cols)


def _nanmax(x: np.ndarray) -> float:
    return float(np.nanmax(x)) if x.size and not np.all(np.isnan(x)) else float("nan")
