"""Checks shared by the programme modules: metered series and event windows.

A metered series is a ``pandas.Series`` of power [kW] indexed by a tz-aware,
strictly increasing ``DatetimeIndex`` with one constant step (the metering
interval). Each value is the mean power over the interval that *starts* at its
timestamp, so an interval's energy is ``p_kw x dt_h``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["check_series", "check_indexed", "to_timestamp", "check_window", "window_index", "interval_h"]


def check_series(p_kw: pd.Series, name: str) -> pd.Timedelta:
    """Validate a metered series; return its interval. Errors name the argument.

    A single sample is accepted when its index carries a ``freq`` (e.g. from ``pd.date_range``).
    """
    if not isinstance(p_kw, pd.Series):
        raise TypeError(f"{name}: expected a pandas Series of power [kW], got {type(p_kw).__name__}")
    idx = p_kw.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise TypeError(f"{name}: the index must be a DatetimeIndex, got {type(idx).__name__}")
    if idx.tz is None:
        raise ValueError(f"{name}: timestamps are naive; give them a time zone (e.g. .tz_localize('Asia/Shanghai'))")
    if not np.issubdtype(p_kw.dtype, np.number) or np.issubdtype(p_kw.dtype, np.bool_):
        raise TypeError(f"{name}: values must be numeric power [kW], got dtype {p_kw.dtype}")
    if len(idx) < 2:
        # one sample: the interval is known only from the index's own frequency
        if len(idx) == 1 and idx.freq is not None:
            return pd.Timedelta(idx.freq)
        raise ValueError(f"{name}: needs at least two samples (or an index with a freq) to know the metering "
                         f"interval, got {len(idx)}")
    steps = idx[1:] - idx[:-1]
    step = steps[0]
    if step <= pd.Timedelta(0) or not (steps == step).all():
        bad = sorted({str(s) for s in steps.unique()})[:5]
        raise ValueError(f"{name}: the index is not regular (strictly increasing, one constant step); "
                         f"steps seen: {bad}")
    return pd.Timedelta(step)


def check_indexed(p_kw: pd.Series, name: str) -> None:
    """A numeric Series on a tz-aware DatetimeIndex (no regularity asked: it is read on another grid)."""
    if not isinstance(p_kw, pd.Series):
        raise TypeError(f"{name}: expected a pandas Series of power [kW], got {type(p_kw).__name__}")
    if not isinstance(p_kw.index, pd.DatetimeIndex):
        raise TypeError(f"{name}: the index must be a DatetimeIndex, got {type(p_kw.index).__name__}")
    if p_kw.index.tz is None:
        raise ValueError(f"{name}: timestamps are naive; give them a time zone (e.g. .tz_localize('Asia/Shanghai'))")
    if not np.issubdtype(p_kw.dtype, np.number) or np.issubdtype(p_kw.dtype, np.bool_):
        raise TypeError(f"{name}: values must be numeric power [kW], got dtype {p_kw.dtype}")
    if not p_kw.index.is_unique:
        raise ValueError(f"{name}: duplicate timestamps")


def to_timestamp(t, tz, name: str) -> pd.Timestamp:
    """``t`` (Timestamp, datetime or ISO 8601 string with an offset) as a Timestamp in ``tz``."""
    try:
        ts = pd.Timestamp(t)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not a timestamp: {t!r}") from exc
    if ts is pd.NaT:
        raise ValueError(f"{name}: not a timestamp: {t!r}")
    if ts.tzinfo is None:
        raise ValueError(f"{name}: {t!r} is naive; give it a time zone or UTC offset (e.g. '2025-07-15T18:00+08:00')")
    return ts.tz_convert(tz)


def check_window(p_kw: pd.Series, start, end, step: pd.Timedelta, name: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Validate an event window [start, end) against a series: ordered, on its grid, inside its span."""
    tz = p_kw.index.tz
    start = to_timestamp(start, tz, "event_start")
    end = to_timestamp(end, tz, "event_end")
    if not end > start:
        raise ValueError(f"event_end ({end}) must be after event_start ({start})")
    first, last_end = p_kw.index[0], p_kw.index[-1] + step
    if start < first or end > last_end:
        raise ValueError(
            f"event window [{start}, {end}) lies outside the data of {name} [{first}, {last_end})"
        )
    for label, t in (("event_start", start), ("event_end", end)):
        if (t - first) % step != pd.Timedelta(0):
            raise ValueError(f"{label} ({t}) is not on the metering grid of {name} (step {step} from {first})")
    return start, end


def window_index(start: pd.Timestamp, end: pd.Timestamp, step: pd.Timedelta) -> pd.DatetimeIndex:
    """Interval start times in [start, end)."""
    return pd.date_range(start, end, freq=step, inclusive="left")


def interval_h(step: pd.Timedelta) -> float:
    """Length of one metering interval [h]."""
    return step / pd.Timedelta(hours=1)
