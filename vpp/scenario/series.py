"""Time series from files: background load, PV, prices and EV sessions, put on the scenario's tick.

This module is where user data files are read (IO at the edges); what it
returns is numpy: per-tick arrays wrapped as :class:`TickSeries` (callable on
``t_s``), a :class:`Background` that gives the grid model its arguments for
each tick, and :class:`~vpp.fleets.ev.SessionRecords` for EV fleets. Fleets
never see a file.

Files
    CSV (``.csv``, UTF-8, a header line) or Parquet (``.parquet``, ``.pq``).
    A time series has a time column and a value column whose name ends with
    its unit (:data:`vpp.fleets.config.SERIES_UNITS`: ``load_factor``,
    ``p_mw``, ``pv_fraction``, ``irradiance_w_per_m2``,
    ``price_cny_per_kwh``, ...).

Time
    A time column whose name ends in ``_s`` (default ``t_s``) holds seconds
    since the scenario start. Otherwise (default ``time``) it holds
    timestamps, ISO 8601 (``2024-07-15T18:00``, ``2024-07-15 18:00:00+08:00``)
    or RFC 1123 as the ACN-Data API writes them (``Wed, 25 Apr 2018 11:08:04
    GMT``). Timestamps are put on the scenario clock by a calendar day:
    ``t_s = 0`` is that day at ``time.clock_start_h`` (default: the day of the
    file's first timestamp). Timestamps that carry a UTC offset need the
    scenario clock's ``timezone`` (an IANA name) and are then counted in
    elapsed seconds from that local start, so a daylight-saving change neither
    repeats nor skips an hour; timestamps without an offset are read as
    local clock time.

Resampling to the tick
    Each value is the mean over the interval from its time stamp to the next
    one (interval-beginning stamps, as in SimBench and most meter data; the
    last interval is as long as the one before it). A tick's value is the
    mean of that step function over the tick, ``[k dt_s, (k+1) dt_s)``: finer
    data is averaged, coarser data is held. For power and for factors on
    power this preserves energy exactly: the tick values times ``dt_s`` sum to
    the file's energy over the run. The file must cover the whole run,
    ``[0, time.duration_s)``. Where a caller asks for a time past the run's
    end (a grid operator's look-ahead), the last tick's value holds.

Bad input is a :class:`~vpp.scenario.ScenarioError` of one line naming the
scenario field, the file, the line (CSV, the header is line 1) or row
(Parquet, from 1) and the column.
"""

from __future__ import annotations

import datetime as _dt
import functools
import heapq
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vpp.fleets.config import SERIES_UNITS, SeriesFile, series_unit, short
from vpp.fleets.ev import SessionRecords
from vpp.profiles import Profile, get_profile
from vpp.scenario.load import ScenarioError
from vpp.units import KW_PER_MW, S_PER_H, hour_of_day

__all__ = [
    "TickSeries",
    "Background",
    "StepSeries",
    "PV_PERFORMANCE_RATIO",
    "STC_IRRADIANCE_W_PER_M2",
    "read_table",
    "read_series",
    "resample_mean",
    "build_background",
    "read_prices",
    "read_sessions",
    "fleet_inputs",
]

PV_PERFORMANCE_RATIO = 0.8  # AC output / (rated power x irradiance / 1000 W/m^2) [-] (DOMAIN.md: ~0.8)
STC_IRRADIANCE_W_PER_M2 = 1000.0  # irradiance at which PV is rated [W/m^2] (standard test conditions)
MAX_FILE_BYTES = 2 * 2**30  # largest data file read [B]
_TICK_EPS = 1e-9  # a time within this fraction of a tick of its start belongs to that tick

_TZ_RE = re.compile(r"(?:Z|[+-]\d{2}:?\d{2}|\b(?:GMT|UTC))$")
_RFC1123 = "%a, %d %b %Y %H:%M:%S %Z"


