"""5G base-station fleets: the backup reserve holds whatever the setpoints.

The reserve rule is from ../shared/DOMAIN.md: the battery "may carry the
site's load during a DR call (site grid draw -> 0) but must never fall below the
backup reserve: the energy that, after discharge losses, carries the site's
design (not current) load for the backup hours, i.e. backup hours x design load
/ discharge efficiency". Site load references are recomputed here from the
profile's hourly points with an explicit linear interpolation, independently of
:class:`vpp.profiles.Profile`; reserves from that formula written out here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from both_paths import assert_paths_agree  # tests/helpers: on pytest's pythonpath

from vpp.fleets import BaseStationFleet, BaseStationState
from vpp.fleets.parameters import BASESTATION_PARAMETERS
from vpp.profiles import PROFILES
from vpp.units import S_PER_H

MAX_TICKS = 300


def _profile_value(name: str, hod_h: float) -> float:
    """Periodic linear interpolation between the 24 hourly points of a profile."""
    pts = PROFILES[name].hourly
    h = hod_h % 24.0
    i = int(math.floor(h))
    w = h - i
    return (1.0 - w) * pts[i] + w * pts[(i + 1) % 24]


def _fleet(n: int, *, p_idle_kw, p_busy_kw, p_design_kw, cap_kwh, p_batt_max_kw, eta, backup_h, soc_min, soc_max,
           soc_init, traffic_profile, traffic_scale, clock_start_h) -> BaseStationFleet:
    return BaseStationFleet(
        "bs", np.zeros(n, dtype=np.int64), "towerco", 0.0,
        p_idle_kw=p_idle_kw, p_busy_kw=p_busy_kw, p_design_kw=p_design_kw, cap_kwh=cap_kwh,
        p_batt_max_kw=p_batt_max_kw, eta=eta, backup_h=backup_h, soc_min=soc_min, soc_max=soc_max,
        soc_init=soc_init, traffic_profile=traffic_profile, traffic_scale=traffic_scale, clock_start_h=clock_start_h,
    )


def _setpoints(rng: np.random.Generator, env) -> np.ndarray:
    """Arbitrary setpoints [kW]: inside, on and far outside the envelope, infinities included."""
    n = env.p_min_kw.shape[0]
    mode = rng.integers(0, 5)
    if mode == 0:
        return rng.uniform(-20.0, 20.0, n)
    if mode == 1:
        return env.p_min_kw.copy()
    if mode == 2:
        return env.p_default_kw.copy()
    if mode == 3:
        return rng.choice([-np.inf, -1e9, 1e9, np.inf], size=n)
    choices = np.stack([env.p_min_kw, env.p_max_kw, np.zeros(n), np.full(n, -np.inf),
                        rng.uniform(env.p_min_kw, env.p_max_kw)])
    return choices[rng.integers(0, choices.shape[0], size=n), np.arange(n)]


def _check_tick_energy(before: BaseStationState, after: BaseStationState, p_kw: np.ndarray, eta: float,
                       dt_s: float) -> None:
    """Energy balance of one tick: grid = site + battery change + losses, each recomputed from the powers."""
    dt_h = dt_s / S_PER_H
    p_batt_kw = p_kw - after.p_site_kw
    assert np.all(np.abs(after.p_batt_kw - p_batt_kw) <= 1e-12 * (1.0 + np.abs(p_kw)))
    d_e_kwh = after.e_kwh - before.e_kwh
    # Per site: the battery's grid-side energy is its stored change plus a non-negative loss that
    # matches the one-way efficiency ((1 - eta) p dt charging, (1/eta - 1) |p| dt discharging).
    loss_kwh = p_batt_kw * dt_h - d_e_kwh
    loss_ref_kwh = np.where(p_batt_kw > 0.0, (1.0 - eta) * p_batt_kw, -p_batt_kw * (1.0 / eta - 1.0)) * dt_h
    scale = 1e-9 * (1.0 + np.abs(before.e_kwh))
    assert np.all(loss_kwh >= -scale)
    np.testing.assert_allclose(loss_kwh, loss_ref_kwh, rtol=0.0, atol=1e-9)
    tol = 1e-12 * (1.0 + float(np.abs(before.e_kwh).sum()) + float(np.abs(p_kw).sum()) * dt_h)
    d_grid = after.e_grid_kwh - before.e_grid_kwh
    d_site = after.e_site_kwh - before.e_site_kwh
    d_batt = after.e_batt_net_kwh - before.e_batt_net_kwh
    d_loss = after.e_loss_kwh - before.e_loss_kwh
    assert d_grid == pytest.approx(float(p_kw.sum()) * dt_h, rel=1e-12, abs=tol)
    assert d_site == pytest.approx(float(after.p_site_kw.sum()) * dt_h, rel=1e-12, abs=tol)
    assert d_batt == pytest.approx(float(d_e_kwh.sum()), rel=0.0, abs=tol)
    assert d_loss == pytest.approx(float(loss_ref_kwh.sum()), rel=0.0, abs=1e-9 * max(1, p_kw.size))
    assert d_grid == pytest.approx(d_site + d_batt + d_loss, rel=0.0, abs=tol)


@settings(max_examples=50, deadline=None, database=None)
@given(
    n=st.integers(0, 30),
    dt_s=st.sampled_from([1.0, 60.0, 300.0, 900.0]),
    backup_h=st.floats(0.0, 8.0),
    soc_min=st.floats(0.0, 0.5),
    soc_max=st.floats(0.6, 1.0),
    eta=st.floats(0.8, 1.0),
    traffic_profile=st.sampled_from(["bs_traffic_urban", "residential_mv", "flat"]),
    clock_start_h=st.floats(0.0, 23.99),
    hours=st.floats(1.0, 8.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_basestation_invariants_and_energy_balance_under_arbitrary_setpoints(
    n, dt_s, backup_h, soc_min, soc_max, eta, traffic_profile, clock_start_h, hours, seed
):
    """Every tick, whatever the setpoints: no export, the reserve never breached by a discharge, recharge
    first below it, SoC bounds, and grid energy = site energy + battery change + losses."""
    rng = np.random.default_rng(seed)
    p_idle = rng.uniform(1.0, 4.0, n)
    p_busy = p_idle + rng.uniform(0.0, 6.0, n)
    p_design = p_busy * rng.uniform(0.5, 1.5, n)  # usually the busy load; any positive value is allowed
    cap = rng.uniform(5.0, 40.0, n)
    p_batt_max = rng.uniform(0.5, 10.0, n)
    scale = rng.uniform(0.5, 1.5, n)
    # Initial charge anywhere in [0, soc_max], often below the reserve or exactly at the edges.
    soc_init = np.where(rng.random(n) < 0.2, rng.choice([0.0, soc_min, soc_max], size=n), rng.uniform(0.0, soc_max, n))
    fleet = _fleet(n, p_idle_kw=p_idle, p_busy_kw=p_busy, p_design_kw=p_design, cap_kwh=cap,
                   p_batt_max_kw=p_batt_max, eta=eta, backup_h=backup_h, soc_min=soc_min, soc_max=soc_max,
                   soc_init=soc_init, traffic_profile=traffic_profile, traffic_scale=scale,
                   clock_start_h=clock_start_h)
    # The reserve carries the design load for backup_h after discharge losses; it does not move with traffic.
    reserve = backup_h * p_design / eta
    floor = np.maximum(reserve, soc_min * cap)
    np.testing.assert_allclose(fleet.reserve_kwh, reserve, rtol=1e-15)
    np.testing.assert_allclose(fleet.floor_kwh, floor, rtol=1e-15)
    state = fleet.initial_state()
    dt_h = dt_s / S_PER_H
    n_ticks = min(math.ceil(hours * S_PER_H / dt_s), MAX_TICKS)
    for i in range(n_ticks):
        t_s = i * dt_s
        fleet.advance(state, t_s, dt_s)
        traffic = np.clip(_profile_value(traffic_profile, clock_start_h + t_s / S_PER_H) * scale, 0.0, 1.0)
        p_site = p_idle + (p_busy - p_idle) * traffic
        np.testing.assert_allclose(state.p_site_kw, p_site, rtol=1e-12)
        before = state.copy()
        env = fleet.flexibility(state, t_s, dt_s)
        assert state.equals(before)
        assert np.all(env.p_min_kw <= env.p_default_kw) and np.all(env.p_default_kw <= env.p_max_kw)

        e_before = before.e_kwh
        p_kw = fleet.step(state, _setpoints(rng, env), t_s, dt_s, env)
        e_after = state.e_kwh

        assert np.all(env.p_min_kw <= p_kw) and np.all(p_kw <= env.p_max_kw)
        assert np.all(p_kw >= 0.0)  # a site never exports
        p_batt = p_kw - p_site
        assert np.all(np.abs(p_batt) <= p_batt_max * (1.0 + 1e-12) + 1e-12)  # the rectifier's limit
        discharged = e_after < e_before
        assert np.all(e_after[discharged] >= floor[discharged] - 1e-9)
        below = e_before < floor
        assert np.all(e_after[below] >= e_before[below])  # below the floor: no discharge...
        # ...and recharging towards the floor comes first, as fast as the battery allows.
        reach = np.minimum.reduce([floor, soc_max * cap, e_before + eta * p_batt_max * dt_h])
        assert np.all(e_after[below] >= reach[below] - 1e-9)
        # Round-off: discharging exactly to a floor of 0 kWh lands within ~1e-20 kWh of it, either side.
        soc = fleet.soc(state)
        assert np.all((soc >= -1e-12) & (soc <= 1.0))
        assert np.all(e_after <= np.maximum(soc_max * cap, e_before) + 1e-9)
        assert state.n_reserve_breaches == 0
        _check_tick_energy(before, state, p_kw, eta, dt_s)
        assert state.e_grid_kwh == pytest.approx(
            state.e_site_kwh + state.e_batt_net_kwh + state.e_loss_kwh, rel=1e-9, abs=1e-6
        )


def _macro(n: int, clock_start_h: float, traffic_profile: str, soc_init: float = 1.0) -> BaseStationFleet:
    p = BASESTATION_PARAMETERS["5g_macro"]
    return _fleet(n, p_idle_kw=p.p_idle_kw, p_busy_kw=p.p_busy_kw, p_design_kw=p.p_design_kw, cap_kwh=p.cap_kwh,
                  p_batt_max_kw=p.p_batt_max_kw, eta=p.eta, backup_h=p.backup_h, soc_min=p.soc_min,
                  soc_max=p.soc_max, soc_init=soc_init, traffic_profile=traffic_profile, traffic_scale=1.0,
                  clock_start_h=clock_start_h)


RESERVE_MACRO_KWH = 3.0 * 3.9 / 0.95  # 5g_macro: 3 h x 3.9 kW design load / 0.95 = 12.3158 kWh


def test_reserve_is_fixed_by_the_design_load_not_the_current_load():
    """Two sites with the same traffic and different design loads; the reserve never moves with traffic."""
    fleet = _fleet(2, p_idle_kw=2.3, p_busy_kw=3.9, p_design_kw=np.array([3.9, 6.0]), cap_kwh=25.0,
                   p_batt_max_kw=5.0, eta=0.95, backup_h=3.0, soc_min=0.1, soc_max=1.0, soc_init=1.0,
                   traffic_profile="bs_traffic_urban", traffic_scale=1.0, clock_start_h=0.0)
    np.testing.assert_allclose(fleet.reserve_kwh, [3.0 * 3.9 / 0.95, 3.0 * 6.0 / 0.95], rtol=1e-15)
    np.testing.assert_allclose(fleet.floor_kwh, fleet.reserve_kwh, rtol=0)  # soc_min * cap = 2.5 kWh is lower
    assert not fleet.reserve_kwh.flags.writeable and not fleet.floor_kwh.flags.writeable
    state = fleet.initial_state()
    for i in range(0, 24, 3):  # idle at night, busy at 21:00: the reserve is the same
        fleet.step_default(state, i * S_PER_H, 60.0)
        assert fleet.tick_metrics(state)["reserve_margin_min_kwh"] == pytest.approx(
            float(np.min(state.e_kwh - fleet.reserve_kwh)), rel=1e-12)
    np.testing.assert_allclose(fleet.reserve_kwh, [3.0 * 3.9 / 0.95, 3.0 * 6.0 / 0.95], rtol=1e-15)


def test_holding_p_min_at_flat_load_drains_exactly_to_the_reserve():
    """Hand-computed drain of one 5g_macro site at busy-hour load (flat profile, 1 min ticks).

    Site load 3.9 kW, reserve 3 h * 3.9 kW / 0.95 = 12.3158 kWh, battery from
    25 kWh. At p_min the battery carries the whole site (grid 0 kW; 3.9 kW <
    5 kW rating), drawing 3.9 / 0.95 kW from the cells: the 25 - 11.7 / 0.95
    kWh above the reserve last (23.75 - 11.7) / 3.9 h = 185.38 min, so 185
    full ticks at grid 0, one partial tick, and the grid carries the site
    (3.9 kW) from then on.
    """
    fleet = _macro(1, 17.0, "flat")
    np.testing.assert_allclose(fleet.reserve_kwh, RESERVE_MACRO_KWH, rtol=1e-15)
    state = fleet.initial_state()
    dt_s = 60.0
    p_grid = []
    e_kwh = []
    for i in range(300):
        fleet.advance(state, i * dt_s, dt_s)
        env = fleet.flexibility(state, i * dt_s, dt_s)
        p_grid.append(float(fleet.step(state, env.p_min_kw, i * dt_s, dt_s, env)[0]))
        e_kwh.append(float(state.e_kwh[0]))
    p_grid, e_kwh = np.array(p_grid), np.array(e_kwh)
    n_full = math.floor((25.0 - RESERVE_MACRO_KWH) * 0.95 / 3.9 * 60.0)
    assert n_full == 185
    np.testing.assert_array_equal(p_grid[:n_full], 0.0)
    assert 0.0 < p_grid[n_full] < 3.9
    np.testing.assert_allclose(p_grid[n_full + 1:], 3.9, rtol=1e-12)
    np.testing.assert_allclose(e_kwh[:n_full], 25.0 - np.arange(1, n_full + 1) * 3.9 / 0.95 / 60.0, rtol=1e-12)
    np.testing.assert_allclose(e_kwh[n_full:], RESERVE_MACRO_KWH, rtol=0, atol=1e-9)
    assert e_kwh.min() >= RESERVE_MACRO_KWH - 1e-9
    assert state.n_reserve_breaches == 0


def test_holding_p_min_over_an_urban_evening_drains_to_the_fixed_reserve_and_stays():
    """16:00-24:00 at p_min: the battery carries the site down to the reserve, then the grid carries it.

    Traffic rises to the 21:00 busy hour and falls after it; the reserve sized
    for the design load does not follow it. Reference: a plain loop over the
    ticks, the battery covering the site load (below its 5 kW rating) from its
    cells at ``p_site / eta`` until the reserve, the grid the rest.
    """
    p = BASESTATION_PARAMETERS["5g_macro"]
    fleet = _macro(3, 16.0, "bs_traffic_urban")
    state = fleet.initial_state()
    dt_s = 60.0
    dt_h = dt_s / S_PER_H
    e_ref = p.soc_max * p.cap_kwh
    reached = None
    p_site_seen = []
    for i in range(8 * 60):
        t_s = i * dt_s
        p_site = p.p_idle_kw + (p.p_busy_kw - p.p_idle_kw) * _profile_value("bs_traffic_urban", 16.0 + t_s / S_PER_H)
        p_site_seen.append(p_site)
        # Reference tick.
        drain_kwh = p_site / p.eta * dt_h
        if e_ref - drain_kwh >= RESERVE_MACRO_KWH:
            e_ref, p_grid_ref = e_ref - drain_kwh, 0.0
        else:
            p_grid_ref = p_site - (e_ref - RESERVE_MACRO_KWH) * p.eta / dt_h
            e_ref = RESERVE_MACRO_KWH
            reached = i if reached is None else reached
        # Fleet tick.
        fleet.advance(state, t_s, dt_s)
        env = fleet.flexibility(state, t_s, dt_s)
        p_kw = fleet.step(state, env.p_min_kw, t_s, dt_s, env)
        np.testing.assert_allclose(state.e_kwh, e_ref, rtol=0, atol=1e-9)
        np.testing.assert_allclose(p_kw, p_grid_ref, rtol=0, atol=1e-9)
        assert np.all(state.e_kwh >= RESERVE_MACRO_KWH - 1e-9)
    # Drain from 25 kWh at roughly 3.7 / 0.95 kW to the 12.3 kWh reserve takes ~3.3 h: it is
    # reached in the evening, before the busy hour at 21:00 (tick 300), and held through it.
    assert reached is not None and 180 < reached < 300
    assert max(p_site_seen[reached:]) == pytest.approx(p.p_busy_kw) and p_site_seen[-1] < p.p_busy_kw
    assert state.n_reserve_breaches == 0
    # Grid energy = site energy + battery change + losses over the evening.
    assert state.e_grid_kwh == pytest.approx(state.e_site_kwh + state.e_batt_net_kwh + state.e_loss_kwh, rel=1e-12)
    assert state.e_batt_net_kwh == pytest.approx(3 * (RESERVE_MACRO_KWH - 25.0), rel=1e-12)


def test_site_starting_below_reserve_recharges_first():
    # 5g_macro at flat busy load: reserve 12.3 kWh; start at 20% of 25 kWh = 5 kWh.
    # Even asked to discharge, it recharges at the 5 kW rating: 5 * 0.95 / 60 kWh per minute.
    fleet = _macro(1, 0.0, "flat", soc_init=0.2)
    state = fleet.initial_state()
    for i in range(10):
        fleet.advance(state, i * 60.0, 60.0)
        env = fleet.flexibility(state, i * 60.0, 60.0)
        assert env.p_min_kw[0] == pytest.approx(3.9 + 5.0, rel=1e-12)  # site load + forced recharge
        fleet.step(state, np.array([-np.inf]), i * 60.0, 60.0, env)
    assert state.e_kwh[0] == pytest.approx(5.0 + 10 * 5.0 * 0.95 / 60.0, rel=1e-12)
    assert state.n_reserve_breaches == 0


def test_empty_basestation_fleet():
    fleet = _macro(0, 0.0, "flat")
    state = fleet.initial_state()
    assert fleet.step_default(state, 0.0, 60.0).shape == (0,)
    assert fleet.summary(state)["n_devices"] == 0


# ------------------------------------------------------------------ compiled envelope (numba) against numpy

needs_numba = pytest.mark.skipif(
    __import__("importlib").util.find_spec("numba") is None, reason="numba is not installed"
)


@needs_numba
@settings(max_examples=40, deadline=None, database=None)
@given(
    n=st.sampled_from([0, 1, 2, 25]),
    dt_s=st.sampled_from([1.0, 60.0, 300.0, 900.0]),
    backup_h=st.floats(0.0, 8.0),
    soc_min=st.floats(0.0, 0.5),
    eta=st.floats(0.8, 1.0),
    clock_start_h=st.floats(0.0, 23.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_numba_envelope_equals_numpy_along_random_runs(n, dt_s, backup_h, soc_min, eta, clock_start_h, seed):
    """Two copies of a fleet's state, one stepped on each path under the same arbitrary setpoints: the
    envelopes agree to 1e-9 every tick (sites below, at and above their floor included), and so do the states."""
    rng = np.random.default_rng(seed)
    p_idle = rng.uniform(1.0, 4.0, n)
    p_busy = p_idle + rng.uniform(0.0, 6.0, n)
    cap = rng.uniform(5.0, 40.0, n)
    soc_init = np.where(rng.random(n) < 0.3, rng.choice([0.0, soc_min, 1.0], size=n), rng.uniform(0.0, 1.0, n))
    fleet = _fleet(n, p_idle_kw=p_idle, p_busy_kw=p_busy, p_design_kw=p_busy * rng.uniform(0.5, 1.5, n), cap_kwh=cap,
                   p_batt_max_kw=rng.uniform(0.5, 10.0, n), eta=eta, backup_h=backup_h, soc_min=soc_min, soc_max=1.0,
                   soc_init=soc_init, traffic_profile="bs_traffic_urban", traffic_scale=rng.uniform(0.5, 1.5, n),
                   clock_start_h=clock_start_h)
    assert_paths_agree(fleet, 24, dt_s, lambda env: _setpoints(rng, env), ("e_kwh",))


@needs_numba
def test_numba_envelope_of_an_empty_fleet():
    fleet = _macro(0, 18.0, "bs_traffic_urban")
    fleet.use_numba = True
    state = fleet.initial_state()
    fleet.advance(state, 0.0, 300.0)
    assert fleet.flexibility(state, 0.0, 300.0).p_min_kw.shape == (0,)
