"""The SimPy layer: message latency and loss, call timing, the no-call twin, determinism.

What the operators were told to move is read from ``TickOutcome.instructed_bus_kw``
(signed, load convention: a reduce call is negative); what the plant delivered
is the twin's power minus the plant's (a reduce call is positive).
"""

from __future__ import annotations

import numpy as np
import simpy

from vpp.dispatch import Portfolio, get_allocator
from vpp.dr import Direction, DRCall
from vpp.fleets import BaseStationFleet
from vpp.sim import Engine, Link, Mailbox


def _portfolios(n_bus: int = 2):
    n = 40
    fleet = BaseStationFleet(
        "t", np.arange(n) % n_bus, "towerco", 1.0, p_idle_kw=2.3, p_busy_kw=3.9, p_design_kw=3.9, cap_kwh=25.0,
        p_batt_max_kw=5.0, eta=0.95, backup_h=3.0, soc_min=0.1, soc_max=1.0, soc_init=1.0,
        traffic_profile="bs_traffic_urban", traffic_scale=np.ones(n), clock_start_h=18.0,
    )
    return {"towerco": Portfolio([fleet], n_bus, get_allocator("pro_rata"))}


def _run(calls, dt_s=60.0, n_ticks=20, latency_s=0.0, loss=0.0, seed=0, twin=True):
    engine = Engine(_portfolios(), calls, 2, dt_s, n_ticks, latency_s, loss, np.random.default_rng(seed), twin=twin)
    out = []
    engine.run(out.append)
    return engine, out


def _instructed(o, j: int = 0) -> float:
    """Change the operators applied for call ``j`` over the tick, averaged [kW, signed]."""
    return float(o.instructed_bus_kw[j].sum())


def _twin_minus_plant(o) -> float:
    return float(o.p_twin_fleet_kw.sum() - o.p_fleet_kw.sum())


def test_link_latency_and_loss():
    env = simpy.Environment()
    box = Mailbox(env)
    link = Link(env, box, latency_s=5.0)
    link.send("a")
    env.run(until=4.9)
    assert box.drain() == []
    env.run(until=5.1)
    assert box.drain() == ["a"]
    lossy = Link(env, box, 0.0, 0.5, np.random.default_rng(1))
    for i in range(1000):
        lossy.send(i)
    got = box.drain()
    assert len(got) + lossy.n_lost == 1000 and 400 < lossy.n_lost < 600


def test_mailbox_keeps_true_arrival_times():
    env = simpy.Environment()
    box = Mailbox(env)
    Link(env, box, latency_s=0.25).send("a")
    Link(env, box, latency_s=1.5).send("b")
    env.run(until=10.0)
    assert box.drain_timed() == [(0.25, "a"), (1.5, "b")]


def test_zero_latency_call_is_answered_from_its_first_tick():
    call = DRCall("c", Direction.REDUCE, 20.0, 300.0, 900.0, 300.0)  # notified at its start
    _, out = _run([call])
    active = [o for o in out if call.is_active(o.t_s)]
    assert len(active) == 10
    assert all(np.isclose(_instructed(o), -20.0) for o in active)
    assert all(_instructed(o) == 0.0 for o in out if not call.is_active(o.t_s))
    # Before the call the plant is its twin, bit for bit; in the call's first tick the two
    # start from the same state, so the twin-measured delivery is exactly the instruction.
    assert all(np.array_equal(o.p_fleet_bus_kw, o.p_twin_fleet_bus_kw) for o in out if o.t_s < call.start_s)
    assert np.isclose(_twin_minus_plant(active[0]), 20.0)


def test_latency_longer_than_a_tick_costs_the_first_ticks():
    call = DRCall("c", Direction.REDUCE, 20.0, 300.0, 900.0, 300.0)
    _, out = _run([call], latency_s=90.0)  # notice and instructions each 90 s late, tick 60 s
    applied = [-_instructed(o) for o in out if call.is_active(o.t_s)]
    # The notice reaches the platform at 390 s, which instructs at once; the instruction
    # reaches the operator at 480 s, a tick boundary: ticks 300, 360 and 420 get nothing.
    assert applied[:3] == [0.0, 0.0, 0.0]
    assert np.allclose(applied[3:], 20.0)


def test_early_notice_with_latency_is_ready_at_start():
    call = DRCall("c", Direction.REDUCE, 20.0, 600.0, 900.0, 0.0)
    _, out = _run([call], latency_s=30.0)
    active = [o for o in out if call.is_active(o.t_s)]
    assert np.allclose([-_instructed(o) for o in active], 20.0)
    assert np.isclose(_twin_minus_plant(active[0]), 20.0)


def test_requested_is_recorded_even_when_unanswerable():
    call = DRCall("c", Direction.REDUCE, 1e6, 300.0, 600.0, 300.0)
    engine, out = _run([call])
    active = [o for o in out if call.is_active(o.t_s)]
    assert all(o.requested_kw[0] == 1e6 for o in active)
    assert all(o.active_fraction[0] == 1.0 for o in active)
    assert all(0.0 < -_instructed(o) < 1e6 for o in active)
    assert 0.0 < _twin_minus_plant(active[0]) < 1e6
    assert engine.grid_operator.collect()["c"].accepted


def test_lossy_links_are_deterministic_per_seed():
    call = DRCall("c", Direction.REDUCE, 20.0, 300.0, 900.0, 0.0)
    a = _run([call], loss=0.3, seed=5)[1]
    b = _run([call], loss=0.3, seed=5)[1]
    assert [_instructed(o) for o in a] == [_instructed(o) for o in b]
    assert all(np.array_equal(x.p_fleet_bus_kw, y.p_fleet_bus_kw) for x, y in zip(a, b))
    assert all(np.array_equal(x.p_twin_fleet_bus_kw, y.p_twin_fleet_bus_kw) for x, y in zip(a, b))


def test_twin_is_the_plant_without_calls():
    call = DRCall("c", Direction.REDUCE, 20.0, 300.0, 900.0, 0.0)
    _, with_call = _run([call])
    _, without = _run([])
    for o, n in zip(with_call, without):
        np.testing.assert_array_equal(o.p_twin_fleet_bus_kw, n.p_fleet_bus_kw)
        np.testing.assert_array_equal(n.p_twin_fleet_bus_kw, n.p_fleet_bus_kw)


def test_twin_off_leaves_the_plant_unchanged():
    call = DRCall("c", Direction.REDUCE, 20.0, 300.0, 900.0, 0.0)
    _, on = _run([call])
    engine, off = _run([call], twin=False)
    assert engine.twin is None
    for a, b in zip(on, off):
        assert b.p_twin_fleet_kw is None and b.p_twin_fleet_bus_kw is None and b.p_twin_bus_kw is None
        np.testing.assert_array_equal(a.p_fleet_bus_kw, b.p_fleet_bus_kw)
        np.testing.assert_array_equal(a.instructed_bus_kw, b.instructed_bus_kw)
