"""Allocation strategies: split a requested power change over devices.

Each strategy takes the signed request ``delta_kw`` [kW] (negative reduces
load), every device's room in that direction ``room_kw`` [kW] (>= 0) and its
dispatch cost ``cost_cny_per_kwh``, and returns the signed change per device.
A strategy never gives a device more than its room; when the total room is
short, every device gives all it has. Strategies are chosen by name
(:data:`ALLOCATORS`).

Per-device keys. A strategy that orders devices by something other than cost
declares the keys it reads in its ``keys`` attribute (a tuple of names, see
:func:`strategy_keys`); the caller passes each as a keyword argument holding
one value per device, from :meth:`vpp.fleets.base.Fleet.dispatch_keys` at the
tick. Keys are optional: without them a strategy treats every device as
having no key (infinite), so the three-argument call of the older strategies
still works with every strategy (backward compatible).

* ``pro_rata``: every device moves by the same fraction of its room.
* ``merit_order``: cheapest devices first, each to its full room.
* ``edf`` (earliest deadline first, EV charging): a reduce request curtails
  first the sessions that leave *latest* (keeping the earliest-deadline ones
  charging); an increase goes first to those that leave *earliest*. Key
  ``deadline_s`` [s since scenario start].
* ``llf`` (least laxity first): a reduce request curtails first the sessions
  with the *largest* laxity; an increase goes first to the *smallest*. Key
  ``laxity_s`` = time to departure minus the time the remaining energy needs
  at full power [s].
* ``optimal``: a linear programme over the call's remaining window with the
  devices' energy constraints (:mod:`vpp.dispatch.optimal`). It needs the
  fleets' state and the call, which only :class:`vpp.dispatch.Portfolio`
  has; called as a plain strategy (one tick, no energy state), the LP reduces
  exactly to the merit order by cost, which is what it returns then.

In ``edf`` and ``llf`` devices without a deadline (base stations, buildings:
key ``inf``) go last in both directions, after every EV; ties (and keyless
devices among themselves) keep device order. Each device gives its full room
in turn, as in the merit order.

These functions are the reference. :class:`vpp.dispatch.Portfolio` runs the
ordered strategies (``merit_order``, ``edf``, ``llf``) as a compiled walk and
``pro_rata`` as a compiled pass that also apply the change and sum it per bus
(:mod:`vpp.dispatch.kernels_numba`) when numba is available; any other callable
with this signature is used as given.

The platform splits a call over operators by name too
(:data:`PLATFORM_ALLOCATORS`: ``pro_rata`` by offered room, ``merit_order``
by each operator's offered cost); ``optimal`` is device-level only, because
the platform holds no energy state of the devices (offers are power per bus).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "ALLOCATORS",
    "PLATFORM_ALLOCATORS",
    "KEY_NAMES",
    "get_allocator",
    "get_platform_allocator",
    "strategy_keys",
    "pro_rata",
    "merit_order",
    "edf",
    "llf",
    "optimal",
    "order_by_key",
]

Allocator = Callable[..., np.ndarray]
"""``(delta_kw, room_kw, cost_cny_per_kwh, **keys) -> change_kw``; ``keys`` as its ``keys`` attribute lists."""

KEY_NAMES = ("deadline_s", "laxity_s")
"""The per-device keys fleets provide (:meth:`vpp.fleets.base.Fleet.dispatch_keys`)."""


def strategy_keys(allocator) -> tuple[str, ...]:
    """The per-device keys ``allocator`` reads (its ``keys`` attribute; none for a plain function)."""
    return tuple(getattr(allocator, "keys", ()))


def pro_rata(delta_kw: float, room_kw: np.ndarray, cost_cny_per_kwh: np.ndarray) -> np.ndarray:
    """Every device moves by the same fraction of its room [kW]."""
    total_kw = float(room_kw.sum())
    if total_kw <= 0.0 or delta_kw == 0.0:
        return np.zeros_like(room_kw)
    frac = min(abs(delta_kw) / total_kw, 1.0)
    return np.sign(delta_kw) * frac * room_kw


def _fill_in_order(delta_kw: float, room_kw: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Each device in ``order`` gives its full room until ``|delta_kw|`` is met; signed change [kW]."""
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


