"""Scenario configuration shared by every device kind: the strict base model, value types and common fleet fields.

Each kind's module defines its own configuration model on :class:`FleetConfigBase`
(with ``kind: Literal[...]`` as the discriminator) next to its physics, so that
a new kind is one module, its parameter set and one registration in
:mod:`vpp.fleets.registry`. The scenario schema builds its fleet union from
that registry.

Every number in a scenario is finite and bounded: :func:`real` and
:func:`whole` build the field types, refuse booleans (``n_devices: true`` is
not 1), strings and non-finite values, and say the allowed range in their
error message. The upper bounds are generous sanity limits (a single device
of 100 MW, a horizon of 366 days), not physics: they exist so that a typo
such as ``1e300`` fails at validation instead of deep inside a run.
"""

from __future__ import annotations

import math
import zoneinfo
from datetime import date
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, Strict, TypeAdapter, ValidationError, WrapValidator, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "StrictModel",
    "FleetConfigBase",
    "real",
    "whole",
    "Fraction",
    "Efficiency",
    "Flag",
    "Name",
    "NAME_RULE",
    "BusIndex",
    "BusRef",
    "BusSelection",
    "MAX_DEVICES_PER_FLEET",
    "MAX_DEVICE_KW",
    "MAX_DEVICE_KWH",
    "MAX_HOURS",
    "MAX_COST_CNY_PER_KWH",
    "MAX_BUS_LABEL",
    "field_errors",
    "one_of",
    "short",
    "SERIES_UNITS",
    "SeriesFile",
    "series_or_profile",
    "series_unit",
    "PathText",
    "resolve_path",
    "check_timezone",
]

# --- sanity limits ---------------------------------------------------------------------------------
MAX_DEVICES_PER_FLEET = 100_000_000  # devices in one fleet [-]; memory is checked separately, per machine
MAX_DEVICE_KW = 1e5  # any power rating of a single device [kW] (100 MW)
MAX_DEVICE_KWH = 1e6  # any energy of a single device [kWh] (1 GWh)
MAX_HOURS = 366.0 * 24.0  # any duration given in hours [h]
MAX_COST_CNY_PER_KWH = 1e6  # dispatch cost [CNY/kWh]
MAX_BUS_LABEL = 2**63 - 1  # pandapower bus labels are int64
MAX_BUSES_LISTED = 100_000  # bus labels in one list [-]

_ECHO_CHARS = 80


def short(value: Any, limit: int = _ECHO_CHARS) -> str:
    """``repr(value)`` cut to at most ``limit`` characters (ending in '…'), for echoing user input safely."""
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # never build the repr of a huge string
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
    if isinstance(value, (dict, list, tuple)) and len(value) > limit:
        return f"<a {type(value).__name__} of {len(value)} items>"
    try:
        text = repr(value)
    except Exception:  # an object whose repr fails must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt(x: float) -> str:
    if isinstance(x, int):
        return str(x)
    x = float(x)
    if x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return f"{x:g}"


def _range_text(ge, gt, le, lt) -> str:
    lo = f"[{_fmt(ge)}" if ge is not None else f"({_fmt(gt)}" if gt is not None else "(-inf"
    hi = f"{_fmt(le)}]" if le is not None else f"{_fmt(lt)})" if lt is not None else "inf)"
    return f"{lo}, {hi}"


def real(*, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None):
    """A finite float field type in the given range; integers are accepted, booleans and strings are not.

    Errors read ``must be a finite number in (0, 100000]``.
    """
    allowed = _range_text(ge, gt, le, lt)

    def check(value, handler):
        if isinstance(value, bool):
            raise PydanticCustomError("number_type", "must be a number in {allowed}, not true/false", {"allowed": allowed})
        if not isinstance(value, (int, float)):
            raise PydanticCustomError("number_type", "must be a number in {allowed}", {"allowed": allowed})
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(
                "number_range", "must be a finite number in {allowed}", {"allowed": allowed}
            ) from None

    return Annotated[float, Strict(), Field(ge=ge, gt=gt, le=le, lt=lt, allow_inf_nan=False), WrapValidator(check)]


def whole(*, ge: int | None = None, le: int | None = None):
    """An integer field type in ``[ge, le]``; whole floats (``3.0``) are accepted, booleans and strings are not."""
    allowed = _range_text(ge, None, le, None)

    def check(value, handler):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            extra = ", not true/false" if isinstance(value, bool) else ""
            raise PydanticCustomError(
                "integer_type", "must be a whole number in {allowed}" + extra, {"allowed": allowed}
            )
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("integer_range", "must be a whole number in {allowed}", {"allowed": allowed}) from None

    return Annotated[int, Strict(), Field(ge=ge, le=le), WrapValidator(check)]


def _flag(value, handler):
    if not isinstance(value, bool):
        raise PydanticCustomError("bool_type", "must be true or false")
    return handler(value)


Flag = Annotated[bool, Strict(), WrapValidator(_flag)]
"""A boolean field: ``true`` or ``false`` only (not 1, 0, "yes")."""

