"""The scenario schema: pydantic models, unknown keys forbidden, units in field names.

A scenario is validated in full before any work starts. Names that refer to
registries (charger types, parameter sets, profiles, networks, allocation
strategies) are checked here against those registries; facts that need the
grid itself (does bus 42 exist?) are checked when the plant is built, still
before the first tick.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from vpp.dispatch.allocation import ALLOCATORS
from vpp.fleets.config import BusIndex, Flag, Name, SeriesFile, StrictModel, field_errors, real, series_or_profile, whole
from vpp.fleets.config import BusRef
from vpp.fleets.config import one_of as _one_of
from vpp.fleets.registry import KINDS
from vpp.grid.networks import NetworkError, check_network_name, network_file
from vpp.grid.solvers import SOLVERS
from vpp.profiles import PROFILES

__all__ = [
    "Scenario",
    "TimeConfig",
    "GridConfig",
    "FleetConfig",
    "DRCallConfig",
    "CommunicationConfig",
    "DispatchConfig",
    "OutputConfig",
    "MeasurementConfig",
    "GridOperatorConfig",
]

MAX_DURATION_S = 366 * 86_400.0  # longest horizon, and any time in a scenario [s]
MAX_SEED = 2**63 - 1
MAX_FLEETS = 1_000
MAX_DR_CALLS = 10_000
MAX_CALL_KW = 1e8  # a DR call's requested change [kW] (100 GW)

_TIME_S = real(ge=0.0, le=MAX_DURATION_S)  # a time since the scenario start, or a window [s]

FleetConfig = Annotated[Union[tuple(spec.config for spec in KINDS.values())], Field(discriminator="kind")]
"""Any registered kind's fleet configuration, told apart by its ``kind`` field."""


class TimeConfig(StrictModel):
    """Simulated horizon and control tick."""

    clock_start_h: real(ge=0.0, lt=24.0) = Field(0.0, description="clock hour of day at t_s = 0 [h]")
    duration_s: real(gt=0.0, le=MAX_DURATION_S) = Field(description="simulated horizon [s], at most 366 days")
    dt_s: real(ge=1.0, le=900.0) = Field(60.0, description="control tick [s], 1 s to 15 min")

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
        "net's loads and generators follow its own SimBench profiles unless load_profile/sgen_profile say otherwise",
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


class DRCallConfig(StrictModel):
    """A demand-response call (an OpenADR-style event with a power-delta signal)."""

    id: Name
    direction: Literal["reduce", "increase"]
    p_kw: real(gt=0.0, le=MAX_CALL_KW) | None = Field(None, description="requested change [kW]; give p_kw or p_mw")
    p_mw: real(gt=0.0, le=MAX_CALL_KW / 1000.0) | None = Field(
        None, description="requested change [MW]; give p_kw or p_mw"
    )
    start_s: _TIME_S = Field(description="start of the active period [s since scenario start]")
    end_s: _TIME_S = Field(description="end of the active period [s since scenario start]")
    notification_s: _TIME_S | None = Field(None, description="when the call is announced [s]; default start_s")
    buses: Annotated[list[BusRef], Field(min_length=1, max_length=100_000)] | None = Field(
        None, description="target buses, by index or name; default: the whole VPP"
    )
    recovery_s: _TIME_S | None = Field(
        None, description="window after end_s in which the rebound is measured [s]; default: the rest of the run"
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

    latency_s: _TIME_S = Field(0.0, description="one-way message latency [s], at most time.duration_s")
    loss_probability: real(ge=0.0, lt=1.0) = Field(0.0, description="chance a message is lost [-]")


class DispatchConfig(StrictModel):
    """How operators split their share of a call over devices."""

    strategy: Annotated[str, Field(max_length=200)] = "pro_rata"

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        return _one_of(v, ALLOCATORS, "strategy")


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
    sample_devices: whole(ge=0, le=10_000) = Field(0, description="devices per fleet whose power is recorded")


class Scenario(StrictModel):
    """A complete, validated, immutable scenario."""

    name: Name
    description: Annotated[str, Field(max_length=10_000)] = ""
    seed: whole(ge=0, le=MAX_SEED) = 0
    time: TimeConfig
    grid: GridConfig
    fleets: Annotated[list[FleetConfig], Field(min_length=1, max_length=MAX_FLEETS)]
    dr_calls: Annotated[list[DRCallConfig], Field(max_length=MAX_DR_CALLS)] = Field(default_factory=list)
    communication: CommunicationConfig = CommunicationConfig()
    dispatch: DispatchConfig = DispatchConfig()
    output: OutputConfig = OutputConfig()
    measurement: MeasurementConfig = MeasurementConfig()
    grid_operator: GridOperatorConfig = GridOperatorConfig()
    prices: series_or_profile("price") | None = Field(
        None, description="energy price per tick from a time-series file {path, column} (column "
        "price_cny_per_kwh or price_cny_per_mwh); adds price_cny_per_kwh to the time series and energy costs "
        "to the summary",
    )

    @model_validator(mode="after")
    def _check(self):
        # Cross-section checks, all reported together, each at the field it concerns.
        errors = []
        for what, key, values in (("fleet names", "fleets", [f.name for f in self.fleets]),
                                  ("DR call ids", "dr_calls", [c.id for c in self.dr_calls])):
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                errors.append(((key,), f"{what} must be unique; repeated: {', '.join(dup)}", None))
        duration_s = self.time.duration_s
        for i, call in enumerate(self.dr_calls):
            if call.start_s >= duration_s:
                errors.append(((("dr_calls", i, "start_s")),
                               f"must be before time.duration_s ({duration_s:g})", call.start_s))
        if self.communication.latency_s > duration_s:
            errors.append((("communication", "latency_s"),
                           f"must be at most time.duration_s ({duration_s:g})", self.communication.latency_s))
        if errors:
            raise field_errors("Scenario", errors)
        return self
