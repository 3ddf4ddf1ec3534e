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

__all__ = ["call_kpis", "grid_kpis", "grid_side_kpis", "grid_window", "summarize"]

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
    calendar=None,
) -> dict[str, Any]:
    """Requested and delivered energy and power of one call, its tracking and its rebound.

    A modified event reports its last version (modification number, request,
    signal) and, in ``versions``, every version with its announcement; its
    ``end_s`` is where its activity really ended (a cancellation or a new end
    applied). ``*_iso`` times are ISO 8601 with the offset in force, or None
    when the scenario has no date (``calendar`` None or without ``time.start``).
    """
    dt_h = dt_s / S_PER_H
    cid = call.call_id
    last = call.latest
    end_s = call.effective_end_s
    iso = calendar.iso if calendar is not None else (lambda t_s: None)
    t = ts["t_s"].to_numpy()
    frac = ts[call_col(cid, "active_fraction")].to_numpy()
    req = ts[call_col(cid, "requested_kw")].to_numpy()
    active = frac > 0.0
    e_req = float(req[active].sum() * dt_h)
    out: dict[str, Any] = {
        "id": cid,
        "origin": call.origin,
        "modification": last.modification,
        "direction": call.direction.value,
        "start_s": call.start_s,
        "end_s": end_s,
        "notification_s": call.notification_s,
        "start_iso": iso(call.start_s),
        "end_iso": iso(end_s),
        "notification_iso": iso(call.notification_s),
        "signal": last.signal,
        "tier": call.tier,
        "response_required": call.response_required,
        "cancelled": last.cancelled,
        "ramp_up_s": last.ramp_up_s,
        "requested_kw": last.p_kw,
        "requested_kw_max": _f(req[active].max()) if active.any() else None,  # highest tick mean (modified calls)
        "requested_kwh": e_req,
        "target_buses": None if call.bus_idx is None else len(call.bus_idx),
        "target_operators": None if call.operators is None else list(call.operators),
        "target_fleets": None if call.fleets is None else list(call.fleets),
        "n_ticks_active": int(active.sum()),
    }
    if call.updates:
        out["versions"] = [
            {"modification": v.modification, "announced_s": a_s, "announced_iso": iso(a_s), "end_s": v.end_s,
             "requested_kw": v.p_kw, "cancelled": v.cancelled}
            for a_s, v in call.versions
        ]
    if response is not None:
        out["accepted"] = response.accepted
        out["opt"] = "optIn" if response.accepted else "optOut"  # OpenADR's optType
        out["room_at_notification_kw"] = response.room_kw
        out["accepted_fraction"] = response.accepted_fraction  # share of the call the platform committed to
        out["e_available_kwh"] = response.e_available_kwh  # its operators' lookahead (acceptance: energy)
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
        recovery_s = last.recovery_s
        t_stop = np.inf if recovery_s is None else end_s + recovery_s
        cut_by = None
        for o in calls:
            if o is not call and o.start_s >= end_s and o.start_s < t_stop and _share_buses(o, call):
                t_stop, cut_by = o.start_s, o.call_id
        window = (t >= end_s) & (t + dt_s <= t_stop + 1e-9)
        out["recovery_window_s"] = [end_s, _f(min(t_stop, t[-1] + dt_s)) if t.size else None]
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


def _spells(mask: np.ndarray) -> int:
    """Length of the longest run of consecutive True values [ticks]."""
    if not mask.any():
        return 0
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return int((edges[1::2] - edges[::2]).max())


def _at(t: np.ndarray, x: np.ndarray, fn) -> float | None:
    # The time of x's extreme (first tick if tied), None when x has no finite value.
    return _f(t[fn(x)]) if np.isfinite(x).any() else None


