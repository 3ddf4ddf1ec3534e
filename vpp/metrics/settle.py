"""Settlement of a run's DR events: baselines, delivery, money and carbon per event and per interval.

Pure (no IO). :func:`settle_run` takes a run's per-tick table (``t_s``,
``p_vpp_kw`` the metered plant, ``p_twin_kw`` the no-call twin, and per call
``call.<id>.requested_kw``) and its calls, and settles every call with the
building blocks of :mod:`vpp.programme`: settlement baselines and their error
against the twin, :func:`~vpp.programme.settle_event` under the call's tier,
avoided CO2 and carbon-inclusive credits. :func:`settlement_summary` does the
same from anything shaped like :class:`~vpp.metrics.results.Results`.

Time
----
The settlement index is ``start + t_s``. ``start`` (tz-aware) is the wall-clock
time of ``t_s = 0``; once a run carries a tz-aware ``timestamp`` column,
:func:`settlement_summary` reads it from there. Without a start (a scenario
with no calendar) the run has no dates: the day-matching baselines
(``10_in_10``, ``5_in_10``, ``high_5_of_10``, ``last_5_days``) are unknown with
that reason, ``15_min_before`` still works, and the per-interval ``timestamp``
column is NaT (``t_s`` is always there).

Settlement intervals
--------------------
Ticks are aggregated to settlement intervals of ``interval_s`` (15 min by
default; it must divide a day, so that every day has the same clock grid),
aligned to the local clock (to ``t_s = 0`` without a start). A tick's value is
its mean power over the tick, so the aggregation is exact and
energy-preserving for any ``dt_s``: each tick's energy goes to the intervals it
overlaps, in proportion to the overlap (a tick longer than an interval, or one
straddling a boundary, is split at its own mean power: the only power known
within it). An interval not fully covered by ticks (at the run's ends) or
overlapping a NaN tick is NaN.

Events
------
An event is settled over the settlement intervals its active period
[start_s, end_s) overlaps (``window_widened`` says when that is wider than the
active period), clipped to the run's complete intervals. Its requested energy
per interval comes from the call's ``requested_kw`` column (the request
averaged over each tick, 0 when inactive), aggregated the same way, so it is
the energy :mod:`vpp.metrics.kpis` reports. The metered series is the whole
VPP's: a call targeting some buses, or overlapping another call, is settled on
the plant's meter all the same, and ``notes`` says so (a real meter cannot tell
them apart either). Days touched by any call are excluded from every
day-matching baseline (``exclude_days``).

Which baseline a tier settles on (:data:`TIER_SETTLEMENT_BASELINE`)
-------------------------------------------------------------------
:class:`~vpp.programme.Tier` has no baseline field, so the choice lives here.
It is an *assumption*: we have not found Guangdong's or Shenzhen's own baseline
rule. ``day_ahead`` and ``hour_ahead`` settle on ``last_5_days``, Jiangsu's
working-day rule (the only Chinese day-matching rule in
:mod:`vpp.programme.baselines` that counts from the day before; Beijing's
``high_5_of_10`` is the other candidate). ``minute_level`` and ``real_time``
settle on ``15_min_before``, Jiangsu's load point for real-time response (both
per the sources in :mod:`vpp.programme.baselines`). Jiangsu counts the 5 days
back from the *invitation* day, one day earlier for a day-ahead call; the
registry's ``last_5_days`` counts from the event day.

Carbon
------
``avoided_co2_kg`` = delivered energy against the twin (the truth) x emission
factor; ``avoided_co2_net_of_rebound_kg`` nets the rebound energy measured by
:mod:`vpp.metrics.kpis` over the call's recovery window (signed: a rebound
below the twin adds). Carbon-inclusive credits count the delivered energy
against the tier's settlement baseline (what a verifier sees), with no rebound
netted, by :func:`vpp.programme.carbon_inclusive_credits` and its assumptions.
The rebound figures are copied from the call's KPIs, never recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd

from vpp.metrics.columns import call_col
from vpp.programme import (
    BASELINES,
    DEFAULT_EMISSION_FACTOR,
    EMISSION_FACTORS,
    TWIN,
    BaselineResult,
    avoided_co2_kg,
    baseline_error,
    carbon_inclusive_credits,
    compute_baseline,
    get_emission_factor,
    get_tier,
    settle_event,
    tier_with_overrides,
)
from vpp.programme.settlement import SETTLEMENT_COLUMNS
from vpp.units import S_PER_H

__all__ = [
    "DEFAULT_BASELINES",
    "DEFAULT_TIER",
    "DAY_MATCHING",
    "TIER_SETTLEMENT_BASELINE",
    "PER_INTERVAL_COLUMNS",
    "aggregate_to_intervals",
    "settle_run",
    "settlement_summary",
]

DEFAULT_BASELINES: tuple[str, ...] = ("10_in_10", "5_in_10", "high_5_of_10", "last_5_days", "15_min_before")
"""Baselines computed for every event unless told otherwise."""

DEFAULT_TIER = "day_ahead"
"""Tier of a call that names none (neither in ``tiers`` nor as its own ``tier``)."""

DAY_MATCHING = frozenset({"10_in_10", "5_in_10", "high_5_of_10", "last_5_days"})
"""Baselines that need calendar dates (weekdays); unknown for a run without a start."""

TIER_SETTLEMENT_BASELINE: Mapping[str, str] = {
    "day_ahead": "last_5_days",
    "hour_ahead": "last_5_days",
    "minute_level": "15_min_before",
    "real_time": "15_min_before",
}
"""The baseline each tier settles on (an assumption; see the module docstring)."""

PER_INTERVAL_COLUMNS: tuple[str, ...] = (
    *SETTLEMENT_COLUMNS[:3], "t_s", *SETTLEMENT_COLUMNS[3:], "avoided_co2_kg", "tier", "settles",
)
"""Columns of the per-interval table: :data:`vpp.programme.SETTLEMENT_COLUMNS` plus ``t_s`` (interval
start [s since the scenario start]), ``avoided_co2_kg`` (that row's delivered energy x the emission factor),
``tier`` and ``settles`` (True on the rows of the reference the tier settles on)."""

_PLACEHOLDER = pd.Timestamp("2000-01-01", tz="UTC")  # index anchor of a run without a start; never reported
_DAY_S = 86_400.0
_EPS_S = 1e-6  # times closer than this are the same instant [s]


# ---------------------------------------------------------------------------------------------- intervals


def aggregate_to_intervals(
    t_s: np.ndarray, p_kw: np.ndarray, dt_s: float, interval_s: float, origin_s: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean power per settlement interval [kW], energy-preserving, from per-tick mean power.

    ``t_s`` are the ticks' start times [s] (regular, step ``dt_s``); ``p_kw`` is
    ``(n_tick,)`` or ``(n_tick, n_series)``. Intervals are
    ``[origin_s + k interval_s, origin_s + (k+1) interval_s)`` for every k that
    overlaps the ticks. Returns ``(interval_start_s (m,), mean_kw (m[, n_series]))``;
    an interval not fully covered by ticks, or overlapping a NaN tick, is NaN.
    """
    t = np.asarray(t_s, dtype=float)
    p = np.asarray(p_kw, dtype=float)
    flat = p.ndim == 1
    p2 = p[:, None] if flat else p
    if t.size == 0:
        return np.zeros(0), np.zeros((0,) if flat else (0, p2.shape[1]))
    t0, t1 = float(t[0]), float(t[-1]) + dt_s
    k0 = math.floor((t0 - origin_s) / interval_s + 1e-9)
    k1 = math.ceil((t1 - origin_s) / interval_s - 1e-9)
    edges_int = origin_s + interval_s * np.arange(k0, k1 + 1)
    edges_tick = t0 + dt_s * np.arange(t.size + 1)
    # Every cut between two consecutive boundaries (tick or interval) lies in one tick and one interval.
    cuts = np.unique(np.round(np.concatenate([edges_tick, edges_int[(edges_int > t0) & (edges_int < t1)]]), 6))
    seg = np.diff(cuts)
    mid = cuts[:-1] + seg / 2
    tick = np.minimum(((mid - t0) // dt_s).astype(np.int64), t.size - 1)
    k = ((mid - edges_int[0]) // interval_s).astype(np.int64)
    m = k1 - k0
    covered = np.bincount(k, weights=seg, minlength=m)
    vals = p2[tick]
    bad = ~np.isfinite(vals)
    energy = np.stack([np.bincount(k, weights=np.where(bad[:, j], 0.0, vals[:, j]) * seg, minlength=m)
                       for j in range(p2.shape[1])], axis=1)
    nan_s = np.stack([np.bincount(k, weights=bad[:, j] * seg, minlength=m) for j in range(p2.shape[1])], axis=1)
    mean = energy / interval_s
    mean[(covered < interval_s - _EPS_S)[:, None] | (nan_s > 0)] = np.nan
    return edges_int[:-1], (mean[:, 0] if flat else mean)


# ---------------------------------------------------------------------------------------------- calls


def _emission_factor(factor: float | str | None) -> float:
    """[kgCO2/kWh] from a number, a name in EMISSION_FACTORS, or None (the default)."""
    if factor is None:
        return EMISSION_FACTORS[DEFAULT_EMISSION_FACTOR].kg_per_kwh
    if isinstance(factor, str):
        return get_emission_factor(factor).kg_per_kwh
    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.floating)) or not math.isfinite(factor) \
            or factor < 0:
        raise ValueError(f"emission_factor must be a finite number >= 0 [kgCO2/kWh], a factor's name or None, "
                         f"got {factor!r}")
    return float(factor)


def _value(x) -> Any:
    return x.value if isinstance(x, Enum) else x


def _call_fields(call) -> dict[str, Any]:
    """Id, window, direction, request, targets, tier and rebound of a call: a KPI dict or a DRCall-like object."""
    if isinstance(call, Mapping):
        get = call.get
        cid = get("id", get("call_id"))
        p_kw = get("requested_kw", get("p_kw"))
        buses = get("target_buses")
        targeted = buses is not None
    else:
        get = lambda key, default=None: getattr(call, key, default)  # noqa: E731
        cid = get("call_id", get("id"))
        p_kw = get("p_kw")
        targeted = get("bus_idx") is not None
    if cid is None:
        raise ValueError(f"a call without an id: {call!r}")
    out = {
        "id": str(cid),
        "direction": _value(get("direction", "reduce")),
        "start_s": float(get("start_s")),
        "end_s": float(get("end_s")),
        "p_kw": None if p_kw is None else float(p_kw),
        "targeted": targeted,
        "tier": get("tier"),
    }
    for key in ("rebound_kwh", "rebound_peak_kw", "rebound_peak_t_s", "recovery_window_s", "delivered_kwh"):
        out[key] = get(key)
    return out


def _num(x) -> float | None:
    """A JSON-ready number: None for NaN, inf or None (unknown)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _clean_ref(ref: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_num(v) if isinstance(v, (float, np.floating)) else
                [_num(p) for p in v] if k == "penalty_by_period_cny" else v)
            for k, v in ref.items()}


def _unknown_baseline(name: str, idx: pd.DatetimeIndex, reason: str) -> BaselineResult:
    return BaselineResult(method=name, p_kw=pd.Series(np.nan, index=idx, name=name, dtype=float), ok=False,
                          reason=f"{name}: {reason}")


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else ts.isoformat()


# ---------------------------------------------------------------------------------------------- settle_run


def settle_run(
    timeseries: pd.DataFrame,
    calls: Sequence[Any],
    *,
    start: pd.Timestamp | str | None,
    dt_s: float,
    tiers: Mapping[str, str] | None = None,
    prices: Mapping[str, Mapping[str, float]] | None = None,
    emission_factor: float | str | None = None,
    baselines: Iterable[str] = DEFAULT_BASELINES,
    interval_s: float = 900.0,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Settle every call of a run against the twin and each baseline, under its tier.

    Parameters
    ----------
    timeseries : the run's per-tick table: ``t_s`` [s], ``p_vpp_kw`` [kW] (metered),
        ``p_twin_kw`` [kW] (NaN without a twin), and ``call.<id>.requested_kw`` [kW] per call.
    calls : the calls, as ``summary["calls"]`` entries (whose rebound KPIs are copied)
        or :class:`~vpp.dr.DRCall`-like objects (no rebound then).
    start : tz-aware wall-clock time of ``t_s = 0``, or None for a run without dates.
    dt_s : the tick [s]; must match the ``t_s`` column.
    tiers : call id -> tier name; else the call's own ``tier``, else :data:`DEFAULT_TIER`.
    prices : tier name -> price overrides for :func:`vpp.programme.tier_with_overrides`.
    emission_factor : [kgCO2/kWh], a name in :data:`vpp.programme.EMISSION_FACTORS`,
        or None for the default (China Southern Grid 2022).
    baselines : baseline names (:data:`vpp.programme.BASELINES`); the tiers'
        settlement baselines are added when missing.
    interval_s : settlement interval [s]; must divide a day.

    Returns
    -------
    (per_interval, per_event) : ``per_interval`` has :data:`PER_INTERVAL_COLUMNS`, one row per
    (event, reference, interval); ``per_event`` one JSON-ready dict per call, in the calls' order
    (unknown figures are None; the keys are listed in :func:`_settle_one`).
    """
    if not (isinstance(interval_s, (int, float)) and math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"interval_s must be a finite number > 0 [s], got {interval_s!r}")
    if abs(_DAY_S / interval_s - round(_DAY_S / interval_s)) > 1e-9:
        raise ValueError(f"interval_s ({interval_s:g} s) must divide a day (86400 s): every day needs the same "
                         "settlement grid for day-matching baselines")
    if not (isinstance(dt_s, (int, float)) and math.isfinite(dt_s) and dt_s > 0):
        raise ValueError(f"dt_s must be a finite number > 0 [s], got {dt_s!r}")
    for col in ("t_s", "p_vpp_kw"):
        if col not in timeseries:
            raise ValueError(f"timeseries has no column {col!r}")
    t = timeseries["t_s"].to_numpy(dtype=float)
    if t.size and not np.allclose(np.diff(t), dt_s, rtol=0, atol=1e-6):
        raise ValueError(f"timeseries t_s is not regular with step dt_s={dt_s:g} s")
    names = list(dict.fromkeys(baselines))
    for name in names:
        if name not in BASELINES:
            raise KeyError(f"unknown baseline {name!r}; valid baselines: {sorted(BASELINES)}")

    if start is not None:
        start = pd.Timestamp(start)
        if start is pd.NaT or start.tzinfo is None:
            raise ValueError(f"start must be a tz-aware timestamp (e.g. '2025-07-07T00:00+08:00'), got {start!r}")
        origin_s = -((start - start.normalize()).total_seconds() % interval_s)  # intervals on the local clock
        anchor = start
    else:
        origin_s, anchor = 0.0, _PLACEHOLDER
    tz = anchor.tz

    fields = [_call_fields(c) for c in calls]
    ids = [f["id"] for f in fields]
    unknown_ids = sorted(set(tiers or {}) - set(ids))
    if unknown_ids:
        raise ValueError(f"tiers name calls that do not exist: {unknown_ids}; calls: {ids}")
    tier_objs = {}
    for f in fields:
        name = (tiers or {}).get(f["id"]) or f["tier"] or DEFAULT_TIER
        over = dict((prices or {}).get(name, {}))
        tier_objs[f["id"]] = tier_with_overrides(name, **over) if over else get_tier(name)
    unknown_tiers = sorted(set(prices or {}) - {tier.name for tier in tier_objs.values()})
    for name in unknown_tiers:
        get_tier(name)  # a typo raises, listing the valid tiers; a valid but unused tier is fine
    factor = _emission_factor(emission_factor)

    # Interval series: metered, twin, and each call's request.
    cols = ["p_vpp_kw", "p_twin_kw"] + [call_col(f["id"], "requested_kw") for f in fields]
    present = [c for c in cols if c in timeseries]
    t_int, mean = aggregate_to_intervals(t, timeseries[present].to_numpy(dtype=float), dt_s, interval_s, origin_s)
    idx = pd.date_range(anchor + pd.Timedelta(seconds=float(t_int[0]) if t_int.size else 0.0),
                        periods=t_int.size, freq=pd.Timedelta(seconds=interval_s))
    series = {c: pd.Series(mean[:, j], index=idx, dtype=float) for j, c in enumerate(present)}
    metered = series["p_vpp_kw"]
    twin = series.get("p_twin_kw")
    if twin is not None and not np.isfinite(twin.to_numpy()).any():
        twin = None  # no twin in this run

    complete = np.isfinite(metered.to_numpy())
    run_end_s = float(t[-1] + dt_s) if t.size else 0.0
    event_days = set()
    if start is not None:
        for f in fields:
            first = (anchor + pd.Timedelta(seconds=f["start_s"])).normalize()
            last = (anchor + pd.Timedelta(seconds=max(f["start_s"], min(f["end_s"], run_end_s) - _EPS_S)))
            event_days.update(d.date() for d in pd.date_range(first, last.normalize(), freq="D"))

    frames, per_event = [], []
    for f in fields:
        tier = tier_objs[f["id"]]
        settle_on = TIER_SETTLEMENT_BASELINE.get(tier.name, "last_5_days")
        frame, event = _settle_one(
            f, fields, tier, settle_on, [*names, *([settle_on] if settle_on not in names else [])],
            metered, twin, series.get(call_col(f["id"], "requested_kw")), t_int, complete, origin_s, interval_s,
            anchor, start is not None, sorted(event_days), factor, tz,
        )
        per_event.append(event)
        if frame is not None:
            frames.append(frame)
    per_interval = (pd.concat(frames, ignore_index=True) if frames
                    else pd.DataFrame({c: pd.Series(dtype=object) for c in PER_INTERVAL_COLUMNS}))
    return per_interval[list(PER_INTERVAL_COLUMNS)], per_event


def _settle_one(f, fields, tier, settle_on, names, metered, twin, requested, t_int, complete, origin_s, interval_s,
                anchor, dated, event_days, factor, tz) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """One event. Keys of the returned dict:

    ``id, tier, direction, start_s, end_s, start, end`` (ISO, None without a date), ``window_s``
    ([first interval start, last interval end] settled), ``window_widened``, ``interval_s``,
    ``n_intervals``, ``requested_kwh``, ``settlement_baseline``, ``settled`` (the money and
    delivery against it), ``references`` (twin and every baseline: ok, reason, delivered_kwh,
    performance_ratio, price_factor, paid_kwh, energy/capacity payment, penalty, net [CNY]),
    ``baselines`` (error against the twin: bias_kwh, mae_kw, rmse_kw, rel_error, baseline_kwh,
    twin_kwh, with ok, reason, days_used, adjustment), ``delivered_kwh_twin``,
    ``emission_factor_kg_per_kwh``, ``avoided_co2_kg``, ``avoided_co2_net_of_rebound_kg``,
    ``carbon_credits``, ``rebound_kwh``, ``rebound_peak_kw``, ``rebound_peak_t_s``,
    ``recovery_window_s`` (copied from the KPIs), ``ok``, ``reason``, ``notes``.
    """
    cid = f["id"]
    start_ts = anchor + pd.Timedelta(seconds=f["start_s"]) if dated else None
    end_ts = anchor + pd.Timedelta(seconds=f["end_s"]) if dated else None
    event: dict[str, Any] = {
        "id": cid, "tier": tier.name, "direction": f["direction"], "start_s": f["start_s"], "end_s": f["end_s"],
        "start": _iso(start_ts), "end": _iso(end_ts), "window_s": None, "window_widened": None,
        "interval_s": float(interval_s), "n_intervals": 0, "requested_kwh": None, "settlement_baseline": settle_on,
        "settled": None, "references": {}, "baselines": {}, "delivered_kwh_twin": None,
        "emission_factor_kg_per_kwh": factor, "avoided_co2_kg": None, "avoided_co2_net_of_rebound_kg": None,
        "carbon_credits": None,
        "rebound_kwh": _num(f["rebound_kwh"]), "rebound_peak_kw": _num(f["rebound_peak_kw"]),
        "rebound_peak_t_s": _num(f["rebound_peak_t_s"]), "recovery_window_s": f["recovery_window_s"],
        "ok": False, "reason": "", "notes": [],
    }
    notes = event["notes"]
    if f["targeted"]:
        notes.append("the call targets some buses; settled on the whole VPP's meter")
    for o in fields:
        if o is not f and o["start_s"] < f["end_s"] and f["start_s"] < o["end_s"]:
            notes.append(f"overlaps call {o['id']}: the plant's meter cannot tell them apart")

    # The settlement window: the complete intervals the active period overlaps.
    k_in = np.flatnonzero((t_int < f["end_s"] - _EPS_S) & (t_int + interval_s > f["start_s"] + _EPS_S))
    k_in = k_in[complete[k_in]] if k_in.size else k_in
    if k_in.size == 0:
        event["reason"] = "no complete settlement interval of the run overlaps the call"
        return None, event
    if np.any(np.diff(k_in) != 1):
        event["reason"] = "the call's settlement intervals are not contiguous (NaN ticks inside)"
        return None, event
    w0, w1 = float(t_int[k_in[0]]), float(t_int[k_in[-1]] + interval_s)
    event["window_s"] = [w0, w1]
    event["window_widened"] = bool(w0 < f["start_s"] - _EPS_S or w1 > f["end_s"] + _EPS_S)
    if w0 > f["start_s"] + _EPS_S or w1 < f["end_s"] - _EPS_S:
        notes.append("the active period reaches beyond the run's complete intervals; settled on the part inside")
    event["n_intervals"] = int(k_in.size)
    ws, we = metered.index[k_in[0]], metered.index[k_in[-1]] + pd.Timedelta(seconds=interval_s)
    win = metered.index[k_in]

    if requested is not None:
        req = requested.iloc[k_in].copy()
    elif f["p_kw"] is not None:  # no request column: the constant request over the active part of each interval
        ov = np.clip(np.minimum(t_int[k_in] + interval_s, f["end_s"]) - np.maximum(t_int[k_in], f["start_s"]),
                     0.0, None)
        req = pd.Series(f["p_kw"] * ov / interval_s, index=win)
        notes.append("requested energy from the call's p_kw (no requested_kw column)")
    else:
        event["reason"] = "the call's request is unknown (no requested_kw column, no p_kw)"
        return None, event
    if not np.isfinite(req.to_numpy()).all() or not req.sum() > 0:
        event["reason"] = "nothing was requested in the call's settlement window"
        return None, event
    event["requested_kwh"] = float(req.sum() * interval_s / S_PER_H)

    # Baselines, each with its reason when unknown.
    exclude = event_days
    results: dict[str, BaselineResult] = {}
    for name in names:
        if name in DAY_MATCHING and not dated:
            results[name] = _unknown_baseline(name, win, "the run has no date (the scenario has no calendar "
                                                         "start), and day matching needs weekdays")
            continue
        try:
            results[name] = compute_baseline(name, metered, ws, we, exclude_days=exclude)
        except ValueError as exc:
            results[name] = _unknown_baseline(name, win, str(exc))
    twin_win = None
    if twin is not None:
        twin_win = twin.iloc[k_in]
        if not np.isfinite(twin_win.to_numpy()).all():
            twin_win = None
            notes.append("the twin is NaN in the settlement window")
    for name, res in results.items():
        err = {"bias_kwh": None, "mae_kw": None, "rmse_kw": None, "rel_error": None, "baseline_kwh": None,
               "twin_kwh": None}
        if twin_win is not None:
            # The window's own interval as the index's freq: an event inside one interval is one sample.
            step = pd.Timedelta(seconds=interval_s)
            base_kw = pd.Series(res.p_kw.to_numpy(dtype=float), index=pd.DatetimeIndex(win, freq=step))
            twin_kw = pd.Series(twin_win.to_numpy(dtype=float), index=pd.DatetimeIndex(win, freq=step))
            err = {k: _num(v) for k, v in baseline_error(base_kw, twin_kw).items()}
        elif res.ok:
            p = res.p_kw.to_numpy()
            err["baseline_kwh"] = float(p.sum() * interval_s / S_PER_H)
        event["baselines"][name] = {
            "ok": bool(res.ok), "reason": res.reason or ("" if twin_win is not None else "no twin: error unknown"),
            **err,
            "days_used": [d.isoformat() for d in res.days_used],
            "adjustment": _num(res.adjustment),
        }

    table, summary = settle_event(metered, ws, we, req, tier, twin_kw=twin_win, baselines=results,
                                  direction=f["direction"], event_id=cid)
    refs = {name: _clean_ref(ref) for name, ref in summary["references"].items()}
    event["references"] = refs
    if TWIN not in refs:
        refs[TWIN] = {"ok": False, "reason": "no twin in this run (measurement.twin off)"}
    settled = refs.get(settle_on, {})
    event["settled"] = {"reference": settle_on, **{k: settled.get(k) for k in (
        "ok", "reason", "delivered_kwh", "performance_ratio", "price_factor", "paid_kwh", "energy_payment_cny",
        "capacity_payment_cny", "penalty_cny", "net_cny")}}

    d_twin = refs[TWIN].get("delivered_kwh")
    event["delivered_kwh_twin"] = d_twin
    if d_twin is not None:
        event["avoided_co2_kg"] = float(avoided_co2_kg(d_twin, factor))
        if event["rebound_kwh"] is not None:
            event["avoided_co2_net_of_rebound_kg"] = float(avoided_co2_kg(d_twin - event["rebound_kwh"], factor))
    d_settle = settled.get("delivered_kwh")
    credit = carbon_inclusive_credits(math.nan if d_settle is None else float(d_settle),
                                      direction=f["direction"], factor_kg_per_kwh=factor)
    event["carbon_credits"] = {"reference": settle_on, "reduction_kwh": _num(credit.reduction_kwh),
                               "credits_tco2e": _num(credit.credits_tco2e), "counted": credit.counted,
                               "reason": credit.reason if d_settle is not None
                               else f"delivered energy against {settle_on} unknown: {settled.get('reason', '')}"}
    event["ok"] = True

    table["t_s"] = table["timestamp"].map(lambda ts: (ts - anchor).total_seconds()).astype(float)
    if not dated:
        table["timestamp"] = pd.NaT
    table["avoided_co2_kg"] = table["delivered_kwh"] * factor
    table["tier"] = tier.name
    table["settles"] = table["reference"] == settle_on
    return table, event


# ---------------------------------------------------------------------------------------------- results


def settlement_summary(
    results_like: Any,
    *,
    start: pd.Timestamp | str | None = None,
    tiers: Mapping[str, str] | None = None,
    prices: Mapping[str, Mapping[str, float]] | None = None,
    emission_factor: float | str | None = None,
    baselines: Iterable[str] = DEFAULT_BASELINES,
    interval_s: float = 900.0,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """:func:`settle_run` over anything with ``timeseries`` and ``summary`` (``dt_s``, ``calls``).

    ``start`` defaults to the run's own: the tz-aware ``timestamp`` column's
    first value less its ``t_s``, when the timeseries has one; else None (no
    dates). The calls are ``summary["calls"]``, so the rebound is the KPIs'.
    """
    ts = results_like.timeseries
    summary = results_like.summary
    if start is None and "timestamp" in ts and len(ts):
        first = pd.Timestamp(ts["timestamp"].iloc[0])
        if first is not pd.NaT and first.tzinfo is not None:
            start = first - pd.Timedelta(seconds=float(ts["t_s"].iloc[0]))
    return settle_run(ts, summary.get("calls") or [], start=start, dt_s=float(summary["dt_s"]), tiers=tiers,
                      prices=prices, emission_factor=emission_factor, baselines=baselines, interval_s=interval_s)
