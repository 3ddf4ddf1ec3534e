"""KPIs of a run, computed from the recorder's arrays and the fleets' own accounting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vpp.dr import DRCall
from vpp.fleets.base import Fleet
from vpp.units import S_PER_H

__all__ = ["call_kpis", "grid_kpis", "summarize"]

_SHORTFALL_TOL = 0.99  # a tick counts as short when it delivers below 99 % of the request


def _f(x) -> float | None:
    x = float(x)
    return None if not np.isfinite(x) else x


def call_kpis(ts: pd.DataFrame, call: DRCall, dt_s: float, response=None) -> dict[str, Any]:
    """Requested and delivered energy and power of one call over the ticks run."""
    req = ts[f"dr_{call.call_id}_requested_kw"].to_numpy()
    dlv = ts[f"dr_{call.call_id}_delivered_kw"].to_numpy()
    active = req > 0.0
    dt_h = dt_s / S_PER_H
    e_req = float(req.sum() * dt_h)
    e_dlv = float(dlv[active].sum() * dt_h)
    out: dict[str, Any] = {
        "direction": call.direction.value,
        "p_requested_kw": call.p_kw,
        "start_s": call.start_s,
        "end_s": call.end_s,
        "notification_s": call.notification_s,
        "target_buses": None if call.bus_idx is None else len(call.bus_idx),
        "n_ticks_active": int(active.sum()),
        "e_requested_kwh": e_req,
        "e_delivered_kwh": e_dlv,
        "performance": _f(e_dlv / e_req) if e_req > 0 else None,
        "p_delivered_mean_kw": _f(dlv[active].mean()) if active.any() else None,
        "p_delivered_min_kw": _f(dlv[active].min()) if active.any() else None,
        "p_delivered_max_kw": _f(dlv[active].max()) if active.any() else None,
        "n_ticks_short": int((dlv[active] < _SHORTFALL_TOL * req[active]).sum()),
    }
    if response is not None:
        out["accepted"] = response.accepted
        out["room_at_notification_kw"] = response.room_kw
    if active.any() and "vm_min_pu" in ts:
        vm = ts["vm_min_pu"].to_numpy()[active]
        vm_def = ts["vm_min_default_pu"].to_numpy()[active]
        ld = ts["line_loading_max_percent"].to_numpy()[active]
        ld_def = ts["line_loading_max_default_percent"].to_numpy()[active]
        if np.isfinite(vm).any():
            out["grid_during_call"] = {
                "vm_min_pu": _f(np.nanmin(vm)),
                "vm_min_without_call_pu": _f(np.nanmin(vm_def)) if np.isfinite(vm_def).any() else None,
                "line_loading_max_percent": _f(np.nanmax(ld)) if np.isfinite(ld).any() else None,
                "line_loading_max_without_call_percent": _f(np.nanmax(ld_def)) if np.isfinite(ld_def).any() else None,
            }
    return out


def grid_kpis(ts: pd.DataFrame, vm_min_limit_pu: float, vm_max_limit_pu: float, loading_limit_percent: float):
    """Voltage and loading extremes and limit violations over the run."""
    conv = ts["grid_converged"].to_numpy()
    if not conv.any():
        return {"power_flows": 0}
    vmin = ts["vm_min_pu"].to_numpy()
    vmax = ts["vm_max_pu"].to_numpy()
    line = ts["line_loading_max_percent"].to_numpy()
    trafo = ts["trafo_loading_max_percent"].to_numpy()
    return {
        "power_flows": int(conv.sum()),
        "power_flows_not_converged": int((~conv).sum()),
        "vm_min_pu": _f(np.nanmin(vmin)),
        "vm_max_pu": _f(np.nanmax(vmax)),
        "t_s_at_vm_min": _f(ts["t_s"].to_numpy()[np.nanargmin(vmin)]),
        "line_loading_max_percent": _f(np.nanmax(line)) if np.isfinite(line).any() else None,
        "trafo_loading_max_percent": _f(np.nanmax(trafo)) if np.isfinite(trafo).any() else None,
        "n_ticks_voltage_violation": int(((vmin < vm_min_limit_pu) | (vmax > vm_max_limit_pu)).sum()),
        "n_ticks_overload": int(((line > loading_limit_percent) | (trafo > loading_limit_percent)).sum()),
        "vm_limits_pu": [vm_min_limit_pu, vm_max_limit_pu],
        "loading_limit_percent": loading_limit_percent,
    }


def summarize(
    ts: pd.DataFrame,
    fleets: Sequence[Fleet],
    calls: Sequence[DRCall],
    responses: Mapping[str, Any],
    dt_s: float,
    grid: dict[str, Any] | None,
    messages: dict[str, int],
) -> dict[str, Any]:
    """The run's KPIs as a JSON-ready dict."""
    dt_h = dt_s / S_PER_H
    p = ts["p_vpp_kw"].to_numpy()
    by_kind: dict[str, dict[str, float]] = {}
    for f in fleets:
        k = by_kind.setdefault(f.kind, {"n_devices": 0, "e_grid_kwh": 0.0})
        k["n_devices"] += f.n
        k["e_grid_kwh"] += float(ts[f"p_{f.name}_kw"].sum() * dt_h)
    return {
        "n_ticks": int(len(ts)),
        "dt_s": dt_s,
        "plant": {
            "n_devices": int(sum(f.n for f in fleets)),
            "e_vpp_kwh": float(p.sum() * dt_h),
            "p_vpp_max_kw": _f(p.max()) if p.size else None,
            "p_vpp_min_kw": _f(p.min()) if p.size else None,
            "flex_down_max_kw": _f(ts["flex_down_kw"].max()) if p.size else None,
            "flex_up_max_kw": _f(ts["flex_up_kw"].max()) if p.size else None,
            "by_kind": by_kind,
        },
        "dr_calls": {c.call_id: call_kpis(ts, c, dt_s, responses.get(c.call_id)) for c in calls},
        "fleets": {f.name: {"kind": f.kind, "operator": f.operator, **f.summary()} for f in fleets},
        "grid": grid,
        "messages": messages,
    }
