"""Settlement baselines: what a platform says the load would have been without the call.

Every function takes a metered load [kW] (a ``pandas.Series`` on a tz-aware,
regular ``DatetimeIndex``; each value is the mean power over the interval that
starts at its timestamp) and an event window [event_start, event_end) on the
metering grid, and returns a :class:`BaselineResult`: the baseline power [kW]
on the event window's intervals, or NaN with the reason when the definition
cannot be met (too little history, a weekend event for a weekday baseline,
missing data). A baseline never silently uses fewer days than its definition
asks; ``allow_fewer=True`` opts in and sets ``fewer_days``.

Days are calendar days in the series' time zone. A past day d contributes the
load at the same clock times, ``d + (t - event day's midnight)``, so an event
that crosses midnight takes the following early hours of each past day. On a
day with a daylight-saving shift the clock alignment is off by the shift
(Asia/Shanghai has none). Events may last at most 24 h.

Definitions implemented (chosen by name in :data:`BASELINES`)
--------------------------------------------------------------
``10_in_10``
    CAISO's default day-matching baseline for non-residential customers: the
    per-interval mean of the 10 most recent eligible days (weekdays that had no
    event, before the event day), times a same-day ("load point")
    adjustment. Source: CAISO Business Practice Manual for Demand Response,
    customer load baseline (secondary; the ±20 % cap is in shared/DOMAIN.md).
``5_in_10``
    Of the same 10 eligible days, the 5 with the highest mean load *during the
    event window*, averaged per interval, with the same ±20 % adjustment. This
    is NYISO's weekday CBL rule (rank the 10 days by average load over the
    event hours, keep the 5 highest) and CAISO's residential day-matching 5/10
    (which caps the adjustment at ±40 % in the CAISO BPM as we recall it:
    pass ``adjustment_cap=0.4``); PG&E's SmartRate FAQ describes the same 5 of
    10 selection ("the 5 days with the highest energy usage",
    powersaver.pge.com/faq, secondary). NYISO's removal of low-usage days
    (< 25 % of the mean) is not implemented.
``high_5_of_10`` (Beijing)
    From the 10 weekdays counted back from two days before the event (D-2),
    holidays and event days excluded, the 5 days with the highest *daily
    maximum* load, averaged per interval; no adjustment. Source: description
    of Beijing's rule in chinasmartgrid.com.cn (2015-10-19, secondary): "10
    days of history from 2 to 12 days before the event, atypical days
    (weekends, holidays) replaced, the mean of the 5 days with the largest
    daily maximum load".
``last_5_days`` (Jiangsu)
    The mean of the 5 most recent normal working days, per interval; no
    adjustment. Source: Jiangsu DR implementation rules (2015), as described
    in the same article (secondary). The rule counts back from the
    *invitation* day; pass ``skip_days=1`` for a day-ahead invitation.
``15_min_before``
    The mean load over the 15 min before the event start, flat over the event.
    Jiangsu uses the load point 15 min before control for real-time response
    (same article, secondary); with 15-min metering the mean over
    [start - 15 min, start) is that one reading.

Same-day adjustment (``x_of_y`` with ``adjust=True``)
------------------------------------------------------
ratio = mean(actual load over the adjustment window) / mean(unadjusted baseline
over the same clock times), clipped to [1 - cap, 1 + cap] (cap 0.2), applied
multiplicatively to every event interval. Default window: the 3 hours ending 1
hour before the event start, [start - 4 h, start - 1 h) ("the 3 hours prior to
the hour before the event": CAISO load point adjustment, secondary; MISO's
±20 % adjustment uses the 3 hours before the event, lawinsider.com quoting a
MISO M&V clause, secondary). The one-hour gap keeps pre-event ramping or
pre-cooling out of the adjustment. A non-positive baseline over the window
makes the ratio meaningless: the result is NaN with that reason.

Eligible days and ties
----------------------
A candidate day is skipped when it is a weekend day (``weekdays_only``), in
``exclude_days`` (days with events, holidays) or when any sample it needs is
missing or NaN. Days are searched back to the start of the data. Among equal
scores the more recent day ranks first.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Protocol

import numpy as np
import pandas as pd

from vpp.programme._series import check_indexed, check_series, check_window, interval_h, window_index

__all__ = [
    "BaselineResult",
    "x_of_y",
    "high_x_of_y",
    "last_n_days",
    "before_event",
    "BASELINES",
    "get_baseline",
    "compute_baseline",
    "baseline_error",
    "compare_baselines",
]

_DAY = pd.Timedelta(days=1)
_RANK_BY = ("event_mean", "daily_max")


@dataclass(frozen=True, eq=False)
class BaselineResult:
    """A baseline over an event window.

    ``p_kw`` is indexed by the event's interval start times [kW]; all NaN when
    ``ok`` is False, and ``reason`` says why. ``days_used`` are the days
    averaged, most recent first; ``days_eligible`` the eligible days they were
    chosen from. ``adjustment`` is the multiplicative same-day ratio applied
    (after the cap; NaN when none), ``adjustment_raw`` the ratio before the cap.
    """

    method: str
    p_kw: pd.Series
    ok: bool
    reason: str = ""
    days_used: tuple[_dt.date, ...] = ()
    days_eligible: tuple[_dt.date, ...] = ()
    adjustment: float = math.nan
    adjustment_raw: float = math.nan
    adjustment_capped: bool = False
    fewer_days: bool = False


def _unknown(method: str, index: pd.DatetimeIndex, reason: str, **kw) -> BaselineResult:
    p_kw = pd.Series(np.nan, index=index, name=method, dtype=float)
    return BaselineResult(method=method, p_kw=p_kw, ok=False, reason=f"{method}: {reason}", **kw)


def _as_dates(days: Iterable, tz) -> frozenset[_dt.date]:
    """Calendar dates in ``tz`` from dates, datetimes, Timestamps or strings."""
    if isinstance(days, (str, _dt.date)):
        days = [days]
    out = set()
    for d in days:
        if isinstance(d, _dt.date) and not isinstance(d, _dt.datetime):
            out.add(d)
            continue
        ts = pd.Timestamp(d)
        if ts is pd.NaT:
            raise ValueError(f"exclude_days: not a date: {d!r}")
        out.add((ts.tz_convert(tz) if ts.tzinfo is not None else ts).date())
    return frozenset(out)


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _on_grid(name: str, span: pd.Timedelta, step: pd.Timedelta) -> None:
    if span % step != pd.Timedelta(0):
        raise ValueError(f"{name} ({span}) must be a whole number of metering intervals ({step})")


def _local_midnight(date: _dt.date, tz) -> pd.Timestamp:
    return pd.Timestamp(date).tz_localize(tz)


def x_of_y(
    load_kw: pd.Series,
    event_start,
    event_end,
    *,
    x: int = 10,
    y: int = 10,
    rank_by: str = "event_mean",
    weekdays_only: bool = True,
    exclude_days: Iterable = (),
    skip_days: int = 0,
    adjust: bool = True,
    adjustment_window_h: float = 3.0,
    adjustment_gap_h: float = 1.0,
    adjustment_cap: float = 0.2,
    allow_fewer: bool = False,
    method: str | None = None,
) -> BaselineResult:
    """Day-matching baseline: the mean of the ``x`` best of the ``y`` most recent eligible days.

    Parameters
    ----------
    load_kw : metered load [kW] covering the history and the event window.
    event_start, event_end : the event window [start, end), tz-aware, on the metering grid.
    x, y : keep ``x`` of the ``y`` most recent eligible days (``x == y``: all of them).
    rank_by : how the ``x`` days are chosen when ``x < y``: ``"event_mean"``, the
        highest mean load over the event window's clock times (NYISO/CAISO), or
        ``"daily_max"``, the highest daily maximum load (Beijing).
    weekdays_only : only Monday-Friday are eligible (and the event must be on one).
    exclude_days : dates that are not eligible (days with events, holidays).
    skip_days : days just before the event day that are not searched (1: start at D-2).
    adjust : apply the same-day multiplicative adjustment.
    adjustment_window_h, adjustment_gap_h : the adjustment window is
        [start - gap - window, start - gap) [h].
    adjustment_cap : the ratio is clipped to [1 - cap, 1 + cap] [-].
    allow_fewer : with fewer than ``y`` eligible days, use those found (at least
        one) and set ``fewer_days``; by default the result is NaN instead.
    method : name reported in the result (default ``"{x}_in_{y}"``).
    """
    step = check_series(load_kw, "load_kw")
    start, end = check_window(load_kw, event_start, event_end, step, "load_kw")
    x = _check_int("x", x, 1)
    y = _check_int("y", y, 1)
    skip_days = _check_int("skip_days", skip_days, 0)
    if x > y:
        raise ValueError(f"x ({x}) must not exceed y ({y})")
    if rank_by not in _RANK_BY:
        raise ValueError(f"unknown rank_by {rank_by!r}; valid: {list(_RANK_BY)}")
    if end - start > _DAY:
        raise ValueError(f"day-matching baselines need an event of at most 24 h, got {end - start}")
    method = method or f"{x}_in_{y}"
    tz = load_kw.index.tz
    event_idx = window_index(start, end, step)
    event_day = start.normalize()
    offsets = event_idx - event_day

    needed = offsets
    adj_idx = None
    if adjust:
        for name, v in (("adjustment_window_h", adjustment_window_h), ("adjustment_gap_h", adjustment_gap_h),
                        ("adjustment_cap", adjustment_cap)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if adjustment_window_h <= 0:
            raise ValueError(f"adjustment_window_h must be > 0, got {adjustment_window_h}")
        if adjustment_cap >= 1.0:
            raise ValueError(f"adjustment_cap must be < 1, got {adjustment_cap}")
        window = pd.Timedelta(hours=adjustment_window_h)
        gap = pd.Timedelta(hours=adjustment_gap_h)
        _on_grid("adjustment_window_h", window, step)
        _on_grid("adjustment_gap_h", gap, step)
        adj_idx = window_index(start - gap - window, start - gap, step)
        needed = needed.union(adj_idx - event_day)
    if rank_by == "daily_max" and x < y:
        needed = needed.union(window_index(event_day, event_day + _DAY, step) - event_day)

    if weekdays_only and event_day.weekday() >= 5:
        return _unknown(method, event_idx, f"weekday baseline asked for an event on a {event_day.day_name()} "
                                           f"({event_day.date()})")

    exclude = _as_dates(exclude_days, tz)
    first = load_kw.index[0]
    chosen: list[pd.Timestamp] = []
    rows: list[np.ndarray] = []
    skipped = {"weekend": 0, "excluded": 0, "incomplete data": 0}
    k = 1 + skip_days
    while len(chosen) < y:
        day = _local_midnight(event_day.date() - _dt.timedelta(days=k), tz)
        k += 1
        if day + needed.max() < first:
            break  # nothing this early is metered
        if weekdays_only and day.weekday() >= 5:
            skipped["weekend"] += 1
            continue
        if day.date() in exclude:
            skipped["excluded"] += 1
            continue
        vals = load_kw.reindex(day + needed).to_numpy(dtype=float)
        if not np.isfinite(vals).all():
            skipped["incomplete data"] += 1
            continue
        chosen.append(day)
        rows.append(vals)

    fewer = False
    notes = ", ".join(f"{v} {k_}" for k_, v in skipped.items() if v)
    if len(chosen) < y:
        msg = (f"needs {y} eligible days before {event_day.date()}"
               f"{f' (skipping {skip_days})' if skip_days else ''}, found {len(chosen)}"
               f"{f' (skipped: {notes})' if notes else ''}")
        if not (allow_fewer and chosen):
            return _unknown(method, event_idx, msg, days_eligible=tuple(d.date() for d in chosen))
        fewer = True

    table = pd.DataFrame(np.vstack(rows), columns=needed)
    event_vals = table[offsets].to_numpy()
    n_keep = min(x, len(chosen))
    if n_keep < len(chosen):
        if rank_by == "event_mean":
            score = event_vals.mean(axis=1)
        else:
            day_cols = window_index(event_day, event_day + _DAY, step) - event_day
            score = table[day_cols].to_numpy().max(axis=1)
        # stable sort on -score: rows are most recent first, so ties keep the more recent day
        keep = np.sort(np.argsort(-score, kind="stable")[:n_keep])
    else:
        keep = np.arange(len(chosen))
    base = event_vals[keep].mean(axis=0)

    result = dict(
        days_used=tuple(chosen[i].date() for i in keep),
        days_eligible=tuple(d.date() for d in chosen),
        fewer_days=fewer,
    )
    reason = f"{method}: used {len(chosen)} of {y} days ({msg})" if fewer else ""

    if adjust:
        actual = load_kw.reindex(adj_idx).to_numpy(dtype=float)
        if not np.isfinite(actual).all():
            return _unknown(method, event_idx, f"the adjustment window [{adj_idx[0]}, {adj_idx[-1] + step}) "
                                               f"lacks metered data", **result)
        base_adj = float(table[adj_idx - event_day].to_numpy()[keep].mean())
        if not base_adj > 0.0:
            return _unknown(method, event_idx, f"the baseline over the adjustment window is {base_adj:g} kW "
                                               f"(<= 0): a multiplicative adjustment is undefined", **result)
        raw = float(actual.mean()) / base_adj
        ratio = min(max(raw, 1.0 - adjustment_cap), 1.0 + adjustment_cap)
        base = base * ratio
        result.update(adjustment=ratio, adjustment_raw=raw, adjustment_capped=ratio != raw)

    p_kw = pd.Series(base, index=event_idx, name=method, dtype=float)
    return BaselineResult(method=method, p_kw=p_kw, ok=True, reason=reason, **result)


def high_x_of_y(
    load_kw: pd.Series,
    event_start,
    event_end,
    *,
    x: int = 5,
    y: int = 10,
    exclude_days: Iterable = (),
    skip_days: int = 1,
    rank_by: str = "daily_max",
    allow_fewer: bool = False,
) -> BaselineResult:
    """Beijing's high-5-of-10: of ``y`` weekdays from D-2 back, the ``x`` with the highest daily maximum load.

    No same-day adjustment. See the module docstring for the source.
    """
    return x_of_y(load_kw, event_start, event_end, x=x, y=y, rank_by=rank_by, weekdays_only=True,
                  exclude_days=exclude_days, skip_days=skip_days, adjust=False, allow_fewer=allow_fewer,
                  method=f"high_{x}_of_{y}")


def last_n_days(
    load_kw: pd.Series,
    event_start,
    event_end,
    *,
    n: int = 5,
    exclude_days: Iterable = (),
    skip_days: int = 0,
    allow_fewer: bool = False,
) -> BaselineResult:
    """Jiangsu's baseline: the per-interval mean of the ``n`` most recent working days; no adjustment."""
    return x_of_y(load_kw, event_start, event_end, x=n, y=n, weekdays_only=True, exclude_days=exclude_days,
                  skip_days=skip_days, adjust=False, allow_fewer=allow_fewer, method=f"last_{n}_days")


