"""Named parameter sets and profiles against the figures of ../shared/DOMAIN.md.

Each check recomputes the figure from the parameters (integrating profile
functions on a fine grid, the building's steady state in closed form, the
supercharger session with the taper kernel) rather than restating constants.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vpp.fleets.kernels import backup_reserve_kwh, taper_energy_kwh, taper_fraction
from vpp.fleets.parameters import (
    BASESTATION_PARAMETERS,
    BUILDING_PARAMETERS,
    CHARGER_PARAMETERS,
    ChargerParameters,
)
from vpp.profiles import get_profile

W_PER_KW = 1000.0


def _daily_integral(name: str) -> tuple[float, float]:
    """(integral over one day [unit x h], maximum) of a profile sampled every 0.1 s."""
    t_h = np.linspace(0.0, 24.0, 24 * 36_000 + 1)
    v = get_profile(name)(t_h)
    return float(np.trapezoid(v, t_h)), float(v.max())


@pytest.mark.parametrize("name", sorted(CHARGER_PARAMETERS))
def test_charger_mixture_and_knots_are_valid(name):
    p = CHARGER_PARAMETERS[name]
    assert sum(share for share, _, _ in p.p_accept_kw) == pytest.approx(1.0, abs=1e-12)
    assert all(share >= 0.0 and 0.0 <= lo <= hi for share, lo, hi in p.p_accept_kw)
    soc, frac = np.asarray(p.taper_soc), np.asarray(p.taper_frac)
    assert soc[0] == 0.0 and soc[-1] == 1.0 and np.all(np.diff(soc) > 0.0)
    assert frac[0] == 1.0 and np.all((frac >= 0.0) & (frac <= 1.0)) and np.all(np.diff(frac) <= 0.0)
    assert p.source


def test_dc_taper_follows_domain_shape():
    """Flat to ~55 % SoC, about a third of the peak by 80 %, far lower near full (DOMAIN.md)."""
    p = CHARGER_PARAMETERS["supercharger"]
    f = taper_fraction(np.array([0.5, 0.8, 1.0]), p.taper_soc, p.taper_frac)
    assert f[0] == 1.0 and f[1] == pytest.approx(1.0 / 3.0) and f[2] <= 0.1


@pytest.mark.parametrize(
    "change, match",
    [
        ({"p_accept_kw": ((0.5, 100.0, 250.0), (0.4, 270.0, 500.0))}, "sum to 1"),
        ({"p_accept_kw": ((1.0, 250.0, 100.0),)}, "lo_kw <= hi_kw"),
        ({"p_accept_kw": ()}, "at least one"),
        ({"taper_soc": (0.0, 0.6, 0.5, 1.0)}, "strictly increasing"),
        ({"taper_soc": (0.1, 0.55, 0.8, 1.0)}, "from 0.0 to 1.0"),
        ({"taper_frac": (0.9, 0.9, 0.3, 0.05)}, "start at 1.0"),
        ({"taper_frac": (1.0, 0.5, 0.6, 0.05)}, "non-increasing"),
        ({"taper_frac": (1.0, 1.0, 0.3, -0.1)}, r"\[0, 1\]"),
        ({"taper_frac": (1.0, 0.5)}, "same length"),
    ],
)
def test_charger_validation_rejects_bad_values(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(CHARGER_PARAMETERS["supercharger"], **change)


def test_ebike_cabinet_is_a_battery_batch():
    """~8-16 compartments of <= 60 V packs at a few hundred W: 2-5 kW per cabinet (DOMAIN.md)."""
    p = CHARGER_PARAMETERS["ebike_cabinet"]
    assert 2.0 <= p.p_rated_kw <= 5.0
    assert all(2.0 <= lo <= hi <= 5.0 for _, lo, hi in p.p_accept_kw)
    # The mean need fits what a mean batch can take from a mean arrival SoC.
    cap_mean = np.mean(p.cap_kwh)
    assert p.e_need_mean_kwh <= (p.soc_max - np.mean(p.soc_arrival)) * cap_mean


def test_pv_clear_sky_day():
    """A clear summer day in Shenzhen: ~5 kWh/kWp, AC peak 75-85 % of kWp (DOMAIN.md)."""
    yield_kwh_per_kwp, peak = _daily_integral("pv_clear_sky")
    assert 4.6 <= yield_kwh_per_kwp <= 5.4
    assert 0.75 <= peak <= 0.85


def test_pv_shenzhen_mean_day():
    """The annual-average day: ~3 kWh/kWp, 1,000-1,200 kWh/kWp a year (DOMAIN.md)."""
    yield_kwh_per_kwp, peak = _daily_integral("pv_shenzhen_mean")
    assert 2.7 <= yield_kwh_per_kwp <= 3.3
    assert 1000.0 <= 365.0 * yield_kwh_per_kwp <= 1200.0
    assert peak < _daily_integral("pv_clear_sky")[1]
    # PV output is zero at night.
    assert get_profile("pv_shenzhen_mean")(np.array([0.0, 3.0, 21.0, 23.5])).tolist() == [0.0] * 4


def test_office_peak_cooling_per_floor_area():
    """Steady-state peak electric cooling 30-60 W/m2 of floor (DOMAIN.md) and within the HVAC rating.

    1R1C at steady state: 0 = (T_out - T_set)/R + Q_internal - COP * P_hvac, at the hottest hour.
    """
    b = BUILDING_PARAMETERS["office_mid"]
    t_out_peak_c = _max_of("shenzhen_summer_temp_c")
    p_hvac_kw = ((t_out_peak_c - b.t_set_c) / b.r_k_per_kw + b.q_internal_kw) / b.cop
    w_per_m2 = p_hvac_kw * W_PER_KW / b.floor_area_m2
    assert 30.0 <= w_per_m2 <= 60.0
    assert p_hvac_kw < b.p_hvac_max_kw
    # Thermal cooling load 110-140 W/m2 (design-handbook index the figure is built on).
    assert 110.0 <= p_hvac_kw * b.cop * W_PER_KW / b.floor_area_m2 <= 140.0
    # Time constant R*C of a few hours.
    assert b.r_k_per_kw * b.c_kwh_per_k == pytest.approx(3.0, rel=0.01)


def test_office_pv_fits_the_roof():
    b = BUILDING_PARAMETERS["office_mid"]
    roof_m2 = b.floor_area_m2 / 5.0  # ~5 floors
    assert 100.0 <= b.pv_kwp <= 150.0
    assert b.pv_kwp * 6.0 <= roof_m2  # at least ~6 m2 per kWp on a flat roof


def _max_of(name: str) -> float:
    return float(get_profile(name)(np.linspace(0.0, 24.0, 24 * 600 + 1)).max())


def test_basestation_reserve():
    """Reserve = backup hours x design load / discharge efficiency (DOMAIN.md): 3 h x 3.9 kW / 0.95."""
    p = BASESTATION_PARAMETERS["5g_macro"]
    reserve_kwh = backup_reserve_kwh(p.backup_h, p.p_design_kw, p.eta)
    assert reserve_kwh == pytest.approx(3.0 * 3.9 / 0.95)
    assert reserve_kwh == pytest.approx(12.3, abs=0.05)
    assert reserve_kwh < p.cap_kwh * p.soc_max
    assert p.p_design_kw >= p.p_busy_kw  # sized for the full load, not the current one


def test_backup_reserve_kwh_on_arrays():
    backup_h = np.array([0.0, 3.0, 4.0])
    before = backup_h.copy()
    got = backup_reserve_kwh(backup_h, np.array([3.9, 3.9, 10.0]), 0.95)
    np.testing.assert_allclose(got, [0.0, 11.7 / 0.95, 40.0 / 0.95], rtol=1e-15)
    np.testing.assert_array_equal(backup_h, before)
    assert backup_reserve_kwh(np.zeros(0), 3.9, 0.95).shape == (0,)


def _time_to_deliver_h(p: ChargerParameters, e0_kwh, cap_kwh, p_peak_kw, e_need_kwh) -> np.ndarray:
    """Hours to deliver ``e_need_kwh`` at full tapered power, by bisection on taper_energy_kwh."""
    lo, hi = np.zeros_like(e_need_kwh), np.full_like(e_need_kwh, 24.0)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        e_kwh = taper_energy_kwh(e0_kwh, cap_kwh, p.p_rated_kw, p_peak_kw, p.eta, mid, p.taper_soc, p.taper_frac)
        short = e_kwh < e_need_kwh
        lo, hi = np.where(short, mid, lo), np.where(short, hi, mid)
    return hi


def test_supercharger_session_mean_power_well_below_rating():
    """A session's mean power is well below its peak (DOMAIN.md), let alone the 600 kW terminal.

    Typical session: mean capacity, mean arrival SoC, mean energy need; the
    typical car has the mixture's mean peak acceptance; each class's mid-range
    car and the fastest car are checked against their own peak.
    """
    p = CHARGER_PARAMETERS["supercharger"]
    shares = np.array([share for share, _, _ in p.p_accept_kw])
    mids_kw = np.array([0.5 * (lo + hi) for _, lo, hi in p.p_accept_kw])
    p_peak_kw = np.concatenate(([shares @ mids_kw], mids_kw, [max(hi for *_, hi in p.p_accept_kw)]))
    cap_kwh = np.full(p_peak_kw.shape, np.mean(p.cap_kwh))
    e0_kwh = np.mean(p.soc_arrival) * cap_kwh
    e_need_kwh = np.minimum(p.e_need_mean_kwh, p.soc_max * cap_kwh - e0_kwh)
    t_h = _time_to_deliver_h(p, e0_kwh, cap_kwh, p_peak_kw, e_need_kwh)
    p_mean_kw = e_need_kwh / (p.eta * t_h)  # grid side
    assert p_mean_kw[0] < 0.5 * p.p_rated_kw
    assert np.all(p_mean_kw < 0.9 * np.minimum(p_peak_kw, p.p_rated_kw))
    # ... and the typical session fits the typical dwell.
    assert t_h[0] < p.dwell_mean_h
