"""Compiled (numba) twins of array kernels: one pass over devices, scalar work per device.

Imported only on the first call of a compiled path (see
:data:`vpp.fleets.kernels.NUMBA_AVAILABLE`), never by ``import vpp.fleets``:
importing numba costs time and compiling more (``cache=True`` keeps the
machine code on disk for later processes). Each function here computes the
same numbers as its numpy reference, to round-off; tests/fleets/test_ev_numba.py
keeps the two in agreement.

Units as in :mod:`vpp.fleets.kernels`: powers [kW] (load convention), energies
[kWh], durations ``dt_h`` [h], times ``t_s`` [s].
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["ev_envelope", "ev_default_power", "ev_advance", "ev_integrate"]

_S_PER_H = 3600.0  # vpp.units.S_PER_H, repeated: compiled code reads module globals as constants


@numba.njit(cache=True, inline="always")
def _log1p_over_y(y):
    return math.log1p(y) / y if y != 0.0 else 1.0


@numba.njit(cache=True, inline="always")
def _expm1_over_x(x):
    return math.expm1(x) / x if x != 0.0 else 1.0


@numba.njit(cache=True, inline="always")
def _walk_piece(e, t_rem_h, moved_kwh, e_lo, e_hi, p_now_kw, dp_de, eta, backward):
    """One piece of :func:`vpp.fleets.kernels._taper_walk` for one device; returns ``(e, t_rem_h, moved_kwh)``."""
    if backward:
        room_kwh, k = e - e_lo, -dp_de
        inside = e > e_lo and e <= e_hi
    else:
        room_kwh, k = e_hi - e, dp_de
        inside = e >= e_lo and e < e_hi
    if not (inside and t_rem_h > 0.0 and p_now_kw > 0.0):
        return e, t_rem_h, moved_kwh
    p0 = p_now_kw
    y = 0.0 if k == 0.0 else k * room_kwh / p0
    if y > -1.0:
        t_end_h = room_kwh / (eta * p0) * _log1p_over_y(y)
    else:  # the power reaches 0 first: the end is approached, never reached
        t_end_h = np.inf
    free_kwh = eta * p0 * t_rem_h * _expm1_over_x(eta * k * t_rem_h)
    step_kwh = min(free_kwh, room_kwh)
    moved_kwh += step_kwh
    if t_rem_h >= t_end_h:
        return (e_lo if backward else e_hi), t_rem_h - t_end_h, moved_kwh
    return (e - step_kwh if backward else e + step_kwh), 0.0, moved_kwh


@numba.njit(cache=True)
def _taper_walk(e0, cap, p_rated, p_peak, eta, dt_h, knot_soc, knot_frac, backward):
    """Energy moved [kWh] by the scalar walk of :func:`vpp.fleets.kernels._taper_walk` (device assumed live)."""
    e = e0
    t_rem_h = dt_h
    moved_kwh = 0.0
    n_k = knot_soc.shape[0]
    for j in range(n_k):
        k = n_k - 1 - j if backward else j
        hi = knot_soc[k]
        f_hi = knot_frac[k]
        if k == 0:
            lo, f_lo, m = -np.inf, f_hi, 0.0
        else:
            lo, f_lo = knot_soc[k - 1], knot_frac[k - 1]
            m = (f_hi - f_lo) / (hi - lo)
        # Where p_peak * f crosses p_rated in this segment (as in the numpy walk).
        if p_peak * f_hi >= p_rated:
            s_cross = hi
        elif p_peak * f_lo <= p_rated:
            s_cross = lo
        elif m < 0.0:
            s_cross = hi + (p_rated / p_peak - f_hi) / m
        else:
            s_cross = hi
        s_cross = min(max(s_cross, lo), hi)
        e_lo, e_cross, e_hi = lo * cap, s_cross * cap, hi * cap
        dp_de = p_peak * m / cap
        for step in range(2):
            tapered = (step == 0) if backward else (step == 1)
            if tapered:
                p_kw = min(p_peak * (f_hi + m * (e / cap - hi)), p_rated)
                e, t_rem_h, moved_kwh = _walk_piece(e, t_rem_h, moved_kwh, e_cross, e_hi, p_kw, dp_de, eta, backward)
            else:
                e, t_rem_h, moved_kwh = _walk_piece(e, t_rem_h, moved_kwh, e_lo, e_cross, p_rated, 0.0, eta, backward)
    return moved_kwh


@numba.njit(cache=True, inline="always")
def _live(e0, cap, p_rated, p_peak, eta, dt_h):
    return cap > 0.0 and dt_h > 0.0 and eta > 0.0 and p_rated > 0.0 and p_peak > 0.0 and math.isfinite(e0)


@numba.njit(cache=True, inline="always")
def _interp(x, xp, fp):
    """``np.interp(x, xp, fp)`` for one point inside ``[xp[0], xp[-1]]``."""
    n = xp.shape[0]
    if x >= xp[n - 1]:
        return fp[n - 1]
    if x <= xp[0]:
        return fp[0]
    j = 0
    while xp[j + 1] <= x:
        j += 1
    return (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]) * (x - xp[j]) + fp[j]


@numba.njit(cache=True, inline="always")
def _ev_p_max(e, e_tgt, cap, p_acc, p_rated, t_arr, t_dep, knot_soc, knot_frac, frac_flat, soc_flat, eta, t_s,
              t_end_s, dt_h, inv_dt_s, inv_eta_dt_h):
    """Full (default) power of one plugged charger for the tick, and the fraction of the tick it is present."""
    # Fraction of the tick the vehicle is present [-].
    frac = (min(t_dep, t_end_s) - max(t_arr, t_s)) * inv_dt_s
    frac = min(max(frac, 0.0), 1.0)
    e_rem = max(e_tgt - e, 0.0)
    if e_rem <= 0.0:
        # Already at its target: nothing to take (the same 0 as below), and no taper walk. In the
        # evening most plugged AC vehicles are full and above the knee: 4 of 5 walks were these.
        return 0.0, frac
    # Most the vehicle takes while present: flat part in closed form, the taper walk beyond it.
    t_acc_h = frac * dt_h
    e_acc = min(p_rated, p_acc * frac_flat) * t_acc_h * eta
    if e + e_acc > cap * soc_flat:
        if _live(e, cap, p_rated, p_acc, eta, t_acc_h):
            moved = _taper_walk(e, cap, p_rated, p_acc, eta, t_acc_h, knot_soc, knot_frac, False)
            e_acc = min(max(moved, 0.0), max(cap - e, 0.0))
        else:
            e_acc = 0.0
    e_acc = min(e_acc, e_rem)
    return min(e_acc * inv_eta_dt_h, frac * p_rated), frac


@numba.njit(cache=True)
def ev_envelope(plugged, t_arrival_s, t_departure_s, e_kwh, e_target_kwh, cap_kwh, p_accept_kw, p_rated_kw, v2g,
                knot_soc, knot_frac, frac_flat, soc_flat, eta, soc_v2g_min, t_s, dt_s, p_min_kw, p_max_kw,
                p_default_kw):
    """The envelope of :meth:`vpp.fleets.ev.EVFleet._envelope_numpy`, written into ``p_*_kw`` in one pass.

    Also applies the ordering guard of :meth:`vpp.fleets.base.Fleet.flexibility`
    (``p_min <= p_default <= p_max``), which is idempotent there.
    """
    dt_h = dt_s / _S_PER_H
    t_end_s = t_s + dt_s
    inv_dt_s = 1.0 / dt_s
    inv_eta_dt_h = 1.0 / (eta * dt_h)
    for i in range(plugged.shape[0]):
        if not plugged[i]:
            # What the arithmetic below gives for an empty charger (its stale session values are finite),
            # signed zero included; most chargers are empty at any time, so this skip pays.
            p_min_kw[i] = -0.0
            p_max_kw[i] = 0.0
            p_default_kw[i] = 0.0
            continue
        is_v2g = 1.0 if v2g[i] else 0.0
        e, e_tgt, cap, p_acc, p_rated = e_kwh[i], e_target_kwh[i], cap_kwh[i], p_accept_kw[i], p_rated_kw[i]
        p_max, frac = _ev_p_max(e, e_tgt, cap, p_acc, p_rated, t_arrival_s[i], t_departure_s[i], knot_soc, knot_frac,
                                frac_flat, soc_flat, eta, t_s, t_end_s, dt_h, inv_dt_s, inv_eta_dt_h)
        # Laxity: lowest level from which full power after this tick still reaches the target [kWh].
        later_h = max(t_departure_s[i] - t_end_s, 0.0) * (1.0 / _S_PER_H)
        f_tgt = _interp(min(max(e_tgt / cap, 0.0), 1.0), knot_soc, knot_frac)
        bound = e_tgt - min(f_tgt * p_acc, p_rated) * later_h * eta
        e_start = e
        if bound > e or v2g[i]:
            if _live(e_tgt, cap, p_rated, p_acc, eta, later_h):
                moved = _taper_walk(e_tgt, cap, p_rated, p_acc, eta, later_h, knot_soc, knot_frac, True)
                lowest = e_tgt - eta * p_rated * later_h
                e_start = min(max(e_tgt - moved, lowest), e_tgt)
            else:
                e_start = e_tgt
        p_min = (e_start - e) * inv_eta_dt_h
        p_min = min(max(p_min, 0.0), p_max)
        # V2G: discharge only what the session can win back and not below soc_v2g_min.
        floor = max(e_start, cap * soc_v2g_min)
        p_dis = min(max(e - floor, 0.0) * (eta / dt_h), frac * p_rated) * is_v2g
        if p_min <= 0.0:
            p_min = -p_dis
        p_max = max(p_max, p_min)
        p_min_kw[i] = p_min
        p_max_kw[i] = p_max
        p_default_kw[i] = p_max


@numba.njit(cache=True)
def ev_default_power(plugged, t_arrival_s, t_departure_s, e_kwh, e_target_kwh, cap_kwh, p_accept_kw, p_rated_kw,
                     knot_soc, knot_frac, frac_flat, soc_flat, eta, t_s, dt_s, p_default_kw):
    """Only the default power of :func:`ev_envelope` (the same numbers), for a plant nobody dispatches (the twin).

    The default is full power, which never depends on the lower bound, so the
    laxity walk and V2G bound are skipped.
    """
    dt_h = dt_s / _S_PER_H
    t_end_s = t_s + dt_s
    inv_dt_s = 1.0 / dt_s
    inv_eta_dt_h = 1.0 / (eta * dt_h)
    for i in range(plugged.shape[0]):
        if not plugged[i]:
            p_default_kw[i] = 0.0
            continue
        p_default_kw[i] = _ev_p_max(e_kwh[i], e_target_kwh[i], cap_kwh[i], p_accept_kw[i], p_rated_kw[i],
                                    t_arrival_s[i], t_departure_s[i], knot_soc, knot_frac, frac_flat, soc_flat, eta,
                                    t_s, t_end_s, dt_h, inv_dt_s, inv_eta_dt_h)[0]


@numba.njit(cache=True)
def ev_advance(k, k_end, plugged, t_next_s, e_kwh, e_target_kwh, cap_kwh, p_accept_kw, t_arrival_s, t_departure_s,
               tab_arrival_s, tab_departure_s, tab_cap_kwh, tab_e_arrival_kwh, tab_e_need_kwh, tab_p_accept_kw,
               t_s, dt_s, e_tol_kwh):
    """:meth:`vpp.fleets.ev.EVFleet._advance_numpy` in one pass: departures at ``t_s``, then arrivals in the tick.

    Updates the state arrays in place; returns (energy unmet at departure
    [kWh], sessions unmet, sessions departed, sessions arrived) of this call.
    """
    e_unmet = 0.0
    n_unmet = 0
    n_departed = 0
    n_arrived = 0
    t_end_s = t_s + dt_s
    for i in range(k.shape[0]):
        if not t_next_s[i] < t_end_s:  # nothing happens on this charger in the tick (the common case)
            continue
        if plugged[i]:
            if t_departure_s[i] > t_s:
                continue
            rem = max(e_target_kwh[i] - e_kwh[i], 0.0)
            e_unmet += rem
            if rem > e_tol_kwh:
                n_unmet += 1
            n_departed += 1
            plugged[i] = False
            k[i] += 1
        j = k[i]
        if j >= k_end[i]:
            t_next_s[i] = np.inf
            continue
        if not tab_arrival_s[j] < t_end_s:
            t_next_s[i] = tab_arrival_s[j]
            continue
        plugged[i] = True
        t_arrival_s[i] = tab_arrival_s[j]
        t_departure_s[i] = tab_departure_s[j]
        t_next_s[i] = tab_departure_s[j]
        cap_kwh[i] = tab_cap_kwh[j]
        p_accept_kw[i] = tab_p_accept_kw[j]
        e_kwh[i] = tab_e_arrival_kwh[j]
        e_target_kwh[i] = min(tab_e_arrival_kwh[j] + tab_e_need_kwh[j], tab_cap_kwh[j])
        n_arrived += 1
    return e_unmet, n_unmet, n_departed, n_arrived


@numba.njit(cache=True)
def ev_integrate(p_kw, e_kwh, e_target_kwh, eta, dt_h):
    """:meth:`vpp.fleets.ev.EVFleet._integrate_numpy` in one pass; returns (stored change, grid energy) [kWh]."""
    e_delta = 0.0
    e_grid = 0.0
    for i in range(p_kw.shape[0]):
        p = p_kw[i]
        d = p * eta * dt_h if p >= 0.0 else p * dt_h / eta
        e_old = e_kwh[i]
        e_new = min(e_old + d, max(e_target_kwh[i], e_old))
        e_kwh[i] = e_new
        e_delta += e_new - e_old
        e_grid += p
    return e_delta, e_grid * dt_h
