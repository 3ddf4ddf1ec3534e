"""The scenario schema: pydantic models, unknown keys forbidden, units in field names.

A scenario is validated in full before any work starts. Names that refer to
registries (charger types, parameter sets, profiles, networks, allocation
strategies) are checked here against those registries; facts that need the
grid itself (does bus 42 exist?) are checked when the plant is built, still
before the first tick.
"""

from __future__ import annotations

import importlib
import math
import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, Field, PrivateAttr, Strict, TypeAdapter, ValidationError, WithJsonSchema, \
    WrapValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from vpp.dispatch.allocation import ALLOCATORS, PLATFORM_ALLOCATORS
from vpp.dr import POWER_SIGNALS, RESPONSE_REQUIRED, SIGNALS
from vpp.fleets.config import BusIndex, Flag, Name, SeriesFile, StrictModel, check_timezone, field_errors, real, \
    series_or_profile, short, whole
from vpp.fleets.config import BusRef
from vpp.fleets.config import one_of as _one_of
from vpp.fleets.registry import KINDS
from vpp.grid.networks import NetworkError, check_network_name, network_file
from vpp.grid.solvers import SOLVERS
from vpp.profiles import PROFILES
from vpp.programme.tiers import TIERS, get_tier
from vpp.scenario.timefmt import DEFAULT_TIMEZONE, Calendar, check_instant, parse_duration_s, parse_start

__all__ = [
    "Scenario",
    "TimeConfig",
    "GridConfig",
    "FleetConfig",
    "DRCallConfig",
    "SignalConfig",
    "IntervalConfig",
    "TargetsConfig",
    "ModificationConfig",
    "EventsFile",
    "LEVEL_FRACTIONS",
    "CommunicationConfig",
    "DispatchConfig",
    "OptimalDispatchConfig",
    "PlatformConfig",
    "OutputConfig",
    "MeasurementConfig",
    "GridOperatorConfig",
    "OpenADRConfig",
]

MAX_DURATION_S = 366 * 86_400.0  # longest horizon, and any time in a scenario [s]
MAX_SEED = 2**63 - 1
MAX_FLEETS = 1_000
MAX_DR_CALLS = 10_000
MAX_CALL_KW = 1e8  # a DR call's requested change [kW] (100 GW)
MAX_INTERVALS = 10_000  # intervals of one signal
MAX_MODIFICATIONS = 1_000  # later versions of one event
MAX_PRICE_CNY_PER_KWH = 1e4  # a price signal's value [CNY/kWh]
LEVEL_FRACTIONS = (0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0)
"""Default share of a level signal's ``p_kw`` requested at OpenADR simple levels 0, 1, 2, 3 (an assumption:
level 0 is normal operation, 3 the full request, evenly spaced between; a signal may give its own)."""
_TOL_S = 1e-6  # slack when comparing times [s]
_WHEN = " [s since t_s = 0, or an ISO 8601 date-time or clock time]"  # the unit of an Instant, in descriptions

_TIME_S = real(ge=0.0, le=MAX_DURATION_S)  # a time since the scenario start, or a window [s]
_TIME_S_ADAPTER = TypeAdapter(_TIME_S)


def _instant_value(value, handler):
    # Numbers keep the plain number checks (and messages); strings and dates must be one of the instant forms.
    if isinstance(value, (str, datetime, date, time)):
        try:
            return check_instant(value)
        except ValueError as exc:
            raise PydanticCustomError("value_error", "{msg}", {"msg": str(exc)}) from None
    return _TIME_S_ADAPTER.validate_python(value)


Instant = Annotated[Union[float, str], WrapValidator(_instant_value)]
"""A time field: seconds since the start or any form of :mod:`vpp.scenario.timefmt` (placed by the calendar later)."""


def duration_type(*, ge: float | None = None, gt: float | None = None, le: float | None = None):
    """A duration field [s]: a number of seconds or an ISO 8601 duration (``"PT2H"``), stored in seconds."""
    adapter = TypeAdapter(real(ge=ge, gt=gt, le=le))
    lo = f"[{ge:g}" if ge is not None else f"({gt:g}" if gt is not None else "(-inf"
    allowed = f"{lo}, {le:g}]" if le is not None else f"{lo}, inf)"

    def check(value, handler):
        if isinstance(value, (str, timedelta)):
            try:
                seconds = parse_duration_s(value)
            except ValueError as exc:
                raise PydanticCustomError("value_error", "{msg}", {"msg": str(exc)}) from None
            try:
                return adapter.validate_python(seconds)
            except ValidationError:
                raise PydanticCustomError("value_error", "{msg}", {
                    "msg": f"{short(value)} is {seconds:g} s; must be in {allowed} s"}) from None
        return adapter.validate_python(value)

    # For the JSON Schema only (editors): what the validator takes, seconds in range or an ISO 8601 duration.
    bounds = (("minimum", ge), ("exclusiveMinimum", gt), ("maximum", le))
    number = {"type": "number", **{k: v for k, v in bounds if v is not None}}
    iso = {"type": "string", "minLength": 2, "description": "an ISO 8601 duration, e.g. PT2H"}
    return Annotated[float, WrapValidator(check), WithJsonSchema({"anyOf": [number, iso]})]


def _notice_value(value, handler):
    # An instant, or an ISO 8601 duration: that long before the event's start (OpenADR's x-eiNotification).
    if isinstance(value, str) and value.strip()[:1] in ("P", "p"):
        try:
            seconds = parse_duration_s(value)
        except ValueError as exc:
            raise PydanticCustomError("value_error", "{msg}", {"msg": str(exc)}) from None
        if not 0.0 <= seconds <= MAX_DURATION_S:
            raise PydanticCustomError("value_error", "{msg}", {"msg": f"a notice of {seconds:g} s is not in "
                                                                     f"[0, {MAX_DURATION_S:g}] s"})
        return value.strip()
    return _instant_value(value, handler)


Notice = Annotated[Union[float, str], WrapValidator(_notice_value)]


def _start_value(value, handler):
    if isinstance(value, (str, datetime, date)) and not isinstance(value, bool):
        return value
    raise PydanticCustomError("value_error", "{msg}", {
        "msg": "must be an ISO 8601 date-time such as '2025-07-15T12:00+08:00' or '2025-07-15T12:00' (in "
               "time.timezone)"})

FleetConfig = Annotated[Union[tuple(spec.config for spec in KINDS.values())], Field(discriminator="kind")]
"""Any registered kind's fleet configuration, told apart by its ``kind`` field."""


