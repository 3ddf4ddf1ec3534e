"""Settlement of one demand-response event: delivered energy, performance, revenue and penalties.

Delivery is measured against one or more *references*: the no-call twin (the
true counterfactual, which only a simulator has) and any number of settlement
baselines (what a platform can actually settle against). For a reduce event
delivered = reference - metered; for an increase event delivered = metered -
reference (load convention: consumption positive). Per interval the
performance ratio is delivered / requested power; over the event it is
delivered / requested energy.

Money follows the tier's rules (:mod:`vpp.programme.tiers`):

* energy payment [CNY] = energy price x ``band.price_factor(r)`` x
  ``band.paid_kwh(delivered, requested)``, r being the event's ratio;
* capacity payment [CNY] = capacity price x cleared capacity, when r >= ``band.floor``;
* penalty [CNY], per assessment period counted from the event start (the last
  one may be shorter): max(cleared x threshold - actual, 0) [kW] x energy price
  x factor x period [h], where actual is the period's mean delivered power and
  cleared the given ``cleared_kw`` or, by default, the period's mean requested
  power.

Per interval the event's energy payment is shared in proportion to each
interval's positive delivered energy, the capacity payment equally, and each
period's penalty equally among its intervals, so the per-interval columns sum
to the event's figures. A reference with any NaN (an unknown baseline) gives
NaN delivery and money, with its reason.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Mapping

import numpy as np
import pandas as pd

from vpp.programme._series import check_indexed, check_series, check_window, interval_h, window_index
from vpp.programme.baselines import BaselineResult
from vpp.programme.tiers import Tier, get_tier

__all__ = ["settle_event", "SETTLEMENT_COLUMNS", "TWIN"]

TWIN = "twin"
"""Reference name of the no-call twin in the settlement table."""

SETTLEMENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "reference",
    "timestamp",
    "requested_kw",
    "metered_kw",
    "reference_kw",
    "delivered_kw",
    "requested_kwh",
    "delivered_kwh",
    "performance_ratio",
    "energy_payment_cny",
    "capacity_payment_cny",
    "penalty_cny",
    "net_cny",
)
"""Columns of the per-interval settlement table, in order."""


def _direction_sign(direction) -> tuple[str, float]:
    value = direction.value if isinstance(direction, Enum) else direction
    if value == "reduce":
        return "reduce", 1.0
    if value == "increase":
        return "increase", -1.0
    raise ValueError(f"unknown direction {direction!r}; valid: ['increase', 'reduce']")


def _on_window(series: pd.Series, name: str, idx: pd.DatetimeIndex, allow_nan: bool) -> np.ndarray:
    check_indexed(series, name)
    missing = idx.difference(series.index)
    if len(missing):
        raise ValueError(f"{name} does not cover the event window: {len(missing)} interval(s) missing, "
                         f"first {missing[0]}")
    vals = series.reindex(idx).to_numpy(dtype=float)
    if not allow_nan and not np.isfinite(vals).all():
        raise ValueError(f"{name} has NaN or infinite values in the event window")
    return vals


def settle_event(
    metered_kw: pd.Series,
    event_start,
    event_end,
    requested_kw: float | pd.Series,
    tier: Tier | str,
    *,
    twin_kw: pd.Series | None = None,
    baselines: Mapping[str, pd.Series | BaselineResult] | None = None,
    direction="reduce",
    cleared_kw: float | None = None,
    event_id: str = "event",
) -> tuple[pd.DataFrame, dict]:
    """Settle one event against the twin and each baseline.

    Parameters
    ----------
    metered_kw : metered load [kW], regular tz-aware index covering [event_start, event_end).
    event_start, event_end : the event window, on the metering grid.
    requested_kw : requested change [kW] (> 0), a number or a series over the window (>= 0).
    tier : a :class:`~vpp.programme.tiers.Tier` or its name.
    twin_kw : the no-call twin's load [kW] over the window (reference ``"twin"``), if known.
    baselines : settlement baselines by name: series [kW] or :class:`BaselineResult`.
    direction : ``"reduce"`` or ``"increase"`` (or an Enum whose value is one of them).
    cleared_kw : cleared capacity [kW] for the penalty and capacity payment; by
        default the mean requested power (per assessment period for the penalty).
    event_id : copied into the table and the summary.

    Returns
    -------
    (table, summary) : ``table`` has one row per (reference, interval) with
    :data:`SETTLEMENT_COLUMNS`; ``summary`` holds the event totals, with one
    entry per reference under ``"references"``.
    """
    if isinstance(tier, str):
        tier = get_tier(tier)
    if not isinstance(tier, Tier):
        raise TypeError(f"tier must be a Tier or a tier name, got {type(tier).__name__}")
    dir_name, sign = _direction_sign(direction)
    step = check_series(metered_kw, "metered_kw")
    start, end = check_window(metered_kw, event_start, event_end, step, "metered_kw")
    idx = window_index(start, end, step)
    dt_h = interval_h(step)
    n = len(idx)
    metered = _on_window(metered_kw, "metered_kw", idx, allow_nan=False)

    if isinstance(requested_kw, pd.Series):
        requested = _on_window(requested_kw, "requested_kw", idx, allow_nan=False)
        if (requested < 0).any() or not requested.sum() > 0:
            raise ValueError("requested_kw must be >= 0 in every interval and > 0 in at least one")
    else:
        if isinstance(requested_kw, bool) or not isinstance(requested_kw, (int, float)) \
                or not math.isfinite(requested_kw) or requested_kw <= 0:
            raise ValueError(f"requested_kw must be a finite number > 0 or a Series, got {requested_kw!r}")
        requested = np.full(n, float(requested_kw))
    if cleared_kw is not None and (isinstance(cleared_kw, bool) or not isinstance(cleared_kw, (int, float))
                                   or not math.isfinite(cleared_kw) or cleared_kw <= 0):
        raise ValueError(f"cleared_kw must be a finite number > 0, got {cleared_kw!r}")

    references: dict[str, tuple[np.ndarray, str]] = {}
    if twin_kw is not None:
        references[TWIN] = (_on_window(twin_kw, "twin_kw", idx, allow_nan=False), "")
    for name, base in (baselines or {}).items():
        if name == TWIN:
            raise ValueError(f"a baseline may not be called {TWIN!r}: that name is the twin's")
        reason = ""
        if isinstance(base, BaselineResult):
            reason = base.reason
            base = base.p_kw
        vals = _on_window(base, f"baselines[{name!r}]", idx, allow_nan=True)
        if not np.isfinite(vals).all() and not reason:
            reason = f"{name}: baseline unknown (NaN) in the event window"
        references[name] = (vals, reason)
    if not references:
        raise ValueError("nothing to settle against: give twin_kw and/or baselines")

    requested_kwh_i = requested * dt_h
    requested_kwh = float(requested_kwh_i.sum())
    price = tier.energy_price_cny_per_kwh
    band, rule = tier.band, tier.penalty
    cleared_event_kw = float(requested.mean()) if cleared_kw is None else float(cleared_kw)

    # assessment periods counted from the event start
    period = pd.Timedelta(seconds=rule.assessment_period_s)
    period_of = np.asarray((idx - start) // period, dtype=int)
    n_periods = int(period_of.max()) + 1
    period_n = np.bincount(period_of, minlength=n_periods)
    period_h = period_n * dt_h
    if cleared_kw is None:
        cleared_p = np.bincount(period_of, weights=requested, minlength=n_periods) / period_n
    else:
        cleared_p = np.full(n_periods, float(cleared_kw))

    frames = []
    summaries = {}
    for name, (ref, reason) in references.items():
        ok = bool(np.isfinite(ref).all())
        delivered_kw = sign * (ref - metered)
        delivered_kwh_i = delivered_kw * dt_h
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_i = np.where(requested > 0, delivered_kw / requested, np.nan)
        if ok:
            delivered_kwh = float(delivered_kwh_i.sum())
            ratio = delivered_kwh / requested_kwh
            factor = band.price_factor(ratio)
            paid_kwh = band.paid_kwh(delivered_kwh, requested_kwh) if factor > 0 else 0.0
            energy_cny = price * factor * paid_kwh
            capacity_cny = tier.capacity_price_cny_per_kw * cleared_event_kw if ratio >= band.floor else 0.0
            actual_p = np.bincount(period_of, weights=delivered_kwh_i, minlength=n_periods) / period_h
            shortfall_p = np.maximum(cleared_p * rule.threshold - actual_p, 0.0)
            penalty_p = shortfall_p * price * rule.factor * period_h
            penalty_cny = float(penalty_p.sum())
            positive = np.maximum(delivered_kwh_i, 0.0)
            share = positive / positive.sum() if positive.sum() > 0 else np.zeros(n)
            energy_i = energy_cny * share
            capacity_i = np.full(n, capacity_cny / n)
            penalty_i = penalty_p[period_of] / period_n[period_of]
        else:
            delivered_kwh = ratio = factor = paid_kwh = energy_cny = capacity_cny = penalty_cny = math.nan
            energy_i = capacity_i = penalty_i = np.full(n, np.nan)
            penalty_p = np.full(n_periods, np.nan)
        net_cny = energy_cny + capacity_cny - penalty_cny
        frames.append(pd.DataFrame({
            "event_id": event_id,
            "reference": name,
            "timestamp": idx,
            "requested_kw": requested,
            "metered_kw": metered,
            "reference_kw": ref,
            "delivered_kw": delivered_kw,
            "requested_kwh": requested_kwh_i,
            "delivered_kwh": delivered_kwh_i,
            "performance_ratio": ratio_i,
            "energy_payment_cny": energy_i,
            "capacity_payment_cny": capacity_i,
            "penalty_cny": penalty_i,
            "net_cny": energy_i + capacity_i - penalty_i,
        }))
        summaries[name] = {
            "ok": ok,
            "reason": reason,
            "delivered_kwh": delivered_kwh,
            "performance_ratio": ratio,
            "price_factor": factor,
            "paid_kwh": paid_kwh,
            "energy_payment_cny": energy_cny,
            "capacity_payment_cny": capacity_cny,
            "penalty_cny": penalty_cny,
            "penalty_by_period_cny": [float(v) for v in penalty_p],
            "net_cny": net_cny,
        }

    table = pd.concat(frames, ignore_index=True)[list(SETTLEMENT_COLUMNS)]
    summary = {
        "event_id": event_id,
        "tier": tier.name,
        "direction": dir_name,
        "start": start,
        "end": end,
        "duration_h": n * dt_h,
        "requested_kwh": requested_kwh,
        "cleared_kw": cleared_event_kw,
        "energy_price_cny_per_kwh": price,
        "capacity_price_cny_per_kw": tier.capacity_price_cny_per_kw,
        "assessment_period_s": rule.assessment_period_s,
        "references": summaries,
    }
    return table, summary
