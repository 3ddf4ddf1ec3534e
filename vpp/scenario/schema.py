"""The scenario schema: pydantic models, unknown keys forbidden, units in field names.

A scenario is validated in full before any work starts. Names that refer to
registries (charger types, parameter sets, profiles, networks, allocation
strategies) are checked here against those registries; facts that need the
grid itself (does bus 42 exist?) are checked when the plant is built, still
before the first tick.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vpp.dispatch.allocation import ALLOCATORS
from vpp.fleets.parameters import BASESTATION_PARAMETERS, BUILDING_PARAMETERS, CHARGER_PARAMETERS
from vpp.grid.networks import NETWORK_SOURCES, PANDAPOWER_NETWORKS
from vpp.profiles import PROFILES

__all__ = [
    "Scenario",
    "TimeConfig",
    "GridConfig",
    "EVFleetConfig",
    "BaseStationFleetConfig",
    "BuildingFleetConfig",
    "FleetConfig",
    "DRCallConfig",
    "CommunicationConfig",
    "DispatchConfig",
    "OutputConfig",
]

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]
Efficiency = Annotated[float, Field(gt=0.0, le=1.0)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


def _one_of(value: str, registry, what: str) -> str:
    if value not in registry:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(sorted(registry))}")
    return value


class StrictModel(BaseModel):
    """Base of every scenario section: frozen, and unknown keys are an error naming the allowed ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_keys(cls, data):
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in data if k not in cls.model_fields)
            if unknown:
                raise ValueError(
                    f"unknown key {', '.join(map(repr, unknown))}; allowed keys: {', '.join(cls.model_fields)}"
                )
        return data


class TimeConfig(StrictModel):
    """Simulated horizon and control tick."""

    clock_start_h: float = Field(0.0, ge=0.0, lt=24.0, description="clock hour of day at t_s = 0 [h]")
    duration_s: PositiveFloat = Field(description="simulated horizon [s]")
    dt_s: float = Field(60.0, ge=1.0, le=900.0, description="control tick [s], 1 s to 15 min")

    @model_validator(mode="after")
    def _whole_ticks(self):
        n = self.duration_s / self.dt_s
        if abs(n - round(n)) > 1e-9 or round(n) < 1:
            raise ValueError(f"duration_s ({self.duration_s}) must be a whole number (>= 1) of dt_s ({self.dt_s})")
        return self

    @property
    def n_ticks(self) -> int:
        """Number of control ticks."""
        return int(round(self.duration_s / self.dt_s))


class GridConfig(StrictModel):
    """The network and its own (non-VPP) load and generation."""

    network: str = Field(description="pandapower built-in name, or a SimBench code with source: simbench")
    source: Literal["pandapower", "simbench"] = "pandapower"
    load_profile: str = Field("residential_mv", description="daily shape of the net's own loads")
    load_scale: NonNegativeFloat = Field(1.0, description="multiplier on the net's nominal loads [-]")
    sgen_profile: str = Field("pv_clear_sky", description="daily shape of the net's static generators")
    sgen_scale: NonNegativeFloat = Field(1.0, description="multiplier on the net's nominal generation [-]")
    vm_min_pu: PositiveFloat = Field(0.95, description="lower voltage limit for violation counts [pu]")
    vm_max_pu: PositiveFloat = Field(1.05, description="upper voltage limit for violation counts [pu]")
    loading_max_percent: PositiveFloat = Field(100.0, description="branch loading limit [%]")
    power_flow: bool = Field(True, description="run a power flow every tick")

    @model_validator(mode="after")
    def _check(self):
        if self.source == "pandapower":
            _one_of(self.network, PANDAPOWER_NETWORKS, f"network (source: pandapower; sources: {', '.join(NETWORK_SOURCES)})")
        if self.vm_min_pu >= self.vm_max_pu:
            raise ValueError(f"vm_min_pu ({self.vm_min_pu}) must be below vm_max_pu ({self.vm_max_pu})")
        return self

    @field_validator("load_profile", "sgen_profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        return _one_of(v, PROFILES, "profile")


BusSelection = Union[Literal["load_buses", "all"], Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]]


