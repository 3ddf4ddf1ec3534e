"""Operator portfolios: setpoints inside the envelope, targeted calls touch only their buses."""

from __future__ import annotations

import numpy as np

from vpp.dispatch import Portfolio, aggregate_by_bus, get_allocator
from vpp.dr import Direction, DRCall
from vpp.fleets import BaseStationFleet, Envelope


def _towers(n: int, bus_idx) -> BaseStationFleet:
    return BaseStationFleet(
        "t", np.asarray(bus_idx), "op", 1.0, p_idle_kw=2.3, p_busy_kw=3.9, cap_kwh=25.0, p_batt_max_kw=5.0,
        eta=0.95, backup_h=3.0, soc_min=0.1, soc_max=1.0, soc_init=0.9, traffic_profile="bs_traffic_urban",
        traffic_scale=np.ones(n), clock_start_h=18.0,
    )


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
    pf = Portfolio([fleet], n_bus=3, allocator=get_allocator("pro_rata"))
    env = pf.flexibility(0.0, 300.0)
    call = DRCall("c", Direction.REDUCE, 5.0, 0.0, 600.0, 0.0, bus_idx=(1,))
    p_set = pf.setpoints(env, [(call, -5.0)])
    on_bus0 = fleet.bus_idx == 0
    np.testing.assert_array_equal(p_set[on_bus0], env.p_default_kw[on_bus0])
    assert np.isclose((env.p_default_kw - p_set)[~on_bus0].sum(), 5.0)
    p = pf.step(p_set, 0.0, 300.0)
    assert np.isclose(pf.delivered_kw(call, env, p), 5.0)


def test_request_beyond_room_gives_all_room():
    fleet = _towers(4, [0, 0, 1, 1])
    pf = Portfolio([fleet], n_bus=2, allocator=get_allocator("pro_rata"))
    env = pf.flexibility(0.0, 300.0)
    call = DRCall("c", Direction.REDUCE, 1e6, 0.0, 600.0, 0.0)
    p_set = pf.setpoints(env, [(call, -1e6)])
    np.testing.assert_allclose(p_set, env.p_min_kw)
