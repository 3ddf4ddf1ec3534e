"""The SimPy layer: message latency and loss, call timing, determinism."""

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
        "t", np.arange(n) % n_bus, "towerco", 1.0, p_idle_kw=2.3, p_busy_kw=3.9, cap_kwh=25.0,
        p_batt_max_kw=5.0, eta=0.95, backup_h=3.0, soc_min=0.1, soc_max=1.0, soc_init=1.0,
        traffic_profile="bs_traffic_urban", traffic_scale=np.ones(n), clock_start_h=18.0,
    )
    return {"towerco": Portfolio([fleet], n_bus, get_allocator("pro_rata"))}


def _run(calls, dt_s=60.0, n_ticks=20, latency_s=0.0, loss=0.0, seed=0):
    engine = Engine(_portfolios(), calls, 2, dt_s, n_ticks, latency_s, loss, np.random.default_rng(seed))
    out = []
    engine.run(out.append)
    return engine, out


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


def test_zero_latency_call_is_answered_from_its_first_tick():
    call = DRCall("c", Direction.REDUCE, 20.0, 300.0, 900.0, 300.0)  # notified at its start
    _, out = _run([call])
    active = [o for o in out if call.is_active(o.t_s)]
    assert len(active) == 10
    assert all(np.isclose(o.delivered_kw[0], 20.0) for o in active)
    assert all(o.delivered_kw[0] == 0.0 for o in out if not call.is_active(o.t_s))


def test_latency_longer_than_a_tick_costs_the_first_ticks():
    call = DRCall("c", Direction.REDUCE, 20.0, 300.0, 900.0, 300.0)
    _, out = _run([call], latency_s=90.0)  # notice and instructions each 90 s late, tick 60 s
    delivered = [o.delivered_kw[0] for o in out if call.is_active(o.t_s)]
    # Notice reaches the platform at 390 s (seen at the 420 s tick), the instruction it
    # sends then reaches the operator at 510 s (applied from the 540 s tick).
    assert delivered[:4] == [0.0, 0.0, 0.0, 0.0]
    assert np.allclose(delivered[4:], 20.0)


def test_early_notice_with_latency_is_ready_at_start():
    call = DRCall("c", Direction.REDUCE, 20.0, 600.0, 900.0, 0.0)
    _, out = _run([call], latency_s=30.0)
    delivered = [o.delivered_kw[0] for o in out if call.is_active(o.t_s)]
    assert np.allclose(delivered, 20.0)


def test_requested_is_recorded_even_when_unanswerable():
    call = DRCall("c", Direction.REDUCE, 1e6, 300.0, 600.0, 300.0)
    engine, out = _run([call])
    active = [o for o in out if call.is_active(o.t_s)]
    assert all(o.requested_kw[0] == 1e6 for o in active)
    assert all(0.0 < o.delivered_kw[0] < 1e6 for o in active)
    assert engine.grid_operator.collect()["c"].accepted


def test_lossy_links_are_deterministic_per_seed():
    call = DRCall("c", Direction.REDUCE, 20.0, 300.0, 900.0, 0.0)
    a = [o.delivered_kw[0] for o in _run([call], loss=0.3, seed=5)[1]]
    b = [o.delivered_kw[0] for o in _run([call], loss=0.3, seed=5)[1]]
    assert a == b
