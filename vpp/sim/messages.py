"""Messages agents exchange. Frozen dataclasses; time ``t_s`` [s since scenario start]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vpp.dispatch.aggregate import BusFlexibility
from vpp.dr import DRCall

__all__ = ["CallNotice", "CallResponse", "EnergyOffer", "EnergyQuery", "FlexibilityOffer", "Instruction", "Telemetry"]


@dataclass(frozen=True)
class CallNotice:
    """Grid operator -> platform: a DR call is announced."""

    t_s: float
    call: DRCall


@dataclass(frozen=True)
class CallResponse:
    """Platform -> grid operator: opt in or out, with the flexibility in the call's target then [kW].

    ``accepted_fraction``: the share of the call the platform commits to [-]
    (1 in full, 0 when it opts out); ``e_available_kwh``: the energy its
    operators said they can deliver over the event window (None when not asked).
    """

    t_s: float
    call_id: str
    accepted: bool
    room_kw: float
    accepted_fraction: float = 1.0
    e_available_kwh: float | None = None


@dataclass(frozen=True)
class EnergyQuery:
    """Platform -> operator: how much of ``share`` [-] of ``call`` can your devices deliver over its window?"""

    t_s: float
    call: DRCall
    share: float = 1.0
    min_share: float = 0.0  # the operator declines when it can deliver less than this share of what it is asked


@dataclass(frozen=True)
class EnergyOffer:
    """Operator -> platform: energy its targeted devices can deliver over the call's window [kWh] (>= 0).

    ``accepted`` False: the operator declines its share (and will ignore instructions for the call).
    """

    t_s: float
    operator: str
    call_id: str
    e_kwh: float
    accepted: bool = True


@dataclass(frozen=True)
class FlexibilityOffer:
    """Operator -> platform: its flexibility per bus for the tick starting at ``t_s``.

    ``cost_down_cny_per_kwh`` / ``cost_up_cny_per_kwh``: the room-weighted mean
    dispatch cost of its devices for reducing / increasing load [CNY/kWh]
    (sent when the platform splits calls by merit order; 0 otherwise).
    """

    t_s: float
    operator: str
    flex: BusFlexibility
    cost_down_cny_per_kwh: float = 0.0
    cost_up_cny_per_kwh: float = 0.0

    def cost_cny_per_kwh(self, sign: float) -> float:
        """The offered cost in the direction ``sign`` (-1 reduce, +1 increase) [CNY/kWh]."""
        return self.cost_down_cny_per_kwh if sign < 0 else self.cost_up_cny_per_kwh


@dataclass(frozen=True)
class Instruction:
    """Platform -> operator: move by ``delta_kw`` (signed) for ``call`` from ``t_s`` until the call ends."""

    t_s: float
    operator: str
    call: DRCall
    delta_kw: float


@dataclass(frozen=True)
class Telemetry:
    """Operator -> platform: metered power of its devices over the tick that started at ``t_s`` [kW].

    With closed-loop tracking the operator also sends, per bus, its metered
    power and the default power it offered for that tick [kW].
    """

    t_s: float
    operator: str
    p_kw: float
    p_bus_kw: np.ndarray | None = None
    p_default_bus_kw: np.ndarray | None = None