# --- reading tables ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """A data file's columns as read, with where each row came from (for messages)."""

    df: pd.DataFrame
    path: str
    what: str  # the scenario field that names the file
    csv: bool

    def where(self, i: int) -> str:
        """``line N`` (CSV, header = line 1) or ``row N`` (Parquet, from 1) of data row ``i``."""
        return f"line {i + 2}" if self.csv else f"row {i + 1}"

    def error(self, message: str, i: int | None = None, column: str | None = None) -> ScenarioError:
        parts = [self.where(i)] if i is not None else []
        if column is not None:
            parts.append(f"column {column!r}")
        loc = ", ".join(parts)
        return ScenarioError(f"{self.what}: {self.path}: {loc + ': ' if loc else ''}{message}")

    def need(self, *columns: str) -> None:
        missing = [c for c in columns if c not in self.df.columns]
        if missing:
            have = ", ".join(repr(c) for c in list(self.df.columns)[:20]) or "none"
            raise self.error(f"missing column{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(repr(c) for c in missing)}; the file has: {have}")

    def numbers(self, column: str, *, ge: float | None = None, allow_missing: bool = False) -> np.ndarray:
        """A column as floats; a cell that is not a finite number (or below ``ge``) is an error naming it."""
        raw = self.df[column]
        if self.csv:
            text = raw.astype(str).str.strip()
            empty = text == ""
            vals = pd.to_numeric(text.where(~empty, None), errors="coerce").to_numpy(dtype=float)
        else:
            empty = raw.isna().to_numpy()
            vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
            text = raw.astype(str)
        empty = np.asarray(empty)
        bad = ~np.isfinite(vals) & ~(empty & allow_missing)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            got = "an empty cell" if empty[i] else f"{short(str(text.iloc[i]), 40)}"
            raise self.error(f"{got} is not a finite number", i, column)
        if ge is not None:
            low = np.isfinite(vals) & (vals < ge)
            if low.any():
                i = int(np.flatnonzero(low)[0])
                raise self.error(f"{vals[i]:g} is below {ge:g}", i, column)
        return np.where(empty & allow_missing, np.nan, vals) if allow_missing else vals


def read_table(path: str | Path, what: str) -> _Table:
    """Read a CSV or Parquet file (every CSV cell as text, so that each cell's problem can be named)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ScenarioError(f"{what}: {p}: unknown file type {short(p.suffix)}; allowed: .csv, .parquet, .pq")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ScenarioError(f"{what}: {p}: cannot read ({exc.strerror})") from None
    except ValueError as exc:  # e.g. a NUL character in the path
        raise ScenarioError(f"{what}: {short(str(p))}: not a usable path ({exc})") from None
    if not p.is_file():
        raise ScenarioError(f"{what}: {p}: not a regular file")
    if size > MAX_FILE_BYTES:
        raise ScenarioError(f"{what}: {p}: {size:,} bytes; at most {MAX_FILE_BYTES:,} are read")
    try:
        if suffix == ".csv":
            df = pd.read_csv(p, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
        else:
            df = pd.read_parquet(p)
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{what}: {p}: not UTF-8 text (byte offset {exc.start})") from None
    except Exception as exc:  # pandas/pyarrow raise many types for malformed files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScenarioError(f"{what}: {p}: cannot parse as {'CSV' if suffix == '.csv' else 'Parquet'} "
                            f"({short(first, 160)})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0:
        raise ScenarioError(f"{what}: {p}: no data rows")
    return _Table(df, str(p), what, suffix == ".csv")


# --- time -------------------------------------------------------------------------------------------------


def _stamps(tab: _Table, column: str, timezone: str | None, allow_missing: bool = False) -> tuple[pd.Series, bool]:
    """Parse a timestamp column: (timestamps, carries a UTC offset). Aware stamps are returned in UTC.

    With ``allow_missing``, empty cells become NaT instead of an error.
    """
    raw = tab.df[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        aware = getattr(raw.dt, "tz", None) is not None
        bad = raw.isna().to_numpy()
        if bad.any() and not allow_missing:
            raise tab.error("missing timestamp", int(np.flatnonzero(bad)[0]), column)
        return (raw.dt.tz_convert("UTC") if aware else raw), aware
    text = raw.astype(str).str.strip()
    missing = (text.isin(["", "nan", "NaT", "None"]) if allow_missing else pd.Series(False, index=text.index)).to_numpy()
    if missing.all():
        return pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]"), False
    # Parse every cell first (any offset, or none), so that a cell that is no timestamp at all is named as such.
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy() & ~missing
    if bad.any():  # RFC 1123, as the ACN-Data API writes its times
        parsed = parsed.copy()
        parsed[bad] = pd.to_datetime(text[bad], format=_RFC1123, utc=True, errors="coerce")
        bad = parsed.isna().to_numpy() & ~missing
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        got = "an empty cell" if text.iloc[i] == "" else short(text.iloc[i], 40)
        raise tab.error(f"cannot parse {got} as a timestamp (ISO 8601 such as 2024-07-15T18:00, or RFC 1123 "
                        "such as 'Wed, 25 Apr 2018 11:08:04 GMT')", i, column)
    has_tz = text.str.contains(_TZ_RE).to_numpy()
    aware = bool(has_tz[~missing][0])
    mixed = (has_tz != aware) & ~missing
    if mixed.any():
        i = int(np.flatnonzero(mixed)[0])
        raise tab.error(f"{short(text.iloc[i], 40)} {'has no' if aware else 'has a'} UTC offset unlike the first "
                        "timestamp; give all timestamps with or all without one", i, column)
    if not aware:  # wall-clock times: the parse above read them as UTC; drop that
        parsed = parsed.dt.tz_localize(None)
    if aware and timezone is None:
        raise tab.error("timestamps carry a UTC offset; give the scenario clock's timezone (an IANA name such as "
                        "Asia/Shanghai) to place them on it", 0, column)
    return parsed, aware


@dataclass(frozen=True)
class _Clock:
    """How timestamps map to ``t_s``: the day of ``t_s = 0``, the clock's zone and start hour."""

    day: _dt.date | None
    timezone: str | None
    clock_start_h: float

    def seconds(self, tab: _Table, columns: list[str], first_column: str,
                optional: tuple[str, ...] = ()) -> list[np.ndarray]:
        """Seconds since the scenario start [s] for each timestamp column (one ``t_s = 0`` for all).

        ``first_column``'s earliest timestamp gives the default day; cells of
        ``optional`` columns may be empty (NaN).
        """
        parsed = [_stamps(tab, c, self.timezone, allow_missing=c in optional) for c in columns]
        stamps0, aware0 = parsed[columns.index(first_column)]
        day = self.day
        if day is None:
            first = stamps0.min()
            if aware0:
                first = first.tz_convert(zoneinfo.ZoneInfo(self.timezone))
            day = first.date()
        start = pd.Timestamp(_dt.datetime.combine(day, _dt.time())) + pd.Timedelta(hours=self.clock_start_h)
        out = []
        for (stamps, aware), c in zip(parsed, columns):
            if aware:
                origin = start.tz_localize(zoneinfo.ZoneInfo(self.timezone), ambiguous=True,
                                           nonexistent="shift_forward").tz_convert("UTC")
            else:
                origin = start
            out.append(((stamps - origin) / pd.Timedelta(seconds=1)).to_numpy(dtype=float))
        return out


