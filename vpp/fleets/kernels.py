"""Pure array kernels: device physics as array-in, array-out functions.

Every function works on scalars and on 1-D arrays of any length (including 0)
and never mutates its inputs. Powers [kW] follow the load convention of
:mod:`vpp.units` (charging positive, discharging negative); energies [kWh];
durations ``dt_h`` [h].
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "battery_power_bounds",
    "battery_energy_step",
    "battery_loss_kwh",
    "rc_coefficient",
    "rc_temperature_step",
    "rc_power_for_temperature",
    "split_by_room",
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