Fraction = real(ge=0.0, le=1.0)
Efficiency = real(gt=0.0, le=1.0)

NAME_RULE = "1 to 64 characters, each a letter, digit, '_' or '-' (no dots, spaces or slashes)"


def _name(value, handler):
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError("name", "must be " + NAME_RULE) from None


# Names become result keys and file-name parts: letters, digits, '_' and '-' only (no dots, no paths).
Name = Annotated[str, Strict(), Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$"), WrapValidator(_name)]

BusIndex = whole(ge=0, le=MAX_BUS_LABEL)
MAX_BUS_NAME_CHARS = 200
_BUS_INDEX = TypeAdapter(BusIndex)


def _bus_ref(value, handler):
    # A string is a bus name, matched against net.bus.name when the grid is built (vpp.grid.networks.bus_labels);
    # anything else must be an index, with the index's own error message.
    if isinstance(value, str):
        if 1 <= len(value) <= MAX_BUS_NAME_CHARS:
            return value
        raise PydanticCustomError("bus_name", "a bus name must be 1 to {n} characters", {"n": MAX_BUS_NAME_CHARS})
    return _BUS_INDEX.validate_python(value)


BusRef = Annotated[Union[int, str], WrapValidator(_bus_ref)]
"""A bus: its index (pandapower's label, an integer) or its name (a string, ``net.bus.name``)."""

_BUS_LIST = TypeAdapter(Annotated[list[BusRef], Field(min_length=1, max_length=MAX_BUSES_LISTED)])
_BUS_RULE = f"'load_buses', 'all', or a list of 1 to {MAX_BUSES_LISTED:,} bus indices or names"


def _bus_selection(value, handler):
    # One message per mistake: a plain union would report every member's complaint.
    if isinstance(value, str):
        if value in ("load_buses", "all"):
            return value
        raise PydanticCustomError("bus_selection", "must be " + _BUS_RULE)
    if isinstance(value, list):
        return _BUS_LIST.validate_python(value)
    raise PydanticCustomError("bus_selection", "must be " + _BUS_RULE)


BusSelection = Annotated[
    Union[Literal["load_buses", "all"], list[Union[int, str]]], WrapValidator(_bus_selection)
]


def field_errors(title: str, errors: list[tuple[tuple, str, Any]]) -> ValidationError:
    """A ValidationError of ``(loc, message, value)`` errors, to raise from a model validator.

    Pydantic adds the validator's own location in front of each ``loc``, so
    cross-field checks report at the field they concern, all at once.
    ``value`` is echoed as ``(got ...)`` unless it is None.
    """
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(type=PydanticCustomError("cross_field", "{message}", {"message": message}), loc=loc,
                             input=value)
            for loc, message, value in errors
        ],
    )


def one_of(value: str, registry, what: str) -> str:
    """``value`` if it is a key of ``registry``; otherwise a ValueError listing the allowed names."""
    if value not in registry:
        raise ValueError(f"unknown {what} {short(value)}; allowed: {', '.join(sorted(registry))}")
    return value