def grid_side_kpis(
    t_s: np.ndarray,
    vm_min_pu: np.ndarray,
    vm_max_pu: np.ndarray,
    line_loading_max_percent: np.ndarray,
    trafo_loading_max_percent: np.ndarray,
    p_loss_mw: np.ndarray,
    p_ext_grid_mw: np.ndarray,
    dt_s: float,
    vm_limits_pu: tuple[float, float],
    loading_limit_percent: float,
) -> dict[str, Any]:
    """Violations, peaks and energy of one grid (the plant's or its twin's) from its per-tick extremes.

    Every argument is one value per tick (NaN where the power flow did not
    converge; such ticks count nowhere). A tick violates the voltage band when
    its lowest bus voltage is below ``vm_limits_pu[0]`` or its highest above
    ``vm_limits_pu[1]``, and the loading limit when its most loaded line or
    transformer is above ``loading_limit_percent``; a violating tick counts for
    its whole ``dt_s``. The ``worst_*`` values are those of the tick furthest
    beyond (or, with no violation, closest to) its limit: ``worst_excess_pu``
    and ``worst_excess_percent`` are positive beyond the limit and zero or
    negative inside it (the margin left). Energies are power times ``dt_s``
    summed over the solved ticks [kWh].
    """
    t = np.asarray(t_s, dtype=float)
    lo, hi = vm_limits_pu
    vmin = np.asarray(vm_min_pu, dtype=float)
    vmax = np.asarray(vm_max_pu, dtype=float)
    line = np.asarray(line_loading_max_percent, dtype=float)
    trafo = np.asarray(trafo_loading_max_percent, dtype=float)
    dt_h = dt_s / S_PER_H
    solved = np.isfinite(vmin)
    below, above = lo - vmin, vmax - hi  # > 0 beyond the limit [pu]
    excess_v = np.fmax(below, above)
    v_bad = excess_v > 0.0
    loading = np.fmax(line, trafo)  # the tick's most loaded branch [%]
    excess_l = loading - loading_limit_percent
    l_bad = excess_l > 0.0
    voltage: dict[str, Any] = {"n_ticks": int(v_bad.sum()), "duration_s": float(v_bad.sum() * dt_s),
                               "longest_s": float(_spells(v_bad) * dt_s),
                               "worst_vm_pu": None, "worst_excess_pu": None, "t_s_at_worst": None}
    if np.isfinite(excess_v).any():
        k = int(np.nanargmax(excess_v))
        voltage.update(worst_vm_pu=_f(vmin[k] if below[k] >= above[k] else vmax[k]),
                       worst_excess_pu=_f(excess_v[k]), t_s_at_worst=_f(t[k]))
    overload: dict[str, Any] = {"n_ticks": int(l_bad.sum()), "duration_s": float(l_bad.sum() * dt_s),
                                "longest_s": float(_spells(l_bad) * dt_s),
                                "worst_loading_percent": None, "worst_excess_percent": None, "worst_element": None,
                                "t_s_at_worst": None}
    if np.isfinite(loading).any():
        k = int(np.nanargmax(loading))
        overload.update(worst_loading_percent=_f(loading[k]), worst_excess_percent=_f(excess_l[k]),
                        worst_element="trafo" if trafo[k] >= line[k] or not np.isfinite(line[k]) else "line",
                        t_s_at_worst=_f(t[k]))
    loss = np.asarray(p_loss_mw, dtype=float)
    ext = np.asarray(p_ext_grid_mw, dtype=float)
    return {
        "n_ticks_solved": int(solved.sum()),
        "vm_min_pu": _nanmin(vmin),
        "t_s_at_vm_min": _at(t, vmin, np.nanargmin),
        "vm_max_pu": _nanmax(vmax),
        "t_s_at_vm_max": _at(t, vmax, np.nanargmax),
        "voltage_violation": voltage,
        "overload": overload,
        "line_loading_max_percent": _nanmax(line),
        "t_s_at_line_loading_max": _at(t, line, np.nanargmax),
        "trafo_loading_max_percent": _nanmax(trafo),
        "t_s_at_trafo_loading_max": _at(t, trafo, np.nanargmax),
        "e_loss_kwh": _f(np.nansum(loss) * 1e3 * dt_h) if solved.any() else None,  # line and trafo losses [kWh]
        "p_loss_max_mw": _nanmax(loss),
        "e_ext_grid_kwh": _f(np.nansum(ext) * 1e3 * dt_h) if solved.any() else None,  # import [kWh]
    }