def before_event(
    load_kw: pd.Series,
    event_start,
    event_end,
    *,
    minutes: float = 15.0,
) -> BaselineResult:
    """The mean load over the ``minutes`` before the event start [kW], flat over [event_start, event_end).

    ``minutes`` must be a whole number of metering intervals. NaN with a reason
    when that window is not fully metered or the metering is coarser than it.
    """
    step = check_series(load_kw, "load_kw")
    start, end = check_window(load_kw, event_start, event_end, step, "load_kw")
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes) \
            or minutes <= 0:
        raise ValueError(f"minutes must be a finite number > 0, got {minutes!r}")
    span = pd.Timedelta(minutes=minutes)
    method = f"{minutes:g}_min_before"
    event_idx = window_index(start, end, step)
    if span < step:
        return _unknown(method, event_idx, f"the metering interval ({step}) is longer than the "
                                           f"{minutes:g} min window")
    _on_grid("minutes", span, step)
    pre = load_kw.reindex(window_index(start - span, start, step)).to_numpy(dtype=float)
    if not np.isfinite(pre).all():
        return _unknown(method, event_idx, f"the {minutes:g} min before {start} are not fully metered")
    return BaselineResult(method=method, p_kw=pd.Series(float(pre.mean()), index=event_idx, name=method),
                          ok=True)


