"""EDF and LLF (issue 10 item 5): against a plain Python reference loop, by hand on small sessions, bounds.

References:

* the reference loop below sorts the devices by hand (Python's ``sorted`` on
  ``(no key, signed key, device)``) and gives each its full room in turn; it
  uses neither numpy nor the package;
* the hand-made sessions' keys are computed on paper: four AC piles (7 kW,
  charging efficiency 0.92, no taper), every vehicle plugged in at ``t = 0``,
  so full power stores 0.92 * 7 = 6.44 kWh per hour and a session needing
  ``E`` kWh needs ``E / 6.44`` h at full power. Laxity = departure - that.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vpp.dispatch import Portfolio, get_allocator
from vpp.dispatch.allocation import ALLOCATORS, edf, llf, strategy_keys
from vpp.dr import Direction, DRCall
from vpp.fleets import BaseStationFleet, EVFleet, Envelope, SessionTable

needs_numba = pytest.mark.skipif(
    __import__("importlib").util.find_spec("numba") is None, reason="numba is not installed"
)

ETA = 0.92
P_KW = 7.0
# (departure [s], energy needed [kWh]) of the four hand-made sessions, all arriving at t = 0.
SESSIONS = [(3600.0, 3.0), (7200.0, 10.0), (1800.0, 1.0), (10800.0, 6.0)]
# Laxity on paper: departure - need / 6.44 kWh/h.
LAXITY_S = [3600.0 - 3.0 / 6.44 * 3600.0, 7200.0 - 10.0 / 6.44 * 3600.0, 1800.0 - 1.0 / 6.44 * 3600.0,
            10800.0 - 6.0 / 6.44 * 3600.0]


def reference(delta_kw: float, room_kw, key) -> list[float]:
    """Plain loop: devices sorted by key (descending to reduce, ascending to increase; no key last), full room each."""
    n = len(room_kw)

    def sort_key(i):
        k = key[i]
        if not math.isfinite(k):
            return (1, 0.0, i)
        return (0, -k if delta_kw < 0 else k, i)

    left = abs(delta_kw)
    out = [0.0] * n
    for i in sorted(range(n), key=sort_key):
        take = min(room_kw[i], left)
        out[i] = math.copysign(take, delta_kw) if take else 0.0
        left -= take
    return out


def _ev_fleet() -> EVFleet:
    n = len(SESSIONS)
    dep = np.array([[d] for d, _ in SESSIONS])
    need = np.array([[e] for _, e in SESSIONS])
    table = SessionTable.from_dense(np.zeros((n, 1)), dep, np.full((n, 1), 60.0), np.full((n, 1), 10.0), need,
                                    np.full((n, 1), 1e4))
    return EVFleet("ev", np.zeros(n, dtype=np.int64), "op", 1.0, p_rated_kw=np.full(n, P_KW), eta=ETA,
                   v2g=np.zeros(n, bool), soc_v2g_min=0.3, sessions=table)


def _towers(n: int, bus_idx=None) -> BaseStationFleet:
    return BaseStationFleet(
        "towers", np.ones(n, dtype=np.int64) if bus_idx is None else bus_idx, "op", 1.0, p_idle_kw=2.3, p_busy_kw=3.9, p_design_kw=3.9,
        cap_kwh=25.0, p_batt_max_kw=5.0, eta=0.95, backup_h=3.0, soc_min=0.1, soc_max=1.0, soc_init=0.9,
        traffic_profile="bs_traffic_urban", traffic_scale=np.ones(n), clock_start_h=18.0,
    )


def _tick(fleets, strategy: str, use_numba: bool = False):
    pf = Portfolio(fleets, 2, get_allocator(strategy))
    pf.use_numba = use_numba
    states = pf.initial_states()
    pf.advance(states, 0.0, 300.0)
    env = pf.flexibility(states, 0.0, 300.0)
    return pf, states, env


def _call(p_kw: float, direction=Direction.REDUCE) -> DRCall:
    return DRCall("c", direction, p_kw, 0.0, 3600.0, 0.0)


def test_keys_of_the_hand_made_sessions():
    fleet = _ev_fleet()
    s = fleet.initial_state()
    fleet.advance(s, 0.0, 300.0)
    keys = fleet.dispatch_keys(s, 0.0, 300.0)
    np.testing.assert_allclose(keys["deadline_s"], [d for d, _ in SESSIONS])
    np.testing.assert_allclose(keys["laxity_s"], LAXITY_S, rtol=1e-12)
    # Paper order: EDF curtails 3 (leaves last), 1, 0, 2; LLF curtails 3 (most lax), 0, 1, 2.
    assert list(np.argsort(-keys["deadline_s"])) == [3, 1, 0, 2]
    assert list(np.argsort(-keys["laxity_s"])) == [3, 0, 1, 2]
    # Kinds without a deadline have none: inf, served last.
    towers = _towers(2)
    ts = towers.initial_state()
    k = towers.dispatch_keys(ts, 0.0, 300.0)
    assert np.all(np.isinf(k["deadline_s"])) and np.all(np.isinf(k["laxity_s"]))


@pytest.mark.parametrize("use_numba", [False, pytest.param(True, marks=needs_numba)])
@pytest.mark.parametrize(("strategy", "expected"), [("edf", [7.0, 4.0, 7.0, 0.0]), ("llf", [4.0, 7.0, 7.0, 0.0])])
def test_hand_made_sessions_reduce(strategy, expected, use_numba):
    # Every session charges at 7 kW by default and may stop (laxity > the tick): room 7 kW each.
    # Reduce 10 kW: EDF stops session 3 (7 kW) and takes 3 kW from session 1; LLF from session 0.
    pf, _, env = _tick([_ev_fleet(), _towers(3)], strategy, use_numba)
    np.testing.assert_allclose(env.p_default_kw[:4], P_KW)
    np.testing.assert_allclose(env.p_min_kw[:4], 0.0)
    p_set, instructed = pf.setpoints(env, [(_call(10.0), -10.0)])
    np.testing.assert_allclose(p_set[:4], expected, atol=1e-12)
    # Devices without a deadline (the towers) go last: untouched while the EVs have room.
    np.testing.assert_array_equal(p_set[4:], env.p_default_kw[4:])
    np.testing.assert_allclose(instructed["c"], [-10.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("strategy", ["edf", "llf"])
def test_towers_only_after_every_ev(strategy):
    pf, _, env = _tick([_ev_fleet(), _towers(3)], strategy)
    p_set, _ = pf.setpoints(env, [(_call(30.0), -30.0)])
    np.testing.assert_allclose(p_set[:4], 0.0, atol=1e-12)  # every EV stopped: 28 kW
    moved = env.p_default_kw[4:] - p_set[4:]
    assert moved.sum() == pytest.approx(2.0)
    assert moved[0] == pytest.approx(2.0)  # towers among themselves in device order


def test_increase_feeds_the_earliest_deadline_first():
    room = np.array([5.0, 5.0, 5.0, 5.0, 5.0])
    deadline = np.array([3600.0, 7200.0, 1800.0, np.inf, 10800.0])
    np.testing.assert_allclose(edf(8.0, room, np.zeros(5), deadline_s=deadline), [3.0, 0.0, 5.0, 0.0, 0.0])
    np.testing.assert_allclose(llf(8.0, room, np.zeros(5), laxity_s=deadline), [3.0, 0.0, 5.0, 0.0, 0.0])
    # Reduce: latest first, the keyless device only after every keyed one.
    np.testing.assert_allclose(edf(-12.0, room, np.zeros(5), deadline_s=deadline), [-2.0, -5.0, 0.0, 0.0, -5.0])
    np.testing.assert_allclose(edf(-22.0, room, np.zeros(5), deadline_s=deadline), [-5.0, -5.0, -5.0, -2.0, -5.0])


def test_strategies_declare_their_keys_and_work_without_them():
    assert strategy_keys(edf) == ("deadline_s",)
    assert strategy_keys(llf) == ("laxity_s",)
    assert strategy_keys(get_allocator("pro_rata")) == ()
    # Without keys every device is keyless: device order, each to its full room.
    np.testing.assert_allclose(edf(-7.0, np.array([5.0, 5.0]), np.zeros(2)), [-5.0, -2.0])


keys_st = st.one_of(st.just(np.inf), st.floats(-1e5, 1e5), st.sampled_from([0.0, 600.0, 3600.0]))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(0, 25), delta=st.floats(-300.0, 300.0), name=st.sampled_from(["edf", "llf"]))
def test_equals_the_reference_loop(data, n, delta, name):
    room = data.draw(arrays(np.float64, n, elements=st.floats(0.0, 50.0)))
    key = np.array(data.draw(st.lists(keys_st, min_size=n, max_size=n)), dtype=float)
    fn = get_allocator(name)
    out = fn(delta, room, np.zeros(n), **{strategy_keys(fn)[0]: key})
    np.testing.assert_allclose(out, reference(delta, list(room), list(key)), rtol=1e-12, atol=1e-9)
    assert np.all(np.abs(out) <= room + 1e-12)
    assert np.all(out * delta >= 0.0)
    assert abs(abs(out.sum()) - min(abs(delta), room.sum())) <= 1e-9 * max(1.0, abs(delta))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.sampled_from([0, 1, 2, 9, 60]), name=st.sampled_from(["edf", "llf"]),
       deltas=st.lists(st.floats(-400.0, 400.0), min_size=1, max_size=3), targeted=st.booleans())
def test_portfolio_setpoints_inside_the_envelope_both_paths(seed, n, name, deltas, targeted):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(-20.0, 20.0, (2, n))
    p_min, p_max = np.minimum(a, b), np.maximum(a, b)
    env = Envelope(p_min, p_max, p_min + rng.random(n) * (p_max - p_min))
    keys = {"deadline_s": np.where(rng.random(n) < 0.3, np.inf, rng.choice([0.0, 900.0, 3600.0], n)),
            "laxity_s": np.where(rng.random(n) < 0.3, np.inf, rng.uniform(-100.0, 5000.0, n))}
    pf = Portfolio([_towers(n, rng.integers(0, 2, n))], 2, get_allocator(name))  # only its buses are used
    bus = (1,) if targeted else None
    requests = [(DRCall(f"c{j}", Direction.REDUCE if d < 0 else Direction.INCREASE, max(abs(d), 1e-3), 0.0, 60.0,
                        0.0, bus_idx=bus), d) for j, d in enumerate(deltas)]
    results = []
    for use_numba in ([False, True] if __import__("importlib").util.find_spec("numba") else [False]):
        pf.use_numba = use_numba
        p, instructed = pf.setpoints(env, requests, keys=keys)
        assert np.all(p >= p_min - 1e-9) and np.all(p <= p_max + 1e-9)
        results.append((p.copy(), {k: v.copy() for k, v in instructed.items()}))
    if len(results) == 2:
        scale = max(1.0, float(np.abs(p_max).max(initial=0.0)), float(np.abs(p_min).max(initial=0.0)))
        np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-9, atol=1e-9 * scale)
        for cid in results[0][1]:
            np.testing.assert_allclose(results[0][1][cid], results[1][1][cid], rtol=1e-9, atol=1e-9 * scale)


def test_every_strategy_is_registered_and_listed():
    assert {"pro_rata", "merit_order", "edf", "llf", "optimal"} <= set(ALLOCATORS)
    with pytest.raises(KeyError, match="valid: edf, llf, merit_order, optimal, pro_rata"):
        get_allocator("lottery")
