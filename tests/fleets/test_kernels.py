"""Pure array kernels of :mod:`vpp.fleets.kernels` on shapes (0,), (1,) and (n,).

Reference values are worked out by hand in the row tables below (each row says
how), or computed independently of the kernel: the 1R1C step is checked against
the closed-form solution of the linear ODE written out here with ``math.exp``
and against a fine-step Runge-Kutta integration of

    C dT/dt = (T_out - T_in)/R + Q_gain - COP * P_hvac          [kWh/K * K/h = kW]

(the model stated in ../shared/DOMAIN.md and in the kernel's docstring).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vpp.fleets.kernels import (
    backup_reserve_kwh,
    battery_energy_step,
    battery_loss_kwh,
    battery_power_bounds,
    rc_coefficient,
    rc_power_for_temperature,
    rc_temperature_step,
    split_by_room,
)

SHAPES = [(0,), (1,), (7,)]


def _tile(rows: list[tuple], n: int) -> list[np.ndarray]:
    """Columns of ``n`` rows taken cyclically from ``rows`` (shape (n,) each)."""
    idx = np.arange(n) % len(rows)
    table = np.asarray(rows, dtype=float)
    return [table[idx, j] for j in range(table.shape[1])]


def _frozen_copies(*arrays: np.ndarray) -> list[np.ndarray]:
    return [np.array(a, copy=True) for a in arrays]


def _assert_unchanged(before: list[np.ndarray], after: tuple) -> None:
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------
# battery_power_bounds
# --------------------------------------------------------------------------------------------

# (e, e_min, e_max, p_charge_max, p_discharge_max, dt_h, eta, p_min_expected, p_max_expected)
# worked by hand from "charging stores eta*p*dt_h; discharging draws -p*dt_h/eta":
_BOUNDS_ROWS = [
    # mid window: headroom 40 kWh -> 40/(0.9*0.25) = 177.8 kW > 20; available 40 -> 40*0.9/0.25 = 144 > 20
    (50.0, 10.0, 90.0, 20.0, 20.0, 0.25, 0.9, -20.0, 20.0),
    # near full: headroom 2 kWh -> 2/(0.9*0.25) = 8.888... kW
    (88.0, 10.0, 90.0, 20.0, 20.0, 0.25, 0.9, -20.0, 2.0 / 0.225),
    # near empty: available 2 kWh -> 2*0.9/0.25 = 7.2 kW
    (12.0, 10.0, 90.0, 20.0, 20.0, 0.25, 0.9, -7.2, 20.0),
    # below e_min: no discharge at all; charge limited by rating
    (5.0, 10.0, 90.0, 20.0, 15.0, 0.25, 0.9, 0.0, 20.0),
    # above e_max: no charge; discharge limited by rating 15 kW
    (95.0, 10.0, 90.0, 20.0, 15.0, 0.25, 0.9, -15.0, 0.0),
    # exactly at e_max, eta 1, 1 h: nothing to charge, 80 kWh available -> rating 20 binds
    (90.0, 10.0, 90.0, 20.0, 20.0, 1.0, 1.0, -20.0, 0.0),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_battery_power_bounds_hand_values(shape):
    e, e_min, e_max, pc, pd, dt_h, eta, p_min_ref, p_max_ref = _tile(_BOUNDS_ROWS, shape[0])
    before = _frozen_copies(e, e_min, e_max, pc, pd, dt_h, eta)
    p_min, p_max = battery_power_bounds(e, e_min, e_max, pc, pd, dt_h, eta)
    _assert_unchanged(before, (e, e_min, e_max, pc, pd, dt_h, eta))
    assert p_min.shape == shape and p_max.shape == shape
    np.testing.assert_allclose(p_min, p_min_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p_max, p_max_ref, rtol=1e-12, atol=1e-12)


def _random_battery(rng: np.random.Generator, n: int):
    cap = rng.uniform(1.0, 500.0, n)
    e_min = rng.uniform(0.0, 0.3, n) * cap
    e_max = rng.uniform(0.7, 1.0, n) * cap
    e = rng.uniform(e_min, e_max)  # inside the window
    pc = rng.uniform(0.1, 300.0, n)
    pd = rng.uniform(0.1, 300.0, n)
    dt_h = rng.choice([1.0 / 3600.0, 60.0 / 3600.0, 0.25, 1.0], size=n)
    eta = rng.uniform(0.8, 1.0, n)
    return e, e_min, e_max, pc, pd, dt_h, eta


@pytest.mark.parametrize("shape", SHAPES)
def test_battery_power_bounds_keep_energy_in_window_at_either_bound(shape):
    rng = np.random.default_rng(11)
    for _ in range(50):
        e, e_min, e_max, pc, pd, dt_h, eta = _random_battery(rng, shape[0])
        p_min, p_max = battery_power_bounds(e, e_min, e_max, pc, pd, dt_h, eta)
        assert np.all(p_min <= 0.0) and np.all(p_max >= 0.0)
        assert np.all(p_max <= pc) and np.all(-p_min <= pd)
        for p in (p_min, p_max):
            e_after = battery_energy_step(e, p, dt_h, eta)
            tol = 1e-12 * np.maximum(e_max, 1.0)
            assert np.all(e_after >= e_min - tol)
            assert np.all(e_after <= e_max + tol)
        # Where the energy limit (not the rating) binds, the bound lands exactly on the window edge.
        e_top = battery_energy_step(e, p_max, dt_h, eta)
        e_bottom = battery_energy_step(e, p_min, dt_h, eta)
        energy_bound_top = p_max < pc
        energy_bound_bottom = -p_min < pd
        np.testing.assert_allclose(e_top[energy_bound_top], e_max[energy_bound_top], rtol=1e-12)
        np.testing.assert_allclose(e_bottom[energy_bound_bottom], e_min[energy_bound_bottom], rtol=1e-12)


def test_battery_power_bounds_scalars():
    # Row 2 of the table as plain floats: the kernels accept scalars too.
    p_min, p_max = battery_power_bounds(88.0, 10.0, 90.0, 20.0, 20.0, 0.25, 0.9)
    assert float(p_min) == -20.0
    assert float(p_max) == pytest.approx(2.0 / 0.225, rel=1e-12)


# --------------------------------------------------------------------------------------------
# battery_energy_step and battery_loss_kwh
# --------------------------------------------------------------------------------------------

# (e, p, dt_h, eta, e_after_expected, loss_expected)
_ENERGY_ROWS = [
    # charge 10 kW for 0.5 h at eta 0.9: stores 4.5 kWh, loses 0.5 kWh
    (20.0, 10.0, 0.5, 0.9, 24.5, 0.5),
    # discharge 9 kW for 0.5 h at eta 0.9: cells give 9*0.5/0.9 = 5 kWh, loss 5 - 4.5 = 0.5 kWh
    (20.0, -9.0, 0.5, 0.9, 15.0, 0.5),
    # idle: nothing moves
    (20.0, 0.0, 0.5, 0.9, 20.0, 0.0),
    # lossless converter, one minute at 60 kW: 1 kWh in, no loss
    (0.0, 60.0, 1.0 / 60.0, 1.0, 1.0, 0.0),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_battery_energy_step_and_loss_hand_values(shape):
    e, p, dt_h, eta, e_ref, loss_ref = _tile(_ENERGY_ROWS, shape[0])
    before = _frozen_copies(e, p, dt_h, eta)
    e_after = battery_energy_step(e, p, dt_h, eta)
    loss = battery_loss_kwh(p, dt_h, eta)
    _assert_unchanged(before, (e, p, dt_h, eta))
    assert e_after.shape == shape and loss.shape == shape
    np.testing.assert_allclose(e_after, e_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_battery_energy_balance(shape):
    """Grid-side energy = stored energy change + conversion loss, and the loss is never negative."""
    rng = np.random.default_rng(12)
    n = shape[0]
    for _ in range(50):
        e = rng.uniform(0.0, 100.0, n)
        p = rng.uniform(-200.0, 200.0, n) * rng.choice([0.0, 1.0], size=n, p=[0.1, 0.9])
        dt_h = rng.choice([1.0 / 3600.0, 1.0 / 60.0, 0.25], size=n)
        eta = rng.uniform(0.7, 1.0, n)
        e_after = battery_energy_step(e, p, dt_h, eta)
        loss = battery_loss_kwh(p, dt_h, eta)
        assert np.all(loss >= 0.0)
        np.testing.assert_allclose(p * dt_h, (e_after - e) + loss, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------------
# 1R1C thermal model
# --------------------------------------------------------------------------------------------


def _closed_form_c(t_in, t_out, q, p, cop, r, c, dt_h):
    """T(dt) of C dT/dt = (T_out - T)/R + Q - COP P with constant inputs, element by element.

    Linear first-order ODE with time constant tau = R C and equilibrium
    T_eq = T_out + R (Q - COP P): T(t) = T_eq + (T(0) - T_eq) exp(-t / tau).
    """
    out = []
    for args in zip(t_in, t_out, q, p, cop, r, c, dt_h, strict=True):
        ti, to, qi, pi, copi, ri, ci, dti = (float(x) for x in args)
        t_eq = to + ri * (qi - copi * pi)
        out.append(t_eq + (ti - t_eq) * math.exp(-dti / (ri * ci)))
    return np.asarray(out, dtype=float)


def _rk4_c(t_in, t_out, q, p, cop, r, c, dt_h, n_sub=200):
    """The same ODE integrated numerically with classical RK4 (independent of the closed form)."""

    def f(t):
        return ((t_out - t) / r + q - cop * p) / c

    t = np.array(t_in, dtype=float, copy=True)
    h = dt_h / n_sub
    for _ in range(n_sub):
        k1 = f(t)
        k2 = f(t + 0.5 * h * k1)
        k3 = f(t + 0.5 * h * k2)
        k4 = f(t + h * k3)
        t = t + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return t


def _random_rc(rng: np.random.Generator, n: int):
    t_in = rng.uniform(18.0, 32.0, n)
    t_out = rng.uniform(20.0, 38.0, n)
    q = rng.uniform(0.0, 100.0, n)
    p = rng.uniform(0.0, 120.0, n)
    cop = rng.uniform(2.0, 5.0, n)
    r = rng.uniform(0.01, 0.2, n)
    c = rng.uniform(5.0, 200.0, n)
    dt_h = rng.choice([1.0 / 3600.0, 1.0 / 60.0, 5.0 / 60.0, 0.25], size=n)
    return t_in, t_out, q, p, cop, r, c, dt_h


@pytest.mark.parametrize("shape", SHAPES)
def test_rc_coefficient_is_exp_of_minus_dt_over_tau(shape):
    rng = np.random.default_rng(13)
    r = rng.uniform(0.01, 0.2, shape)
    c = rng.uniform(5.0, 200.0, shape)
    dt_h = rng.uniform(1e-4, 1.0, shape)
    before = _frozen_copies(r, c, dt_h)
    a = rc_coefficient(r, c, dt_h)
    _assert_unchanged(before, (r, c, dt_h))
    ref = np.asarray([math.exp(-d / (ri * ci)) for ri, ci, d in zip(r, c, dt_h)], dtype=float)
    assert a.shape == shape
    np.testing.assert_allclose(a, ref, rtol=1e-14)


def test_rc_temperature_step_hand_value():
    # T_in 25, T_out 33, Q 60 kW, P 50 kW, COP 3.2, R 0.05 K/kW, C 60 kWh/K, 15 min:
    # T_eq = 33 + 0.05 (60 - 160) = 28 degC, tau = 3 h, T = 28 - 3 exp(-0.25/3) = 25.23987 degC.
    a = rc_coefficient(0.05, 60.0, 0.25)
    t = rc_temperature_step(25.0, 33.0, 60.0, 50.0, 3.2, 0.05, a)
    assert float(t) == pytest.approx(28.0 - 3.0 * math.exp(-1.0 / 12.0), abs=1e-12)
    assert float(t) == pytest.approx(25.23987, abs=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_rc_temperature_step_matches_analytic_and_numerical_solution(shape):
    rng = np.random.default_rng(14)
    for _ in range(20):
        t_in, t_out, q, p, cop, r, c, dt_h = _random_rc(rng, shape[0])
        before = _frozen_copies(t_in, t_out, q, p, cop, r, c, dt_h)
        a = rc_coefficient(r, c, dt_h)
        t_next = rc_temperature_step(t_in, t_out, q, p, cop, r, a)
        _assert_unchanged(before, (t_in, t_out, q, p, cop, r, c, dt_h))
        assert t_next.shape == shape
        np.testing.assert_allclose(t_next, _closed_form_c(t_in, t_out, q, p, cop, r, c, dt_h), rtol=0, atol=1e-10)
        np.testing.assert_allclose(t_next, _rk4_c(t_in, t_out, q, p, cop, r, c, dt_h), rtol=0, atol=1e-9)


def test_rk4_reference_converges():
    """The numerical reference itself converges (so agreeing with it means something)."""
    args = [np.array([v]) for v in (22.0, 35.0, 80.0, 10.0, 3.0, 0.05, 20.0, 1.0)]  # tau = 1 h, dt = 1 h
    exact = _closed_form_c(*args)
    err_coarse = abs(_rk4_c(*args, n_sub=4) - exact)[0]
    err_fine = abs(_rk4_c(*args, n_sub=8) - exact)[0]
    assert err_coarse > 1e-6  # coarse is visibly off
    assert err_fine < err_coarse / 10.0  # fourth order: halving h cuts the error ~16x


@pytest.mark.parametrize("shape", SHAPES)
def test_rc_power_for_temperature_is_exact_inverse_of_step(shape):
    rng = np.random.default_rng(15)
    for _ in range(20):
        t_in, t_out, q, p, cop, r, c, dt_h = _random_rc(rng, shape[0])
        a = rc_coefficient(r, c, dt_h)
        t_target = t_in + rng.uniform(-3.0, 3.0, shape[0])
        before = _frozen_copies(t_target, t_in, t_out, q, cop, r, a)
        p_need = rc_power_for_temperature(t_target, t_in, t_out, q, cop, r, a)
        _assert_unchanged(before, (t_target, t_in, t_out, q, cop, r, a))
        assert p_need.shape == shape
        # power -> temperature: the step at that power lands on the target
        np.testing.assert_allclose(rc_temperature_step(t_in, t_out, q, p_need, cop, r, a), t_target, atol=1e-9, rtol=0)
        # and the reached temperature agrees with the independent closed form
        np.testing.assert_allclose(
            _closed_form_c(t_in, t_out, q, p_need, cop, r, c, dt_h), t_target, atol=1e-8, rtol=0
        )
        # temperature -> power: inverting a step recovers the power that made it
        t_reached = rc_temperature_step(t_in, t_out, q, p, cop, r, a)
        p_back = rc_power_for_temperature(t_reached, t_in, t_out, q, cop, r, a)
        # Round-off of ~1e-14 K is divided by (1 - a) R COP, down to ~1e-7 kW/K for a 1 s tick
        # with tau = 40 h, so the recovered power is exact to ~1e-7 kW, well inside 1e-5 kW.
        np.testing.assert_allclose(p_back, p, rtol=0, atol=1e-5)


def test_rc_power_for_temperature_hand_value():
    # Reverse of test_rc_temperature_step_hand_value: reaching 28 - 3 exp(-1/12) needs 50 kW.
    a = rc_coefficient(0.05, 60.0, 0.25)
    p = rc_power_for_temperature(28.0 - 3.0 * math.exp(-1.0 / 12.0), 25.0, 33.0, 60.0, 3.2, 0.05, a)
    assert float(p) == pytest.approx(50.0, rel=1e-9)


# --------------------------------------------------------------------------------------------
# split_by_room
# --------------------------------------------------------------------------------------------

# (delta, room_a, room_b, room_c, share_a, share_b, share_c), worked by hand:
_SPLIT_ROWS = [
    (-6.0, 2.0, 4.0, 6.0, -1.0, -2.0, -3.0),  # total 12, half of each room, sign of delta
    (20.0, 2.0, 3.0, 0.0, 2.0, 3.0, 0.0),  # more than the rooms hold: every room full, no more
    (0.0, 2.0, 3.0, 5.0, 0.0, 0.0, 0.0),  # nothing to split
    (5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),  # no room anywhere: nothing moves
    (3.0, 1.0, 0.0, 2.0, 1.0, 0.0, 2.0),  # exactly the total room
    (1.0, 1.0, 1.0, 2.0, 0.25, 0.25, 0.5),  # a quarter of each room
]


@pytest.mark.parametrize("shape", SHAPES)
def test_split_by_room_hand_values(shape):
    delta, ra, rb, rc, sa, sb, sc = _tile(_SPLIT_ROWS, shape[0])
    before = _frozen_copies(delta, ra, rb, rc)
    shares = split_by_room(delta, ra, rb, rc)
    _assert_unchanged(before, (delta, ra, rb, rc))
    assert len(shares) == 3
    for got, ref in zip(shares, (sa, sb, sc), strict=True):
        assert got.shape == shape
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n_components", [1, 2, 3])
def test_split_by_room_invariants(shape, n_components):
    rng = np.random.default_rng(16 + n_components)
    n = shape[0]
    for _ in range(50):
        delta = rng.uniform(-50.0, 50.0, n) * rng.choice([0.0, 1.0], size=n, p=[0.1, 0.9])
        rooms = [rng.uniform(0.0, 30.0, n) * rng.choice([0.0, 1.0], size=n, p=[0.2, 0.8]) for _ in range(n_components)]
        before = _frozen_copies(delta, *rooms)
        shares = split_by_room(delta, *rooms)
        _assert_unchanged(before, (delta, *rooms))
        total = np.sum(rooms, axis=0)
        for share, room in zip(shares, rooms, strict=True):
            assert share.shape == shape
            assert np.all(np.abs(share) <= room)  # never more than a component's room
            assert np.all(share * delta >= 0.0)  # always in delta's direction
        np.testing.assert_allclose(
            np.sum(shares, axis=0), np.sign(delta) * np.minimum(np.abs(delta), total), rtol=1e-12, atol=1e-12
        )


# --------------------------------------------------------------------------------------------
# backup_reserve_kwh
# --------------------------------------------------------------------------------------------

# (backup_h, p_design_kw, eta, reserve_expected): the energy that, after discharge losses, carries
# the design load for the backup hours, backup_h * p_design_kw / eta (../shared/DOMAIN.md):
_RESERVE_ROWS = [
    (3.0, 3.9, 0.95, 11.7 / 0.95),  # 5g_macro: 3 h x 3.9 kW = 11.7 kWh delivered, 12.3158 kWh from the cells
    (0.0, 3.9, 0.95, 0.0),  # no backup duty
    (4.0, 10.0, 1.0, 40.0),  # lossless: exactly the delivered energy
    (2.5, 0.0, 0.9, 0.0),  # no design load
]


@pytest.mark.parametrize("shape", SHAPES)
def test_backup_reserve_kwh_hand_values(shape):
    backup_h, p_design, eta, ref = _tile(_RESERVE_ROWS, shape[0])
    before = _frozen_copies(backup_h, p_design, eta)
    got = backup_reserve_kwh(backup_h, p_design, eta)
    _assert_unchanged(before, (backup_h, p_design, eta))
    assert got.shape == shape
    np.testing.assert_allclose(got, ref, rtol=1e-15, atol=0.0)


def test_kernels_accept_scalars():
    """Rows of the hand tables above as plain floats."""
    assert float(battery_energy_step(20.0, -9.0, 0.5, 0.9)) == pytest.approx(15.0, rel=1e-12)
    assert float(battery_loss_kwh(-9.0, 0.5, 0.9)) == pytest.approx(0.5, rel=1e-12)
    assert float(rc_coefficient(0.05, 60.0, 3.0)) == pytest.approx(math.exp(-1.0), rel=1e-14)  # dt = tau
    assert float(backup_reserve_kwh(3.0, 3.9, 0.95)) == pytest.approx(11.7 / 0.95, rel=1e-15)
    share_a, share_b = split_by_room(-6.0, 2.0, 4.0)  # total room 6: all of it, downwards
    assert (float(share_a), float(share_b)) == (-2.0, -4.0)