class FleetCommon(StrictModel):
    """Fields every fleet has: identity, owner, location, dispatch cost."""

    name: Name
    operator: Name = Field(description="the operator agent that owns this fleet")
    n_devices: int = Field(ge=0, description="number of devices")
    buses: BusSelection = Field(
        "load_buses",
        description="where devices sit: 'load_buses' (in proportion to the net's load), 'all', or bus indices",
    )
    cost_cny_per_kwh: NonNegativeFloat = Field(0.0, description="dispatch cost of the fleet's flexibility [CNY/kWh]")


class EVFleetConfig(FleetCommon):
    """Chargers of one type (``charger`` names a parameter set; any field below overrides it)."""

    kind: Literal["ev"]
    charger: str = "ac_pile"
    p_rated_kw: PositiveFloat | None = None
    eta: Efficiency | None = None
    sessions_per_day: NonNegativeFloat | None = None
    dwell_mean_h: PositiveFloat | None = None
    e_need_mean_kwh: PositiveFloat | None = None
    v2g_share: Fraction = Field(0.0, description="share of chargers that can discharge (V2G) [-]")
    soc_v2g_min: Fraction = Field(0.3, description="V2G never discharges a vehicle below this SoC [-]")

    @field_validator("charger")
    @classmethod
    def _charger(cls, v: str) -> str:
        return _one_of(v, CHARGER_PARAMETERS, "charger")


class BaseStationFleetConfig(FleetCommon):
    """5G base-station sites (``parameters`` names a set; any field below overrides it)."""

    kind: Literal["basestation"]
    parameters: str = "5g_macro"
    p_idle_kw: PositiveFloat | None = None
    p_busy_kw: PositiveFloat | None = None
    cap_kwh: PositiveFloat | None = None
    p_batt_max_kw: PositiveFloat | None = None
    eta: Efficiency | None = None
    backup_h: NonNegativeFloat | None = None
    soc_min: Fraction | None = None
    soc_max: Fraction | None = None
    soc_init: Fraction = Field(1.0, description="battery state of charge at t_s = 0 [-]")
    traffic_profile: str | None = None
    traffic_spread: Fraction = Field(0.15, description="+/- spread of per-site traffic around the profile [-]")

    @field_validator("parameters")
    @classmethod
    def _params(cls, v: str) -> str:
        return _one_of(v, BASESTATION_PARAMETERS, "parameters")

    @field_validator("traffic_profile")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        return None if v is None else _one_of(v, PROFILES, "profile")

    @model_validator(mode="after")
    def _check(self):
        base = BASESTATION_PARAMETERS[self.parameters]
        soc_min = base.soc_min if self.soc_min is None else self.soc_min
        soc_max = base.soc_max if self.soc_max is None else self.soc_max
        if soc_min >= soc_max:
            raise ValueError(f"soc_min ({soc_min}) must be below soc_max ({soc_max})")
        p_idle = base.p_idle_kw if self.p_idle_kw is None else self.p_idle_kw
        p_busy = base.p_busy_kw if self.p_busy_kw is None else self.p_busy_kw
        if p_idle > p_busy:
            raise ValueError(f"p_idle_kw ({p_idle}) must not exceed p_busy_kw ({p_busy})")
        return self


