"""EV charging fleets: invariants under arbitrary setpoints, laxity, unmet energy, tapered charging, session draws.

Reference values:

* Without taper, the energy a charger can deliver in a stay is
  ``eta * min(p_rated_kw, p_accept_kw) * stay_h`` battery side (charging at
  ``p`` stores ``eta * p * dt_h``; discharging at ``p < 0`` draws
  ``-p * dt_h / eta`` from the battery).
* With taper (../shared/DOMAIN.md: "Session power is the lower of the pile
  rating and the vehicle's acceptance ... Acceptance tapers with SoC"), the
  stored energy follows ``dE/dt = eta * min(p_rated, p_accept * f(E / cap))``
  with ``f`` piecewise linear through the taper knots. The reference for it is
  :func:`uncontrolled_reference_kwh` below: a plain per-session loop of
  classical RK4 steps of one second, written without numpy and without the
  fleet's kernels.
* Everything missing from the requested energy at departure must show up as
  unmet (DOMAIN.md: "unmet energy at departure is a KPI, never hidden").
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ev_reference import uncontrolled_reference_kwh  # tests/helpers (pytest pythonpath)

from vpp.fleets import EVFleet, EVState, SessionTable, draw_sessions
from vpp.fleets.parameters import CHARGER_PARAMETERS, DC_TAPER_FRAC, DC_TAPER_SOC
from vpp.units import S_PER_H

E_TOL_KWH = 1e-6  # the fleet's own threshold for "unmet" [kWh]
MAX_TICKS = 100  # a tick with its checks costs ~0.5 ms: an example stays below ~0.05 s
NO_TAPER = ((0.0, 1.0), (1.0, 1.0))
P_ACCEPT_UNLIMITED_KW = 1e4  # a vehicle that takes whatever the charger gives [kW]


def _ev_fleet(charger: str, n: int, sessions: SessionTable, v2g, soc_v2g_min: float = 0.3,
              taper: bool = False, knots=None) -> EVFleet:
    """Chargers of a parameter set; ``taper`` uses its taper knots, ``knots`` any others, default no taper."""
    params = CHARGER_PARAMETERS[charger]
    if knots is None:
        knots = (params.taper_soc, params.taper_frac) if taper else NO_TAPER
    return EVFleet(
        charger, np.zeros(n, dtype=np.int64), "op", 0.0,
        p_rated_kw=np.full(n, params.p_rated_kw), eta=params.eta, v2g=v2g,
        soc_v2g_min=soc_v2g_min, sessions=sessions, taper_soc=knots[0], taper_frac=knots[1],
    )


def _random_fleet(charger: str, n: int, seed: int, t_end_s: float, clock_start_h: float,
                  v2g_share: float, soc_v2g_min: float, taper: bool = True) -> EVFleet:
    rng = np.random.default_rng(seed)
    params = CHARGER_PARAMETERS[charger]
    p_rated_kw = np.full(n, params.p_rated_kw)
    v2g = rng.random(n) < v2g_share
    sessions = draw_sessions(rng, params, p_rated_kw, t_end_s, clock_start_h)
    return _ev_fleet(charger, n, sessions, v2g, soc_v2g_min, taper=taper)


def _hand_table(rows_per_charger: list[list[tuple]]) -> SessionTable:
    """SessionTable from rows ``(arrival_s, departure_s, cap_kwh, e_arrival_kwh, e_need_kwh[, p_accept_kw])``.

    A row without ``p_accept_kw`` is a vehicle that never limits the charger.
    """
    n = len(rows_per_charger)
    k = max((len(r) for r in rows_per_charger), default=0)
    cols = [np.full((n, k), np.inf), np.full((n, k), np.inf), np.ones((n, k)), np.zeros((n, k)), np.zeros((n, k)),
            np.full((n, k), P_ACCEPT_UNLIMITED_KW)]
    for i, rows in enumerate(rows_per_charger):
        for j, row in enumerate(rows):
            for c, v in zip(cols, row, strict=False):
                c[i, j] = v
    return SessionTable.from_dense(*cols)


def _setpoints(rng: np.random.Generator, env, p_scale_kw: float) -> np.ndarray:
    """Arbitrary setpoints [kW]: inside, on and far outside the envelope, infinities included."""
    n = env.p_min_kw.shape[0]
    mode = rng.integers(0, 6)
    if mode == 0:
        return rng.uniform(-2.0 * p_scale_kw, 2.0 * p_scale_kw, n)
    if mode == 1:
        return env.p_min_kw.copy()
    if mode == 2:
        return env.p_max_kw.copy()
    if mode == 3:
        return env.p_default_kw.copy()
    if mode == 4:
        return rng.choice([-1e9, 1e9], size=n)
    choices = np.stack([
        env.p_min_kw, env.p_max_kw, env.p_default_kw, np.zeros(n),
        np.full(n, -np.inf), np.full(n, np.inf), rng.uniform(env.p_min_kw, env.p_max_kw),
    ])
    return choices[rng.integers(0, choices.shape[0], size=n), np.arange(n)]


def _departures(state: EVState, t_s: float, ptr=None) -> dict[tuple[int, int], tuple[float, float]]:
    """Sessions leaving at the tick starting at ``t_s`` (call before ``advance``).

    Maps (charger, session) to (stored energy, energy missing from the target) [kWh]; the session is
    its position in the sparse table, or its slot in the charger's row when the table's ``ptr`` is given.
    """
    leaving = np.flatnonzero(state.plugged & (state.t_departure_s <= t_s))
    return {
        (int(j), int(state.k[j] - (0 if ptr is None else ptr[j]))): (float(state.e_kwh[j]), max(float(state.e_target_kwh[j] - state.e_kwh[j]), 0.0))
        for j in leaving
    }


def _check_tick_energy(fleet: EVFleet, before: EVState, after: EVState, p_kw: np.ndarray, dt_s: float) -> None:
    """Energy balance of one tick, from the states on either side of ``step`` and the power drawn.

    Grid energy = energy stored in vehicles + conversion losses, each recomputed
    here from the per-vehicle powers and energies.
    """
    dt_h = dt_s / S_PER_H
    eta = fleet.eta
    d_grid = after.e_grid_kwh - before.e_grid_kwh
    d_stored = after.e_to_vehicles_kwh - before.e_to_vehicles_kwh
    d_loss = after.e_loss_kwh - before.e_loss_kwh
    scale = 1.0 + float(np.abs(before.e_kwh).sum()) + float(np.abs(p_kw).sum()) * dt_h
    tol = 1e-12 * scale
    assert d_grid == pytest.approx(float(p_kw.sum()) * dt_h, rel=1e-12, abs=tol)
    assert d_grid == pytest.approx(d_stored + d_loss, rel=0.0, abs=tol)
    assert d_stored == pytest.approx(float((after.e_kwh - before.e_kwh).sum()), rel=0.0, abs=tol)
    loss_kwh = np.where(p_kw > 0.0, (1.0 - eta) * p_kw, -p_kw * (1.0 / eta - 1.0)) * dt_h
    assert d_loss == pytest.approx(float(loss_kwh.sum()), rel=0.0, abs=tol)
    assert d_loss >= -tol
    # Each vehicle stores eta * p * dt when charging and gives p * dt / eta when discharging.
    d_e_ref = np.where(p_kw > 0.0, eta * p_kw, p_kw / eta) * dt_h
    np.testing.assert_allclose(after.e_kwh - before.e_kwh, d_e_ref, rtol=0.0, atol=1e-9)


@settings(max_examples=30, deadline=None, database=None)
@given(
    charger=st.sampled_from(sorted(CHARGER_PARAMETERS)),
    n=st.integers(0, 40),
    dt_s=st.sampled_from([1.0, 60.0, 300.0, 900.0]),
    v2g_share=st.sampled_from([0.0, 0.3, 1.0]) | st.floats(0.0, 1.0),
    soc_v2g_min=st.floats(0.0, 0.9),
    clock_start_h=st.floats(0.0, 23.99),
    hours=st.floats(1.0, 4.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_ev_fleet_invariants_and_energy_balance_under_arbitrary_setpoints(
    charger, n, dt_s, v2g_share, soc_v2g_min, clock_start_h, hours, seed
):
    """Every tick, whatever the setpoints: power limits (rating, tapered acceptance, envelope), SoC bounds,
    the V2G floor, unmet accounting, and grid energy = energy to vehicles + losses."""
    n_ticks = min(math.ceil(hours * S_PER_H / dt_s), MAX_TICKS)
    fleet = _random_fleet(charger, n, seed, n_ticks * dt_s, clock_start_h, v2g_share, soc_v2g_min)
    state = fleet.initial_state()
    rng = np.random.default_rng(seed + 1)
    p_rated = fleet.p_rated_kw
    unmet_expected_kwh = 0.0
    n_unmet_expected = 0
    for i in range(n_ticks):
        t_s = i * dt_s
        # Whoever leaves at this tick start takes its missing energy into the unmet account.
        missing = [m for _, m in _departures(state, t_s).values()]
        unmet_expected_kwh += sum(missing)
        n_unmet_expected += sum(m > E_TOL_KWH for m in missing)

        fleet.advance(state, t_s, dt_s)
        assert state.e_unmet_kwh == pytest.approx(unmet_expected_kwh, rel=1e-9, abs=1e-9)
        assert state.n_unmet == n_unmet_expected
        before = state.copy()
        env = fleet.flexibility(state, t_s, dt_s)
        assert state.equals(before)  # looking is free of side effects
        assert np.all(env.p_min_kw <= env.p_default_kw)
        assert np.all(env.p_default_kw <= env.p_max_kw)

        plugged = state.plugged
        floor_kwh = fleet.soc_v2g_min * state.cap_kwh
        p_kw = fleet.step(state, _setpoints(rng, env, float(p_rated.max(initial=1.0))), t_s, dt_s, env)

        assert p_kw is state.p_kw and p_kw.shape == (n,)
        assert np.all(env.p_min_kw <= p_kw) and np.all(p_kw <= env.p_max_kw)
        # The rating holds up to round-off: turning the tick's energy back into a power
        # (e / (eta * dt_h)) can land one ulp above it.
        assert np.all(np.abs(p_kw) <= p_rated * (1.0 + 1e-12))
        # Charging never above the vehicle's acceptance at the tick start (it only falls as SoC rises).
        soc_before = np.clip(before.e_kwh / before.cap_kwh, 0.0, 1.0)
        accept_kw = before.p_accept_kw * np.interp(soc_before, fleet.taper_soc, fleet.taper_frac)
        assert np.all(p_kw[plugged] <= accept_kw[plugged] * (1.0 + 1e-9) + 1e-12)
        assert np.all(p_kw[~plugged] == 0.0)  # an empty charger draws nothing
        assert np.all(p_kw[~fleet.v2g] >= 0.0)  # only V2G chargers discharge
        e = state.e_kwh[plugged]
        soc = e / state.cap_kwh[plugged]
        # 1e-12 absorbs round-off: a discharge onto a floor of 0 kWh can land ~1e-20 below it, and a
        # session asking for a completely full battery gets a target of e_arrival + (cap - e_arrival),
        # which can be cap * (1 + 2e-16).
        assert np.all((soc >= -1e-12) & (soc <= 1.0 + 1e-12))
        assert np.all(e <= state.e_target_kwh[plugged] + 1e-9)  # never charged past the need
        # V2G never takes a vehicle below soc_v2g_min; one already below is not discharged.
        assert np.all(state.e_kwh[plugged] >= np.minimum(before.e_kwh, floor_kwh)[plugged] - 1e-9)
        _check_tick_energy(fleet, before, state, p_kw, dt_s)
        assert state.e_grid_kwh == pytest.approx(state.e_to_vehicles_kwh + state.e_loss_kwh, rel=1e-9, abs=1e-6)
    assert state.e_loss_kwh >= -1e-9
    summary = fleet.summary(state)
    assert summary["e_unmet_kwh"] == state.e_unmet_kwh and summary["n_sessions_unmet"] == state.n_unmet
    assert summary["n_sessions_departed"] + summary["n_sessions_plugged_at_end"] == summary["n_sessions_arrived"]


def _run(fleet: EVFleet, t_end_s: float, dt_s: float, policy: str) -> EVState:
    """Step from 0 to ``t_end_s`` at p_default or p_min, then process departures at ``t_end_s``; the final state."""
    state = fleet.initial_state()
    n_ticks = math.ceil(t_end_s / dt_s)
    for i in range(n_ticks):
        t_s = i * dt_s
        if policy == "default":
            fleet.step_default(state, t_s, dt_s)
        else:
            fleet.advance(state, t_s, dt_s)
            env = fleet.flexibility(state, t_s, dt_s)
            fleet.step(state, env.p_min_kw, t_s, dt_s, env)
    fleet.advance(state, n_ticks * dt_s, dt_s)
    return state


DTS = [1.0, 60.0, 300.0, 900.0]


@pytest.mark.parametrize("dt_s", DTS)
def test_default_full_power_with_long_dwell_leaves_nothing_unmet(dt_s):
    # 7 kW AC pile, eta 0.92, no taper: 2.5 kWh needs 2.5 / (0.92 * 7) = 0.388 h < 0.5 h dwell.
    # Arrival and departure fall mid-tick for every dt (1000 s and 2800 s).
    p = CHARGER_PARAMETERS["ac_pile"]
    table = _hand_table([[(1000.0, 2800.0, 50.0, 10.0, 2.5)], [(1000.0, 2800.0, 50.0, 20.0, 2.5)]])
    fleet = _ev_fleet("ac_pile", 2, table, v2g=np.array([False, True]))
    s = _run(fleet, 2800.0, dt_s, "default")
    assert s.n_arrived == 2 and s.n_departed == 2
    assert s.n_unmet == 0
    assert s.e_unmet_kwh == 0.0
    assert s.e_to_vehicles_kwh == pytest.approx(5.0, rel=1e-9)
    assert s.e_grid_kwh == pytest.approx(5.0 / p.eta, rel=1e-9)
    np.testing.assert_allclose(s.e_kwh, [12.5, 22.5], rtol=1e-12)


@pytest.mark.parametrize("dt_s", DTS)
def test_short_dwell_records_unmet_energy_exactly(dt_s):
    # No taper. Full power for the whole 0.5 h stay delivers eta * p_rated * 0.5 h (battery side):
    #   7 kW,  eta 0.92 -> 3.22 kWh of 20 kWh asked: 16.78 kWh unmet
    # and on a second charger arriving at 1234 s and leaving at 3034 s:
    #   7 kW,  eta 0.92 -> 3.22 kWh of 3.5 kWh asked: 0.28 kWh unmet
    p = CHARGER_PARAMETERS["ac_pile"]
    table = _hand_table([[(1000.0, 2800.0, 60.0, 12.0, 20.0)], [(1234.0, 3034.0, 60.0, 30.0, 3.5)]])
    fleet = _ev_fleet("ac_pile", 2, table, v2g=np.array([True, False]))
    s = _run(fleet, 3034.0, dt_s, "default")
    delivered_kwh = p.eta * p.p_rated_kw * 0.5
    assert delivered_kwh == pytest.approx(3.22, rel=1e-12)
    assert s.n_departed == 2 and s.n_unmet == 2
    assert s.e_unmet_kwh == pytest.approx((20.0 - 3.22) + (3.5 - 3.22), rel=1e-9)
    assert s.e_to_vehicles_kwh == pytest.approx(2 * 3.22, rel=1e-9)
    np.testing.assert_allclose(s.e_kwh, [12.0 + 3.22, 30.0 + 3.22], rtol=1e-12)


@pytest.mark.parametrize("dt_s", DTS)
def test_vehicle_acceptance_below_the_rating_binds(dt_s):
    # 120 kW DC charger, no taper, a car that takes 50 kW: 0.5 h delivers 0.94 * 50 * 0.5 = 23.5 kWh
    # of 30 kWh asked (6.5 kWh unmet); a 200 kW car next to it gets the full rating: 10 kWh in
    # 10 / (0.94 * 120) h = 5.3 min, nothing unmet.
    table = _hand_table([[(1000.0, 2800.0, 80.0, 20.0, 30.0, 50.0)], [(1000.0, 2800.0, 80.0, 20.0, 10.0, 200.0)]])
    fleet = _ev_fleet("dc_fast", 2, table, v2g=np.array([False, False]))
    s = _run(fleet, 2800.0, dt_s, "default")
    assert s.n_departed == 2 and s.n_unmet == 1
    assert s.e_unmet_kwh == pytest.approx(30.0 - 23.5, rel=1e-9)
    np.testing.assert_allclose(s.e_kwh, [20.0 + 23.5, 30.0], rtol=1e-12)


def test_session_queued_behind_its_predecessor_loses_the_tick():
    """The documented artefact: one session per charger per tick; the energy is still exact for the time it had."""
    # dt 900 s, no taper. Session 1 leaves at 1000 s (mid-tick [900, 1800)), so it is unplugged only at 1800 s;
    # session 2 arrives at 1200 s, waits, and charges from 1800 s to 3600 s: 7 kW * 0.5 h * 0.92 = 3.22 kWh.
    table = _hand_table([[(0.0, 1000.0, 60.0, 30.0, 1.0), (1200.0, 3600.0, 60.0, 10.0, 40.0)]])
    fleet = _ev_fleet("ac_pile", 1, table, v2g=np.array([False]))
    s = _run(fleet, 3600.0, 900.0, "default")
    assert s.n_departed == 2
    assert s.e_unmet_kwh == pytest.approx(40.0 - 3.22, rel=1e-9)
    assert s.e_to_vehicles_kwh == pytest.approx(1.0 + 3.22, rel=1e-9)


# --------------------------------------------------------------------------------------------
# Uncontrolled (default) charging with taper against the plain reference loop
# --------------------------------------------------------------------------------------------

REF_TOL_KWH = 1e-5  # RK4 with 1 s steps is within ~1e-6 kWh of the exact ODE (kinks included)


def test_reference_loop_is_itself_right():
    """The reference agrees with closed forms where there are some, and has converged at 1 s steps."""
    # Constant power (no taper, rating binds): eta * p * t.
    assert uncontrolled_reference_kwh(10.0, 40.0, 60.0, 7.0, 1e4, 0.92, NO_TAPER, 1800.0) == pytest.approx(
        0.92 * 7.0 * 0.5, rel=1e-12)
    # Target reached: exactly the need.
    assert uncontrolled_reference_kwh(10.0, 2.0, 60.0, 7.0, 1e4, 0.92, NO_TAPER, 1800.0) == pytest.approx(
        2.0, rel=1e-12)
    # One taper piece (soc 0.55-0.8 of the DC curve, peak 100 kW below a 120 kW rating): p falls
    # linearly in E with slope k = 100 * (-(2/3) / 0.25) / cap [kW/kWh], so
    # E(t) - E0 = p0 (exp(eta k t) - 1) / k (linear ODE), here from soc 0.6 for 10 min.
    cap, eta, t_h = 60.0, 0.94, 10.0 / 60.0
    e0 = 0.6 * cap
    k = 100.0 * (-(2.0 / 3.0) / 0.25) / cap
    p0 = 100.0 * (1.0 - (2.0 / 3.0) * (0.6 - 0.55) / 0.25)
    closed = p0 * math.expm1(eta * k * t_h) / k
    assert 0.6 + closed / cap < 0.8  # stays on the piece
    got = uncontrolled_reference_kwh(e0, cap, cap, 120.0, 100.0, eta, (DC_TAPER_SOC, DC_TAPER_FRAC), t_h * S_PER_H)
    assert got == pytest.approx(closed, abs=1e-9)
    # Across kinks (rating -> taper -> taper) halving the step changes the answer by far less than REF_TOL_KWH.
    args = (12.0, 40.0, 60.0, 120.0, 250.0, 0.94, (DC_TAPER_SOC, DC_TAPER_FRAC), 1500.0)
    assert abs(uncontrolled_reference_kwh(*args) - uncontrolled_reference_kwh(*args, h_s=0.5)) < REF_TOL_KWH / 10


# Hand-made sessions on 120 kW DC chargers (eta 0.94) with the DC taper (flat to 55 %, 1/3 at 80 %,
# 5 % at full), arrival and departure on minute boundaries. Rows per charger:
# (arrival_s, departure_s, cap_kwh, e_arrival_kwh, e_need_kwh, p_accept_kw).
_DC_HAND_SESSIONS = [
    # 250 kW car: the rating binds until 250 f(s) < 120, then the taper; 20 % -> 80 % in 45 min.
    [(0.0, 2700.0, 60.0, 12.0, 36.0, 250.0)],
    # 100 kW car (below the rating): flat to 55 %, then the taper; 40 % -> 85 % does not fit in 30 min.
    [(600.0, 2400.0, 75.0, 30.0, 33.75, 100.0)],
    # Starts on the taper at 70 %, asks for 90 %: the tail of the curve, unmet after 20 min.
    [(1200.0, 2400.0, 50.0, 35.0, 10.0, 300.0)],
    # Two sessions back to back on one charger, the second arriving at the tick its predecessor left.
    [(0.0, 1200.0, 80.0, 16.0, 20.0, 150.0), (1200.0, 3000.0, 55.0, 11.0, 35.0, 180.0)],
    # Short top-up that ends on target well before departure.
    [(300.0, 3600.0, 80.0, 40.0, 8.0, 200.0)],
]


def _sessions_of(table):
    """(charger, slot) of every session of a sparse or dense table."""
    if isinstance(table, SessionTable):
        table = table.dense()
    for j in range(table.arrival_s.shape[0]):
        for k in range(table.arrival_s.shape[1]):
            if np.isfinite(table.arrival_s[j, k]):
                yield j, k


def _check_default_run_against_reference(fleet: EVFleet, dt_s: float) -> int:
    """Run ``fleet`` at its default power past the last departure; compare every session with the reference.

    Returns the number of sessions that ended unmet (so callers can check both kinds were exercised).
    """
    tab = fleet.sessions.dense()
    knots = (fleet.taper_soc, fleet.taper_frac)
    t_end_s = float(np.max(np.where(np.isfinite(tab.departure_s), tab.departure_s, 0.0), initial=0.0))
    state = fleet.initial_state()
    departed = {}
    n_ticks = math.ceil(t_end_s / dt_s)
    for i in range(n_ticks + 1):
        departed.update(_departures(state, i * dt_s, fleet.sessions.ptr))
        if i < n_ticks:
            fleet.step_default(state, i * dt_s, dt_s)
    fleet.advance(state, n_ticks * dt_s, dt_s)

    assert set(departed) == set(_sessions_of(tab))
    total_delivered = total_unmet = 0.0
    n_unmet = 0
    for (j, k), (e_kwh, missing_kwh) in departed.items():
        e0, need, cap = float(tab.e_arrival_kwh[j, k]), float(tab.e_need_kwh[j, k]), float(tab.cap_kwh[j, k])
        ref_kwh = uncontrolled_reference_kwh(
            e0, need, cap, float(fleet.p_rated_kw[j]), float(tab.p_accept_kw[j, k]), fleet.eta, knots,
            float(tab.departure_s[j, k] - tab.arrival_s[j, k]),
        )
        ref_unmet = need - ref_kwh
        assert e_kwh - e0 == pytest.approx(ref_kwh, abs=REF_TOL_KWH), (j, k)
        assert missing_kwh == pytest.approx(ref_unmet, abs=REF_TOL_KWH), (j, k)
        total_delivered += ref_kwh
        total_unmet += ref_unmet
        n_unmet += ref_unmet > E_TOL_KWH
    n_sessions = len(departed)
    assert state.n_departed == n_sessions
    assert state.e_unmet_kwh == pytest.approx(total_unmet, abs=REF_TOL_KWH * max(n_sessions, 1))
    assert state.e_to_vehicles_kwh == pytest.approx(total_delivered, abs=REF_TOL_KWH * max(n_sessions, 1))
    # Uncontrolled charging never discharges: all grid energy is delivered energy / eta.
    assert state.e_grid_kwh == pytest.approx(total_delivered / fleet.eta, abs=REF_TOL_KWH * max(n_sessions, 1))
    return n_unmet


def test_uncontrolled_tapered_charging_matches_reference_loop_hand_sessions():
    table = _hand_table(_DC_HAND_SESSIONS)
    dense = table.dense()
    for j, k in _sessions_of(table):
        assert dense.e_arrival_kwh[j, k] + dense.e_need_kwh[j, k] <= dense.cap_kwh[j, k]
    fleet = _ev_fleet("dc_fast", table.n_chargers, table, v2g=np.array([False, True, False, True, False]),
                      taper=True)
    assert (fleet.taper_soc, fleet.taper_frac) == (DC_TAPER_SOC, DC_TAPER_FRAC)
    n_unmet = _check_default_run_against_reference(fleet, 60.0)
    assert 0 < n_unmet < table.n_sessions  # both outcomes exercised


@pytest.mark.parametrize("dt_s", [60.0, 300.0, 900.0])
def test_uncontrolled_tapered_charging_is_exact_for_mid_tick_arrivals(dt_s):
    """ev.py: energy in a tick is limited to what fits in the fraction of it the vehicle is present,
    "so energy is exact for any tick length": with taper too (sessions alone on their charger)."""
    table = _hand_table([
        [(1000.0, 2800.0, 60.0, 12.0, 40.0, 250.0)],
        [(1234.0, 3034.0, 75.0, 30.0, 33.75, 100.0)],
        [(500.0, 4321.0, 50.0, 20.0, 25.0, 90.0)],
    ])
    fleet = _ev_fleet("dc_fast", 3, table, v2g=np.zeros(3, dtype=bool), taper=True)
    _check_default_run_against_reference(fleet, dt_s)


def _tick_aligned_sessions(rng: np.random.Generator, charger: str, n: int, k: int, dt_s: float) -> SessionTable:
    """Random sessions of a parameter set on tick boundaries, ``k`` per charger, queued with gaps of whole ticks."""
    p = CHARGER_PARAMETERS[charger]
    rows = []
    for _ in range(n):
        t_s, charger_rows = float(rng.integers(0, 10)) * dt_s, []
        for _ in range(k):
            dwell_s = float(rng.integers(2, int(1.5 * p.dwell_mean_h * S_PER_H / dt_s) + 3)) * dt_s
            cap = float(rng.uniform(*p.cap_kwh))
            e0 = float(rng.uniform(*p.soc_arrival)) * cap
            need = float(rng.uniform(0.0, p.soc_max * cap - e0))
            share, lo, hi = p.p_accept_kw[int(rng.integers(len(p.p_accept_kw)))]
            charger_rows.append((t_s, t_s + dwell_s, cap, e0, need, float(rng.uniform(lo, hi))))
            t_s += dwell_s + float(rng.integers(0, 3)) * dt_s
        rows.append(charger_rows)
    return _hand_table(rows)


@pytest.mark.parametrize("charger", sorted(CHARGER_PARAMETERS))
def test_uncontrolled_tapered_charging_matches_reference_loop_drawn_sessions(charger):
    """Each parameter set's own rating, efficiency, acceptance range and taper; 1 min ticks."""
    dt_s = 60.0
    rng = np.random.default_rng(sorted(CHARGER_PARAMETERS).index(charger))
    # Long-dwell chargers (AC, e-bike) get fewer sessions: the reference loop runs in real Python time.
    n, k = (3, 1) if CHARGER_PARAMETERS[charger].dwell_mean_h > 2.0 else (3, 2)
    table = _tick_aligned_sessions(rng, charger, n, k, dt_s)
    fleet = _ev_fleet(charger, n, table, v2g=rng.random(n) < 0.5, taper=True)
    _check_default_run_against_reference(fleet, dt_s)


