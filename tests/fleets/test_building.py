"""Commercial buildings: envelope, comfort band, thermostat, setpoint relaxation and rebound.

Thermal references use the closed-form solution of the 1R1C model with inputs
held over a tick (../shared/DOMAIN.md; kernel docstring in vpp/fleets/kernels.py)::

    C dT/dt = (T_out - T)/R + Q - COP P
    T(dt) = T_eq(P) + (T(0) - T_eq(P)) exp(-dt / (R C)),   T_eq(P) = T_out + R (Q - COP P)

written out here with its own profile interpolation, independently of the fleet.
Since T(dt) falls with P, the warm edge ``t_max_c`` is reachable in a tick iff
``T(dt; P = p_hvac_max_kw) <= t_max_c``, and the cool edge is never undershot
iff ``T(dt; P = 0) >= t_min_c``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from both_paths import assert_paths_agree  # tests/helpers: on pytest's pythonpath

from vpp.fleets import BuildingFleet, BuildingState
from vpp.fleets.parameters import BUILDING_PARAMETERS
from vpp.profiles import PROFILES
from vpp.units import S_PER_H

MAX_TICKS = 300
OFFICE = BUILDING_PARAMETERS["office_mid"]
OUTDOOR = "shenzhen_summer_temp_c"


def _profile_value(name: str, hod_h: float) -> float:
    """Periodic linear interpolation between the 24 hourly points of a profile."""
    pts = PROFILES[name].hourly
    h = hod_h % 24.0
    i = int(math.floor(h))
    w = h - i
    return (1.0 - w) * pts[i] + w * pts[(i + 1) % 24]


def _t_end(fleet: BuildingFleet, t_in, p_hvac_kw, t_s: float, dt_s: float, clock_start_h: float) -> np.ndarray:
    """Indoor temperature after one tick at HVAC power ``p_hvac_kw`` (closed form, module docstring)."""
    hod_h = clock_start_h + t_s / S_PER_H
    t_out = _profile_value(OUTDOOR, hod_h)
    q_kw = fleet.q_internal_peak_kw * _profile_value(OFFICE.base_profile, hod_h)
    r, c, cop = fleet.r_k_per_kw, fleet.c_kwh_per_k, fleet.cop
    t_eq = t_out + r * (q_kw - cop * p_hvac_kw)
    return t_eq + (t_in - t_eq) * np.exp(-(dt_s / S_PER_H) / (r * c))


def _office(n: int, *, clock_start_h: float, t_in_init_c, size=1.0, hvac_factor=1.0, pv=0.0, batt=0.0,
            t_set_c=OFFICE.t_set_c, t_min_c=OFFICE.t_min_c, t_max_c=OFFICE.t_max_c,
            soc_min=0.1, soc_max=0.95, soc_init=0.6) -> BuildingFleet:
    """office_mid buildings scaled by ``size`` the way vpp.build scales them (R / size, the rest * size)."""
    p = OFFICE
    return BuildingFleet(
        "offices", np.zeros(n, dtype=np.int64), "bldg", 0.0,
        p_base_kw=p.p_base_kw * size, base_profile=p.base_profile, p_hvac_max_kw=p.p_hvac_max_kw * size * hvac_factor,
        cop=p.cop, r_k_per_kw=p.r_k_per_kw / size, c_kwh_per_k=p.c_kwh_per_k * size,
        q_internal_kw=p.q_internal_kw * size, t_set_c=t_set_c, t_min_c=t_min_c, t_max_c=t_max_c,
        t_in_init_c=t_in_init_c, pv_kwp=p.pv_kwp * size * pv, batt_cap_kwh=p.batt_cap_kwh * size * batt,
        p_batt_max_kw=p.p_batt_max_kw * size, batt_eta=p.batt_eta, soc_min=soc_min, soc_max=soc_max,
        soc_init=soc_init, outdoor_profile=OUTDOOR, irradiance_profile="pv_clear_sky", clock_start_h=clock_start_h,
    )


def _setpoints(rng: np.random.Generator, env) -> np.ndarray:
    """Arbitrary setpoints [kW]: inside, on and far outside the envelope, infinities included."""
    n = env.p_min_kw.shape[0]
    mode = rng.integers(0, 5)
    if mode == 0:
        return rng.uniform(-500.0, 500.0, n)
    if mode == 1:
        return env.p_min_kw.copy()
    if mode == 2:
        return env.p_max_kw.copy()
    if mode == 3:
        return rng.choice([-np.inf, -1e9, 1e9, np.inf], size=n)
    choices = np.stack([env.p_min_kw, env.p_max_kw, env.p_default_kw, np.zeros(n),
                        rng.uniform(env.p_min_kw, env.p_max_kw)])
    return choices[rng.integers(0, choices.shape[0], size=n), np.arange(n)]


def _check_tick(fleet: BuildingFleet, state: BuildingState, env, p_kw, before: BuildingState, t_s, dt_s,
                clock_start_h) -> int:
    """Assert the per-tick invariants; return how many devices had the band reachable from both sides.

    ``before`` is a copy of the state taken after ``advance`` and before ``step``.
    """
    t_in_before, e_batt_before = before.t_in_c, before.e_batt_kwh
    assert np.all(env.p_min_kw <= env.p_default_kw) and np.all(env.p_default_kw <= env.p_max_kw)
    assert np.all(env.p_min_kw <= p_kw) and np.all(p_kw <= env.p_max_kw)
    p_hvac = state.p_hvac_kw
    assert np.all((p_hvac >= 0.0) & (p_hvac <= fleet.p_hvac_max_kw))
    # Power balance: the metered power is the sum of its parts.
    parts = state.p_base_kw + state.p_pv_kw + p_hvac + state.p_batt_kw
    np.testing.assert_allclose(parts, p_kw, rtol=0, atol=1e-9 * max(1.0, float(np.abs(p_kw).max(initial=0.0))))
    # Battery stays in its SoC window when it started inside it, within its power limit.
    has = fleet.batt_cap_kwh > 0.0
    lo, hi = fleet.soc_min * fleet.batt_cap_kwh, fleet.soc_max * fleet.batt_cap_kwh
    inside = has & (e_batt_before >= lo) & (e_batt_before <= hi)
    tol = 1e-9 * np.maximum(fleet.batt_cap_kwh, 1.0)
    assert np.all(state.e_batt_kwh[inside] >= lo[inside] - tol[inside])
    assert np.all(state.e_batt_kwh[inside] <= hi[inside] + tol[inside])
    assert np.all(np.abs(state.p_batt_kw) <= fleet.p_batt_max_kw * (1.0 + 1e-12))
    assert np.all(state.p_batt_kw[~has] == 0.0)
    # The temperature is the 1R1C solution at the HVAC power actually drawn.
    np.testing.assert_allclose(
        state.t_in_c, _t_end(fleet, t_in_before, p_hvac, t_s, dt_s, clock_start_h), rtol=0, atol=1e-9
    )
    # Comfort band, where it is reachable this tick (module docstring).
    warm_ok = _t_end(fleet, t_in_before, fleet.p_hvac_max_kw, t_s, dt_s, clock_start_h) <= fleet.t_max_c
    cool_ok = _t_end(fleet, t_in_before, 0.0, t_s, dt_s, clock_start_h) >= fleet.t_min_c
    assert np.all(state.t_in_c[warm_ok] <= fleet.t_max_c[warm_ok] + 1e-9)
    assert np.all(state.t_in_c[cool_ok] >= fleet.t_min_c[cool_ok] - 1e-9)
    # Out of reach of the warm edge, the HVAC does its best: full power.
    np.testing.assert_array_equal(p_hvac[~warm_ok], fleet.p_hvac_max_kw[~warm_ok])
    _check_tick_energy(fleet, before, state, p_kw, dt_s)
    return int((warm_ok & cool_ok).sum())


def _check_tick_energy(fleet: BuildingFleet, before: BuildingState, after: BuildingState, p_kw, dt_s) -> None:
    """Energy accounts of one tick, each recomputed from the powers drawn.

    Grid = base + PV + HVAC + battery at the meter; the battery's grid-side
    energy = its stored change + a non-negative conversion loss that matches
    the one-way efficiency.
    """
    dt_h = dt_s / S_PER_H
    eta = fleet.batt_eta
    p_batt = after.p_batt_kw
    d_e = after.e_batt_kwh - before.e_batt_kwh
    loss_ref = np.where(p_batt > 0.0, (1.0 - eta) * p_batt, -p_batt * (1.0 / eta - 1.0)) * dt_h
    np.testing.assert_allclose(p_batt * dt_h, d_e + loss_ref, rtol=0.0, atol=1e-9)
    assert np.all(loss_ref >= 0.0)
    tol = 1e-12 * (1.0 + float(np.abs(p_kw).sum()) * dt_h + float(np.abs(before.e_batt_kwh).sum()))
    d_grid = after.e_grid_kwh - before.e_grid_kwh
    assert d_grid == pytest.approx(float(p_kw.sum()) * dt_h, rel=1e-12, abs=tol)
    parts_kwh = float((after.p_base_kw + after.p_pv_kw + after.p_hvac_kw + p_batt).sum()) * dt_h
    assert d_grid == pytest.approx(parts_kwh, rel=1e-9, abs=1e-9)
    d_hvac = after.e_hvac_kwh - before.e_hvac_kwh
    d_pv = after.e_pv_kwh - before.e_pv_kwh
    assert d_hvac == pytest.approx(float(after.p_hvac_kw.sum()) * dt_h, rel=1e-12, abs=tol)
    assert d_pv == pytest.approx(-float(after.p_pv_kw.sum()) * dt_h, rel=1e-12, abs=tol)
    d_loss = after.e_batt_loss_kwh - before.e_batt_loss_kwh
    assert d_loss == pytest.approx(float(loss_ref.sum()), rel=1e-12, abs=tol)


@settings(max_examples=40, deadline=None, database=None)
@given(
    n=st.integers(0, 20),
    dt_s=st.sampled_from([1.0, 60.0, 300.0, 900.0]),
    hvac_factor_max=st.floats(0.2, 1.5),
    band=st.tuples(st.floats(19.0, 29.0), st.floats(0.5, 6.0)),  # a warm band can be undershot at night
    soc_window=st.tuples(st.floats(0.0, 0.4), st.floats(0.6, 1.0)),
    clock_start_h=st.floats(0.0, 23.99),
    hours=st.floats(1.0, 12.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_building_invariants_and_energy_balance_under_arbitrary_setpoints(n, dt_s, hvac_factor_max, band, soc_window,
                                                                          clock_start_h, hours, seed):
    """Every tick, whatever the setpoints: power balance at the meter, HVAC and battery limits, the 1R1C
    temperature, the comfort band where reachable, and the energy accounts (battery losses included)."""
    rng = np.random.default_rng(seed)
    t_min, width = band
    t_max = t_min + width
    soc_min, soc_max = soc_window
    fleet = _office(
        n, clock_start_h=clock_start_h,
        t_in_init_c=rng.uniform(t_min, t_max, n),
        size=rng.uniform(0.5, 1.5, n),
        hvac_factor=rng.uniform(0.1, hvac_factor_max, n),  # undersized units make the band unreachable
        pv=(rng.random(n) < 0.5).astype(float), batt=(rng.random(n) < 0.5).astype(float),
        t_set_c=rng.uniform(t_min, t_max, n), t_min_c=t_min, t_max_c=t_max,
        soc_min=soc_min, soc_max=soc_max, soc_init=rng.uniform(soc_min, soc_max, n),
    )
    state = fleet.initial_state()
    n_ticks = min(math.ceil(hours * S_PER_H / dt_s), MAX_TICKS)
    for i in range(n_ticks):
        t_s = i * dt_s
        fleet.advance(state, t_s, dt_s)
        before = state.copy()
        env = fleet.flexibility(state, t_s, dt_s)
        assert state.equals(before)
        p_kw = fleet.step(state, _setpoints(rng, env), t_s, dt_s, env)
        _check_tick(fleet, state, env, p_kw, before, t_s, dt_s, clock_start_h)


@pytest.mark.parametrize("dt_s", [60.0, 300.0, 900.0])
def test_office_mid_in_shenzhen_summer_holds_the_band_all_day(dt_s):
    """The default office is sized for the band: reachable every tick, whatever the setpoints, for a whole day."""
    rng = np.random.default_rng(int(dt_s))
    n = 12
    fleet = _office(n, clock_start_h=0.0, t_in_init_c=rng.uniform(OFFICE.t_min_c, OFFICE.t_max_c, n),
                    size=rng.uniform(0.8, 1.2, n), pv=1.0, batt=1.0)
    state = fleet.initial_state()
    for i in range(int(24 * S_PER_H / dt_s)):
        t_s = i * dt_s
        fleet.advance(state, t_s, dt_s)
        before = state.copy()
        env = fleet.flexibility(state, t_s, dt_s)
        p_kw = fleet.step(state, _setpoints(rng, env), t_s, dt_s, env)
        assert _check_tick(fleet, state, env, p_kw, before, t_s, dt_s, 0.0) == n
        assert np.all((state.t_in_c >= OFFICE.t_min_c - 1e-9) & (state.t_in_c <= OFFICE.t_max_c + 1e-9))
    assert state.comfort_violation_kh == pytest.approx(0.0, abs=1e-9)


def _unsaturated(fleet, t_in_before, t_s, dt_s, clock_start_h) -> np.ndarray:
    """Whether the setpoint is reachable this tick: T(P=p_max) <= t_set <= T(P=0)."""
    t_full = _t_end(fleet, t_in_before, fleet.p_hvac_max_kw, t_s, dt_s, clock_start_h)
    t_off = _t_end(fleet, t_in_before, 0.0, t_s, dt_s, clock_start_h)
    return (t_full <= fleet.t_set_c) & (fleet.t_set_c <= t_off)


@pytest.mark.parametrize("dt_s", [1.0, 60.0, 300.0, 900.0])
def test_thermostat_holds_setpoint_at_default_power(dt_s):
    """Starting at 25 degC the default keeps exactly 25 degC; starting at 26.5 degC it pulls down at full power first."""
    clock_start_h = 10.0
    fleet = _office(2, clock_start_h=clock_start_h, t_in_init_c=np.array([OFFICE.t_set_c, 26.5]))
    # From 26.5 degC at full power, T_eq = 31 + 0.05 (60 - 3.2 * 80) = 21.2 degC at 10:00 and tau = 3 h:
    # 25 degC is reached after ~3 h * ln(5.3 / 3.8) = 1 h; run 75 min at 1 s ticks, 6 h otherwise.
    n_ticks = min(int(6 * S_PER_H / dt_s), 4500)
    state = fleet.initial_state()
    history = []
    for i in range(n_ticks):
        t_s = i * dt_s
        t_before = state.t_in_c.copy()
        free = _unsaturated(fleet, t_before, t_s, dt_s, clock_start_h)
        fleet.step_default(state, t_s, dt_s)
        history.append((free, t_before, state.t_in_c.copy(), state.p_hvac_kw.copy()))
        np.testing.assert_allclose(state.t_in_c[free], OFFICE.t_set_c, rtol=0, atol=1e-6)
    frees = np.array([h[0] for h in history])
    # Building 0 sits at the setpoint and is never saturated (office_mid is sized for it).
    assert frees[:, 0].all()
    # Building 1 starts saturated: full power, and cools monotonically until it reaches the setpoint.
    assert not frees[0, 1] and history[0][3][1] == fleet.p_hvac_max_kw[1]
    first_free = int(np.argmax(frees[:, 1]))
    assert frees[first_free:, 1].all() and frees[first_free, 1]
    temps = np.array([h[2][1] for h in history[:first_free]])
    assert np.all(np.diff(temps) < 0.0)


def test_relaxation_to_t_max_then_rebound_after_the_call():
    """Hold p_min 14:00-16:00: the room warms to t_max_c and holds it; back to default, the HVAC rebounds.

    Compared with a twin left at its default all along (the no-call counterfactual): a copy of the
    same office's initial state, stepped by the same fleet.
    """
    dt_s, clock_start_h = 300.0, 13.0
    call = (12, 36)  # ticks of 14:00-16:00
    fleet = _office(1, clock_start_h=clock_start_h, t_in_init_c=OFFICE.t_set_c)
    called = fleet.initial_state()
    twin = called.copy()
    rows = []
    for i in range(60):  # 13:00-18:00
        t_s = i * dt_s
        fleet.advance(called, t_s, dt_s)
        env = fleet.flexibility(called, t_s, dt_s)
        fleet.step(called, env.p_min_kw if call[0] <= i < call[1] else env.p_default_kw, t_s, dt_s, env)
        fleet.step_default(twin, t_s, dt_s)
        rows.append((called.t_in_c[0], called.p_hvac_kw[0], twin.t_in_c[0], twin.p_hvac_kw[0]))
    t_c, p_c, t_b, p_b = (np.array(col) for col in zip(*rows, strict=True))
    np.testing.assert_allclose(t_b, OFFICE.t_set_c, atol=1e-6)  # the twin holds its setpoint
    during = slice(call[0], call[1])
    assert np.all(np.diff(t_c[during]) >= -1e-12)  # warming up during the call
    assert np.all(t_c[during] <= OFFICE.t_max_c + 1e-9)
    at_edge = np.isclose(t_c[during], OFFICE.t_max_c, rtol=0, atol=1e-6)
    assert at_edge[-1] and at_edge.sum() >= 3  # relaxed to t_max_c and held there
    assert np.all(p_c[during] <= p_b[during] + 1e-9)
    assert np.all(p_c[during][at_edge] > 0.0)  # holding 27 degC still takes some cooling at 15:00
    # Rebound: right after the call the HVAC draws more than the no-call default at the same time,
    # until the room is back at its setpoint; it costs more energy than the twin over the recovery.
    after = slice(call[1], None)
    assert p_c[call[1]] > p_b[call[1]]
    assert p_c[after].sum() > p_b[after].sum()
    np.testing.assert_allclose(t_c[-1], OFFICE.t_set_c, atol=1e-6)


def test_empty_building_fleet():
    fleet = _office(0, clock_start_h=0.0, t_in_init_c=np.zeros(0))
    state = fleet.initial_state()
    fleet.advance(state, 0.0, 300.0)
    env = fleet.flexibility(state, 0.0, 300.0)
    assert env.p_min_kw.shape == (0,)
    assert fleet.step(state, np.zeros(0), 0.0, 300.0, env).shape == (0,)
    assert fleet.step_default(state, 300.0, 300.0).shape == (0,)
    assert fleet.summary(state)["n_devices"] == 0


# ------------------------------------------------------------------ compiled envelope (numba) against numpy

needs_numba = pytest.mark.skipif(
    __import__("importlib").util.find_spec("numba") is None, reason="numba is not installed"
)
WORK = ("a", "hvac_min", "hvac_max", "hvac_def", "b_def", "b_min", "b_max")  # what the step reads back


@needs_numba
@settings(max_examples=30, deadline=None, database=None)
@given(
    n=st.sampled_from([0, 1, 2, 20]),
    dt_s=st.sampled_from([1.0, 60.0, 300.0, 900.0]),
    band=st.tuples(st.floats(19.0, 29.0), st.floats(0.5, 6.0)),
    clock_start_h=st.floats(0.0, 23.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_numba_envelope_equals_numpy_along_random_runs(n, dt_s, band, clock_start_h, seed):
    """Two copies of a fleet's state, one stepped on each path under the same arbitrary setpoints: the
    envelope and the HVAC and battery parts the step reads back agree to 1e-9 every tick, and so do the
    states (PV, batteries, undersized units and unreachable bands included)."""
    rng = np.random.default_rng(seed)
    t_min, width = band
    fleet = _office(
        n, clock_start_h=clock_start_h, t_in_init_c=rng.uniform(t_min - 1.0, t_min + width + 1.0, n),
        size=rng.uniform(0.5, 1.5, n), hvac_factor=rng.uniform(0.1, 1.5, n),
        pv=(rng.random(n) < 0.5).astype(float), batt=(rng.random(n) < 0.5).astype(float),
        t_set_c=rng.uniform(t_min, t_min + width, n), t_min_c=t_min, t_max_c=t_min + width,
        soc_init=rng.uniform(0.1, 0.95, n),
    )
    assert_paths_agree(fleet, 24, dt_s, lambda env: _setpoints(rng, env),
                       ("t_in_c", "e_batt_kwh", "p_hvac_kw", "p_batt_kw"), WORK)


@needs_numba
@pytest.mark.parametrize("dt_s", [60.0, 300.0])
def test_rc_coefficient_is_recomputed_when_the_tick_length_changes(dt_s):
    fleet = _office(3, clock_start_h=12.0, t_in_init_c=np.full(3, 24.0), size=np.array([0.5, 1.0, 1.5]))
    fleet.use_numba = True
    state = fleet.initial_state()
    for dt in (dt_s, 2 * dt_s, dt_s):
        fleet.advance(state, 0.0, dt)
        env = fleet.flexibility(state, 0.0, dt)
        np.testing.assert_array_equal(env.work.a, np.exp(-(dt / S_PER_H) / (fleet.r_k_per_kw * fleet.c_kwh_per_k)))


@needs_numba
def test_numba_envelope_of_an_empty_fleet():
    fleet = _office(0, clock_start_h=0.0, t_in_init_c=np.zeros(0))
    fleet.use_numba = True
    state = fleet.initial_state()
    fleet.advance(state, 0.0, 300.0)
    assert fleet.flexibility(state, 0.0, 300.0).p_min_kw.shape == (0,)