class TimeConfig(StrictModel):
    """Simulated horizon, control tick and calendar.

    ``start`` gives the date and time of ``t_s = 0`` (ISO 8601; with a UTC
    offset, or without one as wall-clock time in ``timezone``); it is stored
    with the offset in force in ``timezone`` and sets ``clock_start_h``.
    Scenarios written before there was a calendar give only
    ``clock_start_h``: their date is unknown, and results then carry no
    timestamps (see :class:`vpp.scenario.timefmt.Calendar`). Give one of the
    two (a ``clock_start_h`` equal to ``start``'s hour is accepted, so that a
    dumped scenario reads back); neither means ``clock_start_h`` 0 on an
    unknown date. Fleets follow the clock hour ``clock_start_h + t_s / 3600``:
    across a daylight saving change their daily profiles keep the start's
    offset.
    """

    start: Annotated[Union[str, datetime, date], WrapValidator(_start_value)] | None = Field(
        None, description="date and time of t_s = 0, ISO 8601 ('2025-07-15T12:00+08:00', or '2025-07-15T12:00' in "
        "timezone); not given: the date is unknown (clock_start_h only)",
    )
    timezone: Annotated[str, Strict(), Field(min_length=1, max_length=100)] = Field(
        DEFAULT_TIMEZONE, description="IANA time zone of the scenario's wall clock (start, clock times, timestamps)"
    )
    clock_start_h: real(ge=0.0, lt=24.0) | None = Field(
        None, description="clock hour of day at t_s = 0 [h]; derived from start when start is given, else default 0"
    )
    duration_s: real(gt=0.0, le=MAX_DURATION_S) = Field(description="simulated horizon [s], at most 366 days")
    dt_s: real(ge=1.0, le=900.0) = Field(60.0, description="control tick [s], 1 s to 15 min")
    _calendar: Calendar | None = PrivateAttr(None)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @model_validator(mode="after")
    def _whole_ticks(self):
        n = self.duration_s / self.dt_s
        if abs(n - round(n)) > 1e-9 or round(n) < 1:
            raise ValueError(f"duration_s ({self.duration_s}) must be a whole number (>= 1) of dt_s ({self.dt_s})")
        return self

    @model_validator(mode="after")
    def _clock(self):
        start = None
        if self.start is not None:
            try:
                start = parse_start(self.start, self.timezone)
            except ValueError as exc:
                raise field_errors("TimeConfig", [(("start",), str(exc), None)]) from None
            hour = start.hour + start.minute / 60.0 + (start.second + start.microsecond / 1e6) / 3600.0
            if self.clock_start_h is not None and abs(self.clock_start_h - hour) > 1e-9:
                raise field_errors("TimeConfig", [(("clock_start_h",), (
                    f"give time.start or time.clock_start_h, not both: start {start.isoformat()} sets the clock hour "
                    f"({hour:g})"), None)])
            object.__setattr__(self, "start", start.isoformat())
            object.__setattr__(self, "clock_start_h", hour)
        elif self.clock_start_h is None:
            object.__setattr__(self, "clock_start_h", 0.0)
        self._calendar = Calendar(start, self.timezone, self.clock_start_h, self.duration_s)
        return self

    @property
    def calendar(self) -> Calendar:
        """The scenario's clock: turns time fields into ``t_s`` and ``t_s`` into timestamps."""
        return self._calendar

    @property
    def start_datetime(self) -> datetime | None:
        """tz-aware date and time of ``t_s = 0``, or None when the date is unknown."""
        return self._calendar.start

    @property
    def n_ticks(self) -> int:
        """Number of control ticks."""
        return int(round(self.duration_s / self.dt_s))


class GridConfig(StrictModel):
    """The network and its own (non-VPP) load and generation."""

    network: Annotated[str, Field(min_length=1, max_length=4096)] = Field(
        description="a pandapower built-in name (source: pandapower), a SimBench code (source: simbench), or a "
        ".json, .m or .mat file (source: file; a relative path is relative to the scenario file's folder, and a "
        "bare file name found nowhere there is looked up in the project's grids/ folder)"
    )
    source: Literal["pandapower", "simbench", "file"] = Field(
        "pandapower", description="how network is read: pandapower, simbench or file"
    )
    load_profile: series_or_profile("load", PROFILES, ("simbench",)) = Field(
        "residential_mv", description="the net's own loads: a daily profile's name, 'simbench' (the net's own "
        "per-element profiles), or a time-series file {path, column}",
    )
    load_scale: real(ge=0.0, le=1000.0) = Field(1.0, description="multiplier on the net's nominal loads [-]")
    sgen_profile: series_or_profile("sgen", PROFILES, ("simbench",)) = Field(
        "pv_clear_sky", description="the net's static generators: a daily profile's name, 'simbench', or a "
        "time-series file {path, column}",
    )
    simbench_day: whole(ge=1, le=366) | None = Field(
        None, description="day of SimBench's profile year (2016, 366 days) on which the run starts; given, the "
        "net's loads and generators follow its own SimBench profiles unless load_profile/sgen_profile say "
        "otherwise [d]",
    )
    sgen_scale: real(ge=0.0, le=1000.0) = Field(1.0, description="multiplier on the net's nominal generation [-]")
    vm_min_pu: real(gt=0.0, le=2.0) = Field(0.95, description="lower voltage limit for violation counts [pu]")
    vm_max_pu: real(gt=0.0, le=2.0) = Field(1.05, description="upper voltage limit for violation counts [pu]")
    loading_max_percent: real(gt=0.0, le=10_000.0) = Field(100.0, description="branch loading limit [%]")
    power_flow: Flag = Field(True, description="run a power flow every tick")
    solver: Annotated[str, Field(max_length=200)] = Field(
        "lightsim2grid", description="power-flow solver: lightsim2grid (fast; where it cannot take the net, "
        "pandapower's runpp runs instead and the summary says why) or pandapower (runpp, the reference)",
    )

    @model_validator(mode="before")
    @classmethod
    def _network_file(cls, data, info):
        # source: file stores the file's absolute path (vpp.grid.networks.network_file), found relative to the
        # scenario file's folder, so that the scenario runs from any working directory.
        if isinstance(data, dict) and data.get("source") == "file" and isinstance(data.get("network"), str):
            try:
                path = network_file(data["network"], (info.context or {}).get("base_dir"))
            except NetworkError as exc:
                raise field_errors("GridConfig", [(("network",), str(exc), None)]) from None
            data = {**data, "network": str(path)}
        return data

    @field_validator("solver")
    @classmethod
    def _solver(cls, v: str) -> str:
        return _one_of(v, SOLVERS, "solver")

    @model_validator(mode="after")
    def _check(self):
        if self.source == "pandapower":
            try:
                check_network_name(self.network, self.source)
            except ValueError as exc:
                raise field_errors("GridConfig", [(("network",), str(exc), None)]) from None
        if self.vm_min_pu >= self.vm_max_pu:
            raise ValueError(f"vm_min_pu ({self.vm_min_pu}) must be below vm_max_pu ({self.vm_max_pu})")
        uses_simbench = [k for k in ("load_profile", "sgen_profile") if getattr(self, k) == "simbench"]
        if uses_simbench and self.simbench_day is None:
            raise ValueError(f"{' and '.join(uses_simbench)} 'simbench' needs simbench_day (1..366), the day of "
                             "SimBench's profile year on which the run starts")
        return self

    @model_validator(mode="before")
    @classmethod
    def _simbench_default(cls, data):
        # simbench_day opts in to the net's own profiles: they become the default of both profiles.
        if isinstance(data, dict) and data.get("simbench_day") is not None:
            data = {"load_profile": "simbench", "sgen_profile": "simbench", **data}
        return data


class IntervalConfig(StrictModel):
    """One interval of a signal (OpenADR's interval): how long it lasts and the signal's value during it.

    Intervals follow each other without gaps from the event's start; ``start``
    is optional and, given, must be where the previous interval ends (the
    event's start for the first).
    """

    duration: duration_type(gt=0.0, le=MAX_DURATION_S) = Field(description="length [s] or ISO 8601 duration ('PT1H')")
    value: real(ge=-MAX_CALL_KW, le=MAX_CALL_KW) = Field(description="the signal's value, in the signal's unit")
    start: Instant | None = Field(None, description="optional: when the interval starts (checked for contiguity)" + _WHEN)


