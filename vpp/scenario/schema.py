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

from pydantic import Field, field_validator, model_validator

from vpp.dispatch.allocation import ALLOCATORS
from vpp.fleets.config import Name, NonNegativeFloat, PositiveFloat, StrictModel
from vpp.fleets.config import one_of as _one_of
from vpp.fleets.registry import KINDS
from vpp.grid.networks import NETWORK_SOURCES, PANDAPOWER_NETWORKS
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
]

FleetConfig = Annotated[Union[tuple(spec.config for spec in KINDS.values())], Field(discriminator="kind")]
"""Any registered kind's fleet configuration, told apart by its ``kind`` field."""


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
    recovery_s: NonNegativeFloat | None = Field(
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

    latency_s: NonNegativeFloat = Field(0.0, description="one-way message latency [s]")
    loss_probability: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(0.0, description="chance a message is lost [-]")


class DispatchConfig(StrictModel):
    """How operators split their share of a call over devices."""

    strategy: str = "pro_rata"

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        return _one_of(v, ALLOCATORS, "strategy")


class MeasurementConfig(StrictModel):
    """How delivery is measured."""

    twin: bool = Field(
        True,
        description="advance a no-call twin of the plant and measure delivery against it; "
        "off (for benchmarks), delivery is reported as unknown (null)",
    )


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
    measurement: MeasurementConfig = MeasurementConfig()

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
