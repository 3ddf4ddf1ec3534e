"""Compiled (numba) dispatch kernels: per-bus aggregation and the split of a request, each in one pass.

Imported only on the first compiled call (see :attr:`vpp.dispatch.Portfolio.use_numba`
and :data:`vpp.fleets.kernels.NUMBA_AVAILABLE`), never by ``import vpp.dispatch``:
importing numba costs time and compiling more (``cache=True`` keeps the machine
code on disk for later processes).

At 10^6 devices these loops are bound by memory traffic, not arithmetic: the
numpy reference reads and writes each length-n array once per operation
(gather, subtract, clip, scale, scatter, bincount), each into a fresh
temporary; here every array is read once per pass and nothing of length n is
allocated. Each function computes the same numbers as its numpy reference
(:func:`vpp.dispatch.aggregate.aggregate_by_bus`, :func:`vpp.dispatch.allocation.pro_rata`,
:func:`vpp.dispatch.allocation.merit_order` inside :meth:`vpp.dispatch.Portfolio.setpoints`),
to round-off; tests/dispatch/test_kernels_numba.py keeps them in agreement.

Serial on purpose: a threaded (``parallel=True``) aggregation over two chunks
saved 0.5 ms at 10^6 devices on this 2-core machine (1.5 -> 1.0 ms) and cost
more than it saved below about 5e4 devices; with OpenMP threads that
busy-wait and are not fork-safe (sweeps fork workers) that is not worth it.
benchmarks/bench_dispatch.py keeps measuring it.

Units: powers [kW], load convention (a negative request reduces load).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["aggregate_by_bus", "sum_by_bus", "split_pro_rata", "split_merit_order"]


@numba.njit(cache=True)
def aggregate_by_bus(bus_idx, p_min_kw, p_max_kw, p_default_kw, p_default_bus_kw, down_bus_kw, up_bus_kw):
    """Per-bus sums of default power, room down and room up [kW], written into the three ``*_bus_kw``.

    Adds in device order, as ``np.bincount`` does, so the sums are the
    bincount's to the last bit. Raises ``IndexError`` for a bus index outside
    the output (bincount would grow its output; here it would write past it).
    """
    n_bus = p_default_bus_kw.shape[0]
    p_default_bus_kw[:] = 0.0
    down_bus_kw[:] = 0.0
    up_bus_kw[:] = 0.0
    for i in range(bus_idx.shape[0]):
        b = bus_idx[i]
        if b < 0 or b >= n_bus:
            raise IndexError("bus index outside [0, n_bus)")
        d = p_default_kw[i]
        p_default_bus_kw[b] += d
        down_bus_kw[b] += d - p_min_kw[i]
        up_bus_kw[b] += p_max_kw[i] - d


@numba.njit(cache=True)
def sum_by_bus(bus_idx, p_kw, p_bus_kw):
    """``np.bincount(bus_idx, weights=p_kw)`` written into ``p_bus_kw`` (same order of additions, same bits)."""
    n_bus = p_bus_kw.shape[0]
    p_bus_kw[:] = 0.0
    for i in range(bus_idx.shape[0]):
        b = bus_idx[i]
        if b < 0 or b >= n_bus:
            raise IndexError("bus index outside [0, n_bus)")
        p_bus_kw[b] += p_kw[i]


@numba.njit(cache=True)
def split_pro_rata(delta_kw, p_set_kw, p_min_kw, p_max_kw, bus_idx, idx, all_devices, instructed_bus_kw):
    """Move ``p_set_kw`` in place by :func:`~vpp.dispatch.allocation.pro_rata`'s share of ``delta_kw``.

    The devices are ``idx`` (or every device when ``all_devices``, ``idx``
    then unused). Two passes: the total room, then each device's change, added
    to its setpoint and to its bus's entry of ``instructed_bus_kw`` (which
    must start at zero). Returns nothing; a request with no room moves nothing.
    """
    down = delta_kw < 0.0
    # Room = sign * (bound - p_set): exactly the reference's p_set - p_min (down) or p_max - p_set (up),
    # since a - b == -(b - a) in floating point. One array chosen before the loops, no helper call inside
    # them: numba would wrap each call taking arrays in reference-count updates, 10x slower here.
    bound_kw = p_min_kw if down else p_max_kw
    s = -1.0 if down else 1.0
    m = p_set_kw.shape[0] if all_devices else idx.shape[0]
    total_kw = 0.0
    for j in range(m):
        i = j if all_devices else idx[j]
        r = s * (bound_kw[i] - p_set_kw[i])
        if r > 0.0:
            total_kw += r
    if total_kw <= 0.0 or delta_kw == 0.0:
        return
    frac = min(abs(delta_kw) / total_kw, 1.0)
    step = s * frac  # np.sign(delta_kw) * frac, as in the reference
    n_bus = instructed_bus_kw.shape[0]
    for j in range(m):
        i = j if all_devices else idx[j]
        d = step * max(s * (bound_kw[i] - p_set_kw[i]), 0.0)
        p_set_kw[i] += d
        b = bus_idx[i]
        if b < 0 or b >= n_bus:
            raise IndexError("bus index outside [0, n_bus)")
        instructed_bus_kw[b] += d


@numba.njit(cache=True)
def split_merit_order(delta_kw, p_set_kw, p_min_kw, p_max_kw, bus_idx, order, instructed_bus_kw):
    """Move ``p_set_kw`` in place by :func:`~vpp.dispatch.allocation.merit_order`'s share of ``delta_kw``.

    ``order`` lists the targeted devices cheapest first (ties in device
    order), as the reference's stable argsort would. Each device gives all its
    room until the request is met; the walk stops there, so a request met by
    the cheapest few devices costs only their entries. ``instructed_bus_kw``
    must start at zero.
    """
    if delta_kw == 0.0:
        return
    down = delta_kw < 0.0
    bound_kw = p_min_kw if down else p_max_kw  # see split_pro_rata: no helper calls in the loop
    s = -1.0 if down else 1.0
    left_kw = abs(delta_kw)
    n_bus = instructed_bus_kw.shape[0]
    for j in range(order.shape[0]):
        if left_kw <= 0.0:
            break
        i = order[j]
        take = min(max(s * (bound_kw[i] - p_set_kw[i]), 0.0), left_kw)
        left_kw -= take
        d = s * take
        p_set_kw[i] += d
        b = bus_idx[i]
        if b < 0 or b >= n_bus:
            raise IndexError("bus index outside [0, n_bus)")
        instructed_bus_kw[b] += d