class SignalConfig(StrictModel):
    """One signal of an event, with its intervals (OpenADR's eiEventSignal).

    * ``delta_kw``: the requested change [kW], a magnitude (>= 0) signed by the event's ``direction``;
    * ``level``: OpenADR simple levels 0-3; level k requests ``level_fractions[k]`` x ``p_kw``
      (default fractions 0, 1/3, 2/3, 1: :data:`LEVEL_FRACTIONS`);
    * ``setpoint_kw``: an absolute target of the targets' power [kW] (load convention): a cap for a
      reduce event, a floor for an increase event;
    * ``price_cny_per_kwh``: a price [CNY/kWh]; requests no power (kept for strategies).
    """

    type: Literal[SIGNALS] = Field(description="delta_kw, setpoint_kw, level or price_cny_per_kwh")
    intervals: Annotated[list[IntervalConfig], Field(min_length=1, max_length=MAX_INTERVALS)] = Field(
        description="the signal's intervals, back to back from the event's start (each a duration [s] and a value)"
    )
    p_kw: real(gt=0.0, le=MAX_CALL_KW) | None = Field(None, description="level signals: the change at full level [kW]")
    p_mw: real(gt=0.0, le=MAX_CALL_KW / 1000.0) | None = Field(None, description="level signals: the change at full level [MW]")
    level_fractions: Annotated[list[real(ge=0.0, le=1.0)], Field(min_length=4, max_length=4)] | None = Field(
        None, description="level signals: share of p_kw requested at levels 0, 1, 2, 3 [-]; default 0, 1/3, 2/3, 1"
    )

    @model_validator(mode="after")
    def _check(self):
        errors = []
        if self.type == "level":
            if (self.p_kw is None) == (self.p_mw is None):
                errors.append(((), "a level signal needs exactly one of p_kw or p_mw: the change at level 3", None))
            fr = self.fractions
            if fr[0] != 0.0 or any(b < a for a, b in zip(fr, fr[1:])):
                errors.append((("level_fractions",), "must start at 0 (level 0 is normal operation) and never "
                               "decrease", None))
            bad = False
            for k, iv in enumerate(self.intervals):
                if not (float(iv.value).is_integer() and 0 <= iv.value <= 3):
                    errors.append((("intervals", k, "value"), "a level is 0, 1, 2 or 3", iv.value))
                    bad = True
            if not bad and not any(fr[int(iv.value)] > 0.0 for iv in self.intervals):
                errors.append((("intervals",), "every interval is at a level that requests nothing", None))
        else:
            given = [k for k in ("p_kw", "p_mw", "level_fractions") if getattr(self, k) is not None]
            if given:
                errors.append(((), f"{' and '.join(given)} belong to a level signal; a {self.type} signal's interval "
                               "values carry its amount", None))
            if self.type == "delta_kw":
                for k, iv in enumerate(self.intervals):
                    if iv.value < 0.0:
                        errors.append((("intervals", k, "value"), "a delta_kw value is a magnitude >= 0 [kW]; the "
                                       "event's direction gives its sign", iv.value))
                if all(iv.value == 0.0 for iv in self.intervals):
                    errors.append((("intervals",), "every value is 0: the signal requests nothing", None))
            elif self.type == "price_cny_per_kwh":
                for k, iv in enumerate(self.intervals):
                    if abs(iv.value) > MAX_PRICE_CNY_PER_KWH:
                        errors.append((("intervals", k, "value"), f"a price must lie in [-{MAX_PRICE_CNY_PER_KWH:g}, "
                                       f"{MAX_PRICE_CNY_PER_KWH:g}] CNY/kWh", iv.value))
        if errors:
            raise field_errors("SignalConfig", errors)
        return self

    @property
    def fractions(self) -> tuple[float, ...]:
        """Share of ``p_kw`` at levels 0-3 (level signals)."""
        return tuple(self.level_fractions) if self.level_fractions is not None else LEVEL_FRACTIONS

    def values(self) -> list[float]:
        """Each interval's value in the signal's unit, levels converted to kW."""
        if self.type == "level":
            p_kw = self.p_kw if self.p_kw is not None else self.p_mw * 1000.0
            return [self.fractions[int(iv.value)] * p_kw for iv in self.intervals]
        return [float(iv.value) for iv in self.intervals]


def _check_signals(signals: list[SignalConfig] | None) -> list[tuple]:
    """At most one power signal and one price signal."""
    if not signals:
        return []
    power = [s.type for s in signals if s.type in POWER_SIGNALS]
    price = [s.type for s in signals if s.type not in POWER_SIGNALS]
    if len(power) > 1 or len(price) > 1:
        return [(("signals",), "give at most one power signal (delta_kw, setpoint_kw or level) and one "
                 f"price_cny_per_kwh signal; got {', '.join(s.type for s in signals)}", None)]
    return []


class TargetsConfig(StrictModel):
    """Which devices an event targets (OpenADR's eiTarget); each kind narrows the others (a device must match all).

    Within one kind, any listed name matches. Nothing given: the whole VPP.
    """

    buses: Annotated[list[BusRef], Field(min_length=1, max_length=100_000)] | None = Field(
        None, description="target buses, by index or name"
    )
    operators: Annotated[list[Name], Field(min_length=1, max_length=MAX_FLEETS)] | None = Field(
        None, description="target operators (names among the fleets' operators)"
    )
    fleets: Annotated[list[Name], Field(min_length=1, max_length=MAX_FLEETS)] | None = Field(
        None, description="target device groups: fleet names"
    )


_END_KEYS = ("end_s", "end", "duration")


class ModificationConfig(StrictModel):
    """A later version of an event: announced ``at``, with a higher ``modification`` number and what changes.

    Not given: unchanged. A new end without new signals cuts or stretches the
    signals' intervals to it (intervals after it are dropped, the one holding
    it is cut, or the last one runs on to it). ``cancelled: true`` ends the
    event from ``at`` and changes nothing else; nothing may follow it. Start,
    direction, targets and tier do not change.
    """

    at: Instant = Field(description="when this version is announced" + _WHEN)
    modification: whole(ge=1, le=2**31 - 1) = Field(description="modification number, above the previous version's [-]")
    end_s: Instant | None = Field(None, description="new end of the active period" + _WHEN)
    end: Instant | None = Field(None, description="new end of the active period" + _WHEN)
    duration: duration_type(gt=0.0, le=MAX_DURATION_S) | None = Field(None, description="new length of the active period [s] or an ISO 8601 duration")
    signals: Annotated[list[SignalConfig], Field(min_length=1, max_length=4)] | None = Field(
        None, description="new signals (replacing every signal)")
    p_kw: real(gt=0.0, le=MAX_CALL_KW) | None = Field(None, description="new change [kW] (events given by p_kw/p_mw)")
    p_mw: real(gt=0.0, le=MAX_CALL_KW / 1000.0) | None = Field(None, description="new change [MW]")
    ramp_up_s: duration_type(ge=0.0, le=MAX_DURATION_S) | None = Field(None, description="new ramp-up [s]")
    recovery_s: duration_type(ge=0.0, le=MAX_DURATION_S) | None = Field(None, description="new recovery window [s]")
    cancelled: Flag = Field(False, description="the event is cancelled from 'at'")

    @model_validator(mode="after")
    def _check(self):
        errors = _check_signals(self.signals)
        changes = [k for k in (*_END_KEYS, "signals", "p_kw", "p_mw", "ramp_up_s", "recovery_s")
                   if getattr(self, k) is not None]
        ends = [k for k in _END_KEYS if getattr(self, k) is not None]
        if len(ends) > 1:
            errors.append(((), f"give at most one of {', '.join(_END_KEYS)}; got {', '.join(ends)}", None))
        if self.p_kw is not None and self.p_mw is not None:
            errors.append(((), "give at most one of p_kw or p_mw", None))
        if self.signals is not None and (self.p_kw is not None or self.p_mw is not None):
            errors.append(((), "give new signals or a new p_kw/p_mw, not both", None))
        if self.cancelled and changes:
            errors.append(((), f"a cancellation changes nothing else; remove {', '.join(changes)}", None))
        if not self.cancelled and not changes:
            errors.append(((), "changes nothing: give what changes (end, duration, signals, p_kw, ramp_up_s, "
                           "recovery_s) or cancelled: true", None))
        if errors:
            raise field_errors("ModificationConfig", errors)
        return self

    @property
    def request_kw(self) -> float | None:
        """New requested change [kW], if given as p_kw/p_mw."""
        return self.p_kw if self.p_kw is not None else None if self.p_mw is None else self.p_mw * 1000.0


