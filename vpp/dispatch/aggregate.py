"""Flexibility aggregation: device envelopes summed per bus with ``np.bincount``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vpp.fleets.base import Envelope

__all__ = ["BusFlexibility", "aggregate_by_bus", "concat_envelopes"]


@dataclass(frozen=True, slots=True)
class BusFlexibility:
    """Default power and room to move, summed per bus [kW]; arrays of length ``n_bus``."""

    p_default_kw: np.ndarray
    down_kw: np.ndarray
    up_kw: np.ndarray

    def room_kw(self, sign: float, bus_mask: np.ndarray | None = None) -> float:
        """Total room [kW] in the direction ``sign`` (-1 reduce, +1 increase) over the masked buses."""
        room = self.down_kw if sign < 0 else self.up_kw
        return float(room.sum() if bus_mask is None else room[bus_mask].sum())


def aggregate_by_bus(bus_idx: np.ndarray, env: Envelope, n_bus: int) -> BusFlexibility:
    """Per-bus sums of an envelope's default power and rooms [kW]."""
    return BusFlexibility(
        np.bincount(bus_idx, weights=env.p_default_kw, minlength=n_bus),
        np.bincount(bus_idx, weights=env.down_kw, minlength=n_bus),
        np.bincount(bus_idx, weights=env.up_kw, minlength=n_bus),
    )


def concat_envelopes(envs: list[Envelope]) -> Envelope:
    """One envelope over the devices of several fleets, in fleet order."""
    if not envs:
        empty = np.zeros(0)
        return Envelope(empty, empty.copy(), empty.copy())
    return Envelope(
        np.concatenate([e.p_min_kw for e in envs]),
        np.concatenate([e.p_max_kw for e in envs]),
        np.concatenate([e.p_default_kw for e in envs]),
    )
