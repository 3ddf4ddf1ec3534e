"""The platform's answer to calls: acceptance by energy, closed-loop tracking, non-compliant devices.

Every expectation is measured against something the code under test does not
compute itself: the no-call twin (delivery), a run without the feature (the
same seed), or an exact identity (devices that all ignore setpoints make the
plant its own twin).
"""

from __future__ import annotations

import numpy as np
import pytest

from vpp.dispatch.allocation import ALLOCATORS
from vpp.run import run_scenario
from vpp.scenario import parse_scenario


def _run(data: dict):
    data["grid"]["power_flow"] = False
    return run_scenario(parse_scenario(data))


def _call(res) -> dict:
    return res.summary["calls"][0]


def test_every_device_ignoring_setpoints_makes_the_plant_its_own_twin(small_dict):
    small_dict["platform"] = {"non_compliance_share": 1.0}
    ts = _run(small_dict).timeseries
    np.testing.assert_array_equal(ts["p_vpp_kw"].to_numpy(), ts["p_twin_kw"].to_numpy())
    assert (ts["p_delivered_kw"] == 0.0).all()


def test_no_platform_section_and_its_defaults_give_the_same_run(small_dict):
    plain = _run(dict(small_dict)).timeseries
    small_dict["platform"] = {"acceptance": "always", "tracking": False, "non_compliance_share": 0.0}
    same = _run(small_dict).timeseries
    np.testing.assert_array_equal(plain["p_vpp_kw"].to_numpy(), same["p_vpp_kw"].to_numpy())


def test_non_compliance_lowers_delivery_and_tracking_wins_part_of_it_back(small_dict):
    small_dict["platform"] = {"non_compliance_share": 0.0}
    full = _call(_run(dict(small_dict)))["delivered_kwh"]
    small_dict["platform"] = {"non_compliance_share": 0.5}
    open_loop = _call(_run(dict(small_dict)))["delivered_kwh"]
    small_dict["platform"] = {"non_compliance_share": 0.5, "tracking": True}
    res = _run(small_dict)
    closed = _call(res)["delivered_kwh"]
    assert open_loop < 0.85 * full  # half the devices ignore their setpoints
    assert closed > open_loop * 1.05  # the loop sees the shortfall in its telemetry and asks the others for more
    log = res.summary["platform"]["tracking_log"]["peak"]
    # The loop measured under-delivery against the offers (the non-compliant devices stay at default).
    assert any(e["achieved_kw"] > e["requested_kw"] for e in log)  # reduce: achieved less negative than asked


def test_tracking_acts_on_telemetry_that_has_arrived(small_dict):
    small_dict["communication"] = {"latency_s": 400}
    small_dict["platform"] = {"tracking": True, "non_compliance_share": 0.3}
    res = _run(small_dict)
    log = res.summary["platform"]["tracking_log"]["peak"]
    assert log
    for e in log:
        # Telemetry of the tick [tau, tau + 300) is sent at its end and takes 400 s to arrive.
        assert e["telemetry_t_s"] + 300 + 400 <= e["t_s"] + 1e-9


def test_energy_acceptance_predicts_the_delivery_the_twin_measures(small_dict):
    # The operators' lookahead (from their state at the notice) of the energy they can deliver, against the
    # energy a run that dispatches the whole call delivers, measured against the twin: an independent path.
    small_dict["dr_calls"][0]["p_kw"] = 60
    whole = _call(_run(dict(small_dict)))
    small_dict["platform"] = {"acceptance": "energy", "min_acceptance": 0.0}
    asked = _call(_run(small_dict))
    assert asked["e_available_kwh"] == pytest.approx(whole["delivered_kwh"], rel=0.15)
    # This plant delivers about 40 % of any call against the twin (EVs catch up on what they deferred), and the
    # lookahead sees it: the platform commits to that share only.
    assert asked["accepted_fraction"] == pytest.approx(asked["e_available_kwh"] / asked["requested_kwh"], rel=1e-9)
    assert 0.2 < asked["accepted_fraction"] < 0.7


def test_energy_acceptance_opts_out_of_a_call_it_cannot_carry(small_dict):
    small_dict["dr_calls"][0]["p_kw"] = 50_000
    small_dict["platform"] = {"acceptance": "energy", "min_acceptance": 0.5}
    res = _run(small_dict)
    c = _call(res)
    assert c["accepted_fraction"] == 0.0 and c["opt"] == "optOut"
    assert c["e_available_kwh"] < 0.5 * c["requested_kwh"]
    ts = res.timeseries
    np.testing.assert_array_equal(ts["p_vpp_kw"].to_numpy(), ts["p_twin_kw"].to_numpy())  # nothing dispatched