class BuildingFleetConfig(FleetCommon):
    """Commercial buildings (``parameters`` names a set; any field below overrides it)."""

    kind: Literal["building"]
    parameters: str = "office_mid"
    p_base_kw: PositiveFloat | None = None
    p_hvac_max_kw: NonNegativeFloat | None = None
    cop: PositiveFloat | None = None
    r_k_per_kw: PositiveFloat | None = None
    c_kwh_per_k: PositiveFloat | None = None
    t_set_c: float | None = None
    t_min_c: float | None = None
    t_max_c: float | None = None
    pv_share: Fraction = Field(0.0, description="share of buildings with PV [-]")
    pv_kwp: NonNegativeFloat | None = None
    battery_share: Fraction = Field(0.0, description="share of buildings with a battery [-]")
    batt_cap_kwh: PositiveFloat | None = None
    p_batt_max_kw: PositiveFloat | None = None
    soc_min: Fraction = 0.1
    soc_max: Fraction = 0.95
    soc_init: Fraction = 0.6
    size_spread: Fraction = Field(0.3, description="+/- spread of building size around the parameter set [-]")
    outdoor_profile: str = "shenzhen_summer_temp_c"
    irradiance_profile: str = "pv_clear_sky"

    @field_validator("parameters")
    @classmethod
    def _params(cls, v: str) -> str:
        return _one_of(v, BUILDING_PARAMETERS, "parameters")

    @field_validator("outdoor_profile", "irradiance_profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        return _one_of(v, PROFILES, "profile")

    @model_validator(mode="after")
    def _check(self):
        base = BUILDING_PARAMETERS[self.parameters]
        t_min = base.t_min_c if self.t_min_c is None else self.t_min_c
        t_set = base.t_set_c if self.t_set_c is None else self.t_set_c
        t_max = base.t_max_c if self.t_max_c is None else self.t_max_c
        if not t_min <= t_set <= t_max or t_min >= t_max:
            raise ValueError(f"need t_min_c <= t_set_c <= t_max_c with t_min_c < t_max_c; got {t_min}, {t_set}, {t_max}")
        if self.soc_min >= self.soc_max:
            raise ValueError(f"soc_min ({self.soc_min}) must be below soc_max ({self.soc_max})")
        if not self.soc_min <= self.soc_init <= self.soc_max:
            raise ValueError(f"soc_init ({self.soc_init}) must lie in [soc_min, soc_max] = [{self.soc_min}, {self.soc_max}]")
        return self


FleetConfig = Annotated[
    Union[EVFleetConfig, BaseStationFleetConfig, BuildingFleetConfig], Field(discriminator="kind")
]


class DRCallConfig(StrictModel):
    """A demand-response call (an OpenADR-style event with a power-delta signal)."""

    id: Name
    direction: Literal["reduce", "increase"]
    p_kw: PositiveFloat | None = Field(None, description="requested change [kW]; give p_kw or p_mw")
    p_mw: PositiveFloat | None = Field(None, description="requested change [MW]; give p_kw or p_mw")
    start_s: NonNegativeFloat = Field(description="start of the active period [s since scenario start]")
    end_s: PositiveFloat = Field(description="end of the active period [s since scenario start]")
    notification_s: NonNegativeFloat | None = Field(None, description="when the call is announced [s]; default start_s")
    buses: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] | None = Field(
        None, description="target bus indices; default: the whole VPP"
    )

    @model_validator(mode="after")
    def _check(self):
        if (self.p_kw is None) == (self.p_mw is None):
            raise ValueError("give exactly one of p_kw or p_mw")
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        if self.notification_s is not None and self.notification_s > self.start_s:
            raise ValueError(f"notification_s ({self.notification_s}) must not be after start_s ({self.start_s})")
        return self

    @property
    def request_kw(self) -> float:
        """Requested change [kW]."""
        return self.p_kw if self.p_kw is not None else self.p_mw * 1000.0


class CommunicationConfig(StrictModel):
    """Messages between agents: one-way latency and loss."""

    latency_s: NonNegativeFloat = Field(0.0, description="one-way message latency [s]")
    loss_probability: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(0.0, description="chance a message is lost [-]")


class DispatchConfig(StrictModel):
    """How operators split their share of a call over devices."""

    strategy: str = "pro_rata"

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        return _one_of(v, ALLOCATORS, "strategy")


class OutputConfig(StrictModel):
    """What a run writes besides the per-tick totals."""

    bus_timeseries: bool = Field(True, description="write per-bus power and voltage every tick")
    sample_devices: int = Field(0, ge=0, le=10_000, description="devices per fleet whose power is recorded")


class Scenario(StrictModel):
    """A complete, validated, immutable scenario."""

    name: Name
    description: str = ""
    seed: int = Field(0, ge=0)
    time: TimeConfig
    grid: GridConfig
    fleets: Annotated[list[FleetConfig], Field(min_length=1)]
    dr_calls: list[DRCallConfig] = Field(default_factory=list)
    communication: CommunicationConfig = CommunicationConfig()
    dispatch: DispatchConfig = DispatchConfig()
    output: OutputConfig = OutputConfig()

    @model_validator(mode="after")
    def _check(self):
        names = [f.name for f in self.fleets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"fleet names must be unique; repeated: {', '.join(dup)}")
        ids = [c.id for c in self.dr_calls]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"DR call ids must be unique; repeated: {', '.join(dup)}")
        for i, call in enumerate(self.dr_calls):
            if call.start_s >= self.time.duration_s:
                raise ValueError(
                    f"dr_calls[{i}].start_s ({call.start_s}) must be before time.duration_s ({self.time.duration_s})"
                )
        if not math.isfinite(self.time.duration_s):
            raise ValueError("time.duration_s must be finite")
        return self