def _time_column(tab: _Table, given: str | None) -> str:
    if given is not None:
        tab.need(given)
        return given
    have = [c for c in ("t_s", "time") if c in tab.df.columns]
    if len(have) == 2:
        raise tab.error("has both 't_s' and 'time' columns; say which with time_column")
    if not have:
        cols = ", ".join(repr(c) for c in list(tab.df.columns)[:20])
        raise tab.error(f"no time column: give 't_s' (seconds since the start) or 'time' (timestamps), or name "
                        f"one with time_column; the file has: {cols}")
    return have[0]


# --- resampling -------------------------------------------------------------------------------------------


def interval_ends(stamps_s: np.ndarray) -> np.ndarray:
    """Interval edges of interval-beginning stamps (at least two): the stamps plus an end as long as the last interval."""
    stamps_s = np.asarray(stamps_s, dtype=float)
    return np.append(stamps_s, stamps_s[-1] + (stamps_s[-1] - stamps_s[-2]))


def resample_mean(ends_s: np.ndarray, values: np.ndarray, edges_s: np.ndarray) -> np.ndarray:
    """Means of a step function over the windows ``[edges_s[k], edges_s[k+1])``.

    ``values[i]`` holds on ``[ends_s[i], ends_s[i+1])`` (``ends_s``
    increasing, one longer than ``values``; see :func:`interval_ends`).
    ``values`` may be 1-D or 2-D (one column per element). Exact: the
    integral of the step function is piecewise linear, and its values at the
    edges are interpolated from its values at the interval ends. The windows
    must lie inside the data (the caller checks and says so).
    """
    ends = np.asarray(ends_s, dtype=float)
    values = np.asarray(values, dtype=float)
    widths = np.diff(ends)
    shape = (-1,) + (1,) * (values.ndim - 1)
    integral = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values * widths.reshape(shape), axis=0)])
    edges_s = np.asarray(edges_s, dtype=float)
    i = np.clip(np.searchsorted(ends, edges_s, side="right") - 1, 0, values.shape[0] - 1)
    at_edges = integral[i] + (edges_s - ends[i]).reshape(shape) * values[i]
    return np.diff(at_edges, axis=0) / np.diff(edges_s).reshape(shape)