def test_response_required_never_gets_no_response(small_dict):
    small_dict["dr_calls"][0]["response_required"] = "never"
    c = _call(_run(small_dict))
    assert "opt" not in c and c["delivered_kwh"] > 0.0  # no answer sent, the call still dispatched


def test_unknown_platform_values_are_refused(small_dict):
    from vpp.scenario import ScenarioError

    for bad in ({"acceptance": "sometimes"}, {"tracking_reference": "twin"}, {"non_compliance_share": 1.5}):
        small_dict["platform"] = bad
        with pytest.raises(ScenarioError, match="platform"):
            parse_scenario(small_dict)


def test_recovery_release_spreads_the_rebound_over_the_recovery_window(small_dict):
    small_dict["time"]["duration_s"] = 14400
    small_dict["dr_calls"][0]["recovery_s"] = 3600
    snap = _call(_run(dict(small_dict)))
    small_dict["platform"] = {"recovery": "release"}
    rel = _call(_run(small_dict))
    assert rel["delivered_kwh"] == pytest.approx(snap["delivered_kwh"], rel=1e-9)  # same call, same delivery
    # Devices handed back a few at a time: a lower rebound peak (against the twin) in the recovery window.
    assert rel["rebound_peak_kw"] < 0.7 * snap["rebound_peak_kw"]


def test_a_call_on_one_fleet_goes_to_its_operator_only(small_dict):
    # Operator 'towerco' runs fleet 'towers'; the platform's registry knows it, so nothing is asked of the others.
    small_dict["dr_calls"][0].update(p_kw=40, targets={"fleets": ["towers"]})
    res = _run(small_dict)
    ts = res.timeseries
    for other in ("ac", "dc", "offices"):
        np.testing.assert_array_equal(ts[f"fleet.{other}.p_kw"].to_numpy(), ts[f"fleet.{other}.p_twin_kw"].to_numpy())
    # The whole request goes to the tower company (not a pro-rata share of it): in the call's first tick its
    # batteries carry all 40 kW, measured against the twin.
    first = ts.loc[ts["t_s"] == 3600.0, "call.peak.delivered_kw"].iloc[0]
    assert first == pytest.approx(40.0, rel=1e-6)


def test_tracking_against_the_pre_event_load_wins_back_what_catch_up_takes(small_dict):
    # Open loop, a call is split from the operators' in-tick default, which rises as devices catch up (EVs that
    # deferred, batteries that recharge); delivery against the twin falls far short. The platform cannot see the
    # twin, but its own telemetry before the call shows the shortfall.
    open_loop = _call(_run(dict(small_dict)))["delivered_ratio"]
    small_dict["platform"] = {"tracking": True, "tracking_reference": "pre_event"}
    closed = _call(_run(small_dict))["delivered_ratio"]
    assert open_loop < 0.5 and closed > 0.75


def test_an_operator_that_cannot_carry_its_share_declines_it(small_dict):
    # The building manager's five offices cannot carry a pro-rata share of a large call for an hour: under energy
    # acceptance it declines, and the platform leaves it out of the split (its devices stay at default).
    small_dict["dr_calls"][0]["p_kw"] = 300
    small_dict["platform"] = {"acceptance": "energy", "min_acceptance": 0.9}
    res = _run(small_dict)
    declined = res.summary["platform"]["declined"].get("peak", [])
    assert declined, "some operator should decline at min_acceptance 0.9"
    ts = res.timeseries
    fleets_of = {"evnet": ("ac", "dc"), "towerco": ("towers",), "bldg": ("offices",)}
    for op in declined:
        for f in fleets_of[op]:
            np.testing.assert_array_equal(ts[f"fleet.{f}.p_kw"].to_numpy(), ts[f"fleet.{f}.p_twin_kw"].to_numpy())


@pytest.mark.parametrize("strategy", sorted(ALLOCATORS))
def test_every_strategy_delivers_a_feasible_call_within_tolerance_under_tracking(small_dict, strategy):
    """Issue 10's done-when: a feasible call (150 kW from a plant with ~1 MW of room) is delivered within
    tolerance, measured against the twin, by every strategy once the platform tracks against its pre-event
    load, and no device constraint breaks: no EV energy unmet beyond the twin's, no reserve breach, no comfort
    violation beyond the twin's."""
    small_dict["dr_calls"][0]["p_kw"] = 150
    small_dict["dispatch"] = {"strategy": strategy}
    if strategy != "optimal":
        small_dict["platform"] = {"tracking": True, "tracking_reference": "pre_event", "tracking_gain": 1.0}
    # optimal measures its request against its operator's no-call model (vpp.dispatch.optimal.NoCallModel) and
    # needs no platform loop: open loop it delivers the call (measured 1.00). The platform's loop would correct
    # it against a biased reference (measured 0.72 against the offers, 1.22 against the pre-event load).
    res = _run(small_dict)
    c = _call(res)
    lo, hi = (0.95, 1.05) if strategy == "optimal" else (0.9, 1.2)
    assert lo <= c["delivered_ratio"] <= hi, c["delivered_ratio"]
    cost = res.summary["plant"]["call_cost_by_kind"]
    assert cost["ev"]["e_unmet_kwh"] <= 1e-6 and cost["ev"]["n_sessions_unmet"] <= 0
    assert cost["basestation"]["n_reserve_breaches"] <= 0
    assert cost["building"]["comfort_violation_kh"] <= 1e-9
    for f in res.summary["fleets"].values():
        if f["kind"] == "basestation":
            assert f["n_reserve_breaches"] == 0