def grid_kpis(ts: pd.DataFrame, vm_min_limit_pu: float, vm_max_limit_pu: float, loading_limit_percent: float,
              *, dt_s: float):
    """Voltage and loading extremes and limit violations over the run, with and without the calls.

    ``plant`` and ``twin`` hold :func:`grid_side_kpis` of the plant's and the
    no-call twin's power flows (``twin`` is None without a twin); the flat keys
    before them are the plant's extremes, kept for readers of earlier summaries.
    """
    conv = ts["grid_converged"].to_numpy()
    t = ts["t_s"].to_numpy()
    limits = {"vm_limits_pu": [vm_min_limit_pu, vm_max_limit_pu], "loading_limit_percent": loading_limit_percent}

    def side(suffix: str) -> dict[str, Any]:
        col = lambda q, unit: ts[f"{q}{suffix}_{unit}"].to_numpy()  # noqa: E731
        return grid_side_kpis(t, col("vm_min", "pu"), col("vm_max", "pu"), col("line_loading_max", "percent"),
                              col("trafo_loading_max", "percent"), col("p_loss", "mw"), col("p_ext_grid", "mw"),
                              dt_s, (vm_min_limit_pu, vm_max_limit_pu), loading_limit_percent)

    # The twin's columns are NaN throughout without a twin (measurement.twin off).
    sides = {"plant": side(""), "twin": side("_twin") if np.isfinite(ts["p_twin_kw"].to_numpy()).any() else None}
    if not conv.any():
        return {"power_flows": 0, "power_flows_not_converged": int((~conv).sum()), **limits, **sides}
    vmin = ts["vm_min_pu"].to_numpy()
    vmax = ts["vm_max_pu"].to_numpy()
    line = ts["line_loading_max_percent"].to_numpy()
    trafo = ts["trafo_loading_max_percent"].to_numpy()
    return {
        "power_flows": int(conv.sum()),
        "power_flows_not_converged": int((~conv).sum()),
        "vm_min_pu": _f(np.nanmin(vmin)),
        "vm_max_pu": _f(np.nanmax(vmax)),
        "t_s_at_vm_min": _f(t[np.nanargmin(vmin)]),
        "line_loading_max_percent": _nanmax(line),
        "trafo_loading_max_percent": _nanmax(trafo),
        "t_s_at_trafo_loading_max": _at(t, trafo, np.nanargmax),
        "vm_min_twin_pu": _nanmin(ts["vm_min_twin_pu"].to_numpy()),
        "line_loading_max_twin_percent": _nanmax(ts["line_loading_max_twin_percent"].to_numpy()),
        "trafo_loading_max_twin_percent": _nanmax(ts["trafo_loading_max_twin_percent"].to_numpy()),
        "n_ticks_voltage_violation": int(((vmin < vm_min_limit_pu) | (vmax > vm_max_limit_pu)).sum()),
        "n_ticks_overload": int(((line > loading_limit_percent) | (trafo > loading_limit_percent)).sum()),
        **limits,
        **sides,
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
    calendar=None,
) -> dict[str, Any]:
    """The run's KPIs as a JSON-ready dict.

    ``calendar`` (:class:`vpp.scenario.timefmt.Calendar`) adds ``calendar``
    (start, zone, whether the date is known) and ISO times of the calls.
    """
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
        "calendar": None if calendar is None else calendar.summary(),
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
        "calls": [call_kpis(ts, c, calls, dt_s, kinds, twin, responses.get(c.call_id), calendar) for c in calls],
        "fleets": {
            f.name: {"kind": f.kind, "operator": f.operator, **s,
                     **({"twin": s_twin} if twin else {})}
            for f, s, s_twin in zip(fleets, fleet_summaries, twin_summaries or [None] * len(fleets))
        },
        "grid": grid,
        "messages": messages,
    }