class StepSeries:
    """A step function of many elements, averaged over one window at a time (for large per-element data)."""

    def __init__(self, ends_s: np.ndarray, values: np.ndarray):
        self.ends = np.asarray(ends_s, dtype=float)  # one longer than values, as in resample_mean
        self.values = np.asarray(values, dtype=float)

    def mean(self, a_s: float, b_s: float) -> np.ndarray:
        """Mean of every element over ``[a_s, b_s)`` (inside the data)."""
        ends, vals = self.ends, self.values
        i0 = max(int(np.searchsorted(ends, a_s, side="right")) - 1, 0)
        i1 = min(int(np.searchsorted(ends, b_s, side="left")), vals.shape[0])
        lo = np.maximum(ends[i0:i1], a_s)
        hi = np.minimum(ends[i0 + 1:i1 + 1], b_s)
        w = np.maximum(hi - lo, 0.0)
        return w @ vals[i0:i1] / (b_s - a_s)


@dataclass(frozen=True)
class TickSeries:
    """One value per tick (the mean over the tick) [``unit``]; ``series(t_s)`` is the value of the tick holding ``t_s``."""

    values: np.ndarray
    dt_s: float
    unit: str
    source: str = ""

    def __post_init__(self) -> None:
        a = np.array(self.values, dtype=float)
        a.flags.writeable = False
        object.__setattr__(self, "values", a)

    def __call__(self, t_s: float) -> float:
        k = int(np.floor(t_s / self.dt_s + _TICK_EPS))
        return float(self.values[min(max(k, 0), self.values.shape[0] - 1)])


def _tick_edges(time) -> np.ndarray:
    return np.arange(time.n_ticks + 1, dtype=float) * time.dt_s


def read_series(spec: SeriesFile, slot: str, time, what: str) -> TickSeries:
    """Read a series file and average it over each tick, in the slot's canonical unit.

    Canonical units: ``load`` and ``sgen`` give a multiplier on nominal power
    (unit ``"factor"``) or a total power (``"p_mw"``); ``irradiance`` gives
    PV output per rated power (``"kw_per_kwp"``); ``price`` gives
    ``"cny_per_kwh"``. ``irradiance_w_per_m2`` becomes output per rated power
    as ``G / 1000 W/m^2 x`` :data:`PV_PERFORMANCE_RATIO`.
    """
    unit = series_unit(spec.column, slot)
    if unit is None:  # the schema checks this; a direct caller may not have
        raise ScenarioError(f"{what}: column {spec.column!r} does not end with a unit; "
                            f"allowed: {', '.join(SERIES_UNITS[slot])}")
    tab = read_table(spec.path, what)
    tcol = _time_column(tab, spec.time_column)
    tab.need(spec.column)
    if len(tab.df) < 2:
        raise tab.error("needs at least two rows (each value holds until the next time stamp)")
    if tcol.endswith("_s"):
        t_s = tab.numbers(tcol)
    else:
        t_s = _Clock(spec.day, spec.timezone, time.clock_start_h).seconds(tab, [tcol], tcol)[0]
    step = np.diff(t_s)
    if (step <= 0.0).any():
        i = int(np.flatnonzero(step <= 0.0)[0]) + 1
        raise tab.error(f"time {'repeats' if step[i - 1] == 0 else 'goes backwards'} (t_s={t_s[i]:g} after "
                        f"{t_s[i - 1]:g}); times must increase", i, tcol)
    end_s = t_s[-1] + step[-1]
    if t_s[0] > 0.0 or end_s < time.duration_s:
        raise tab.error(f"covers t_s {t_s[0]:g}..{end_s:g} s but the run needs 0..{time.duration_s:g} s "
                        f"(time.duration_s); t_s = 0 is {_describe_start(spec, time)}", column=tcol)
    price = slot == "price"
    vals = tab.numbers(spec.column, ge=None if price else 0.0)
    if unit == "p_kw":
        vals, unit = vals / KW_PER_MW, "p_mw"
    elif unit == "irradiance_w_per_m2":
        vals, unit = vals / STC_IRRADIANCE_W_PER_M2 * PV_PERFORMANCE_RATIO, "factor"
    elif unit == "price_cny_per_mwh":
        vals, unit = vals / KW_PER_MW, "cny_per_kwh"
    elif unit == "price_cny_per_kwh":
        unit = "cny_per_kwh"
    elif unit != "p_mw":
        unit = "factor"
    if slot == "irradiance":
        unit = "kw_per_kwp"
    # Only the intervals that touch the run: a year of data then costs no precision in the running sum.
    ends = interval_ends(t_s)
    first = int(np.searchsorted(ends, 0.0, side="right")) - 1
    last = int(np.searchsorted(ends, time.duration_s, side="left"))
    per_tick = resample_mean(ends[first:last + 1], vals[first:last], _tick_edges(time))
    return TickSeries(per_tick, time.dt_s, unit, f"{spec.path}:{spec.column}")


