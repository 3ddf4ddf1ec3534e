"""Tapered charging kernels of :mod:`vpp.fleets.kernels`.

The model (../shared/DOMAIN.md: session power is the lower of the pile's rating
and the vehicle's acceptance, which tapers with state of charge) is the ODE

    dE/dt = eta * min(p_rated, p_peak * f(E / cap)),   stopped at E = cap     [kWh/h]

with ``f`` piecewise linear through the taper knots. Expected answers come from
elsewhere than the kernel's closed form: a tight adaptive integration of that
ODE with scipy, the semigroup property of any autonomous ODE, the rating and
headroom bounds, and the constant-power case worked by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.fleets.kernels import taper_energy_kwh, taper_fraction, taper_start_kwh

solve_ivp = pytest.importorskip("scipy.integrate").solve_ivp

DC_SOC, DC_FRAC = (0.0, 0.55, 0.8, 1.0), (1.0, 1.0, 1.0 / 3.0, 0.05)
KNOT_SETS = [
    (DC_SOC, DC_FRAC),  # CC-CV default of DOMAIN.md
    ((0.0, 0.8, 1.0), (1.0, 1.0, 0.05)),  # slow chargers
    ((0.0, 1.0), (1.0, 1.0)),  # no taper at all
    ((0.0, 0.5, 0.9, 1.0), (1.0, 0.7, 0.0, 0.0)),  # acceptance reaches 0 at 90 %: never passed
    ((0.0, 0.3, 0.6, 0.85, 1.0), (1.0, 0.9, 0.9, 0.2, 0.0)),  # a flat stretch below the peak, 0 at full
]


def _ode_energy_kwh(e_kwh, cap_kwh, p_rated_kw, p_peak_kw, eta, dt_h, knot_soc, knot_frac) -> float:
    """Energy taken in ``dt_h`` by adaptive Runge-Kutta (DOP853) on the ODE above [kWh]."""
    if dt_h <= 0.0 or e_kwh >= cap_kwh:
        return 0.0

    def rhs(_t, y):
        f = np.interp(np.clip(y[0] / cap_kwh, 0.0, 1.0), knot_soc, knot_frac)
        return [eta * min(p_rated_kw, p_peak_kw * f)]

    def full(_t, y):
        return y[0] - cap_kwh

    full.terminal = True
    full.direction = 1.0
    sol = solve_ivp(rhs, (0.0, dt_h), [e_kwh], method="DOP853", rtol=1e-12, atol=1e-12, events=full)
    return float(min(sol.y[0, -1], cap_kwh) - e_kwh)


def _random_devices(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    cap = rng.uniform(1.0, 120.0, n)
    soc = rng.uniform(0.0, 1.0, n)
    soc[: n // 10] = rng.choice([0.0, 0.55, 0.8, 0.9, 1.0], n // 10)  # exactly on knots and edges
    p_rated = rng.uniform(1.0, 600.0, n)
    p_peak = rng.uniform(1.0, 600.0, n)
    eta = rng.uniform(0.8, 1.0, n)
    dt = rng.uniform(0.0, 3.0, n) * rng.choice([0.01, 0.1, 1.0], n)
    return soc * cap, cap, p_rated, p_peak, eta, dt


@pytest.mark.parametrize("knots", KNOT_SETS)
def test_matches_fine_numerical_integration(knots):
    knot_soc, knot_frac = knots
    e, cap, p_rated, p_peak, eta, dt = _random_devices(np.random.default_rng(11), 120)
    got = taper_energy_kwh(e, cap, p_rated, p_peak, eta, dt, knot_soc, knot_frac)
    ref = np.array([_ode_energy_kwh(*row, knot_soc, knot_frac) for row in zip(e, cap, p_rated, p_peak, eta, dt)])
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("knots", KNOT_SETS)
def test_start_level_reaches_target_under_the_ode(knots):
    """taper_start_kwh: charging from its answer for dt_h ends at the target (checked by the ODE)."""
    knot_soc, knot_frac = knots
    rng = np.random.default_rng(12)
    target, cap, p_rated, p_peak, eta, dt = _random_devices(rng, 80)
    start = taper_start_kwh(target, cap, p_rated, p_peak, eta, dt, knot_soc, knot_frac)
    assert np.all(start <= target)
    assert np.all(start >= target - eta * p_rated * dt * (1.0 + 1e-12))
    for s0, t_kwh, c, pr, pp, et, d in zip(start, target, cap, p_rated, p_peak, eta, dt):
        if s0 == t_kwh:
            continue  # nothing to charge (or unreachable): checked below
        # A negative start means "reachable from below empty": integrate from 0 for the time it takes.
        assert _ode_energy_kwh(s0, c, pr, pp, et, d, knot_soc, knot_frac) + s0 == pytest.approx(t_kwh, rel=1e-6,
                                                                                                  abs=1e-8)


def test_start_level_of_unreachable_targets_is_the_target():
    knot_soc, knot_frac = (0.0, 0.5, 0.9, 1.0), (1.0, 0.7, 0.0, 0.0)
    # above the point where acceptance is 0, above capacity, no time, no rating
    target = np.array([95.0, 101.0, 50.0, 50.0])
    cap = np.array([100.0, 100.0, 100.0, 100.0])
    dt = np.array([1.0, 1.0, 0.0, 1.0])
    p_rated = np.array([50.0, 50.0, 50.0, 0.0])
    np.testing.assert_array_equal(taper_start_kwh(target, cap, p_rated, 80.0, 0.95, dt, knot_soc, knot_frac), target)


_knots = st.sampled_from(KNOT_SETS)
_device = st.tuples(
    st.floats(0.0, 1.0),  # soc
    st.floats(0.5, 150.0),  # cap_kwh
    st.floats(0.0, 700.0),  # p_rated_kw
    st.floats(0.0, 700.0),  # p_peak_kw
    st.floats(0.5, 1.0),  # eta
)


@settings(max_examples=300, deadline=None)
@given(device=_device, dt1=st.floats(0.0, 2.0), dt2=st.floats(0.0, 2.0), knots=_knots)
def test_semigroup(device, dt1, dt2, knots):
    """Energy over dt1 + dt2 equals energy over dt1 plus energy over dt2 from the state reached."""
    soc, cap, p_rated, p_peak, eta = device
    e0 = soc * cap
    first = taper_energy_kwh(e0, cap, p_rated, p_peak, eta, dt1, *knots)
    second = taper_energy_kwh(e0 + first, cap, p_rated, p_peak, eta, dt2, *knots)
    whole = taper_energy_kwh(e0, cap, p_rated, p_peak, eta, dt1 + dt2, *knots)
    assert first + second == pytest.approx(whole, rel=1e-9, abs=1e-9 * cap)


@settings(max_examples=300, deadline=None)
@given(device=_device, dt=st.floats(0.0, 5.0), knots=_knots)
def test_bounded_by_rating_and_headroom(device, dt, knots):
    soc, cap, p_rated, p_peak, eta = device
    e0 = soc * cap
    got = taper_energy_kwh(e0, cap, p_rated, p_peak, eta, dt, *knots)
    assert 0.0 <= got <= eta * p_rated * dt * (1.0 + 1e-12)
    assert got <= cap - e0
    # ... and the start level is its inverse: charging from it reaches the same level. (Compared
    # forward: near a zero of the acceptance the start itself is ill-conditioned.)
    start = taper_start_kwh(e0 + got, cap, p_rated, p_peak, eta, dt, *knots)
    assert start <= e0 + got
    if got > 0.0 and start >= 0.0:
        again = start + taper_energy_kwh(start, cap, p_rated, p_peak, eta, dt, *knots)
        assert again == pytest.approx(e0 + got, rel=1e-9, abs=1e-9 * cap)


@settings(max_examples=200, deadline=None)
@given(
    soc=st.floats(0.0, 0.5),
    cap=st.floats(1.0, 150.0),
    p_rated=st.floats(0.1, 600.0),
    headroom=st.floats(1.0, 5.0),
    eta=st.floats(0.5, 1.0),
    share=st.floats(0.0, 0.999),
)
def test_exact_rated_energy_below_first_drop(soc, cap, p_rated, headroom, eta, share):
    """Below the first knot where the curve drops (0.55) and with p_peak >= p_rated: eta * p_rated * dt_h."""
    e0 = soc * cap
    dt = share * (0.55 - soc) * cap / (eta * p_rated)  # stays below 55 % SoC
    got = taper_energy_kwh(e0, cap, p_rated, headroom * p_rated, eta, dt, DC_SOC, DC_FRAC)
    assert got == eta * p_rated * dt


def test_constant_power_then_full_by_hand():
    # No taper, 10 kW at eta 0.9 for 2 h: 18 kWh; with only 5 kWh of room it stops at 5.
    assert taper_energy_kwh(10.0, 100.0, 10.0, 50.0, 0.9, 2.0, (0.0, 1.0), (1.0, 1.0)) == pytest.approx(18.0)
    assert taper_energy_kwh(95.0, 100.0, 10.0, 50.0, 0.9, 2.0, (0.0, 1.0), (1.0, 1.0)) == pytest.approx(5.0)
    # Peak below the rating everywhere: the vehicle's 6 kW binds.
    assert taper_energy_kwh(10.0, 100.0, 10.0, 6.0, 1.0, 2.0, (0.0, 1.0), (1.0, 1.0)) == pytest.approx(12.0)


def test_exponential_decay_on_a_taper_piece_by_hand():
    # f = 1 - s on [0, 1]; p_peak 100 kW <= p_rated; cap 100 kWh, eta 1: dE/dt = 100 - E,
    # so E(t) = 100 - (100 - E0) exp(-t): from 20 kWh over 0.5 h, 80 (1 - exp(-0.5)) kWh.
    got = taper_energy_kwh(20.0, 100.0, 500.0, 100.0, 1.0, 0.5, (0.0, 1.0), (1.0, 0.0))
    assert got == pytest.approx(80.0 * (1.0 - np.exp(-0.5)), rel=1e-13)


def test_zero_acceptance_is_approached_never_passed():
    knot_soc, knot_frac = (0.0, 0.5, 0.9, 1.0), (1.0, 0.7, 0.0, 0.0)
    cap = 100.0
    got = taper_energy_kwh(np.array([10.0, 60.0, 89.0]), cap, 80.0, 80.0, 0.95, 50.0, knot_soc, knot_frac)
    assert np.all(got <= 90.0 - np.array([10.0, 60.0, 89.0]))
    assert got[0] > 79.0  # but it gets close
    # At or past the zero, nothing goes in.
    assert taper_energy_kwh(np.array([90.0, 95.0]), cap, 80.0, 80.0, 0.95, 5.0, knot_soc, knot_frac).tolist() == [0, 0]


@pytest.mark.parametrize(
    "e_kwh, p_rated_kw, dt_h",
    [(10.0, 50.0, 0.0), (100.0, 50.0, 1.0), (120.0, 50.0, 1.0), (10.0, 0.0, 1.0)],
)
def test_edge_cases_give_zero(e_kwh, p_rated_kw, dt_h):
    assert taper_energy_kwh(e_kwh, 100.0, p_rated_kw, 80.0, 0.95, dt_h, DC_SOC, DC_FRAC) == 0.0


def test_zero_capacity_and_zero_peak_give_zero():
    assert taper_energy_kwh(0.0, 0.0, 50.0, 80.0, 0.95, 1.0, DC_SOC, DC_FRAC) == 0.0
    assert taper_energy_kwh(0.0, 10.0, 50.0, 0.0, 0.95, 1.0, DC_SOC, DC_FRAC) == 0.0


@pytest.mark.parametrize("n", [0, 1, 9])
def test_shapes_out_and_inputs_unchanged(n):
    e, cap, p_rated, p_peak, eta, dt = _random_devices(np.random.default_rng(n), n)
    args = (e, cap, p_rated, p_peak, eta, dt)
    before = [a.copy() for a in args]
    got = taper_energy_kwh(*args, DC_SOC, DC_FRAC)
    assert got.shape == (n,)
    out = np.full(n, np.nan)
    assert taper_energy_kwh(*args, DC_SOC, DC_FRAC, out=out) is out
    np.testing.assert_array_equal(out, got)
    start = taper_start_kwh(*args, DC_SOC, DC_FRAC)
    assert start.shape == (n,)
    out2 = np.full(n, np.nan)
    assert taper_start_kwh(*args, DC_SOC, DC_FRAC, out=out2) is out2
    np.testing.assert_array_equal(out2, start)
    for b, a in zip(before, args, strict=True):
        np.testing.assert_array_equal(a, b)
    # Per device, the same as one device at a time (scalars in, scalar out).
    for i in range(n):
        one = taper_energy_kwh(*(a[i] for a in args), DC_SOC, DC_FRAC)
        assert np.ndim(one) == 0
        assert one == pytest.approx(got[i], rel=1e-15, abs=0.0)


def test_broadcast_scalars_against_arrays():
    e = np.array([0.0, 20.0, 40.0])
    got = taper_energy_kwh(e, 60.0, 120.0, np.array([[150.0], [300.0]]), 0.94, 0.25, DC_SOC, DC_FRAC)
    assert got.shape == (2, 3)
    assert got[1, 0] >= got[0, 0]  # a car that accepts more never takes less


def test_taper_fraction_by_hand():
    soc = np.array([-0.1, 0.0, 0.3, 0.55, 0.675, 0.8, 0.9, 1.0, 1.2])
    expected = [1.0, 1.0, 1.0, 1.0, (1.0 + 1.0 / 3.0) / 2.0, 1.0 / 3.0, (1.0 / 3.0 + 0.05) / 2.0, 0.05, 0.05]
    np.testing.assert_allclose(taper_fraction(soc, DC_SOC, DC_FRAC), expected, rtol=1e-15)
    assert taper_fraction(np.zeros(0), DC_SOC, DC_FRAC).shape == (0,)