# --------------------------------------------------------------------------------------------
# Laxity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("taper", [False, True], ids=["flat", "taper"])
@pytest.mark.parametrize("charger", sorted(CHARGER_PARAMETERS))
@pytest.mark.parametrize("dt_s", [60.0, 900.0])
def test_laxity_holding_p_min_still_meets_every_feasible_need(charger, dt_s, taper):
    """At p_min every stay still ends full when full power could have made it; others get exactly full power.

    A session plugged at tick start ``t_plug`` (its arrival, or later when its
    charger was busy) can receive, without taper, exactly
    ``eta * min(p_rated, p_accept) * (departure - max(arrival, t_plug))``. With
    taper, "full power" is the uncontrolled twin: the same fleet from a copy of
    the initial state, stepped at its default power (checked against the
    reference loop above); its delivery is at most the flat closed form.
    """
    t_end_s = 12.0 * S_PER_H
    n = 40
    fleet = _random_fleet(charger, n, seed=7, t_end_s=t_end_s, clock_start_h=16.0, v2g_share=0.5, soc_v2g_min=0.2,
                          taper=taper)
    eta, p_rated = fleet.eta, fleet.p_rated_kw
    state = fleet.initial_state()
    twin = state.copy()
    closed = {}  # (charger, slot) -> flat closed-form shortfall [kWh]
    called, uncontrolled = {}, {}  # (charger, slot) -> missing at departure [kWh]
    n_discharging = 0
    n_ticks = math.ceil(t_end_s / dt_s)
    for i in range(n_ticks + 1):
        t_s = i * dt_s
        called.update({key: m for key, (_, m) in _departures(state, t_s).items()})
        uncontrolled.update({key: m for key, (_, m) in _departures(twin, t_s).items()})
        was_plugged, was_k = state.plugged.copy(), state.k.copy()
        fleet.advance(state, t_s, dt_s)
        new = state.plugged & (~was_plugged | (state.k != was_k))
        for j in np.flatnonzero(new):
            k = int(state.k[j])
            stay_h = max(state.t_departure_s[j] - max(state.t_arrival_s[j], t_s), 0.0) / S_PER_H
            can_kwh = eta * min(p_rated[j], state.p_accept_kw[j]) * stay_h
            closed[(int(j), k)] = max(state.e_target_kwh[j] - state.e_kwh[j] - can_kwh, 0.0)
        if i < n_ticks:
            env = fleet.flexibility(state, t_s, dt_s)
            p_kw = fleet.step(state, env.p_min_kw, t_s, dt_s, env)
            n_discharging += int((p_kw < 0.0).sum())
            fleet.step_default(twin, t_s, dt_s)
        else:
            fleet.advance(twin, t_s, dt_s)
    assert set(called) == set(uncontrolled) and set(called) <= set(closed)
    ok = [key for key in called if uncontrolled[key] <= E_TOL_KWH]
    bad = [key for key in called if uncontrolled[key] > E_TOL_KWH]
    assert len(ok) >= 10  # the test exercised real sessions
    assert state.n_departed == len(called) == twin.n_departed
    assert max(called[key] for key in ok) <= E_TOL_KWH
    for key in bad:
        assert called[key] == pytest.approx(uncontrolled[key], abs=1e-6)
    for key in called:
        if taper:
            assert uncontrolled[key] >= closed[key] - 1e-6  # taper never beats the flat rating
        else:
            assert uncontrolled[key] == pytest.approx(closed[key], abs=1e-6)
    assert state.e_unmet_kwh == pytest.approx(sum(called.values()), abs=1e-6)
    assert state.n_unmet == sum(1 for m in called.values() if m > E_TOL_KWH)
    if charger == "ac_pile":
        # Long AC stays have slack: at p_min the V2G chargers do discharge (the test covers V2G laxity).
        assert n_discharging > 0