def _describe_start(spec: SeriesFile, time) -> str:
    hh, mm = divmod(round(time.clock_start_h * 60), 60)
    day = spec.day.isoformat() if spec.day is not None else "the day of the first timestamp"
    return f"{day} {hh:02d}:{mm:02d} (day, time.clock_start_h)"


# --- the grid's own loads and generators --------------------------------------------------------------------


class Background:
    """The net's own load and generation for each tick, as arguments of :meth:`GridModel.solve`.

    ``background(t_s)`` returns ``(load_factor, sgen_factor)``, or, when
    the loads or generators follow SimBench's per-element profiles,
    ``(load_factor, sgen_factor, load_p_mw, load_q_mvar, sgen_p_mw)`` with
    per-element arrays (None where the factor alone applies) that the factors
    then multiply. A named profile is evaluated at the tick's start (its hour
    of day), as before files existed; a file series and SimBench profiles give
    the mean over the tick.
    """

    def __init__(self, time, load_scale: float, sgen_scale: float, load, sgen, simbench=None):
        self._clock_start_h = float(time.clock_start_h)
        self._dt_s = float(time.dt_s)
        self._n_ticks = int(time.n_ticks)
        self._load_scale = float(load_scale)
        self._sgen_scale = float(sgen_scale)
        self._load = load  # Profile, TickSeries of factors, or "simbench"
        self._sgen = sgen
        self._simbench = simbench  # StepSeries per quantity, or None
        self.per_element = simbench is not None

    def _factor(self, source, scale: float, t_s: float) -> float:
        if isinstance(source, Profile):
            return scale * float(source(hour_of_day(t_s, self._clock_start_h)))
        if isinstance(source, TickSeries):
            return scale * source(t_s)
        return scale  # per-element profiles carry the shape; the scale still multiplies them

    def __call__(self, t_s: float):
        load_factor = self._factor(self._load, self._load_scale, t_s)
        sgen_factor = self._factor(self._sgen, self._sgen_scale, t_s)
        if self._simbench is None:
            return load_factor, sgen_factor
        k = min(max(int(np.floor(t_s / self._dt_s + _TICK_EPS)), 0), self._n_ticks - 1)
        load_p, load_q, sgen_p = self._tick(k)
        return load_factor, sgen_factor, load_p, load_q, sgen_p

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one Background per run; the plant, twin and watcher ask alike
    def _tick(self, k: int):
        a, b = k * self._dt_s, (k + 1) * self._dt_s
        sb = self._simbench
        load_p = sb["load_p_mw"].mean(a, b) if self._load == "simbench" else None
        load_q = sb["load_q_mvar"].mean(a, b) if self._load == "simbench" else None
        sgen_p = sb["sgen_p_mw"].mean(a, b) if self._sgen == "simbench" else None
        for arr in (load_p, load_q, sgen_p):
            if arr is not None:
                arr.flags.writeable = False
        return load_p, load_q, sgen_p


def _nominal_total_mw(table) -> float:
    """Sum of a pandapower element table's ``p_mw x scaling`` over in-service elements [MW]."""
    if table is None or len(table) == 0:
        return 0.0
    scaling = table["scaling"] if "scaling" in table.columns else 1.0
    p = table["p_mw"] * scaling
    if "in_service" in table.columns:
        p = p[table["in_service"].astype(bool)]
    return float(p.sum())


def _factor_series(series: TickSeries, table, what: str, element: str) -> TickSeries:
    """A total-power series [MW] turned into a multiplier on the element table's nominal total."""
    if series.unit == "factor":
        return series
    total_mw = _nominal_total_mw(table)
    if not total_mw > 0.0:
        raise ScenarioError(f"{what}: a total-power column ({series.source}) scales the net's {element}s, but "
                            f"the net has no nominal {element} power to scale; give a factor column instead")
    return TickSeries(series.values / total_mw, series.dt_s, "factor", series.source)