class BaselineFn(Protocol):
    def __call__(self, load_kw: pd.Series, event_start, event_end, *,
                 exclude_days: Iterable = ()) -> BaselineResult: ...


def _10_in_10(load_kw, event_start, event_end, *, exclude_days=()):
    return x_of_y(load_kw, event_start, event_end, x=10, y=10, exclude_days=exclude_days, method="10_in_10")


def _5_in_10(load_kw, event_start, event_end, *, exclude_days=()):
    return x_of_y(load_kw, event_start, event_end, x=5, y=10, rank_by="event_mean", exclude_days=exclude_days,
                  method="5_in_10")


def _high_5_of_10(load_kw, event_start, event_end, *, exclude_days=()):
    return high_x_of_y(load_kw, event_start, event_end, x=5, y=10, exclude_days=exclude_days)


def _last_5_days(load_kw, event_start, event_end, *, exclude_days=()):
    return last_n_days(load_kw, event_start, event_end, n=5, exclude_days=exclude_days)


def _15_min_before(load_kw, event_start, event_end, *, exclude_days=()):
    # exclude_days is irrelevant to a same-day baseline; accepted for the common signature
    return before_event(load_kw, event_start, event_end, minutes=15.0)


BASELINES: Mapping[str, Callable[..., BaselineResult]] = {
    "10_in_10": _10_in_10,
    "5_in_10": _5_in_10,
    "high_5_of_10": _high_5_of_10,
    "last_5_days": _last_5_days,
    "15_min_before": _15_min_before,
}
"""Baselines by name; each is ``fn(load_kw, event_start, event_end, *, exclude_days=()) -> BaselineResult``."""


