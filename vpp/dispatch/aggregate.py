"""Flexibility aggregation: device envelopes summed per bus.

The reference is three ``np.bincount`` (rule 2 of the architecture); with
``use_numba`` the three sums are one compiled pass over the devices
(:func:`vpp.dispatch.kernels_numba.aggregate_by_bus`), bit-identical to the
bincounts, which saves reading the bus index three times and the two
length-n temporaries for the rooms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vpp.fleets.base import Envelope

__all__ = ["BusFlexibility", "aggregate_by_bus", "sum_by_bus", "concat_envelopes"]


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


def aggregate_by_bus(bus_idx: np.ndarray, env: Envelope, n_bus: int, *, use_numba: bool = False) -> BusFlexibility:
    """Per-bus sums of an envelope's default power and rooms [kW].

    ``use_numba``: one compiled pass instead of three bincounts (same sums to
    the last bit; needs numba). Bus indices must lie in ``[0, n_bus)``.
    """
    if use_numba:
        from vpp.dispatch import kernels_numba  # imports numba; compiled (or loaded from cache) on first call

        out = BusFlexibility(np.empty(n_bus), np.empty(n_bus), np.empty(n_bus))
        kernels_numba.aggregate_by_bus(bus_idx, env.p_min_kw, env.p_max_kw, env.p_default_kw, out.p_default_kw,
                                       out.down_kw, out.up_kw)
        return out
    return BusFlexibility(
        np.bincount(bus_idx, weights=env.p_default_kw, minlength=n_bus),
        np.bincount(bus_idx, weights=env.down_kw, minlength=n_bus),
        np.bincount(bus_idx, weights=env.up_kw, minlength=n_bus),
    )


def sum_by_bus(bus_idx: np.ndarray, p_kw: np.ndarray, out: np.ndarray, *, use_numba: bool = False) -> np.ndarray:
    """Power per bus [kW] written into ``out`` (length ``n_bus``); bus indices must lie in ``[0, n_bus)``.

    The reference is ``np.bincount``; ``use_numba`` adds in the same order in
    one compiled pass without the bincount's temporary (same bits).
    """
    if use_numba:
        from vpp.dispatch import kernels_numba

        kernels_numba.sum_by_bus(bus_idx, p_kw, out)
    else:
        out[:] = np.bincount(bus_idx, weights=p_kw, minlength=out.shape[0])
    return out


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
