"""Pure array kernels: device physics as array-in, array-out functions.

Every function works on scalars and on 1-D arrays of any length (including 0)
and never mutates its inputs. Powers [kW] follow the load convention of
:mod:`vpp.units` (charging positive, discharging negative); energies [kWh];
durations ``dt_h`` [h].

Some kernels also have a compiled twin in :mod:`vpp.fleets.kernels_numba`
(numba, a dependency; the numpy kernels stay the reference). :data:`NUMBA_AVAILABLE` says
whether fleets use them; it is decided once, at import, without importing numba
(that module is imported, and its functions compiled, on first use).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

NUMBA_AVAILABLE: bool = (
    os.environ.get("VPP_NO_NUMBA", "") in ("", "0") and importlib.util.find_spec("numba") is not None
)
"""numba is installed and ``VPP_NO_NUMBA`` is unset (or ``0``): fleets may use the compiled kernels."""

__all__ = [
    "NUMBA_AVAILABLE",
    "battery_power_bounds",
    "battery_energy_step",
    "battery_loss_kwh",
    "rc_coefficient",
    "rc_temperature_step",
    "rc_power_for_temperature",
    "split_by_room",
    "taper_fraction",
    "taper_energy_kwh",
    "taper_start_kwh",
    "backup_reserve_kwh",
]


def battery_power_bounds(e_kwh, e_min_kwh, e_max_kwh, p_charge_max_kw, p_discharge_max_kw, dt_h, eta):
    """Grid-side power bounds [kW] that keep a battery inside [e_min_kwh, e_max_kwh] for one tick.

    Charging at ``p`` > 0 stores ``eta * p * dt_h``; discharging at ``p`` < 0
    draws ``-p * dt_h / eta`` from the cells. Returns ``(p_min_kw, p_max_kw)``
    with ``p_min_kw <= 0 <= p_max_kw`` when the battery is inside its window;
    a battery below ``e_min_kwh`` gets ``p_min_kw = 0`` (no further discharge).
    """
    headroom_kwh = np.maximum(e_max_kwh - e_kwh, 0.0)
    available_kwh = np.maximum(e_kwh - e_min_kwh, 0.0)
    p_max_kw = np.minimum(p_charge_max_kw, headroom_kwh / (eta * dt_h))
    p_min_kw = -np.minimum(p_discharge_max_kw, available_kwh * eta / dt_h)
    return p_min_kw, p_max_kw


def battery_energy_step(e_kwh, p_kw, dt_h, eta):
    """Stored energy [kWh] after one tick at grid-side power ``p_kw`` [kW]."""
    return e_kwh + np.where(p_kw > 0.0, eta * p_kw, p_kw / eta) * dt_h


def battery_loss_kwh(p_kw, dt_h, eta):
    """Conversion loss [kWh] in one tick at grid-side power ``p_kw`` [kW] (always >= 0)."""
    return np.where(p_kw > 0.0, (1.0 - eta) * p_kw, -p_kw * (1.0 / eta - 1.0)) * dt_h


def rc_coefficient(r_k_per_kw, c_kwh_per_k, dt_h):
    """Decay factor ``a = exp(-dt_h / (R C))`` of the 1R1C model over one tick [-]."""
    return np.exp(-dt_h / (r_k_per_kw * c_kwh_per_k))


def rc_temperature_step(t_in_c, t_out_c, q_gain_kw, p_hvac_kw, cop, r_k_per_kw, a):
    """Indoor temperature [degC] after one tick of the 1R1C model with cooling.

    ``C dT/dt = (T_out - T_in)/R + Q_gain - COP * P_hvac``, integrated exactly for
    inputs held constant over the tick (``a`` from :func:`rc_coefficient`).
    """
    t_eq_c = t_out_c + r_k_per_kw * (q_gain_kw - cop * p_hvac_kw)
    return t_eq_c + (t_in_c - t_eq_c) * a


def rc_power_for_temperature(t_target_c, t_in_c, t_out_c, q_gain_kw, cop, r_k_per_kw, a):
    """HVAC electric power [kW] that brings the indoor temperature to ``t_target_c`` in one tick.

    The exact inverse of :func:`rc_temperature_step`; unclipped (may be negative
    or above the rating: callers clip to what the unit can do).
    """
    free_c = t_out_c + r_k_per_kw * q_gain_kw
    drift_c = a * t_in_c + (1.0 - a) * free_c
    return (drift_c - t_target_c) / ((1.0 - a) * r_k_per_kw * cop)


def split_by_room(delta_kw, *rooms_kw):
    """Split ``delta_kw`` over components in proportion to each one's room [kW].

    ``rooms_kw`` are non-negative per-device rooms of each component in the
    direction of ``delta_kw``; returns one share per component, each at most its
    room, summing to ``min(|delta|, total room)`` with the sign of ``delta_kw``.
    """
    total_kw = np.sum(rooms_kw, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(total_kw > 0.0, np.minimum(np.abs(delta_kw) / total_kw, 1.0), 0.0)
    sign = np.sign(delta_kw)
    return tuple(sign * frac * room for room in rooms_kw)


def taper_fraction(soc, taper_soc, taper_frac):
    """Charging acceptance as a fraction of the peak [-] at state of charge ``soc`` [-].

    Piecewise linear through the knots ``(taper_soc, taper_frac)`` (see
    :class:`vpp.fleets.parameters.ChargerParameters`); ``soc`` is clipped to
    [0, 1] so that an over- or under-full reading never extrapolates the curve.
    """
    return np.interp(np.clip(soc, 0.0, 1.0), np.asarray(taper_soc, dtype=float), np.asarray(taper_frac, dtype=float))


def _expm1_over_x(x):
    """``expm1(x) / x`` with its limit 1 at ``x = 0`` [-]."""
    nz = x != 0.0
    return np.where(nz, np.expm1(x) / np.where(nz, x, 1.0), 1.0)


def _log1p_over_y(y):
    """``log1p(y) / y`` with its limit 1 at ``y = 0`` [-] (``y > -1``)."""
    nz = y != 0.0
    return np.where(nz, np.log1p(y) / np.where(nz, y, 1.0), 1.0)


def _taper_walk(e_kwh, cap_kwh, p_rated_kw, p_peak_kw, eta, dt_h, taper_soc, taper_frac, backward):
    """Walk ``dE/dt = +-eta * p(E)`` over ``dt_h`` [h] piece by piece.

    Returns ``(live, e0, cap, moved_kwh)``: which devices could move, the
    start energy and capacity as broadcast float arrays (``cap`` is 1 where not
    live) and the energy moved [kWh] (>= 0, summed piece by piece rather than
    taken as a difference of levels, so that the rated case is exact).

    Shared by :func:`taper_energy_kwh` (forward in time) and
    :func:`taper_start_kwh` (backward). ``p(E) = min(p_rated, p_peak f(E/cap))``
    is piecewise linear in E; on each piece the solution is exponential (or
    linear) in time, so the walk is exact up to round-off.
    """
    knot_soc = np.asarray(taper_soc, dtype=float)
    knot_frac = np.asarray(taper_frac, dtype=float)
    if knot_soc.ndim != 1 or knot_soc.shape != knot_frac.shape or knot_soc.size < 2:
        raise ValueError("taper_soc and taper_frac must be 1-D sequences of equal length >= 2")
    e0, cap, p_rated, p_peak, eta_, dt = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (e_kwh, cap_kwh, p_rated_kw, p_peak_kw, eta, dt_h))
    )
    shape = e0.shape

    # Devices that cannot move at all are kept out of the arithmetic (a zero
    # capacity would make s = E / cap undefined); they keep their energy.
    live = (cap > 0.0) & (dt > 0.0) & (eta_ > 0.0) & (p_rated > 0.0) & (p_peak > 0.0) & np.isfinite(e0)
    cap = np.where(live, cap, 1.0)
    e = np.where(live, e0, 0.0)  # fresh arrays: the walk never touches the inputs
    t_rem_h = np.where(live, dt, 0.0)
    moved_kwh = np.zeros(shape)

    # Below s = 0 the curve keeps its first value (np.interp clamps), so a flat
    # leading segment from -inf covers energies below empty. Above s = 1 there
    # is no piece: a full battery takes nothing.
    seg_lo = np.concatenate(([-np.inf], knot_soc[:-1]))
    seg_hi = knot_soc
    frac_lo = np.concatenate(([knot_frac[0]], knot_frac[:-1]))
    slope = np.concatenate(([0.0], np.diff(knot_frac) / np.diff(knot_soc)))  # df/ds [-]

    def walk(e, t_rem_h, moved_kwh, e_lo_kwh, e_hi_kwh, p_now_kw, dp_de_kw_per_kwh):
        # Advance the devices inside the piece [e_lo, e_hi] towards its far end.
        # Backward in time the power grows as E falls: the same formulas with
        # the slope's sign flipped and the room measured downwards.
        if backward:
            room_kwh, k_kw_per_kwh = e - e_lo_kwh, -dp_de_kw_per_kwh
            inside = (e > e_lo_kwh) & (e <= e_hi_kwh)
        else:
            room_kwh, k_kw_per_kwh = e_hi_kwh - e, dp_de_kw_per_kwh
            inside = (e >= e_lo_kwh) & (e < e_hi_kwh)
        inside &= (t_rem_h > 0.0) & (p_now_kw > 0.0)
        p0 = np.where(inside, p_now_kw, 1.0)
        room = np.where(inside, room_kwh, 0.0)
        # Time to the far end: integral of dE / (eta p(E)) with p linear in E,
        # room / (eta p0) * log1p(y) / y, y = k * room / p0. y <= -1: the power
        # reaches 0 first, the end is approached but never reached.
        y = np.where(k_kw_per_kwh == 0.0, 0.0, k_kw_per_kwh * room / p0)
        reachable = y > -1.0
        t_end_h = np.where(reachable, room / (eta_ * p0) * _log1p_over_y(np.where(reachable, y, 0.0)), np.inf)
        reaches = inside & (t_rem_h >= t_end_h)
        # Short of the end: |E(t) - E0| = eta p0 t expm1(x) / x with x = eta k t.
        t_use = np.where(inside, t_rem_h, 0.0)
        free_kwh = eta_ * p0 * t_use * _expm1_over_x(eta_ * k_kw_per_kwh * t_use)
        step_kwh = np.where(inside, np.minimum(free_kwh, room), 0.0)
        e_far = e_lo_kwh if backward else e_hi_kwh
        e = np.where(reaches, e_far, e - step_kwh if backward else e + step_kwh)
        t_rem_h = np.where(reaches, t_rem_h - t_end_h, np.where(inside, 0.0, t_rem_h))
        return e, t_rem_h, moved_kwh + step_kwh

    segments = range(knot_soc.size - 1, -1, -1) if backward else range(knot_soc.size)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for k in segments:
            lo, hi, f_lo, f_hi, m = seg_lo[k], seg_hi[k], frac_lo[k], knot_frac[k], slope[k]
            # Where p_peak * f crosses p_rated in this segment: below the
            # crossing the charger's rating binds (flat), above it the taper.
            if m < 0.0:
                s_cross = hi + (p_rated / p_peak - f_hi) / m
            else:
                s_cross = np.full(shape, hi)
            s_cross = np.where(p_peak * f_hi >= p_rated, hi, np.where(p_peak * f_lo <= p_rated, lo, s_cross))
            e_lo, e_cross, e_hi = lo * cap, np.clip(s_cross, lo, hi) * cap, hi * cap
            dp_de = p_peak * m / cap  # slope of the tapered piece [kW/kWh]
            # Forward: the rated piece [lo, cross] first; backward: the tapered one.
            for tapered in ((True, False) if backward else (False, True)):
                if tapered:
                    # p = p_peak (f_hi + m (s - hi)); the min only absorbs round-off at the crossing.
                    p_kw = np.minimum(p_peak * (f_hi + m * (e / cap - hi)), p_rated)
                    e, t_rem_h, moved_kwh = walk(e, t_rem_h, moved_kwh, e_cross, e_hi, p_kw, dp_de)
                else:
                    e, t_rem_h, moved_kwh = walk(e, t_rem_h, moved_kwh, e_lo, e_cross, p_rated, 0.0)
    return live, e0, cap, moved_kwh


def taper_energy_kwh(e_kwh, cap_kwh, p_rated_kw, p_peak_kw, eta, dt_h, taper_soc, taper_frac, out=None):
    """Battery-side energy [kWh] a tapering battery takes in ``dt_h`` [h] at the most it accepts.

    The battery holds ``e_kwh`` of ``cap_kwh`` [kWh] and draws the grid-side
    power ``p(s) = min(p_rated_kw, p_peak_kw * f(s))`` [kW] at state of charge
    ``s = E / cap_kwh``, with ``f`` from :func:`taper_fraction`; it stores
    ``dE/dt = eta * p(s)``. The result is the exact solution of that ODE over
    ``dt_h``, stopped at ``cap_kwh``: always in ``[0, cap_kwh - e_kwh]`` and at
    most ``eta * p_rated_kw * dt_h``.

    ``p(s)`` is piecewise linear in ``s`` (breaks at the taper knots and where
    ``p_peak_kw * f`` crosses ``p_rated_kw``). On a piece with slope
    ``beta = dp/ds`` [kW] the power decays exponentially in time,
    ``p(t) = p0 * exp(eta * beta * t / cap_kwh)``, and is constant when
    ``beta = 0``; the pieces are walked in order (a loop over the handful of
    pieces, vectorised over devices), each consuming part of the remaining
    time. Where ``f`` reaches 0 the power decays to 0: that state of charge is
    approached but never passed. Below empty the curve is extended flat.

    Every argument but the knot tuples broadcasts per device; ``out`` (a float
    array of the broadcast shape) receives the result if given. Inputs are
    never mutated.
    """
    live, e0, cap, moved_kwh = _taper_walk(
        e_kwh, cap_kwh, p_rated_kw, p_peak_kw, eta, dt_h, taper_soc, taper_frac, backward=False
    )
    # Round-off in the walk must not push the answer outside [0, headroom].
    result = np.where(live, np.clip(moved_kwh, 0.0, np.maximum(cap - e0, 0.0)), 0.0)
    if out is not None:
        out[...] = result
        return out
    return result[()] if result.ndim == 0 else result


def taper_start_kwh(e_target_kwh, cap_kwh, p_rated_kw, p_peak_kw, eta, dt_h, taper_soc, taper_frac, out=None):
    """Lowest stored energy [kWh] from which charging at the most the battery accepts reaches a target.

    The exact inverse of :func:`taper_energy_kwh`: the ODE
    ``dE/dt = eta * min(p_rated_kw, p_peak_kw * f(E / cap_kwh))`` run backward
    for ``dt_h`` [h] from ``e_target_kwh`` [kWh], so that
    ``start + taper_energy_kwh(start, ..., dt_h) == e_target_kwh``. Below empty
    the curve is extended flat, so the answer is negative when the target is
    reachable from empty with time to spare (callers clip as they need). A
    target the battery can never reach from below (above ``cap_kwh``, at or past
    a state of charge where ``f`` is 0, or with no time or power) is its own
    start. Broadcasting, ``out`` and inputs as in :func:`taper_energy_kwh`.
    """
    live, e_tgt, cap, moved_kwh = _taper_walk(
        e_target_kwh, cap_kwh, p_rated_kw, p_peak_kw, eta, dt_h, taper_soc, taper_frac, backward=True
    )
    # Round-off must not move the start above the target or below what the rating allows.
    with np.errstate(invalid="ignore"):
        lowest_kwh = e_tgt - np.asarray(eta, dtype=float) * np.asarray(p_rated_kw, dtype=float) * dt_h
    result = np.where(live, np.clip(e_tgt - moved_kwh, lowest_kwh, e_tgt), e_tgt)
    if out is not None:
        out[...] = result
        return out
    return result[()] if result.ndim == 0 else result


def backup_reserve_kwh(backup_h, p_design_kw, eta):
    """Battery energy [kWh] that carries the design load ``p_design_kw`` [kW] for ``backup_h`` [h].

    Discharging draws ``1/eta`` of the delivered energy from the cells, hence
    ``backup_h * p_design_kw / eta``.
    """
    return np.multiply(backup_h, p_design_kw) / eta
