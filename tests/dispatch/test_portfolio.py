"""Operator portfolios: setpoints inside the envelope, targeted calls touch only their buses."""

from __future__ import annotations

import numpy as np

from vpp.dispatch import Portfolio, aggregate_by_bus, get_allocator
from vpp.dr import Direction, DRCall
from vpp.fleets import BaseStationFleet, Envelope


def _towers(n: int, bus_idx) -> BaseStationFleet:
    return BaseStationFleet(
        "t", np.asarray(bus_idx), "op", 1.0, p_idle_kw=2.3, p_busy_kw=3.9, p_design_kw=3.9, cap_kwh=25.0,
        p_batt_max_kw=5.0, eta=0.95, backup_h=3.0, soc_min=0.1, soc_max=1.0, soc_init=0.9,
        traffic_profile="bs_traffic_urban", traffic_scale=np.ones(n), clock_start_h=18.0,
    )


def _portfolio(fleet: BaseStationFleet, n_bus: int, t_s: float = 0.0, dt_s: float = 300.0):
    """A one-fleet portfolio, its states advanced to ``t_s`` and its envelope for the tick."""
    pf = Portfolio([fleet], n_bus=n_bus, allocator=get_allocator("pro_rata"))
    states = pf.initial_states()
    pf.advance(states, t_s, dt_s)
    return pf, states, pf.flexibility(states, t_s, dt_s)


def test_aggregate_by_bus_matches_loop():
    rng = np.random.default_rng(0)
    bus = rng.integers(0, 5, size=100)
    lo = rng.uniform(-1, 0, 100)
    hi = rng.uniform(1, 2, 100)
    d = rng.uniform(0, 1, 100)
    agg = aggregate_by_bus(bus, Envelope(lo, hi, d), 6)
    for b in range(6):
        assert np.isclose(agg.p_default_kw[b], d[bus == b].sum())
        assert np.isclose(agg.down_kw[b], (d - lo)[bus == b].sum())
        assert np.isclose(agg.up_kw[b], (hi - d)[bus == b].sum())


def test_targeted_call_moves_only_its_buses():
    fleet = _towers(10, [0, 1] * 5)
    pf, states, env = _portfolio(fleet, n_bus=3)
    default_kw = env.p_default_kw.copy()
    call = DRCall("c", Direction.REDUCE, 5.0, 0.0, 600.0, 0.0, bus_idx=(1,))
    p_set, instructed = pf.setpoints(env, [(call, -5.0)])
    on_bus0 = fleet.bus_idx == 0
    np.testing.assert_array_equal(p_set[on_bus0], default_kw[on_bus0])
    assert np.isclose((default_kw - p_set)[~on_bus0].sum(), 5.0)
    # The instructed change per bus is what the setpoints moved there, signed (load convention).
    assert set(instructed) == {"c"}
    np.testing.assert_allclose(instructed["c"], [0.0, -5.0, 0.0], atol=1e-12)
    p = pf.step(states, p_set, 0.0, 300.0)
    # Setpoints were inside the envelope, so the devices draw exactly them.
    np.testing.assert_array_equal(p, p_set)


def test_request_beyond_room_gives_all_room():
    fleet = _towers(4, [0, 0, 1, 1])
    pf, _, env = _portfolio(fleet, n_bus=2)
    call = DRCall("c", Direction.REDUCE, 1e6, 0.0, 600.0, 0.0)
    p_set, instructed = pf.setpoints(env, [(call, -1e6)])
    np.testing.assert_allclose(p_set, env.p_min_kw)
    np.testing.assert_allclose(instructed["c"], aggregate_by_bus(fleet.bus_idx, env, 2).down_kw * -1.0)


def test_flexibility_leaves_the_states_untouched():
    fleet = _towers(6, [0, 1, 2] * 2)
    pf, states, _ = _portfolio(fleet, n_bus=3)
    before = [s.copy() for s in states]
    pf.flexibility(states, 0.0, 300.0)
    assert all(a.equals(b) for a, b in zip(states, before))


def test_a_zero_request_instructs_nothing():
    fleet = _towers(4, [0, 0, 1, 1])
    pf, _, env = _portfolio(fleet, n_bus=2)
    call = DRCall("c", Direction.REDUCE, 5.0, 0.0, 600.0, 0.0)
    p_set, instructed = pf.setpoints(env, [(call, 0.0)])
    np.testing.assert_array_equal(p_set, env.p_default_kw)
    assert instructed == {}