def get_baseline(name: str) -> BaselineFn:
    """The baseline called ``name``; an unknown name raises ``KeyError`` listing the valid ones."""
    try:
        return BASELINES[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown baseline {name!r}; valid baselines: {sorted(BASELINES)}") from None


def compute_baseline(name: str, load_kw: pd.Series, event_start, event_end, *,
                     exclude_days: Iterable = ()) -> BaselineResult:
    """Compute the baseline called ``name`` (see :data:`BASELINES`)."""
    return get_baseline(name)(load_kw, event_start, event_end, exclude_days=exclude_days)


def baseline_error(baseline_kw: pd.Series, twin_kw: pd.Series) -> dict[str, float]:
    """Error of a baseline against the true counterfactual (the no-call twin) over one event.

    Both series [kW] must share one regular, tz-aware index (the event's
    intervals). Returns ``bias_kwh`` = sum((baseline - twin) x dt) [kWh],
    ``mae_kw`` and ``rmse_kw`` of the per-interval difference [kW],
    ``rel_error`` = bias / twin energy [-] (NaN when the twin's energy is 0),
    and the two energies ``baseline_kwh`` and ``twin_kwh``. A baseline with
    any NaN (unknown) gives NaN errors.
    """
    if isinstance(baseline_kw, BaselineResult):
        baseline_kw = baseline_kw.p_kw
    step = check_series(baseline_kw, "baseline_kw")
    check_indexed(twin_kw, "twin_kw")
    if not baseline_kw.index.equals(twin_kw.index):
        raise ValueError("baseline_kw and twin_kw must share one index (the event's intervals)")
    twin = twin_kw.to_numpy(dtype=float)
    if not np.isfinite(twin).all():
        raise ValueError("twin_kw has NaN or infinite values")
    dt_h = interval_h(step)
    twin_kwh = float(twin.sum() * dt_h)
    base = baseline_kw.to_numpy(dtype=float)
    if not np.isfinite(base).all():
        nan = math.nan
        return {"bias_kwh": nan, "mae_kw": nan, "rmse_kw": nan, "rel_error": nan,
                "baseline_kwh": nan, "twin_kwh": twin_kwh}
    diff = base - twin
    bias_kwh = float(diff.sum() * dt_h)
    return {
        "bias_kwh": bias_kwh,
        "mae_kw": float(np.abs(diff).mean()),
        "rmse_kw": float(np.sqrt((diff**2).mean())),
        "rel_error": bias_kwh / twin_kwh if twin_kwh != 0.0 else math.nan,
        "baseline_kwh": float(base.sum() * dt_h),
        "twin_kwh": twin_kwh,
    }


def compare_baselines(
    load_kw: pd.Series,
    twin_kw: pd.Series,
    event_start,
    event_end,
    *,
    names: Iterable[str] | None = None,
    exclude_days: Iterable = (),
) -> pd.DataFrame:
    """Each named baseline's error against the twin over one event, one row per baseline.

    ``load_kw`` is the metered load (history and event); ``twin_kw`` the no-call
    twin [kW] covering at least the event window. Columns: the keys of
    :func:`baseline_error`, ``ok`` and ``reason``.
    """
    names = list(BASELINES) if names is None else list(names)
    for name in names:
        get_baseline(name)
    step = check_series(twin_kw, "twin_kw")
    start, end = check_window(twin_kw, event_start, event_end, step, "twin_kw")
    twin = twin_kw.reindex(window_index(start, end, step))
    rows = {}
    for name in names:
        res = compute_baseline(name, load_kw, start, end, exclude_days=exclude_days)
        rows[name] = {**baseline_error(res.p_kw, twin), "ok": res.ok, "reason": res.reason}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "baseline"
    return out