# --------------------------------------------------------------------------------------------
# Session draws
# --------------------------------------------------------------------------------------------

_TABLE_FIELDS = ("arrival_s", "departure_s", "cap_kwh", "e_arrival_kwh", "e_need_kwh", "p_accept_kw")


@pytest.mark.parametrize("charger", sorted(CHARGER_PARAMETERS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_draw_sessions_respects_queueing_gap_and_bounds(charger, seed):
    params = CHARGER_PARAMETERS[charger]
    n, t_end_s = 200, 2 * 24 * S_PER_H
    p_rated = np.full(n, params.p_rated_kw)
    table = draw_sessions(np.random.default_rng(seed), params, p_rated, t_end_s, clock_start_h=17.0)
    # Stored sparsely: one entry per session, nothing for unused slots.
    assert table.n_chargers == n and table.ptr.shape == (n + 1,) and not table.ptr.flags.writeable
    for f in _TABLE_FIELDS:
        a = getattr(table, f)
        assert a.shape == (table.n_sessions,)
        assert np.isfinite(a).all()
        assert not a.flags.writeable  # the table is read-only
    s = table.dense()
    real = np.isfinite(s.arrival_s)
    assert table.n_sessions == int(real.sum()) > n  # more than one session per charger on average
    np.testing.assert_array_equal(real.sum(axis=1), table.counts)
    # Every stored session overlaps the run (those over before t = 0 are not kept).
    assert np.all(s.departure_s[real] > 0.0)
    np.testing.assert_array_equal(np.isfinite(s.departure_s), real)
    # Real sessions first, then unused slots; real ones start before the end of the run.
    assert np.all(real[:, 1:] <= real[:, :-1])
    assert np.all(s.arrival_s[real] < t_end_s)
    assert np.all(s.departure_s[real] > s.arrival_s[real])
    # Never two sessions on one charger at a time, and at least gap_min_h between them.
    both = real[:, 1:]
    gap_s = s.arrival_s[:, 1:][both] - s.departure_s[:, :-1][both]
    assert np.all(gap_s >= params.gap_min_h * S_PER_H - 1e-6)
    # Energy within the vehicle: need >= 0, arrival energy + need <= soc_max * capacity.
    lo, hi = params.cap_kwh
    assert np.all((s.cap_kwh[real] >= lo) & (s.cap_kwh[real] <= hi))
    assert np.all(s.e_need_kwh[real] >= 0.0)
    assert np.all(s.e_arrival_kwh[real] >= params.soc_arrival[0] * s.cap_kwh[real] - 1e-9)
    target = s.e_arrival_kwh + s.e_need_kwh
    assert np.all(target[real] <= np.maximum(params.soc_max, params.soc_arrival[1]) * s.cap_kwh[real] + 1e-9)
    # Peak acceptance inside the mixture's overall range, and every range of the mixture used.
    acc = s.p_accept_kw[real]
    assert np.all(acc >= min(r[1] for r in params.p_accept_kw)) and np.all(acc <= max(r[2] for r in params.p_accept_kw))
    for share, r_lo, r_hi in params.p_accept_kw:
        if share > 0.05:
            assert np.any((acc >= r_lo) & (acc <= r_hi))


def test_draw_sessions_same_seed_same_table_other_seed_other_table():
    params = CHARGER_PARAMETERS["dc_fast"]
    p_rated = np.full(30, params.p_rated_kw)

    def draw(seed):
        return draw_sessions(np.random.default_rng(seed), params, p_rated, 6 * S_PER_H, 8.0)

    a, b, c = draw(5), draw(5), draw(6)
    for f in _TABLE_FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert any(
        getattr(a, f).shape != getattr(c, f).shape or not np.array_equal(getattr(a, f), getattr(c, f))
        for f in _TABLE_FIELDS
    )


def test_draw_sessions_with_no_chargers():
    params = CHARGER_PARAMETERS["ac_pile"]
    s = draw_sessions(np.random.default_rng(0), params, np.zeros(0), S_PER_H, 0.0)
    assert s.n_chargers == 0 and s.n_sessions == 0
    fleet = _ev_fleet("ac_pile", 0, s, v2g=np.zeros(0, dtype=bool))
    state = fleet.initial_state()
    fleet.advance(state, 0.0, 60.0)
    env = fleet.flexibility(state, 0.0, 60.0)
    assert env.p_min_kw.shape == (0,)
    assert fleet.step(state, np.zeros(0), 0.0, 60.0, env).shape == (0,)
    assert fleet.step_default(state, 60.0, 60.0).shape == (0,)
    assert fleet.summary(state)["e_grid_kwh"] == 0.0


def test_session_table_rows_must_match_chargers():
    table = _hand_table([[(0.0, 600.0, 50.0, 10.0, 5.0)]])
    with pytest.raises(ValueError, match="rows"):
        _ev_fleet("ac_pile", 2, table, v2g=np.zeros(2, dtype=bool))


def test_flat_part_of_a_curve_below_full_acceptance_is_honoured():
    """A curve whose flat start sits below 1 (here 0.5) caps power at p_accept * 0.5, as the kernel does."""
    one = lambda v: np.array([[v]], dtype=float)  # noqa: E731
    tab = SessionTable.from_dense(one(0.0), one(3600.0), one(60.0), one(10.0), one(30.0), one(11.0))
    f = EVFleet("x", np.zeros(1, int), "op", 0.0, p_rated_kw=7.0, eta=1.0, v2g=False, soc_v2g_min=0.0,
                sessions=tab, taper_soc=(0.0, 1.0), taper_frac=(0.5, 0.5))
    s = f.initial_state()
    f.advance(s, 0.0, 60.0)
    assert f.flexibility(s, 0.0, 60.0).p_max_kw[0] == pytest.approx(min(7.0, 0.5 * 11.0), rel=1e-12)


def test_taper_knots_are_validated():
    one = lambda v: np.array([[v]], dtype=float)  # noqa: E731
    tab = SessionTable.from_dense(one(0.0), one(3600.0), one(60.0), one(10.0), one(30.0), one(11.0))
    with pytest.raises(ValueError, match="taper"):
        EVFleet("x", np.zeros(1, int), "op", 0.0, p_rated_kw=7.0, eta=1.0, v2g=False, soc_v2g_min=0.0,
                sessions=tab, taper_soc=(0.0, 0.6, 1.0), taper_frac=(1.0, 0.5, 0.8))
