"""The recorder: preallocated arrays, one row per tick, filled in place.

Nothing per device is kept unless asked for (``sample_devices``): per-tick
totals, per-kind and per-fleet power, per-call requested and delivered power,
grid extremes, and (optionally) per-bus power and voltage.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from vpp.dr import DRCall
from vpp.fleets.base import Fleet

__all__ = ["Recorder"]

_GRID_COLUMNS = (
    "vm_min_pu",
    "vm_max_pu",
    "line_loading_max_percent",
    "trafo_loading_max_percent",
    "p_ext_grid_mw",
    "p_loss_mw",
    "n_bus_voltage_violations",
    "vm_min_default_pu",
    "vm_max_default_pu",
    "line_loading_max_default_percent",
)


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
    ):
        self.n_ticks = n_ticks
        self.n_bus = n_bus
        self.fleets = list(fleets)
        self.calls = list(calls)
        self.kinds = sorted({f.kind for f in self.fleets})
        self.n_done = 0
        nan = lambda: np.full(n_ticks, np.nan)  # noqa: E731
        self.cols: dict[str, np.ndarray] = {"t_s": np.full(n_ticks, np.nan)}
        for name in ("p_vpp_kw", "p_default_kw", "flex_down_kw", "flex_up_kw", "dr_requested_kw", "dr_delivered_kw"):
            self.cols[name] = nan()
        for kind in self.kinds:
            self.cols[f"p_{kind}_kw"] = nan()
        for f in self.fleets:
            self.cols[f"p_{f.name}_kw"] = nan()
        for c in self.calls:
            self.cols[f"dr_{c.call_id}_requested_kw"] = nan()
            self.cols[f"dr_{c.call_id}_delivered_kw"] = nan()
        self.cols["grid_converged"] = np.zeros(n_ticks, dtype=bool)
        for name in _GRID_COLUMNS:
            self.cols[name] = nan()
        self._fleet_metric_cols: list[tuple[Fleet, str, str]] | None = None
        self.bus_p_kw = np.full((n_ticks, n_bus), np.nan) if bus_timeseries else None
        self.bus_p_default_kw = np.full((n_ticks, n_bus), np.nan) if bus_timeseries else None
        self.bus_vm_pu = np.full((n_ticks, n_bus), np.nan) if bus_timeseries else None
        # Per-bus accumulators (always kept: they are small).
        self.bus_e_kwh = np.zeros(n_bus)
        self.bus_e_shift_kwh = np.zeros(n_bus)
        self.bus_p_max_kw = np.full(n_bus, -np.inf)
        self.bus_vm_min_pu = np.full(n_bus, np.inf)
        self.bus_vm_max_pu = np.full(n_bus, -np.inf)
        self.samples = samples or {}
        self._sampled = [(f, self.samples[f.name]) for f in self.fleets if f.name in self.samples]
        self.sample_p_kw = {name: np.full((n_ticks, idx.size), np.nan) for name, idx in self.samples.items()}

    def record(self, outcome, grid_state=None, grid_default_state=None, vm_limits_pu=(0.95, 1.05)) -> None:
        """Store one tick: the plant's outcome and, if solved, the grid's state (actual and no-call)."""
        i = outcome.index
        c = self.cols
        dt_h = outcome.dt_s / 3600.0
        c["t_s"][i] = outcome.t_s
        c["p_vpp_kw"][i] = outcome.p_bus_kw.sum()
        c["p_default_kw"][i] = outcome.p_default_bus_kw.sum()
        c["flex_down_kw"][i] = outcome.flex_down_kw
        c["flex_up_kw"][i] = outcome.flex_up_kw
        c["dr_requested_kw"][i] = outcome.requested_kw.sum()
        c["dr_delivered_kw"][i] = outcome.delivered_kw.sum()
        for kind in self.kinds:
            c[f"p_{kind}_kw"][i] = 0.0
        for f in self.fleets:
            p_kw = float(f.p_kw.sum())
            c[f"p_{f.name}_kw"][i] = p_kw
            c[f"p_{f.kind}_kw"][i] += p_kw
        for j, call in enumerate(self.calls):
            c[f"dr_{call.call_id}_requested_kw"][i] = outcome.requested_kw[j]
            c[f"dr_{call.call_id}_delivered_kw"][i] = outcome.delivered_kw[j]
        if self._fleet_metric_cols is None:
            self._fleet_metric_cols = []
            for f in self.fleets:
                for key in f.tick_metrics():
                    col = f"{f.name}_{key}"
                    self.cols[col] = np.full(self.n_ticks, np.nan)
                    self._fleet_metric_cols.append((f, key, col))
        metrics = {f.name: f.tick_metrics() for f in self.fleets}
        for f, key, col in self._fleet_metric_cols:
            c[col][i] = metrics[f.name][key]

        self.bus_e_kwh += outcome.p_bus_kw * dt_h
        self.bus_e_shift_kwh += (outcome.p_default_bus_kw - outcome.p_bus_kw) * dt_h
        np.maximum(self.bus_p_max_kw, outcome.p_bus_kw, out=self.bus_p_max_kw)
        if self.bus_p_kw is not None:
            self.bus_p_kw[i] = outcome.p_bus_kw
            self.bus_p_default_kw[i] = outcome.p_default_bus_kw
        for fleet, idx in self._sampled:
            self.sample_p_kw[fleet.name][i] = fleet.p_kw[idx]

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
                np.fmin(self.bus_vm_min_pu, vm, out=self.bus_vm_min_pu)
                np.fmax(self.bus_vm_max_pu, vm, out=self.bus_vm_max_pu)
                if self.bus_vm_pu is not None:
                    self.bus_vm_pu[i] = vm
        if grid_default_state is not None and grid_default_state.converged:
            c["vm_min_default_pu"][i] = np.nanmin(grid_default_state.vm_pu)
            c["vm_max_default_pu"][i] = np.nanmax(grid_default_state.vm_pu)
            c["line_loading_max_default_percent"][i] = _nanmax(grid_default_state.line_loading_percent)
        self.n_done = i + 1

    def timeseries(self) -> pd.DataFrame:
        """One row per completed tick."""
        n = self.n_done
        return pd.DataFrame({k: v[:n] for k, v in self.cols.items()})


def _nanmax(x: np.ndarray) -> float:
    return float(np.nanmax(x)) if x.size and not np.all(np.isnan(x)) else float("nan")