class DRCallConfig(StrictModel):
    """A demand-response event modelled on OpenADR 2.0b (see :mod:`vpp.dr`).

    The short form of earlier scenarios stays valid: ``p_kw`` (or ``p_mw``),
    ``start_s``, ``end_s`` are one interval of a ``delta_kw`` signal. Time
    fields take every form of :mod:`vpp.scenario.timefmt`; ``start``/``start_s``,
    ``end``/``end_s`` and ``notification``/``notification_s`` are the same
    fields under two names (give one of each). The active period ends at
    ``end``, or ``start + duration``, or where the signals' intervals end.
    ``notification`` may also be an ISO 8601 duration: that long before the
    start. Once the scenario is validated, every time is in seconds in
    ``start_s``, ``end_s``, ``notification_s`` (and a modification's ``at``,
    ``end_s``); the other names are None.

    Checked against the whole scenario (each an error naming the field):
    start, notification and every modification's ``at`` lie in the run's span
    ``[0, time.duration_s)`` (the end may lie past it: the rest is not
    simulated); the signals' intervals are contiguous and cover the active
    period exactly; ``ramp_up_s`` fits in it; target operators and fleets
    exist; with a ``tier``, the notice (start - notification) is at least the
    tier's ``min_notice_s`` (an error, not a warning: a programme does not
    accept a day-ahead event announced two hours ahead). Target buses are
    checked when the grid is built. A ``setpoint_kw`` event targets the power
    on its buses (or the whole VPP): the platform turns it each tick into the
    change from its operators' offered default power to the setpoint
    (:meth:`vpp.dr.DRCall.as_delta`), and its request is measured against the
    no-call twin, so it needs ``measurement.twin`` and no operator or fleet target.
    """

    id: Name = Field(description="the event's id (OpenADR eventID): names its result columns call.<id>.*")
    modification: whole(ge=0, le=2**31 - 1) = Field(0, description="modification number of this first version [-]")
    direction: Literal["reduce", "increase"] = Field(
        description="reduce: the plant's consumption goes down (or its discharge up); increase: the opposite"
    )
    p_kw: real(gt=0.0, le=MAX_CALL_KW) | None = Field(
        None, description="requested change [kW] (one delta_kw interval over the active period); or give signals"
    )
    p_mw: real(gt=0.0, le=MAX_CALL_KW / 1000.0) | None = Field(
        None, description="requested change [MW]; give p_kw or p_mw, or signals"
    )
    start_s: Instant | None = Field(None, description="start of the active period (same as start)" + _WHEN)
    start: Instant | None = Field(None, description="start of the active period" + _WHEN)
    end_s: Instant | None = Field(None, description="end of the active period (same as end)" + _WHEN)
    end: Instant | None = Field(None, description="end of the active period" + _WHEN)
    duration: duration_type(gt=0.0, le=MAX_DURATION_S) | None = Field(None, description="length of the active period [s]")
    notification_s: Notice | None = Field(None, description="when the event is announced (same as notification)" + _WHEN)
    notification: Notice | None = Field(
        None, description="when the event is announced, or an ISO 8601 duration before start; default: at start" + _WHEN
    )
    ramp_up_s: duration_type(ge=0.0, le=MAX_DURATION_S) = Field(
        0.0, description="the change ramps linearly from 0 at start to full after this long [s]"
    )
    recovery_s: duration_type(ge=0.0, le=MAX_DURATION_S) | None = Field(
        None, description="window after the end in which the rebound is measured [s]; default: the rest of the run"
    )
    buses: Annotated[list[BusRef], Field(min_length=1, max_length=100_000)] | None = Field(
        None, description="target buses, by index or name (or targets.buses); default: the whole VPP"
    )
    targets: TargetsConfig | None = Field(None, description="buses, operators and fleets targeted; default: all")
    signals: Annotated[list[SignalConfig], Field(min_length=1, max_length=4)] | None = Field(
        None, description="signals with intervals: one of delta_kw, setpoint_kw, level, and/or price_cny_per_kwh"
    )
    response_required: Literal[RESPONSE_REQUIRED] = Field(
        "always", description="OpenADR responseRequired: always (the platform opts in or out) or never"
    )
    tier: Annotated[str, Strict(), Field(max_length=200)] | None = Field(
        None, description="programme tier (day_ahead, hour_ahead, minute_level, real_time); its minimum notice applies"
    )
    modifications: Annotated[list[ModificationConfig], Field(max_length=MAX_MODIFICATIONS)] = Field(
        default_factory=list, description="later versions of the event, in order of announcement"
    )

    @field_validator("tier")
    @classmethod
    def _tier(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                get_tier(v)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        return v

    @model_validator(mode="after")
    def _check(self):
        if self.signals is None and (self.p_kw is None) == (self.p_mw is None):
            raise ValueError("give exactly one of p_kw or p_mw" if self.p_kw is not None else
                             "give exactly one of p_kw or p_mw, or signals")
        errors = _check_signals(self.signals)
        if self.signals is not None and (self.p_kw is not None or self.p_mw is not None):
            errors.append(((), "give p_kw/p_mw or signals, not both (a level signal takes its own p_kw)", None))
        for pair in (("start_s", "start"), ("end_s", "end", "duration"), ("notification_s", "notification")):
            given = [k for k in pair if getattr(self, k) is not None]
            if len(given) > 1:
                errors.append(((), f"give one of {' or '.join(pair)}, not {' and '.join(given)}", None))
        if self.start_s is None and self.start is None:
            errors.append(((), "give start (or start_s)", None))
        if self.buses is not None and self.targets is not None and self.targets.buses is not None:
            errors.append(((), "give target buses in buses or in targets.buses, not both", None))
        last = self.modification
        cancelled_at = None
        for k, m in enumerate(self.modifications):
            if cancelled_at is not None:
                errors.append((("modifications", k), f"the event is cancelled by modifications[{cancelled_at}]; "
                               "nothing may follow", None))
                break
            if m.modification <= last:
                errors.append((("modifications", k, "modification"), f"must be higher than the previous version's "
                               f"modification number ({last})", m.modification))
            if (m.p_kw is not None or m.p_mw is not None) and self.signals is not None:
                errors.append((("modifications", k), "the event gives signals: change them with signals, not p_kw",
                               None))
            last = max(last, m.modification)
            if m.cancelled:
                cancelled_at = k
        # Plain seconds can be compared before the calendar places anything (earlier scenarios' messages).
        start, end, notice = self.start_s, self.end_s, self.notification_s
        if isinstance(start, float) and isinstance(end, float) and end <= start:
            errors.append(((), f"end_s ({end}) must be after start_s ({start})", None))
        if isinstance(start, float) and isinstance(notice, float) and notice > start:
            errors.append(((), f"notification_s ({notice}) must not be after start_s ({start})", None))
        if errors:
            raise field_errors("DRCallConfig", errors)
        return self

    @property
    def request_kw(self) -> float | None:
        """Requested change [kW] of the short form (p_kw/p_mw); None when the event gives signals."""
        if self.p_kw is not None:
            return self.p_kw
        return None if self.p_mw is None else self.p_mw * 1000.0

    @property
    def target_buses(self) -> list | None:
        """Target buses (from ``buses`` or ``targets.buses``), or None for every bus."""
        if self.buses is not None:
            return self.buses
        return None if self.targets is None else self.targets.buses


class EventsFile(StrictModel):
    """DR events read from a separate YAML or JSON file (``dr_events_file``), validated like ``dr_calls``.

    :func:`vpp.scenario.load.parse_scenario` reads the file; once the scenario
    is validated, its events are appended to ``dr_calls`` and ``dr_calls``
    here is empty.
    """

    path: Annotated[str, Strict(), Field(min_length=1, max_length=4096)] = Field(description="the file, absolute")
    source: Annotated[str, Strict(), Field(min_length=1, max_length=4096)] = Field(description="the path as given")
    dr_calls: Annotated[list[DRCallConfig], Field(max_length=MAX_DR_CALLS)] = Field(
        default_factory=list, description="the DR events, in the schema of a scenario's dr_calls")


class CommunicationConfig(StrictModel):
    """Messages between agents: one-way latency and loss."""

    latency_s: _TIME_S = Field(0.0, description="one-way message latency [s], at most time.duration_s")
    loss_probability: real(ge=0.0, lt=1.0) = Field(0.0, description="chance a message is lost [-]")


def _device_strategy(v: str) -> str:
    return _one_of(v, ALLOCATORS, "strategy")


_StrategyName = Annotated[str, Field(max_length=200), AfterValidator(_device_strategy)]


class OptimalDispatchConfig(StrictModel):
    """Knobs of the ``optimal`` strategy (:mod:`vpp.dispatch.optimal`)."""

    resolve_every_ticks: whole(ge=1, le=100_000) = Field(
        1, description="keep a plan this many ticks (1: plan anew every tick); a new call or modification, or a "
        "request that differs from the plan's, plans anew [ticks]",
    )
    bucket_s: real(ge=60.0, le=MAX_DURATION_S) = Field(
        3600.0, description="width of the departure buckets that group EV sessions [s]"
    )
    max_horizon_ticks: whole(ge=1, le=10_000) = Field(
        288, description="longest horizon planned at once, call window and recovery window [ticks]"
    )
    reference: Literal["no_call", "state"] = Field(
        "no_call", description="what a request is a change against: no_call, the operator's model of its devices "
        "without the call, from the call's first plan; state, the forecast from the devices' current state "
        "(which drifts as the call moves energy)",
    )
    default_recovery_s: real(ge=0.0, le=MAX_DURATION_S) = Field(
        0.0, description="recovery window held at the no-call level after a call that names none [s]"
    )
    return_s: real(ge=0.0, le=MAX_DURATION_S) = Field(
        14400.0, description="after the recovery window, the energy a call moved returns over this long with the "
        "smallest peak the plan finds (reference no_call; 0: all at once) [s]",
    )
    rebound_penalty_cny_per_kwh: real(ge=0.0, le=1e6) | None = Field(
        None, description="price of rebound in the recovery window, below the shortfall penalty so that delivery "
        "comes first (default 10 x (1 + the largest device cost)) [CNY/kWh]",
    )


class DispatchConfig(StrictModel):
    """How the platform splits a call over operators, and each operator its share over its devices (by name).

    ``strategy`` is every operator's device-level strategy unless
    ``operators`` names another for it; ``platform_strategy`` splits calls
    over operators (``pro_rata`` by offered room, ``merit_order`` by offered
    cost; ``edf``, ``llf`` and ``optimal`` need the devices' state and are
    device-level only). Operator names must be among the fleets' operators
    (checked with the whole scenario).
    """

    strategy: _StrategyName = Field("pro_rata", description="device-level strategy of every operator")
    platform_strategy: Annotated[str, Field(max_length=200)] = Field(
        "pro_rata", description="platform -> operators: pro_rata (offered room) or merit_order (offered cost)"
    )
    operators: Annotated[dict[Name, _StrategyName], Field(max_length=MAX_FLEETS)] = Field(
        default_factory=dict, description="device-level strategy per operator, overriding strategy"
    )
    optimal: OptimalDispatchConfig = OptimalDispatchConfig()

    @field_validator("platform_strategy")
    @classmethod
    def _platform_strategy(cls, v: str) -> str:
        if v in ALLOCATORS and v not in PLATFORM_ALLOCATORS:
            raise ValueError(f"{short(v)} is a device-level strategy (dispatch.strategy or dispatch.operators); "
                             f"the platform splits by one of: {', '.join(sorted(PLATFORM_ALLOCATORS))}")
        return _one_of(v, PLATFORM_ALLOCATORS, "platform strategy")

    def strategy_for(self, operator: str) -> str:
        """The device-level strategy of ``operator``."""
        return self.operators.get(operator, self.strategy)

    def operator_errors(self, operators: list[str]) -> list[tuple[tuple, str, None]]:
        """``(loc, message, None)`` for every name in ``operators`` (the mapping) that no fleet has."""
        shown = ", ".join(operators[:20]) + (", ..." if len(operators) > 20 else "")
        return [(("dispatch", "operators", name), f"unknown operator {short(name)}: no fleet has it; the "
                 f"scenario's operators: {shown}", None) for name in self.operators if name not in operators]


class GridOperatorConfig(StrictModel):
    """The grid operator's own calls: it watches the plant's power flow and calls on the VPP when a limit is crossed."""

    congestion_calls: Flag = Field(
        False, description="raise a reduce call on the buses behind an overloaded line or transformer or an "
        "undervoltage, sized to clear it (needs grid.power_flow)",
    )
    loading_max_percent: real(gt=0.0, le=1000.0) | None = Field(
        None, description="branch loading that triggers a call [%]; default grid.loading_max_percent"
    )
    vm_min_pu: real(gt=0.0, lt=2.0) | None = Field(
        None, description="bus voltage below which a call is raised [pu]; default grid.vm_min_pu"
    )
    horizon_s: _TIME_S = Field(
        0.0, description="also call when the forecast power flow this far ahead shows a violation [s]; 0: react only"
    )
    notice_s: _TIME_S = Field(0.0, description="from detection to the call's start [s]")
    duration_s: real(gt=0.0, le=366 * 86400.0) = Field(3600.0, description="length of a congestion call [s]")
    margin: real(ge=0.0, le=10.0) = Field(0.1, description="extra share requested above the computed need [-]")
    cooldown_s: _TIME_S = Field(0.0, description="wait after a call on an element ends before the next one [s]")
    min_kw: real(ge=0.0, le=MAX_CALL_KW) = Field(1.0, description="needs below this are ignored [kW]")
    reinforce_interval_s: _TIME_S = Field(
        300.0, description="at most one reinforcement of a running call per this interval [s]"
    )
    release_margin: real(ge=0.0, lt=1.0) = Field(
        0.05, description="release a call once its element is this far below the trigger [fraction of it]"
    )
    release_fraction: real(gt=0.0, le=1.0) = Field(
        0.1, description="share of a call's request released per tick once clear [-]"
    )


class MeasurementConfig(StrictModel):
    """How delivery is measured."""

    twin: Flag = Field(
        True,
        description="advance a no-call twin of the plant and measure delivery against it; "
        "off (for benchmarks), delivery is reported as unknown (null)",
    )


class OutputConfig(StrictModel):
    """What a run writes besides the per-tick totals."""

    bus_timeseries: Flag = Field(True, description="write per-bus power and voltage every tick")
    sample_devices: whole(ge=0, le=10_000) = Field(0, description="devices per fleet whose power is recorded [-]")


class PlatformConfig(StrictModel):
    """How the VPP platform answers calls: acceptance, closed-loop tracking, and the devices that ignore it."""

    acceptance: Literal["always", "energy"] = Field(
        "always", description="always: opt in to every call in full; energy: opt in to the share of the call's "
        "energy the plant can deliver over the whole event window (a lookahead of each operator's fleets from "
        "their state at the notice, arrivals as the session table has them: a perfect forecast), opt out below "
        "min_acceptance; a call with response_required: never gets no response, but the same decision",
    )
    min_acceptance: real(ge=0.0, le=1.0) = Field(
        0.5, description="acceptance energy: opt out when the plant can deliver less than this share [-]"
    )
    tracking: Flag = Field(
        False, description="closed loop: each tick the platform corrects every active call for the under-delivery "
        "its (late) telemetry shows, against the reference below; it never reads the twin",
    )
    tracking_reference: Literal["offers", "pre_event"] = Field(
        "offers", description="what delivery is measured against: offers (the operators' offered default power "
        "for the metered tick, minus the request) or pre_event (metered power over the 15 min before the call)",
    )
    tracking_gain: real(gt=0.0, le=2.0) = Field(
        0.5, description="integral gain of the tracking loop: share of the measured error added per telemetry "
        "tick [-]"
    )
    recovery: Literal["none", "release"] = Field(
        "none", description="none: devices return to their default power when a call ends; release: the platform "
        "hands them back gradually, its request stepping down linearly to 0 over the call's recovery_s [s]",
    )
    non_compliance_share: real(ge=0.0, le=1.0) = Field(
        0.0, description="share of devices that ignore setpoints and run at their default power [-], drawn per "
        "device; the platform does not know which",
    )


class OpenADRConfig(StrictModel):
    """How the plant meets an OpenADR 2.0b VTN (``vpp ven`` and ``vpp vtn``; :mod:`vpp.protocols.openadr`)."""

    vens: Literal["platform", "operator"] = Field(
        "platform", description="platform: the whole plant is one VEN; operator: one VEN per operator, named after "
        "it, in the one process (the VTN splits each event among the operators it concerns by their rated capacity "
        "on its target buses)",
    )


class Scenario(StrictModel):
    """A complete, validated, immutable scenario.

    DR events come from ``dr_calls`` and from ``dr_events_file``; once
    validated, every event is in ``dr_calls`` (inline ones first) with its
    times placed on the calendar (see :class:`DRCallConfig`).
    """

    name: Name = Field(description="the scenario's name: the default output directory results/<name>")
    description: Annotated[str, Field(max_length=10_000)] = Field("", description="free text, for people")
    seed: whole(ge=0, le=MAX_SEED) = Field(0, description="seed of the run's one random generator [-]")
    time: TimeConfig = Field(description="simulated horizon [s], control tick [s] and calendar")
    grid: GridConfig = Field(description="the network, its own load and generation, and the limits counted")
    fleets: Annotated[list[FleetConfig], Field(min_length=1, max_length=MAX_FLEETS)] = Field(
        description="the device fleets, each of one kind (ev, basestation, building), told apart by kind")
    dr_calls: Annotated[list[DRCallConfig], Field(max_length=MAX_DR_CALLS)] = Field(
        default_factory=list, description="DR events (OpenADR 2.0b-like), times in seconds or ISO 8601")
    dr_events_file: EventsFile | None = Field(
        None, description="a YAML or JSON file of DR events (a list, or a mapping with the one key dr_calls), "
        "relative to the scenario file's folder; same schema as dr_calls",
    )
    communication: CommunicationConfig = Field(
        CommunicationConfig(), description="messages between agents: latency [s] and loss [-]")
    dispatch: DispatchConfig = Field(DispatchConfig(), description="allocation strategies, by name")
    platform: PlatformConfig = Field(
        PlatformConfig(), description="how the VPP platform accepts and tracks calls")
    output: OutputConfig = Field(OutputConfig(), description="what a run writes besides the per-tick totals")
    openadr: OpenADRConfig = Field(OpenADRConfig(), description="OpenADR: one VEN for the platform or one per operator")
    measurement: MeasurementConfig = Field(MeasurementConfig(), description="how delivery is measured")
    grid_operator: GridOperatorConfig = Field(
        GridOperatorConfig(), description="the grid operator's own congestion calls")
    prices: series_or_profile("price") | None = Field(
        None, description="energy price per tick from a time-series file {path, column} (column "
        "price_cny_per_kwh or price_cny_per_mwh); adds price_cny_per_kwh to the time series and energy costs "
        "to the summary",
    )
    _call_labels: list[str] = PrivateAttr(default_factory=list)

    @field_validator("dr_events_file", mode="before")
    @classmethod
    def _events_file(cls, v):
        if isinstance(v, str):
            raise ValueError("an events file is read by vpp.scenario.parse_scenario or load_scenario, which the "
                             "scenario must go through")
        return v

    @model_validator(mode="after")
    def _check(self):
        # Cross-section checks, all reported together, each at the field it concerns.
        errors = []
        events = [(("dr_calls", i), c) for i, c in enumerate(self.dr_calls)]
        if self.dr_events_file is not None:
            events += [(("dr_events_file", "dr_calls", i), c) for i, c in enumerate(self.dr_events_file.dr_calls)]
        if len(events) > MAX_DR_CALLS:
            errors.append((("dr_events_file",), f"dr_calls and the events file hold {len(events):,} events together; "
                           f"at most {MAX_DR_CALLS:,} are allowed", None))
        for what, key, values in (("fleet names", "fleets", [f.name for f in self.fleets]),
                                  ("DR call ids", "dr_calls", [c.id for _, c in events])):
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                errors.append(((key,), f"{what} must be unique; repeated: {', '.join(dup)}", None))
        duration_s = self.time.duration_s
        resolved = []
        for loc, call in events:
            placed = _EventPlacer(self, loc, call, errors).place()
            resolved.append(placed)
        errors += self.dispatch.operator_errors(list(dict.fromkeys(f.operator for f in self.fleets)))
        if self.communication.latency_s > duration_s:
            errors.append((("communication", "latency_s"),
                           f"must be at most time.duration_s ({duration_s:g})", self.communication.latency_s))
        if errors:
            raise field_errors("Scenario", errors)
        object.__setattr__(self, "dr_calls", resolved)
        if self.dr_events_file is not None:
            object.__setattr__(self, "dr_events_file", self.dr_events_file.model_copy(update={"dr_calls": []}))
        self._call_labels = [_label(loc, self.dr_events_file) for loc, _ in events]
        return self

    @property
    def dr_call_labels(self) -> list[str]:
        """Where each of ``dr_calls`` was written, for messages: ``dr_calls[0]`` or ``<events file>: dr_calls[0]``."""
        labels = self._call_labels
        return labels if len(labels) == len(self.dr_calls) else [f"dr_calls[{i}]" for i in range(len(self.dr_calls))]


def _label(loc: tuple, events_file: EventsFile | None) -> str:
    if loc[0] == "dr_events_file":
        return f"{events_file.source}: dr_calls[{loc[-1]}]"
    return f"dr_calls[{loc[-1]}]"


def _fmt_s(seconds: float) -> str:
    """A duration for messages: ``7200 s (2 h)``."""
    if seconds >= 3600.0:
        return f"{seconds:g} s ({seconds / 3600.0:g} h)"
    if seconds >= 60.0:
        return f"{seconds:g} s ({seconds / 60.0:g} min)"
    return f"{seconds:g} s"


class _EventPlacer:
    """Places one event's times on the calendar and checks what needs the whole scenario.

    Appends ``(loc, message, value)`` errors; :meth:`place` returns the event
    with every time in seconds (or the event unchanged when something failed).
    """

    def __init__(self, scenario: Scenario, loc: tuple, call: DRCallConfig, errors: list):
        self.sc = scenario
        self.cal = scenario.time.calendar
        self.loc = loc
        self.call = call
        self.errors = errors
        self.ok = True

    def error(self, where: tuple, message: str, value=None) -> None:
        self.errors.append((self.loc + where, message, value))
        self.ok = False

    def instant(self, where: tuple, value, past_end: bool = False) -> float | None:
        """Seconds of an instant field, in the span ``[0, duration_s)`` (past it too with ``past_end``)."""
        try:
            t_s = self.cal.instant_s(value)
        except ValueError as exc:
            self.error(where, str(exc))
            return None
        duration_s = self.cal.duration_s
        shown = "" if isinstance(value, float) else f"; {short(value)} is {self.cal.describe(t_s)}"
        if t_s < 0.0:
            self.error(where, f"{short(value)} is {self.cal.describe(t_s)}, before the scenario start "
                       f"({self.cal.describe(0.0)})")
            return None
        if past_end and t_s > MAX_DURATION_S:
            self.error(where, f"must be at most {MAX_DURATION_S:g} s after the start{shown}")
            return None
        if not past_end and t_s >= duration_s:
            self.error(where, f"must be before time.duration_s ({duration_s:g}){shown}",
                       value if isinstance(value, float) else None)
            return None
        return t_s

    def signals(self, where: tuple, signals: list[SignalConfig], start_s: float) -> tuple[list, float | None]:
        """Signals with their intervals' starts checked and dropped; and their common total length [s]."""
        out, total = [], None
        for j, sig in enumerate(signals):
            t = start_s
            for k, iv in enumerate(sig.intervals):
                if iv.start is not None:
                    t0 = self.instant(where + (j, "intervals", k, "start"), iv.start, past_end=True)
                    if t0 is not None and abs(t0 - t) > _TOL_S:
                        what = ("the first interval must start at the event's start" if k == 0 else
                                f"intervals must be contiguous: this one starts {t0 - t:g} s after the previous one "
                                "ends" if t0 > t else f"intervals must not overlap: this one starts {t - t0:g} s "
                                "before the previous one ends")
                        self.error(where + (j, "intervals", k, "start"),
                                   f"{what} (at {self.cal.describe(t)})" if k == 0 else
                                   f"{what} (it ends at {self.cal.describe(t)})")
                t += iv.duration
            length = t - start_s
            if total is not None and abs(length - total) > _TOL_S:
                self.error(where + (j, "intervals"), f"the intervals last {_fmt_s(length)}, but those of "
                           f"signals[0] last {_fmt_s(total)}; every signal must cover the same active period")
            total = length if total is None else total
            out.append(sig.model_copy(update={"intervals": [iv.model_copy(update={"start": None})
                                                            for iv in sig.intervals]}))
        return out, total

    def end(self, where: tuple, holder, start_s: float, total_s: float | None) -> float | None:
        """The end given by ``end_s``/``end``/``duration`` of ``holder``, or by the signals' total; checked."""
        for key in ("end_s", "end"):
            value = getattr(holder, key)
            if value is not None:
                end_s = self.instant(where + (key,), value, past_end=True)
                break
        else:
            if holder.duration is not None:
                key, end_s = "duration", start_s + holder.duration
            elif total_s is not None:
                return start_s + total_s
            else:
                return None
        if end_s is None:
            return None
        if end_s <= start_s:
            start_key = "start_s" if self.call.start_s is not None else "start"
            self.error(where, f"{key} ({end_s}) must be after {start_key} ({start_s})" if key != "duration" else
                       "duration must be > 0")
            return None
        if total_s is not None and abs(start_s + total_s - end_s) > _TOL_S:
            self.error(where + ("signals",), f"the intervals last {_fmt_s(total_s)}, but the active period is "
                       f"{_fmt_s(end_s - start_s)} ({self.cal.describe(start_s)} to {self.cal.describe(end_s)}); "
                       "they must cover it exactly")
        return end_s

    def place(self) -> DRCallConfig:
        c = self.call
        start_key = "start_s" if c.start_s is not None else "start"
        start_s = self.instant((start_key,), getattr(c, start_key))
        if start_s is None:
            return c
        signals, total_s = (None, None) if c.signals is None else self.signals(("signals",), c.signals, start_s)
        end_s = self.end((), c, start_s, total_s)
        if end_s is None:
            if self.ok:
                self.error((), "give end, end_s or duration (or signals, whose intervals end the event)")
            return c
        notice_key = "notification_s" if c.notification_s is not None else "notification"
        notice = getattr(c, notice_key)
        if notice is None:
            notice_s = start_s
        elif isinstance(notice, str) and notice[:1] in ("P", "p"):
            notice_s = start_s - parse_duration_s(notice)
            if notice_s < 0.0:
                self.error((notice_key,), f"{notice!r} before the start is {self.cal.describe(notice_s)}, before the "
                           f"scenario start ({self.cal.describe(0.0)})")
        else:
            notice_s = self.instant((notice_key,), notice)
            if notice_s is not None and notice_s > start_s:
                self.error((), f"{notice_key} ({notice_s}) must not be after {start_key} ({start_s})")
        if c.ramp_up_s > end_s - start_s + _TOL_S:
            self.error(("ramp_up_s",), f"the ramp-up ({_fmt_s(c.ramp_up_s)}) is longer than the active period "
                       f"({_fmt_s(end_s - start_s)})", c.ramp_up_s)
        if c.tier is not None and notice_s is not None:
            tier = TIERS[c.tier]
            if start_s - notice_s < tier.min_notice_s - _TOL_S:
                self.error((notice_key,), f"the notice ({_fmt_s(start_s - notice_s)}) is shorter than tier "
                           f"{c.tier!r} requires (min_notice_s {_fmt_s(tier.min_notice_s)}); announce the event "
                           "earlier or choose another tier")
        self.targets(c)
        mods = self.modifications(c, start_s, end_s, notice_s)
        if not self.ok:
            return c
        return c.model_copy(update={
            "start_s": start_s, "start": None, "end_s": end_s, "end": None, "duration": None,
            "notification_s": notice_s, "notification": None, "signals": signals, "modifications": mods,
        })

    def targets(self, c: DRCallConfig) -> None:
        t = c.targets
        if t is None:
            return
        fleets = self.sc.fleets
        operators = list(dict.fromkeys(f.operator for f in fleets))
        names = [f.name for f in fleets]
        for key, given, valid in (("operators", t.operators, operators), ("fleets", t.fleets, names)):
            for k, name in enumerate(given or ()):
                if name not in valid:
                    shown = ", ".join(valid[:20]) + (", ..." if len(valid) > 20 else "")
                    self.error(("targets", key, k), f"unknown {key[:-1]} {name!r}; the scenario's {key}: {shown}")
        if self.ok and t.operators is not None and t.fleets is not None and not any(
                f.name in t.fleets and f.operator in t.operators for f in fleets):
            self.error(("targets",), "no fleet is both among targets.fleets and owned by one of targets.operators")

    def modifications(self, c: DRCallConfig, start_s: float, end_s: float, notice_s: float | None) -> list:
        out = []
        last_at = notice_s if notice_s is not None else 0.0
        for k, m in enumerate(c.modifications):
            where = ("modifications", k)
            at_s = self.instant(where + ("at",), m.at)
            if at_s is None:
                continue
            if at_s < last_at - _TOL_S:
                self.error(where + ("at",), f"must not be before the previous version's announcement "
                           f"({self.cal.describe(last_at)})")
            last_at = at_s
            signals, total_s = (None, None) if m.signals is None else self.signals(where + ("signals",), m.signals,
                                                                                  start_s)
            new_end = self.end(where, m, start_s, total_s)
            if m.ramp_up_s is not None and m.ramp_up_s > (new_end or end_s) - start_s + _TOL_S:
                self.error(where + ("ramp_up_s",), f"the ramp-up ({_fmt_s(m.ramp_up_s)}) is longer than the active "
                           f"period ({_fmt_s((new_end or end_s) - start_s)})", m.ramp_up_s)
            if new_end is not None:
                end_s = new_end
            out.append(m.model_copy(update={"at": at_s, "end_s": new_end, "end": None, "duration": None,
                                            "signals": signals}))
        return out


# --- JSON Schema for editors ---------------------------------------------------------------------------

SCHEMA_ID = "https://vpp.invalid/scenario.schema.json"  # a name, not an address: nothing is fetched from it
"""``$id`` of the shipped schema (``vpp/data/scenario.schema.json``, written by :func:`scenario_json_schema`)."""

# Fleet fields declared without a description in their kind's module: described here, for the JSON Schema only.
_FLEET_DESCRIPTIONS = {
    "name": "the fleet's name: names its result columns fleet.<name>.*",
    "kind": "device kind: ev, basestation or building",
    "charger": "charger type: a parameter set (vpp list parameters); any field below overrides it",
    "parameters": "a parameter set of the kind (vpp list parameters); any field below overrides it",
    "soc_min": "lowest battery state of charge [-]; default the parameter set's",
    "soc_max": "highest battery state of charge [-]; default the parameter set's",
    "soc_init": "battery state of charge at t_s = 0 [-]",
    "traffic_profile": "daily traffic profile's name (fraction of busy-hour traffic [-]); default the parameter set's",
    "outdoor_profile": "daily outdoor temperature profile's name [degC]",
    "n_devices": "number of devices [-]",
}


def _enum(prop: dict, names) -> None:
    """Put ``names`` as an enum on the string branch of a property (plain, or ``anyOf`` with null or a file)."""
    names = sorted(names)
    branches = prop.get("anyOf")
    if branches is None:
        prop["enum"] = names
        return
    for branch in branches:
        if branch.get("type") == "string":
            branch["enum"] = names


def _registry_enums(defs: dict) -> None:
    # PLATFORM_ALLOCATORS: platform-level strategies, where the dispatch module has them.
    platform = getattr(importlib.import_module("vpp.dispatch.allocation"), "PLATFORM_ALLOCATORS", None)
    table = {
        ("GridConfig", "solver"): SOLVERS,
        ("GridConfig", "load_profile"): [*PROFILES, "simbench"],
        ("GridConfig", "sgen_profile"): [*PROFILES, "simbench"],
        ("DRCallConfig", "tier"): TIERS,
        ("DispatchConfig", "strategy"): ALLOCATORS,
        ("DispatchConfig", "platform_strategy"): platform,
    }
    for spec in KINDS.values():
        title = spec.config.__name__
        table[(title, spec.parameter_field)] = spec.parameter_sets
        for key in defs.get(title, {}).get("properties", {}):
            if key.endswith("_profile"):
                table[(title, key)] = PROFILES
    for (model, key), names in table.items():
        prop = defs.get(model, {}).get("properties", {}).get(key)
        if prop is not None and names is not None:
            _enum(prop, names)
    ops = defs.get("DispatchConfig", {}).get("properties", {}).get("operators") or {}
    for value in [ops.get("additionalProperties"), *(ops.get("patternProperties") or {}).values()]:
        if isinstance(value, dict):
            _enum(value, ALLOCATORS)
    grid = defs["GridConfig"]
    from vpp.grid.networks import PANDAPOWER_NETWORKS, shipped_networks

    builtins = sorted(PANDAPOWER_NETWORKS)
    # Completion offers the built-ins and the shipped files; only source: pandapower (the default) is limited to them.
    grid["properties"]["network"]["examples"] = builtins + sorted(shipped_networks())
    grid["if"] = {"properties": {"source": {"const": "pandapower"}}}
    grid["then"] = {"properties": {"network": {"enum": builtins}}}


def _describe_missing(schema: dict) -> None:
    defs = schema["$defs"]
    for title, node in [("Scenario", schema), *defs.items()]:
        for key, prop in node.get("properties", {}).items():
            given = prop.get("description")
            if given and (key != "n_devices" or "[" in given):
                continue
            if key in _FLEET_DESCRIPTIONS and title.endswith("FleetConfig"):
                prop["description"] = _FLEET_DESCRIPTIONS[key]
            elif "$ref" in prop:  # a section: its model's own summary line
                doc = defs[prop["$ref"].rsplit("/", 1)[-1]].get("description", "")
                if doc:
                    first = doc.strip().split("\n\n")[0].replace("\n", " ")
                    prop["description"] = re.sub(r":\w+:`([^`]*)`|``([^`]*)``", lambda m: m[1] or m[2], first)


def scenario_json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a scenario file, for editors and ``vpp schema``.

    Pydantic's schema of :class:`Scenario`, with: registry-checked names
    (solvers, profiles, tiers, strategies, parameter sets, pandapower networks
    under ``source: pandapower``) as enums; ``dr_events_file`` as the path a
    file gives (the model holds the file once read); and descriptions for
    fleet fields whose kind's module gives none. Validation stays pydantic's:
    the schema helps editors and may accept what a run refuses (bus names,
    times against the calendar).
    """
    schema = Scenario.model_json_schema()
    _registry_enums(schema["$defs"])
    schema["properties"]["dr_events_file"] = {
        "type": "string", "minLength": 1, "maxLength": 4096,
        "description": Scenario.model_fields["dr_events_file"].description,
    }
    schema["$defs"].pop("EventsFile", None)
    _describe_missing(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


EVENTS_SCHEMA_ID = "https://vpp.invalid/events.schema.json"
"""``$id`` of the shipped events-file schema (``vpp/data/events.schema.json``)."""


def events_json_schema() -> dict:
    """The JSON Schema of a DR events file (``dr_events_file``): a list of events, or a mapping ``{dr_calls: [...]}``.

    The events are :class:`DRCallConfig`, described as in :func:`scenario_json_schema`.
    """
    defs = scenario_json_schema()["$defs"]
    calls = {"type": "array", "items": {"$ref": "#/$defs/DRCallConfig"}, "maxItems": MAX_DR_CALLS}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": EVENTS_SCHEMA_ID,
        "title": "DR events file",
        "description": "DR events for a scenario's dr_events_file, in the schema of a scenario's dr_calls",
        "anyOf": [calls, {"type": "object", "additionalProperties": False, "required": ["dr_calls"],
                          "properties": {"dr_calls": {**calls, "description": "the DR events"}}}],
        "$defs": defs,
    }
