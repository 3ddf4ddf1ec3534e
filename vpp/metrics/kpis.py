"""KPIs of a run, computed from the recorder's arrays and the fleets' own accounting.

Every delivery figure here is measured against the no-call twin (see
:mod:`vpp.metrics.delivery`); without a twin it is ``None`` (unknown), never
estimated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vpp.dr import DRCall
from vpp.metrics.columns import call_col, call_kind_col
from vpp.units import S_PER_H

__all__ = ["call_kpis", "grid_kpis", "grid_window", "summarize"]

_TRACK_FRACTION = 0.9  # time_to_90pct_s: first tick whose delivery reaches this share of the request


def _f(x) -> float | None:
    x = float(x)
    return None if not np.isfinite(x) else x


def _nanmin(x: np.ndarray) -> float | None:
    return _f(np.nanmin(x)) if np.isfinite(x).any() else None


def _nanmax(x: np.ndarray) -> float | None:
    return _f(np.nanmax(x)) if np.isfinite(x).any() else None


def _share_buses(a: DRCall, b: DRCall) -> bool:
    if a.bus_idx is None or b.bus_idx is None:
        return True
    return bool(set(a.bus_idx) & set(b.bus_idx))


def grid_window(ts: pd.DataFrame, rows: np.ndarray) -> dict[str, Any] | None:
    """Worst voltage and the highest line and transformer loading over ``rows``, with and without the calls."""
    if not rows.any() or "vm_min_pu" not in ts or not np.isfinite(ts["vm_min_pu"].to_numpy()[rows]).any():
        return None
    col = lambda name: ts[name].to_numpy()[rows]  # noqa: E731
    return {
        "vm_min_pu": _nanmin(col("vm_min_pu")),
        "vm_min_twin_pu": _nanmin(col("vm_min_twin_pu")),
        "line_loading_max_percent": _nanmax(col("line_loading_max_percent")),
        "line_loading_max_twin_percent": _nanmax(col("line_loading_max_twin_percent")),
        "trafo_loading_max_percent": _nanmax(col("trafo_loading_max_percent")),
        "trafo_loading_max_twin_percent": _nanmax(col("trafo_loading_max_twin_percent")),
    }


def call_kpis(
    ts: pd.DataFrame,
    call: DRCall,
    calls: Sequence[DRCall],
    dt_s: float,
    kinds: Sequence[str],
    twin: bool,
    response=None,
) -> dict[str, Any]:
    """Requested and delivered energy and power of one call, its tracking and its rebound."""
    dt_h = dt_s / S_PER_H
    cid = call.call_id
    t = ts["t_s"].to_numpy()
    frac = ts[call_col(cid, "active_fraction")].to_numpy()
    req = ts[call_col(cid, "requested_kw")].to_numpy()
    active = frac > 0.0
    e_req = float(req[active].sum() * dt_h)
    out: dict[str, Any] = {
        "id": cid,
        "origin": call.origin,
        "modification": call.modification,
        "direction": call.direction.value,
        "start_s": call.start_s,
        "end_s": call.end_s,
        "notification_s": call.notification_s,
        "requested_kw": call.p_kw,
        "requested_kwh": e_req,
        "target_buses": None if call.bus_idx is None else len(call.bus_idx),
        "n_ticks_active": int(active.sum()),
    }
    if response is not None:
        out["accepted"] = response.accepted
        out["room_at_notification_kw"] = response.room_kw
    unknown = dict.fromkeys(
        ("delivered_kwh", "delivered_ratio", "tick_ratio_min", "tick_ratio_mean", "time_to_90pct_s",
         "tracking_rmse_kw", "rebound_peak_kw", "rebound_peak_t_s", "rebound_kwh", "delivered_by_kind_kwh")
    )
    if not twin:
        out.update(unknown)
        out["measured_against"] = None
    else:
        dlv = ts[call_col(cid, "delivered_kw")].to_numpy()
        e_dlv = float(dlv[active].sum() * dt_h)
        ratio = np.divide(dlv[active], req[active], out=np.full(int(active.sum()), np.nan), where=req[active] > 0)
        reached = np.flatnonzero(active & (dlv >= _TRACK_FRACTION * req) & (req > 0.0))
        out.update({
            "measured_against": "twin",
            "delivered_kwh": e_dlv,
            "delivered_ratio": _f(e_dlv / e_req) if e_req > 0 else None,
            "tick_ratio_min": _nanmin(ratio) if ratio.size else None,
            "tick_ratio_mean": _f(np.nanmean(ratio)) if np.isfinite(ratio).any() else None,
            "time_to_90pct_s": _f(t[reached[0]] + dt_s - call.start_s) if reached.size else None,
            "tracking_rmse_kw": _f(np.sqrt(np.mean((dlv[active] - req[active]) ** 2))) if active.any() else None,
            "delivered_by_kind_kwh": {
                k: float(ts[call_kind_col(cid, k)].to_numpy()[active].sum() * dt_h) for k in kinds
            },
        })
        # Rebound: after the call, the plant behind the call's buses moving against the call's direction,
        # until recovery_s has passed, the run ends, or another call on any of the same buses starts
        # (from then on the change behind those buses cannot be told apart between the calls).
        t_stop = np.inf if call.recovery_s is None else call.end_s + call.recovery_s
        cut_by = None
        for o in calls:
            if o is not call and o.start_s >= call.end_s and o.start_s < t_stop and _share_buses(o, call):
                t_stop, cut_by = o.start_s, o.call_id
        window = (t >= call.end_s) & (t + dt_s <= t_stop + 1e-9)
        out["recovery_window_s"] = [call.end_s, _f(min(t_stop, t[-1] + dt_s)) if t.size else None]
        out["recovery_cut_by_call"] = cut_by
        if window.any():
            rebound_kw = -ts[call_col(cid, "target_change_kw")].to_numpy()[window]
            k = int(np.argmax(rebound_kw))
            out["rebound_peak_kw"] = _f(rebound_kw[k])
            out["rebound_peak_t_s"] = _f(t[window][k])
            out["rebound_kwh"] = float(rebound_kw.sum() * dt_h)
        else:
            out.update(rebound_peak_kw=None, rebound_peak_t_s=None, rebound_kwh=None)
        out["grid_rebound"] = grid_window(ts, window)
    out["grid_during"] = grid_window(ts, active)
    return out


def grid_kpis(ts: pd.DataFrame, vm_min_limit_pu: float, vm_max_limit_pu: float, loading_limit_percent: float):
    """Voltage and loading extremes and limit violations over the run, with and without the calls."""
    conv = ts["grid_converged"].to_numpy()
    if not conv.any():
        return {"power_flows": 0, "power_flows_not_converged": int((~conv).sum())}
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
        "line_loading_max_percent": _nanmax(line),
        "trafo_loading_max_percent": _nanmax(trafo),
        "t_s_at_trafo_loading_max": _f(ts["t_s"].to_numpy()[np.nanargmax(trafo)]) if np.isfinite(trafo).any() else None,
        "vm_min_twin_pu": _nanmin(ts["vm_min_twin_pu"].to_numpy()),
        "line_loading_max_twin_percent": _nanmax(ts["line_loading_max_twin_percent"].to_numpy()),
        "trafo_loading_max_twin_percent": _nanmax(ts["trafo_loading_max_twin_percent"].to_numpy()),
        "n_ticks_voltage_violation": int(((vmin < vm_min_limit_pu) | (vmax > vm_max_limit_pu)).sum()),
        "n_ticks_overload": int(((line > loading_limit_percent) | (trafo > loading_limit_percent)).sum()),
        "vm_limits_pu": [vm_min_limit_pu, vm_max_limit_pu],
        "loading_limit_percent": loading_limit_percent,
    }


def summarize(
    ts: pd.DataFrame,
    fleets: Sequence,
    fleet_summaries: Sequence[dict[str, float]],
    twin_summaries: Sequence[dict[str, float]] | None,
    kinds: Sequence[str],
    calls: Sequence[DRCall],
    responses: Mapping[str, Any],
    dt_s: float,
    grid: dict[str, Any] | None,
    messages: dict[str, int],
) -> dict[str, Any]:
    """The run's KPIs as a JSON-ready dict."""
    dt_h = dt_s / S_PER_H
    twin = twin_summaries is not None
    p = ts["p_vpp_kw"].to_numpy()
    p_twin = ts["p_twin_kw"].to_numpy()
    by_kind: dict[str, dict[str, Any]] = {}
    for f, s in zip(fleets, fleet_summaries):
        k = by_kind.setdefault(f.kind, {"n_devices": 0, "e_grid_kwh": 0.0})
        k["n_devices"] += f.n
        k["e_grid_kwh"] += float(s["e_grid_kwh"])
    # What the calls cost each kind by the end of the run: plant minus twin of the kind's cost keys.
    cost: dict[str, dict[str, float]] | None = None
    if twin:
        cost = {}
        for f, s, s_twin in zip(fleets, fleet_summaries, twin_summaries):
            c = cost.setdefault(f.kind, {})
            for key in f.twin_cost_keys:
                c[key] = c.get(key, 0.0) + float(s[key]) - float(s_twin[key])
    return {
        "n_ticks": int(len(ts)),
        "dt_s": dt_s,
        "delivery_measured_against": "twin" if twin else None,
        "plant": {
            "n_devices": int(sum(f.n for f in fleets)),
            "e_vpp_kwh": float(p.sum() * dt_h),
            "e_twin_kwh": float(p_twin.sum() * dt_h) if twin else None,
            "p_vpp_max_kw": _f(p.max()) if p.size else None,
            "p_twin_max_kw": _f(p_twin.max()) if twin and p.size else None,
            "p_vpp_min_kw": _f(p.min()) if p.size else None,
            "flex_down_max_kw": _f(ts["flex_down_kw"].max()) if p.size else None,
            "flex_up_max_kw": _f(ts["flex_up_kw"].max()) if p.size else None,
            "by_kind": by_kind,
            "call_cost_by_kind": cost,
        },
        "calls": [call_kpis(ts, c, calls, dt_s, kinds, twin, responses.get(c.call_id)) for c in calls],
        "fleets": {
            f.name: {"kind": f.kind, "operator": f.operator, **s,
                     **({"twin": s_twin} if twin else {})}
            for f, s, s_twin in zip(fleets, fleet_summaries, twin_summaries or [None] * len(fleets))
        },
        "grid": grid,
        "messages": messages,
    }