class StrictModel(BaseModel):
    """Base of every scenario section: frozen, and unknown keys are an error.

    Unknown keys are reported by pydantic (``extra="forbid"``) together with
    every other error of the section; the scenario loader adds the allowed keys
    to that message.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class FleetConfigBase(StrictModel):
    """Fields every fleet has: identity, owner, location, dispatch cost."""

    name: Name
    operator: Name = Field(description="the operator agent that owns this fleet")
    n_devices: whole(ge=0, le=MAX_DEVICES_PER_FLEET) = Field(description="number of devices")
    buses: BusSelection = Field(
        "load_buses",
        description="where devices sit: 'load_buses' (in proportion to the net's load), 'all', or a list of bus "
        "indices or names",
    )
    cost_cny_per_kwh: real(ge=0.0, le=MAX_COST_CNY_PER_KWH) = Field(
        0.0, description="dispatch cost of the fleet's flexibility [CNY/kWh]"
    )

    # Per-device memory of a fleet during a run [B]: parameters, state and work buffers for the
    # plant and the no-call twin. Kinds measure theirs (tests/scenario/test_limits.py checks them);
    # the default assumes about 60 float arrays.
    bytes_per_device: ClassVar[int] = 500

    def estimate_bytes(self, duration_s: float, clock_start_h: float) -> int:
        """Peak memory this fleet needs during a run of ``duration_s`` [B] (a rough upper estimate)."""
        return self.n_devices * self.bytes_per_device


# --- time series from files ------------------------------------------------------------------------

# What a time-series column may hold, per use: the column's name ends with one of these unit names
# (``load_factor``, ``feeder_p_mw``, ``roof_pv_fraction``), which says how its values are read.
SERIES_UNITS: dict[str, dict[str, str]] = {
    "load": {
        "load_factor": "multiplier on the net's nominal loads [-]",
        "p_mw": "total background load of the net [MW]",
        "p_kw": "total background load of the net [kW]",
    },
    "sgen": {
        "sgen_factor": "multiplier on the net's nominal static generation [-]",
        "pv_fraction": "PV AC output per rated power [kW/kWp], a multiplier on the nominal generation",
        "irradiance_w_per_m2": "irradiance [W/m^2]; output per rated power = G / 1000 W/m^2 x performance ratio",
        "p_mw": "total static generation of the net, positive [MW]",
        "p_kw": "total static generation of the net, positive [kW]",
    },
    "irradiance": {
        "pv_fraction": "PV AC output per rated power [kW/kWp]",
        "irradiance_w_per_m2": "irradiance [W/m^2]; output per rated power = G / 1000 W/m^2 x performance ratio",
    },
    "price": {
        "price_cny_per_kwh": "energy price [CNY/kWh]",
        "price_cny_per_mwh": "energy price [CNY/MWh]",
    },
}

MAX_PATH_CHARS = 4096


def series_unit(column: str, slot: str) -> str | None:
    """The unit name ``column`` ends with among those allowed for ``slot`` (longest match), or None."""
    for unit in sorted(SERIES_UNITS[slot], key=len, reverse=True):
        if column == unit or column.endswith("_" + unit):
            return unit
    return None


def resolve_path(value: str, info) -> str:
    """A relative path joined to the validation context's ``base_dir`` (the scenario file's folder), if any."""
    base = (info.context or {}).get("base_dir") if info is not None else None
    p = Path(value)
    if base is not None and not p.is_absolute():
        p = Path(base).absolute() / p
    return str(p)


def check_timezone(value: str | None) -> str | None:
    """``value`` if it names an IANA time zone (or is None); otherwise a ValueError saying what is allowed."""
    if value is None:
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {short(value)}; give an IANA name such as Asia/Shanghai or UTC") from None
    return value


PathText = Annotated[str, Strict(), Field(min_length=1, max_length=MAX_PATH_CHARS)]


class SeriesFile(StrictModel):
    """A time series in a CSV or Parquet file: one time column and one value column.

    The time column holds seconds since the scenario start (a name ending in
    ``_s``, e.g. ``t_s``) or timestamps (ISO 8601, e.g. ``2024-07-15T18:00``).
    By default it is ``t_s`` or ``time``, whichever the file has. Timestamps
    are placed on the scenario's clock by ``day``: ``t_s = 0`` is that day at
    ``time.clock_start_h`` (default: the day of the file's first timestamp).
    Timestamps with a UTC offset need ``timezone``, the scenario clock's zone.
    A relative ``path`` is relative to the scenario file's folder. The value
    column's name ends with its unit (``load_factor``, ``p_mw``, ...).
    """

    path: PathText = Field(description="CSV (.csv) or Parquet (.parquet, .pq) file")
    column: Annotated[str, Strict(), Field(min_length=1, max_length=200)] = Field(
        description="value column; its name ends with its unit"
    )
    time_column: Annotated[str, Strict(), Field(min_length=1, max_length=200)] | None = Field(
        None, description="time column: seconds since the start if its name ends in _s, else timestamps; "
        "default t_s or time"
    )
    day: date | None = Field(None, description="calendar day of t_s = 0 (at time.clock_start_h) for timestamps")
    timezone: Annotated[str, Strict(), Field(max_length=100)] | None = Field(
        None, description="IANA zone of the scenario clock, for timestamps with a UTC offset"
    )

    @field_validator("path")
    @classmethod
    def _path(cls, v: str, info) -> str:
        return resolve_path(v, info)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return check_timezone(v)


def series_or_profile(slot: str, profiles=None, extra: tuple[str, ...] = ()):
    """A field type taking a profile name (a key of ``profiles``, or one of ``extra``) or a :class:`SeriesFile`.

    The series' value column must end with a unit allowed for ``slot``
    (:data:`SERIES_UNITS`). With ``profiles=None`` only a file is accepted.
    """
    units = SERIES_UNITS[slot]
    names = sorted(profiles or ()) + list(extra)

    def check(value, handler, info):
        if isinstance(value, str) and profiles is not None:
            if value in names:
                return value
            raise PydanticCustomError("profile_name", "{msg}", {
                "msg": f"unknown profile {short(value)}; allowed: {', '.join(names)}, "
                "or a mapping {path, column} naming a time-series file"})
        if isinstance(value, SeriesFile):
            spec = value
        elif isinstance(value, dict):
            spec = SeriesFile.model_validate(value, context=info.context)
        else:
            what = "a profile name or a mapping {path, column}" if profiles is not None else "a mapping {path, column}"
            raise PydanticCustomError("series_type", "{msg}", {"msg": "must be " + what})
        if series_unit(spec.column, slot) is None:
            raise PydanticCustomError(
                "series_unit", "column {column} does not end with a unit; allowed: {allowed}",
                {"column": short(spec.column), "allowed": ", ".join(units)},
            )
        return spec

    return Annotated[Union[str, SeriesFile], WrapValidator(check)] if profiles is not None else Annotated[
        SeriesFile, WrapValidator(check)]
