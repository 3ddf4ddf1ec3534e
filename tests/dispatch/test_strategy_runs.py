"""The same small scenario under every strategy, at every level: the run completes and its invariants hold.

Invariants, each against the run's own no-call twin (the ground truth):

* no base-station battery ever goes below its backup reserve;
* the buildings' comfort band is kept (no more degree-hours outside it than the twin);
* no EV session leaves with more energy missing than in the twin (a call may
  defer charging but never past a session's laxity);
* the call is answered in its direction: energy delivered against the twin is
  positive, and no more than the plant could give (the request).
"""

from __future__ import annotations

import pytest

from vpp.run import run_scenario
from vpp.scenario import parse_scenario

STRATEGIES = ["pro_rata", "merit_order", "edf", "llf", "optimal"]


def _check(results) -> dict:
    s = results.summary
    assert results.completed, results.error
    for name, f in s["fleets"].items():
        twin = f["twin"]
        if f["kind"] == "basestation":
            assert f["n_reserve_breaches"] == 0, name
        elif f["kind"] == "building":
            assert f["comfort_violation_kh"] <= twin["comfort_violation_kh"] + 1e-9, name
        elif f["kind"] == "ev":
            assert f["e_unmet_kwh"] <= twin["e_unmet_kwh"] + 1e-6, name
            assert f["n_sessions_unmet"] <= twin["n_sessions_unmet"], name
    (call,) = s["calls"]
    assert 0.0 < call["delivered_kwh"] <= call["requested_kwh"] * 1.05
    return call


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_device_strategy_runs_and_keeps_the_invariants(small_dict, strategy):
    small_dict["dispatch"] = {"strategy": strategy}
    _check(run_scenario(parse_scenario(small_dict)))


def test_platform_merit_order_and_per_operator_strategies(small_dict):
    # The platform gives the call to the cheapest offers first; each operator splits its share its own way.
    for f, cost in zip(small_dict["fleets"], (1.0, 1.5, 0.3, 1.2)):  # ac, dc, towers, offices: towers cheapest
        f["cost_cny_per_kwh"] = cost
    small_dict["dispatch"] = {"strategy": "pro_rata", "platform_strategy": "merit_order",
                              "operators": {"evnet": "edf", "towerco": "optimal"}}
    res = run_scenario(parse_scenario(small_dict))
    call = _check(res)
    by_kind = call["delivered_by_kind_kwh"]
    # Merit order at the platform: the cheap tower company answers first (under pro_rata here the towers
    # delivered ~2 % of the call; EVs most of it); the EV network, dearest but one, is not called at all.
    assert by_kind["basestation"] > 0.5 * call["delivered_kwh"]
    assert by_kind["ev"] == pytest.approx(0.0, abs=1e-6)


def test_default_strategies_are_pro_rata_at_both_levels(small_dict):
    sc = parse_scenario(small_dict)
    assert sc.dispatch.strategy == "pro_rata" and sc.dispatch.platform_strategy == "pro_rata"
    assert sc.dispatch.strategy_for("evnet") == "pro_rata"
    small_dict["dispatch"] = {"strategy": "llf", "operators": {"bldg": "optimal"}}
    d = parse_scenario(small_dict).dispatch
    assert d.strategy_for("evnet") == "llf" and d.strategy_for("bldg") == "optimal"
