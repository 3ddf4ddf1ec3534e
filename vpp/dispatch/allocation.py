"""Allocation strategies: split a requested power change over devices.

Each strategy takes the signed request ``delta_kw`` [kW] (negative reduces
load), every device's room in that direction ``room_kw`` [kW] (>= 0) and its
dispatch cost ``cost_cny_per_kwh``, and returns the signed change per device.
A strategy never gives a device more than its room; when the total room is
short, every device gives all it has. Strategies are chosen by name.

These functions are the reference. :class:`vpp.dispatch.Portfolio` runs the two
built-in strategies as compiled passes that also apply the change and sum it
per bus (:mod:`vpp.dispatch.kernels_numba`) when numba is available; any other
callable with this signature is used as given.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["ALLOCATORS", "get_allocator", "pro_rata", "merit_order"]

Allocator = Callable[[float, np.ndarray, np.ndarray], np.ndarray]


def pro_rata(delta_kw: float, room_kw: np.ndarray, cost_cny_per_kwh: np.ndarray) -> np.ndarray:
    """Every device moves by the same fraction of its room [kW]."""
    total_kw = float(room_kw.sum())
    if total_kw <= 0.0 or delta_kw == 0.0:
        return np.zeros_like(room_kw)
    frac = min(abs(delta_kw) / total_kw, 1.0)
    return np.sign(delta_kw) * frac * room_kw


def merit_order(delta_kw: float, room_kw: np.ndarray, cost_cny_per_kwh: np.ndarray) -> np.ndarray:
    """Cheapest devices first, each to its full room; ties keep device order [kW]."""
    if delta_kw == 0.0 or room_kw.size == 0:
        return np.zeros_like(room_kw)
    order = np.argsort(cost_cny_per_kwh, kind="stable")
    room_sorted = room_kw[order]
    # One work array, updated in place: room before each device, then what the device takes
    # (the same numbers as writing each step as a new array, without four length-n temporaries).
    take_sorted = np.cumsum(room_sorted)
    take_sorted -= room_sorted
    np.subtract(abs(delta_kw), take_sorted, out=take_sorted)
    np.clip(take_sorted, 0.0, room_sorted, out=take_sorted)
    if delta_kw < 0.0:
        np.negative(take_sorted, out=take_sorted)
    out = np.empty_like(room_kw)
    out[order] = take_sorted
    return out


ALLOCATORS: dict[str, Allocator] = {"pro_rata": pro_rata, "merit_order": merit_order}


def get_allocator(name: str) -> Allocator:
    """The strategy registered as ``name``; unknown names list the valid ones."""
    try:
        return ALLOCATORS[name]
    except KeyError:
        raise KeyError(f"unknown allocation strategy {name!r}; valid: {', '.join(sorted(ALLOCATORS))}") from None
