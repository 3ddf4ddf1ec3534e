"""The DR call model (vpp.dr): requested power over ticks from intervals, ramp-up and versions.

Expected values are integrated by hand from the piecewise-linear profile
(stated in each test), and checked again against an independent fine-grid
midpoint integration of the same profile written here, never read back from
the code under test.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vpp.dispatch import Portfolio, get_allocator
from vpp.dr import Direction, DRCall, versions
from vpp.fleets import BaseStationFleet
from vpp.sim import Engine
from towers import full_towers  # tests/helpers

S_PER_H = 3600.0

# A reduce call active over [300, 2100) s: ramps in over 450 s, 10 kW until 900 s, 20 kW until 1500 s, 5 kW after.
START_S, END_S, RAMP_S = 300.0, 2100.0, 450.0
INTERVALS = ((300.0, 900.0, 10.0), (900.0, 1500.0, 20.0), (1500.0, 2100.0, 5.0))


def _call(**kw) -> DRCall:
    args = dict(call_id="c", direction=Direction.REDUCE, p_kw=20.0, start_s=START_S, end_s=END_S,
                notification_s=0.0, intervals=INTERVALS, ramp_up_s=RAMP_S)
    args.update(kw)
    return DRCall(**args)


def _profile_kw(t_s: float, start_s=START_S, ramp_s=RAMP_S, intervals=INTERVALS) -> float:
    """The requested change magnitude at ``t_s`` [kW], written out independently of vpp.dr."""
    for a, b, v in intervals:
        if a <= t_s < b:
            return v * min(1.0, (t_s - start_s) / ramp_s) if ramp_s > 0 else v
    return 0.0


def _numeric_mean_kw(t0: float, t1: float, profile=_profile_kw, n: int = 60_000) -> float:
    """Midpoint rule: exact on the linear ramp; a step inside a cell costs at most jump x cell / window."""
    t = t0 + (np.arange(n) + 0.5) * (t1 - t0) / n
    return float(np.mean([profile(x) for x in t]))


NUMERIC_ABS_KW = 1e-3  # > 15 kW / 60,000 cells: a step of at most 15 kW in one cell moves the mean by 2.5e-4 kW


# Hand integration over 300 s ticks (ramp r(t) = (t - 300) / 450 until 750 s):
#   [300, 600):  10 x ∫ r = 10 x 300²/(2 x 450) = 1000 kW s      -> 3.333... kW
#   [600, 900):  10 x ((450² - 300²)/900 + 150) = 10 x 275 kW s -> 9.1666... kW
#   then 20, 20, 5, 5 kW, and 0 outside [300, 2100).
HAND_300 = {0.0: 0.0, 300.0: 1000.0 / 300.0, 600.0: 2750.0 / 300.0, 900.0: 20.0, 1200.0: 20.0, 1500.0: 5.0,
            1800.0: 5.0, 2100.0: 0.0}


def test_requested_kw_over_ticks_is_the_hand_integrated_profile():
    call = _call()
    for t0, want in HAND_300.items():
        assert call.requested_kw(t0, t0 + 300.0) == pytest.approx(want, rel=1e-12, abs=1e-12), t0
        assert call.requested_kw(t0, t0 + 300.0) == pytest.approx(_numeric_mean_kw(t0, t0 + 300.0), abs=NUMERIC_ABS_KW)


@pytest.mark.parametrize("dt_s", [60.0, 137.0, 600.0, 900.0])
def test_requested_kw_on_other_ticks_matches_a_fine_integration(dt_s):
    call = _call()
    for t0 in np.arange(0.0, 2400.0, dt_s):
        assert call.requested_kw(t0, t0 + dt_s) == pytest.approx(_numeric_mean_kw(t0, t0 + dt_s), abs=NUMERIC_ABS_KW), t0
    # Ticks crossing interval edges: [600, 1200) holds the ramp's end, 10 kW and 20 kW: (2750 + 6000) / 600.
    assert call.requested_kw(600.0, 1200.0) == pytest.approx(8750.0 / 600.0, rel=1e-12)


def test_energy_is_the_profile_integral():
    # 1000 + 2750 (ramped 10 kW) + 20 x 600 + 5 x 600 kW s
    assert _call().energy_kwh() == pytest.approx((1000.0 + 2750.0 + 12000.0 + 3000.0) / S_PER_H, rel=1e-12)


def test_delta_at_an_instant_is_signed_and_ramped():
    call = _call()
    assert call.delta_kw_at(299.0) == 0.0
    assert call.delta_kw_at(300.0) == 0.0  # the ramp starts at 0
    assert call.delta_kw_at(525.0) == pytest.approx(-10.0 * 0.5)
    assert call.delta_kw_at(1000.0) == -20.0
    assert call.delta_kw_at(2099.0) == -5.0
    assert call.delta_kw_at(2100.0) == 0.0
    up = _call(direction=Direction.INCREASE, ramp_up_s=0.0)
    assert up.delta_kw_at(400.0) == 10.0


def test_a_flat_call_is_what_it_always_was():
    # The short form: no intervals listed, or one interval at p_kw; weight_s is exactly the overlap.
    old = DRCall("c", Direction.REDUCE, 20.0, 450.0, 1950.0, 0.0)
    new = DRCall("c", Direction.REDUCE, 20.0, 450.0, 1950.0, 0.0, intervals=((450.0, 1950.0, 20.0),))
    for t0 in np.arange(0.0, 2400.0, 300.0):
        for c in (old, new):
            assert c.weight_s(t0, t0 + 300.0) == c.overlap_s(t0, t0 + 300.0)
            assert c.requested_kw(t0, t0 + 300.0) == 20.0 * (c.overlap_s(t0, t0 + 300.0) / 300.0)
            assert c.active_s(t0, t0 + 300.0) == c.overlap_s(t0, t0 + 300.0)
    assert old.schedule == new.intervals
    assert versions(old) == ((0.0, old),)
    assert old.latest is old and old.effective_end_s == 1950.0


# --- versions: modifications and cancellation ----------------------------------------------------------------


def _modified() -> DRCall:
    v0 = _call()
    # Announced at 1000 s (inside the tick [900, 1200)): 30 kW from 900 s, ending at 1800 s instead of 2100 s.
    v1 = replace(v0, modification=1, end_s=1800.0, p_kw=30.0, intervals=((300.0, 900.0, 10.0), (900.0, 1800.0, 30.0)))
    return replace(v0, updates=((1000.0, v1),))


def test_the_version_in_force_gives_the_request():
    call = _modified()
    assert [v.modification for _, v in call.versions] == [0, 1]
    assert call.latest.modification == 1 and call.versions[1][0] == 1000.0
    # [900, 1200): 20 kW until the announcement at 1000 s, then 30 kW: (2000 + 6000) / 300.
    assert call.requested_kw(900.0, 1200.0) == pytest.approx(8000.0 / 300.0, rel=1e-12)
    assert call.requested_kw(1500.0, 1800.0) == 30.0
    assert call.requested_kw(1800.0, 2100.0) == 0.0  # the new end
    assert call.active_s(1800.0, 2100.0) == 0.0
    assert call.effective_end_s == 1800.0
    assert call.delta_kw_at(950.0) == -20.0 and call.delta_kw_at(1000.0) == -30.0
    # 1000 + 2750 + 20 x 100 + 30 x 800 kW s
    assert call.energy_kwh() == pytest.approx((3750.0 + 2000.0 + 24000.0) / S_PER_H, rel=1e-12)


def test_a_cancellation_stops_the_request_from_its_announcement():
    v0 = _call()
    cancel = replace(v0, modification=1, cancelled=True)
    call = replace(v0, updates=((1200.0, cancel),))
    assert call.requested_kw(900.0, 1200.0) == 20.0
    assert call.requested_kw(1200.0, 1500.0) == 0.0
    assert call.requested_kw(1050.0, 1350.0) == pytest.approx(20.0 * 150.0 / 300.0)
    assert call.active_s(1050.0, 1350.0) == 150.0
    assert call.effective_end_s == 1200.0
    before_start = replace(v0, updates=((100.0, cancel),))
    assert before_start.energy_kwh() == 0.0 and before_start.effective_end_s == START_S


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"intervals": ((300.0, 900.0, 10.0), (1000.0, 2100.0, 5.0))}, "contiguous"),
        ({"intervals": ((300.0, 900.0, 10.0), (900.0, 2000.0, 5.0))}, "not at end_s"),
        ({"intervals": ((300.0, 2100.0, 25.0),)}, "at least the largest interval value"),
        ({"intervals": ((300.0, 2100.0, -5.0),)}, "magnitudes >= 0"),
        ({"ramp_up_s": -1.0}, "ramp_up_s"),
        ({"signal": "watts"}, "unknown signal"),
        ({"response_required": "maybe"}, "response_required"),
        ({"signal": "price_cny_per_kwh"}, "p_kw must be 0"),
    ],
)
def test_a_call_that_cannot_be(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _call(**kwargs)


def test_versions_must_be_newer_in_order_and_keep_start_and_targets():
    v0 = _call()
    with pytest.raises(ValueError, match="modification numbers must increase"):
        replace(v0, updates=((1000.0, replace(v0, modification=0)),))
    with pytest.raises(ValueError, match="announced in order"):
        replace(v0, updates=((1000.0, replace(v0, modification=1)), (900.0, replace(v0, modification=2))))
    with pytest.raises(ValueError, match="may not change start_s"):
        replace(v0, updates=((1000.0, replace(v0, modification=1, bus_idx=(1,))),))


# --- setpoints and prices ------------------------------------------------------------------------------------


def test_setpoint_is_converted_against_a_baseline():
    call = DRCall("s", Direction.REDUCE, 1.0, 0.0, 3600.0, 0.0, signal="setpoint_kw", intervals=((0.0, 3600.0, 100.0),))
    assert call.setpoint_kw_at(10.0) == 100.0
    assert call.setpoint_delta_kw(10.0, 130.0) == -30.0  # bring 130 kW down to 100 kW
    assert call.setpoint_delta_kw(10.0, 90.0) == 0.0  # already below: a reduce call asks nothing
    up = replace(call, direction=Direction.INCREASE)
    assert up.setpoint_delta_kw(10.0, 90.0) == 10.0
    assert call.setpoint_delta_kw(4000.0, 130.0) == 0.0  # outside the active period
    with pytest.raises(ValueError, match="p_baseline_kw"):
        call.requested_kw(0.0, 300.0)
    # Against a baseline: the time average of the gap to the setpoint, in the call's direction only.
    assert call.requested_kw(0.0, 300.0, 130.0) == pytest.approx(30.0)
    assert call.requested_kw(3300.0, 3900.0, 130.0) == pytest.approx(15.0)  # half the tick after the end
    assert call.requested_kw(0.0, 300.0, 90.0) == 0.0
    ramped = replace(call, ramp_up_s=600.0)
    assert ramped.requested_kw(0.0, 300.0, 130.0) == pytest.approx(30.0 * 0.25)  # the ramp at the tick middle
    tick = call.as_delta(0.0, 300.0, 130.0)
    assert tick.signal == "delta_kw" and tick.requested_kw(0.0, 300.0) == pytest.approx(30.0)
    assert tick.requested_kw(600.0, 900.0) == pytest.approx(30.0)  # held until the next conversion


def test_price_only_event_requests_no_power():
    call = DRCall("p", Direction.REDUCE, 0.0, 0.0, 3600.0, 0.0, signal="price_cny_per_kwh",
                  intervals=((0.0, 1800.0, 1.2), (1800.0, 3600.0, 2.5)))
    assert call.requested_kw(0.0, 3600.0) == 0.0 and call.energy_kwh() == 0.0
    assert call.price_at(100.0) == 1.2 and call.price_at(2000.0) == 2.5 and call.price_at(4000.0) is None
    power = _call(price_intervals=((300.0, 2100.0, 1.5),))
    assert power.price_at(1000.0) == 1.5


# --- through the engine: what operators apply follows the same profile ---------------------------------------




def _run(call: DRCall, latency_s: float = 0.0, dt_s: float = 300.0, n_ticks: int = 8):
    engine = Engine(full_towers(), [call], 2, dt_s, n_ticks, latency_s=latency_s, rng=np.random.default_rng(0))
    out = []
    engine.run(out.append)
    return out


def test_engine_requests_and_applies_the_ramped_intervals():
    out = _run(_call())
    for o in out:
        assert o.requested_kw[0] == pytest.approx(HAND_300[o.t_s], rel=1e-12, abs=1e-12)
        # Notified long before, no latency, ample room: the operator applies exactly the request.
        assert -o.instructed_bus_kw[0].sum() == pytest.approx(HAND_300[o.t_s], rel=1e-9, abs=1e-9)


def test_a_version_acts_when_its_instruction_arrives():
    call = _modified()
    # The request switches at the announcement (1000 s) ...
    out = _run(call)
    by_t = {o.t_s: o for o in out}
    assert by_t[900.0].requested_kw[0] == pytest.approx(8000.0 / 300.0, rel=1e-12)
    assert -by_t[900.0].instructed_bus_kw[0].sum() == pytest.approx(8000.0 / 300.0, rel=1e-9)
    assert by_t[1800.0].requested_kw[0] == 0.0 and by_t[1800.0].active_fraction[0] == 0.0
    # ... while the operator follows it from the instruction's arrival: with 50 s latency the new version's
    # instruction arrives at 1000 + 2 x 50 = 1100 s, so 20 kW holds over [900, 1100) and 30 kW after.
    slow = {o.t_s: o for o in _run(call, latency_s=50.0)}
    assert slow[900.0].requested_kw[0] == pytest.approx(8000.0 / 300.0, rel=1e-12)
    assert -slow[900.0].instructed_bus_kw[0].sum() == pytest.approx((20.0 * 200.0 + 30.0 * 100.0) / 300.0, rel=1e-9)


def test_a_cancelled_call_is_sent_and_then_applies_nothing():
    v0 = _call()
    call = replace(v0, updates=((1200.0, replace(v0, modification=1, cancelled=True)),))
    out = _run(call)
    applied = [-o.instructed_bus_kw[0].sum() for o in out]
    assert applied == pytest.approx([HAND_300[o.t_s] if o.t_s < 1200.0 else 0.0 for o in out], abs=1e-9)


# --- device groups: fleets and operators narrow a call's targets ----------------------------------------------


def _tower_fleet(name: str, operator: str, n: int, bus: int) -> BaseStationFleet:
    return BaseStationFleet(
        name, np.full(n, bus), operator, 1.0, p_idle_kw=2.3, p_busy_kw=3.9, p_design_kw=3.9, cap_kwh=25.0,
        p_batt_max_kw=5.0, eta=0.95, backup_h=3.0, soc_min=0.1, soc_max=1.0, soc_init=1.0,
        traffic_profile="bs_traffic_urban", traffic_scale=np.ones(n), clock_start_h=18.0,
    )


@pytest.mark.parametrize("use_numba", [False, True])
def test_portfolio_targets_fleets_operators_and_buses(use_numba):
    fleets = [_tower_fleet("a", "op1", 3, 0), _tower_fleet("b", "op1", 2, 1), _tower_fleet("c", "op2", 4, 1)]
    pf = Portfolio(fleets, 2, get_allocator("pro_rata"))
    pf.use_numba = use_numba and pf.use_numba
    base = dict(call_id="x", direction=Direction.REDUCE, p_kw=5.0, start_s=0.0, end_s=600.0, notification_s=0.0)
    np.testing.assert_array_equal(pf.targets(DRCall(**base)), np.arange(9))
    # (targets are cached per call id and modification: each case is its own call)
    np.testing.assert_array_equal(pf.targets(DRCall(**{**base, "call_id": "v"}, fleets=("b",))), [3, 4])
    np.testing.assert_array_equal(pf.targets(DRCall(**{**base, "call_id": "y"}, operators=("op1",))), np.arange(5))
    np.testing.assert_array_equal(pf.targets(DRCall(**{**base, "call_id": "z"}, fleets=("a", "c"), bus_idx=(1,))),
                                  np.arange(5, 9))
    # Only the targeted devices move.
    states = pf.initial_states()
    pf.advance(states, 0.0, 300.0)
    env = pf.flexibility(states, 0.0, 300.0)
    default = env.p_default_kw.copy()
    call = DRCall(**{**base, "call_id": "w"}, fleets=("b",))
    p_kw, instructed = pf.setpoints(env, [(call, -5.0)])
    moved = np.flatnonzero(p_kw != default)
    assert set(moved) <= {3, 4} and moved.size
    assert instructed["w"].sum() == pytest.approx(-5.0)
