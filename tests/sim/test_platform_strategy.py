"""The platform's split of a call over operators, by name: pro_rata by offered room, merit_order by offered cost.

Reference: the shares on paper. Three operators offer 100, 50 and 30 kW of
room down at 1.0, 0.2 and 0.5 CNY/kWh; a 120 kW reduce call goes pro rata
(120/180 of each room: 66.7, 33.3, 20) or cheapest first (50 from the second,
30 from the third, 40 from the first).
"""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from vpp.dispatch import Portfolio, get_allocator
from vpp.dispatch.aggregate import BusFlexibility
from vpp.dr import Direction, DRCall
from vpp.fleets import BaseStationFleet, Envelope
from vpp.sim.agents import PlatformAgent
from vpp.sim.messages import CallNotice, FlexibilityOffer

ROOM_KW = (100.0, 50.0, 30.0)
COST = (1.0, 0.2, 0.5)


class _Sink:
    def __init__(self):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)


def _platform(strategy: str):
    ops = ["a", "b", "c"]
    p = PlatformAgent(simpy.Environment(), ops, 1, strategy)
    p.to_grid_operator = _Sink()
    p.to_operator = {op: _Sink() for op in ops}
    for op, room, cost in zip(ops, ROOM_KW, COST):
        flex = BusFlexibility(np.array([200.0]), np.array([room]), np.array([10.0]))
        p._receive(0.0, FlexibilityOffer(0.0, op, flex, cost, 9.0))
    p._receive(0.0, CallNotice(0.0, DRCall("c", Direction.REDUCE, 120.0, 0.0, 600.0, 0.0)))
    return [p.to_operator[op].sent[-1].delta_kw for op in ops]


def test_pro_rata_by_offered_room():
    np.testing.assert_allclose(_platform("pro_rata"), [-120.0 * r / 180.0 for r in ROOM_KW])


def test_merit_order_by_offered_cost():
    np.testing.assert_allclose(_platform("merit_order"), [-40.0, -50.0, -30.0])


@pytest.mark.parametrize("name", ["optimal", "edf", "coin_toss"])
def test_unknown_or_device_level_names_are_refused(name):
    with pytest.raises(KeyError, match="valid: merit_order, pro_rata"):
        PlatformAgent(simpy.Environment(), ["a"], 1, name)


def test_offered_cost_is_the_room_weighted_mean():
    fleet = BaseStationFleet(
        "t", np.zeros(3, dtype=np.int64), "op", np.array([1.0, 2.0, 4.0]), p_idle_kw=2.3, p_busy_kw=3.9,
        p_design_kw=3.9, cap_kwh=25.0, p_batt_max_kw=5.0, eta=0.95, backup_h=3.0, soc_min=0.1, soc_max=1.0,
        soc_init=0.9, traffic_profile="bs_traffic_urban", traffic_scale=np.ones(3), clock_start_h=18.0,
    )
    pf = Portfolio([fleet], 1, get_allocator("pro_rata"), offer_cost=True)
    env = Envelope(np.array([0.0, 1.0, 2.0]), np.array([4.0, 4.0, 4.0]), np.array([1.0, 3.0, 3.0]))
    down, up = pf.offered_cost(env)
    assert down == pytest.approx((1.0 * 1 + 2.0 * 2 + 4.0 * 1) / 4.0)
    assert up == pytest.approx((1.0 * 3 + 2.0 * 1 + 4.0 * 1) / 5.0)
