"""Scenario configuration shared by every device kind: the strict base model and the common fleet fields.

Each kind's module defines its own configuration model on :class:`FleetConfigBase`
(with ``kind: Literal[...]`` as the discriminator) next to its physics, so that
a new kind is one module, its parameter set and one registration in
:mod:`vpp.fleets.registry`. The scenario schema builds its fleet union from
that registry.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "StrictModel",
    "FleetConfigBase",
    "Fraction",
    "PositiveFloat",
    "NonNegativeFloat",
    "Efficiency",
    "Name",
    "BusSelection",
    "one_of",
]

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Efficiency = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
# Names become result keys and file-name parts: letters, digits, '_' and '-' only (no dots, no paths).
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
BusSelection = Union[Literal["load_buses", "all"], Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]]


def one_of(value: str, registry, what: str) -> str:
    """``value`` if it is a key of ``registry``; otherwise a ValueError listing the allowed names."""
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


class FleetConfigBase(StrictModel):
    """Fields every fleet has: identity, owner, location, dispatch cost."""

    name: Name
    operator: Name = Field(description="the operator agent that owns this fleet")
    n_devices: int = Field(ge=0, description="number of devices")
    buses: BusSelection = Field(
        "load_buses",
        description="where devices sit: 'load_buses' (in proportion to the net's load), 'all', or bus indices",
    )
    cost_cny_per_kwh: NonNegativeFloat = Field(0.0, description="dispatch cost of the fleet's flexibility [CNY/kWh]")