def build_background(scenario, grid) -> Background:
    """The net's own load and generation per tick, from named profiles, files or SimBench profiles.

    Call before the VPP's loads are attached to ``grid`` (they would count as
    background otherwise).
    """
    g, time = scenario.grid, scenario.time
    net = grid.net
    sources = {}
    for slot, key, element in (("load", "load_profile", "load"), ("sgen", "sgen_profile", "sgen")):
        value = getattr(g, key)
        what = f"grid.{key}"
        if isinstance(value, SeriesFile):
            sources[slot] = _factor_series(read_series(value, slot, time, what), net[element], what, element)
        elif value == "simbench":
            sources[slot] = "simbench"
        else:
            sources[slot] = get_profile(value)
    simbench = None
    if "simbench" in sources.values():
        what = "grid.load_profile" if sources["load"] == "simbench" else "grid.sgen_profile"
        simbench = _simbench_window(net, g.simbench_day, time, what)
    return Background(time, g.load_scale, g.sgen_scale, sources["load"], sources["sgen"], simbench)


def _simbench_window(net, day: int | None, time, what: str) -> dict[str, StepSeries]:
    """SimBench's absolute per-element values over the run: the year wraps around at its end."""
    from vpp.grid.simbench_profiles import SIMBENCH_STEP_S, simbench_absolute_values

    if day is None:
        raise ScenarioError(f"{what}: 'simbench' needs grid.simbench_day, the day of SimBench's year (1..366) "
                            "on which the run starts")
    try:
        values = simbench_absolute_values(net)
    except (KeyError, ImportError, ValueError) as exc:
        raise ScenarioError(f"{what}: {exc.args[0]}") from None
    n_rows = values["load_p_mw"].shape[0]
    start_s = (day - 1) * 86_400.0 + time.clock_start_h * S_PER_H
    i0 = int(np.floor(start_s / SIMBENCH_STEP_S))
    i1 = int(np.ceil((start_s + time.duration_s) / SIMBENCH_STEP_S)) + 1
    rows = np.arange(i0, i1) % n_rows
    ends = np.arange(i0, i1 + 1) * SIMBENCH_STEP_S - start_s
    return {k: StepSeries(ends, v[rows]) for k, v in values.items()}


def read_prices(scenario) -> TickSeries | None:
    """The scenario's energy price per tick [CNY/kWh], or None without ``prices``."""
    spec = getattr(scenario, "prices", None)
    return None if spec is None else read_series(spec, "price", scenario.time, "prices")


# --- EV sessions ------------------------------------------------------------------------------------------

ACN_COLUMNS = ("connectionTime", "disconnectTime", "kWhDelivered")
PLAIN_COLUMNS = ("arrival_s", "departure_s", "e_need_kwh", "charger")
OPTIONAL_SESSION_COLUMNS = ("cap_kwh", "soc_arrival", "p_accept_kw")