@pytest.mark.parametrize("strategy", ["pro_rata", "optimal"])
def test_a_setpoint_event_holds_its_buses_at_the_setpoint_measured_against_the_twin(small_dict, strategy):
    """A setpoint_kw event: the platform turns it each tick into the change from the operators' offered default
    power to the setpoint. Checked against a run without the event (the twin's own path): the engine's request
    is the gap from that run's power to the setpoint, and the plant's power sits on the setpoint."""
    no_call = dict(small_dict, dr_calls=[])
    base = _run(no_call).timeseries
    t = base["t_s"].to_numpy()
    window = (t >= 3600.0) & (t < 7200.0)
    p_free_kw = base["p_vpp_kw"].to_numpy()
    setpoint_kw = float(p_free_kw[window].mean()) - 120.0
    small_dict["dr_calls"] = [{"id": "cap", "direction": "reduce", "notification_s": 1800, "start_s": 3600,
                               "signals": [{"type": "setpoint_kw", "intervals": [{"duration": 3600,
                                                                                   "value": setpoint_kw}]}]}]
    small_dict["dispatch"] = {"strategy": strategy}
    res = _run(small_dict)
    ts = res.timeseries
    req = ts["call.cap.requested_kw"].to_numpy()
    # The request is the no-call run's gap to the setpoint (0 where that run is already below it).
    assert req[window] == pytest.approx(np.maximum(p_free_kw[window] - setpoint_kw, 0.0), rel=1e-9, abs=1e-6)
    p_kw = ts["p_vpp_kw"].to_numpy()[window]
    asked = req[window] > 0.0
    assert asked.sum() >= 6
    # The plant holds the setpoint where the no-call run is above it, and never exceeds it (a cap: where the
    # no-call run is below it but the devices' default, catching up, is above, the plant is held at it too).
    assert p_kw[asked] == pytest.approx(setpoint_kw, rel=1e-3)
    assert np.all(p_kw <= setpoint_kw * (1.0 + 1e-3))
    # Delivered energy against the twin: the no-call run's power minus the plant's, over the window.
    c = _call(res)
    dt_h = 300.0 / 3600.0
    # Delivered power against the twin where the event asks for a change: the no-call run's power minus the
    # plant's (where it asks nothing, the metrics credit no call with the change: vpp.metrics.delivery).
    dlv = ts["call.cap.delivered_kw"].to_numpy()[window]
    assert dlv[asked] == pytest.approx((p_free_kw[window] - p_kw)[asked], rel=1e-6, abs=1e-6)
    assert c["delivered_kwh"] == pytest.approx(float(dlv.sum() * dt_h))


def test_tracking_an_operator_targeted_call_measures_that_operators_load_only(small_dict):
    """The loop's achieved change is the target operator's metered change (the recorder's fleet columns)."""
    small_dict["dr_calls"][0]["targets"] = {"operators": ["towerco"]}
    small_dict["dr_calls"][0]["p_kw"] = 50
    small_dict["platform"] = {"tracking": True, "tracking_reference": "pre_event"}
    res = _run(small_dict)
    ts = res.timeseries.set_index("t_s")
    p_kw = ts["fleet.towers.p_kw"]  # towerco's only fleet
    pre_kw = p_kw[(p_kw.index >= 3600 - 900) & (p_kw.index < 3600)].mean()
    others_kw = ts["fleet.ac.p_kw"] + ts["fleet.dc.p_kw"] + ts["fleet.offices.p_kw"]
    log = res.summary["platform"]["tracking_log"]["peak"]
    assert log
    for e in log:
        assert e["achieved_kw"] == pytest.approx(p_kw[e["telemetry_t_s"]] - pre_kw, abs=1e-6)
    # the other operators' load moves in the window, so measuring them too would differ
    assert others_kw.loc[3600:7200].std() > 10.0
