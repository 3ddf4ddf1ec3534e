"""The demand-response call, modelled on an OpenADR 2.0b event.

An event has an id and a modification number, an active period (notification,
start, end), one signal (a power *delta* the plant must deliver relative to its
default power) and a target (the whole VPP, or a set of grid buses). The plant
opts in or out when notified. Delivered power is measured against the plant's
no-call twin (see :mod:`vpp.sim.engine`); the rebound after the call is
measured over ``recovery_s`` (default: the rest of the run).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

__all__ = ["Direction", "DRCall"]


class Direction(str, Enum):
    """Which way the call moves the plant's load."""

    REDUCE = "reduce"
    INCREASE = "increase"

    @property
    def sign(self) -> float:
        """Sign of the requested power change under the load convention (-1 reduce, +1 increase)."""
        return -1.0 if self is Direction.REDUCE else 1.0


@dataclass(frozen=True)
class DRCall:
    """One demand-response event.

    Attributes are in the units their names carry; ``bus_idx`` are positions in
    the simulator's bus table (``None`` targets the whole VPP).
    """

    call_id: str
    direction: Direction
    p_kw: float  # requested change magnitude [kW] (> 0)
    start_s: float  # start of the active period [s]
    end_s: float  # end of the active period [s] (exclusive)
    notification_s: float  # when the grid operator announces the call [s]
    bus_idx: tuple[int, ...] | None = None
    modification: int = 0
    recovery_s: float | None = None  # rebound window after end_s [s]; None: the rest of the run
    origin: str = "scenario"  # who raised it: "scenario", or "grid_operator:<element>"

    def __post_init__(self) -> None:
        if not self.p_kw > 0.0:
            raise ValueError(f"DR call {self.call_id!r}: p_kw must be > 0, got {self.p_kw}")
        if not self.end_s > self.start_s:
            raise ValueError(f"DR call {self.call_id!r}: end_s ({self.end_s}) must be after start_s ({self.start_s})")
        if self.notification_s > self.start_s:
            raise ValueError(f"DR call {self.call_id!r}: notification_s must not be after start_s")

    def is_active(self, t_s: float) -> bool:
        """Whether the instant ``t_s`` [s] lies in the active period ``[start_s, end_s)``."""
        return self.start_s <= t_s < self.end_s

    def overlap_s(self, t0_s: float, t1_s: float) -> float:
        """Length of the active period inside ``[t0_s, t1_s)`` [s]."""
        return max(0.0, min(self.end_s, t1_s) - max(self.start_s, t0_s))

    @property
    def delta_kw(self) -> float:
        """Requested change of the plant's power [kW], signed by the load convention."""
        return self.direction.sign * self.p_kw

    def bus_mask(self, n_bus: int) -> np.ndarray:
        """Boolean mask over bus positions targeted by the call."""
        if self.bus_idx is None:
            return np.ones(n_bus, dtype=bool)
        mask = np.zeros(n_bus, dtype=bool)
        mask[list(self.bus_idx)] = True
        return mask