def read_sessions(path: str, n_chargers: int, time, what: str, day: _dt.date | None = None,
                  timezone: str | None = None) -> tuple[SessionRecords, list[str]]:
    """Charging sessions from a file, each on a charger of the fleet; returns ``(records, notes)``.

    Two formats, told apart by their columns:

    ACN-Data (``connectionTime``, ``disconnectTime``, ``kWhDelivered``; optional ``stationID`` or
        ``spaceID``, ``doneChargingTime``): timestamps placed on the scenario clock as for any
        series (``day``, ``timezone``). ``kWhDelivered`` is metered at the charger, so the
        energy the vehicle asks for is that times the charger's efficiency. Stations map to
        chargers in sorted order of their IDs (station ``i`` in that order is charger ``i``);
        more stations in the file than chargers in the fleet is an error. Without a station
        column each session takes the charger free longest (lowest index on ties), and more
        vehicles at once than chargers is an error. ``doneChargingTime`` is checked (not before
        the connection) and otherwise unused.
    plain (``arrival_s``, ``departure_s`` [s since the start], ``e_need_kwh`` [kWh, battery side],
        ``charger`` [index 0..n-1 in the fleet]).

    Either may add ``cap_kwh`` [kWh], ``soc_arrival`` [-] and ``p_accept_kw`` [kW] per session;
    where a cell or the column is missing, the fleet draws them from its charger parameter set.
    Sessions that leave at or before ``t_s = 0`` or arrive at or after the end of the run are
    dropped, with a note saying how many; sessions under way at ``t_s = 0`` are kept. Every
    other problem (a departure not after its arrival, overlapping sessions on one charger, a
    missing column, a time that does not parse) is an error naming file, line and column.
    """
    tab = read_table(path, what)
    cols = set(tab.df.columns)
    acn = all(c in cols for c in ACN_COLUMNS)
    plain = all(c in cols for c in PLAIN_COLUMNS)
    if acn and plain:
        raise tab.error("has the columns of both session formats (ACN-Data and plain); keep one set")
    if not (acn or plain):
        a_missing = [c for c in ACN_COLUMNS if c not in cols]
        p_missing = [c for c in PLAIN_COLUMNS if c not in cols]
        have = ", ".join(repr(c) for c in list(tab.df.columns)[:20])
        raise tab.error(f"missing columns: ACN-Data format needs {', '.join(a_missing)}; plain format needs "
                        f"{', '.join(p_missing)}; the file has: {have}")
    n = len(tab.df)
    notes: list[str] = []
    if acn:
        t_cols = ["connectionTime", "disconnectTime"] + (["doneChargingTime"] if "doneChargingTime" in cols else [])
        clock = _Clock(day, timezone, time.clock_start_h)
        arrival_s, departure_s, *done = clock.seconds(tab, t_cols, "connectionTime", optional=("doneChargingTime",))
        if done:
            early = done[0] < arrival_s - 1e-6  # NaN (no done time) compares False
            if early.any():
                i = int(np.flatnonzero(early)[0])
                raise tab.error("doneChargingTime is before connectionTime", i, "doneChargingTime")
        e_kwh = tab.numbers("kWhDelivered", ge=0.0)
        t_names = ("connectionTime", "disconnectTime")
    else:
        arrival_s = tab.numbers("arrival_s")
        departure_s = tab.numbers("departure_s")
        e_kwh = tab.numbers("e_need_kwh", ge=0.0)
        t_names = ("arrival_s", "departure_s")
    bad = departure_s <= arrival_s
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise tab.error(f"departure ({t_names[1]}, t_s={departure_s[i]:g}) is not after the arrival "
                        f"({t_names[0]}, t_s={arrival_s[i]:g})", i, t_names[1])
    extra = {}
    for c, lo, hi in (("cap_kwh", 0.0, 1e6), ("soc_arrival", 0.0, 1.0), ("p_accept_kw", 0.0, 1e5)):
        if c in cols:
            v = tab.numbers(c, ge=lo, allow_missing=True)
            out = np.isfinite(v) & ((v > hi) | ((v <= 0.0) & (c != "soc_arrival")))
            if out.any():
                i = int(np.flatnonzero(out)[0])
                rng = f"(0, {hi:g}]" if c != "soc_arrival" else "[0, 1]"
                raise tab.error(f"{v[i]:g} is outside {rng}", i, c)
            extra[c] = v
        else:
            extra[c] = np.full(n, np.nan)
    if "cap_kwh" in cols and "soc_arrival" in cols and not acn:
        room = (1.0 - extra["soc_arrival"]) * extra["cap_kwh"]
        over = np.isfinite(room) & (e_kwh > room * (1.0 + 1e-9))
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise tab.error(f"e_need_kwh {e_kwh[i]:g} is more than the battery takes from soc_arrival "
                            f"{extra['soc_arrival'][i]:g} (cap_kwh {extra['cap_kwh'][i]:g}: {room[i]:g} kWh)",
                            i, "e_need_kwh")

    # Chargers.
    if plain:
        ch = tab.numbers("charger", ge=0.0)
        frac = ch != np.floor(ch)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise tab.error(f"{ch[i]:g} is not a charger index (a whole number 0..{n_chargers - 1})", i, "charger")
        beyond = ch >= n_chargers
        if beyond.any():
            i = int(np.flatnonzero(beyond)[0])
            raise tab.error(f"charger {int(ch[i])} does not exist: the fleet has {n_chargers} chargers "
                            f"(0..{n_chargers - 1})", i, "charger")
        charger = ch.astype(np.int64)
    else:
        station_col = next((c for c in ("stationID", "spaceID") if c in cols), None)
        if station_col is not None:
            labels = tab.df[station_col].astype(str).str.strip()
            empty = (labels == "") | labels.isin(["nan", "None"])
            if empty.any():
                raise tab.error("missing station", int(np.flatnonzero(empty.to_numpy())[0]), station_col)
            stations = sorted(labels.unique())
            if len(stations) > n_chargers:
                raise tab.error(f"{len(stations)} stations but the fleet has {n_chargers} chargers; each station "
                                f"is one charger: set n_devices to at least {len(stations)}", column=station_col)
            index = {s: k for k, s in enumerate(stations)}
            charger = labels.map(index).to_numpy(dtype=np.int64)
            if len(stations) < n_chargers:
                notes.append(f"{what}: {len(stations)} stations on {n_chargers} chargers; chargers "
                             f"{len(stations)}..{n_chargers - 1} have no sessions")
        else:
            charger = _first_free(tab, arrival_s, departure_s, n_chargers, t_names[0])
    _check_overlaps(tab, charger, arrival_s, departure_s, t_names)

    keep = (departure_s > 0.0) & (arrival_s < time.duration_s)
    n_out = int((~keep).sum())
    if n_out:
        notes.append(f"{what}: {n_out} of {n} sessions lie outside the run (t_s 0..{time.duration_s:g} s) and "
                     "were dropped")
    if not keep.any():
        raise tab.error(f"no session overlaps the run (t_s 0..{time.duration_s:g} s); "
                        + ("check sessions_day and sessions_timezone" if acn else "check arrival_s"))
    records = SessionRecords(
        charger=charger[keep], arrival_s=arrival_s[keep], departure_s=departure_s[keep], e_kwh=e_kwh[keep],
        e_at_grid=acn, cap_kwh=extra["cap_kwh"][keep], soc_arrival=extra["soc_arrival"][keep],
        p_accept_kw=extra["p_accept_kw"][keep],
    )
    return records, notes


