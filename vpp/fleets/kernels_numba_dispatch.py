"""Compiled (numba) envelopes of base stations and buildings: one pass over devices, no temporaries.

These envelopes sit on the dispatch latency path (a DR call to per-device
setpoints, ``vpp bench``): their numpy references
(:meth:`vpp.fleets.basestation.BaseStationFleet._envelope_numpy`,
:meth:`vpp.fleets.building.BuildingFleet._envelope_numpy`) make about a dozen
passes over length-n arrays, most into fresh temporaries, which at 10^5 to
10^6 devices costs more in memory traffic than in arithmetic. Here each device
is read once and its envelope written once.

Imported only on the first compiled call (see
:data:`vpp.fleets.kernels.NUMBA_AVAILABLE`), never by ``import vpp.fleets``.
Each kernel computes the same numbers as its reference, to round-off, and
applies the ordering guard of :meth:`vpp.fleets.base.Fleet.flexibility`
(``p_min <= p_default <= p_max``) itself; tests/fleets/test_basestation.py and
tests/fleets/test_building.py keep the two paths in agreement.

Units: powers [kW] (load convention), energies [kWh], ``dt_h`` [h],
temperatures [degC], thermal resistance [K/kW], capacitance [kWh/K].
"""

from __future__ import annotations

import numba

__all__ = ["basestation_envelope", "building_envelope"]


@numba.njit(cache=True)
def basestation_envelope(e_kwh, p_site_kw, floor_kwh, e_max_kwh, p_batt_max_kw, eta, dt_h, p_min_kw, p_max_kw,
                         p_default_kw):
    """Base-station envelope (same arithmetic, in the same order, as the numpy reference).

    Battery bounds as :func:`vpp.fleets.kernels.battery_power_bounds` with the
    discharge limited to the site load (a site never exports); a site below
    its floor must recharge towards it first.
    """
    inv_eta_dt_h = 1.0 / (eta * dt_h)
    eta_dt_h = eta * dt_h
    for i in range(e_kwh.shape[0]):
        e = e_kwh[i]
        p_site = p_site_kw[i]
        p_lim = p_batt_max_kw[i]
        headroom_kwh = max(e_max_kwh[i] - e, 0.0)
        available_kwh = max(e - floor_kwh[i], 0.0)
        b_max = min(p_lim, headroom_kwh / eta_dt_h)
        b_min = -min(min(p_lim, p_site), available_kwh * eta / dt_h)
        b_must = min(max(floor_kwh[i] - e, 0.0) * inv_eta_dt_h, b_max)
        if b_must > 0.0:
            b_min = b_must
        p_min = p_site + b_min
        p_max = max(p_site + b_max, p_min)
        p_min_kw[i] = p_min
        p_max_kw[i] = p_max
        p_default_kw[i] = p_max  # default: recharge at the most the battery takes


@numba.njit(cache=True, inline="always")
def _hvac_kw(t_target_c, drift_c, gain, p_hvac_max_kw):
    """HVAC power reaching ``t_target_c`` in one tick, clipped to [0, rating] (rc_power_for_temperature)."""
    return min(max((drift_c - t_target_c) / gain, 0.0), p_hvac_max_kw)


@numba.njit(cache=True)
def building_envelope(t_in_c, t_out_c, q_gain_kw, p_base_kw, p_pv_kw, e_batt_kwh, cop, r_k_per_kw, rc_a,
                      p_hvac_max_kw, t_set_c, t_min_c, t_max_c, e_batt_min_kwh, e_batt_max_kwh, p_batt_max_kw,
                      batt_eta, dt_h, a, hvac_min, hvac_max, hvac_def, b_def, b_min, b_max, p_min_kw, p_max_kw,
                      p_default_kw):
    """Building envelope and the HVAC and battery parts the step needs, written into the output arrays.

    The thermal part is :func:`vpp.fleets.kernels.rc_coefficient` and
    :func:`vpp.fleets.kernels.rc_power_for_temperature` at the band's warm
    edge (least HVAC), cool edge (most) and setpoint (default); the battery's
    :func:`vpp.fleets.kernels.battery_power_bounds`; by default the battery
    stores PV surplus only. ``rc_a`` is :func:`~vpp.fleets.kernels.rc_coefficient`
    for this ``dt_h``, computed by the caller (it depends on frozen parameters
    only): an ``exp`` per device here would make this loop scalar and cost as
    much as everything else in it. It is copied into ``a`` for the step.
    """
    eta_dt_h = batt_eta * dt_h
    for i in range(t_in_c.shape[0]):
        r = r_k_per_kw[i]
        a_i = rc_a[i]
        free_c = t_out_c + r * q_gain_kw[i]
        drift_c = a_i * t_in_c[i] + (1.0 - a_i) * free_c
        gain = (1.0 - a_i) * r * cop[i]
        p_hvac_max = p_hvac_max_kw[i]
        h_min = _hvac_kw(t_max_c[i], drift_c, gain, p_hvac_max)
        h_max = _hvac_kw(t_min_c[i], drift_c, gain, p_hvac_max)
        h_def = _hvac_kw(t_set_c[i], drift_c, gain, p_hvac_max)
        e = e_batt_kwh[i]
        p_lim = p_batt_max_kw[i]
        bb_max = min(p_lim, max(e_batt_max_kwh[i] - e, 0.0) / eta_dt_h)
        bb_min = -min(p_lim, max(e - e_batt_min_kwh[i], 0.0) * batt_eta / dt_h)
        fixed_kw = p_base_kw[i] + p_pv_kw[i]
        bb_def = min(max(-(fixed_kw + h_def), 0.0), bb_max)
        p_min = fixed_kw + h_min + bb_min
        p_max = max(fixed_kw + h_max + bb_max, p_min)
        p_def = min(max(fixed_kw + h_def + bb_def, p_min), p_max)
        a[i] = a_i
        hvac_min[i] = h_min
        hvac_max[i] = h_max
        hvac_def[i] = h_def
        b_def[i] = bb_def
        b_min[i] = bb_min
        b_max[i] = bb_max
        p_min_kw[i] = p_min
        p_max_kw[i] = p_max
        p_default_kw[i] = p_def