def merit_order(delta_kw: float, room_kw: np.ndarray, cost_cny_per_kwh: np.ndarray) -> np.ndarray:
    """Cheapest devices first, each to its full room; ties keep device order [kW]."""
    if delta_kw == 0.0 or room_kw.size == 0:
        return np.zeros_like(room_kw)
    return _fill_in_order(delta_kw, room_kw, np.argsort(cost_cny_per_kwh, kind="stable"))


def order_by_key(delta_kw: float, key: np.ndarray) -> np.ndarray:
    """Device order for ``edf``/``llf``: ascending ``key`` for an increase, descending for a reduce.

    Devices whose key is not finite (no deadline) come last either way; ties
    keep device order (stable sort).
    """
    sign = 1.0 if delta_kw > 0.0 else -1.0
    sort_key = np.where(np.isfinite(key), sign * key, np.inf)
    return np.argsort(sort_key, kind="stable")


def _by_key(delta_kw: float, room_kw: np.ndarray, key: np.ndarray | None) -> np.ndarray:
    if delta_kw == 0.0 or room_kw.size == 0:
        return np.zeros_like(room_kw)
    if key is None:
        key = np.full(room_kw.shape, np.inf)
    return _fill_in_order(delta_kw, room_kw, order_by_key(delta_kw, np.asarray(key, dtype=float)))


def edf(delta_kw: float, room_kw: np.ndarray, cost_cny_per_kwh: np.ndarray, *,
        deadline_s: np.ndarray | None = None) -> np.ndarray:
    """Earliest deadline first: a reduce curtails the latest-leaving sessions first, an increase feeds the earliest [kW]."""
    return _by_key(delta_kw, room_kw, deadline_s)


edf.keys = ("deadline_s",)


def llf(delta_kw: float, room_kw: np.ndarray, cost_cny_per_kwh: np.ndarray, *,
        laxity_s: np.ndarray | None = None) -> np.ndarray:
    """Least laxity first: a reduce curtails the most lax sessions first, an increase feeds the least lax [kW]."""
    return _by_key(delta_kw, room_kw, laxity_s)


llf.keys = ("laxity_s",)


def optimal(delta_kw: float, room_kw: np.ndarray, cost_cny_per_kwh: np.ndarray) -> np.ndarray:
    """Least-cost LP over the call window with energy constraints (EV departure, reserves, comfort) [kW].

    Through a :class:`~vpp.dispatch.Portfolio` the LP of
    :mod:`vpp.dispatch.optimal` plans the call's remaining window. Called
    directly, with one tick and no energy state, that LP (minimise
    ``sum(cost * |change|)`` subject to ``sum(change) = delta_kw`` and
    ``0 <= |change| <= room``) is solved exactly by the merit order.
    """
    return merit_order(delta_kw, room_kw, cost_cny_per_kwh)


optimal.horizon = True  # the portfolio plans it over the call window (vpp.dispatch.optimal)

ALLOCATORS: dict[str, Allocator] = {
    "pro_rata": pro_rata,
    "merit_order": merit_order,
    "edf": edf,
    "llf": llf,
    "optimal": optimal,
}

PLATFORM_ALLOCATORS: dict[str, Allocator] = {"pro_rata": pro_rata, "merit_order": merit_order}
"""Platform -> operator split: ``pro_rata`` by offered room, ``merit_order`` by offered cost (device-level only:
``edf``, ``llf``, ``optimal``, which need device state)."""


def get_allocator(name: str) -> Allocator:
    """The device-level strategy registered as ``name``; unknown names list the valid ones."""
    try:
        return ALLOCATORS[name]
    except KeyError:
        raise KeyError(f"unknown allocation strategy {name!r}; valid: {', '.join(sorted(ALLOCATORS))}") from None


def get_platform_allocator(name: str) -> Allocator:
    """The platform-level strategy registered as ``name``; unknown names list the valid ones."""
    try:
        return PLATFORM_ALLOCATORS[name]
    except KeyError:
        raise KeyError(f"unknown platform strategy {name!r}; valid: {', '.join(sorted(PLATFORM_ALLOCATORS))}"
                       ) from None