def _first_free(tab: _Table, arrival_s, departure_s, n_chargers: int, t_name: str) -> np.ndarray:
    """Each session on the charger free longest (lowest index on ties); too many at once is an error."""
    order = np.argsort(arrival_s, kind="stable")
    free = [(-np.inf, k) for k in range(n_chargers)]  # (free since [s], charger)
    heapq.heapify(free)
    busy: list[tuple[float, int]] = []  # (departure [s], charger)
    charger = np.empty(arrival_s.shape[0], dtype=np.int64)
    for i in order:
        a = arrival_s[i]
        while busy and busy[0][0] <= a:
            d, k = heapq.heappop(busy)
            heapq.heappush(free, (d, k))
        if not free:
            raise tab.error(f"more than {n_chargers} vehicles plugged in at once (t_s={a:g}); the fleet has "
                            f"{n_chargers} chargers: raise n_devices or give a station column", int(i), t_name)
        _, k = heapq.heappop(free)
        charger[i] = k
        heapq.heappush(busy, (departure_s[i], k))
    return charger


def _check_overlaps(tab: _Table, charger, arrival_s, departure_s, t_names) -> None:
    order = np.lexsort((arrival_s, charger))
    c, a, d = charger[order], arrival_s[order], departure_s[order]
    clash = (c[1:] == c[:-1]) & (a[1:] < d[:-1])
    if clash.any():
        j = int(np.flatnonzero(clash)[0])
        i_prev, i_next = int(order[j]), int(order[j + 1])
        raise tab.error(f"arrives at t_s={a[j + 1]:g} on charger {int(c[j])} while the session of "
                        f"{tab.where(i_prev)} is there until t_s={d[j]:g}; sessions on one charger must not "
                        "overlap", i_next, t_names[0])


# --- wiring into the plant --------------------------------------------------------------------------------


def fleet_inputs(cfg, time, what: str, notes: list[str]) -> dict:
    """What a fleet's builder gets from files (keyword arguments), reading them here; ``notes`` collects warnings."""
    out = {}
    sessions_file = getattr(cfg, "sessions_file", None)
    if sessions_file is not None:
        records, more = read_sessions(sessions_file, cfg.n_devices, time, f"{what}.sessions_file",
                                      cfg.sessions_day, cfg.sessions_timezone)
        notes.extend(more)
        out["sessions"] = records
    irradiance = getattr(cfg, "irradiance_profile", None)
    if isinstance(irradiance, SeriesFile):
        out["irradiance"] = read_series(irradiance, "irradiance", time, f"{what}.irradiance_profile")
    return out
