"""Delivery is a measurement: checked against a second run of the same scenario with its calls removed.

The twin must be the plant with no call, exactly: same seed, same arrivals,
same profiles, same kernels. So the reference for every delivery figure here
is an independent run (``dr_calls: []``), never the run's own intermediate
values (ISSUE 6: "Run a scenario, then run it again with its calls removed.
The first run's reported delivered energy must equal the difference in plant
energy between the two runs, to 1e-6 relative, per call and per kind").
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from vpp.build import build_plant, plant_warnings
from vpp.run import run_scenario
from vpp.scenario import parse_scenario

REL = 1e-6

# Loads of mv_oberrhein sit on these buses; devices go to the first five, the feeder call targets two of them.
_BUSES = [103, 174, 194, 34, 76]


def _scenario(calls, **extra) -> dict:
    d = {
        "name": "delivery",
        "seed": 11,
        "time": {"clock_start_h": 17.0, "duration_s": 4 * 3600, "dt_s": 300},
        "grid": {"network": "mv_oberrhein", "power_flow": False},
        "fleets": [
            {"kind": "ev", "name": "ac", "operator": "evnet", "charger": "ac_pile", "n_devices": 400,
             "v2g_share": 0.3, "buses": _BUSES},
            {"kind": "ev", "name": "dc", "operator": "evnet", "charger": "dc_fast", "n_devices": 30, "buses": _BUSES},
            {"kind": "basestation", "name": "towers", "operator": "towerco", "n_devices": 80, "buses": _BUSES},
            {"kind": "building", "name": "offices", "operator": "bldg", "n_devices": 6, "pv_share": 0.5,
             "battery_share": 0.5, "buses": _BUSES},
        ],
        "dr_calls": calls,
    }
    d.update(extra)
    return d


def _run(d):
    return run_scenario(parse_scenario(copy.deepcopy(d)))


def _no_calls(d):
    d = copy.deepcopy(d)
    d["dr_calls"] = []
    return d


def _energy_kwh(p_kw: np.ndarray, rows: np.ndarray, dt_s: float) -> float:
    return float(p_kw[rows].sum() * dt_s / 3600.0)


def _call(res, cid):
    return next(c for c in res.summary["calls"] if c["id"] == cid)


@pytest.fixture(scope="module")
def whole_plant_pair():
    d = _scenario([{"id": "peak", "direction": "reduce", "p_kw": 600, "notification_s": 1800,
                    "start_s": 3600, "end_s": 7200}])
    return _run(d), _run(_no_calls(d))


def test_twin_is_the_no_call_run(whole_plant_pair):
    with_call, without = whole_plant_pair
    np.testing.assert_array_equal(with_call.timeseries["p_twin_kw"], without.timeseries["p_vpp_kw"])
    for kind in ("ev", "basestation", "building"):
        np.testing.assert_array_equal(with_call.timeseries[f"kind.{kind}.p_twin_kw"],
                                      without.timeseries[f"kind.{kind}.p_kw"])


def test_delivered_energy_equals_the_difference_of_two_runs(whole_plant_pair):
    with_call, without = whole_plant_pair
    ts, ts0 = with_call.timeseries, without.timeseries
    dt_s = with_call.summary["dt_s"]
    c = _call(with_call, "peak")
    rows = ts["call.peak.active_fraction"].to_numpy() > 0
    truth = _energy_kwh(ts0["p_vpp_kw"].to_numpy(), rows, dt_s) - _energy_kwh(ts["p_vpp_kw"].to_numpy(), rows, dt_s)
    assert c["delivered_kwh"] == pytest.approx(truth, rel=REL)
    assert truth > 0.0  # the scenario really moves the plant
    for kind, e_kwh in c["delivered_by_kind_kwh"].items():
        col = f"kind.{kind}.p_kw"
        truth_k = _energy_kwh(ts0[col].to_numpy(), rows, dt_s) - _energy_kwh(ts[col].to_numpy(), rows, dt_s)
        assert e_kwh == pytest.approx(truth_k, rel=REL, abs=1e-9)
    assert c["delivered_ratio"] == pytest.approx(truth / c["requested_kwh"], rel=REL)


def test_rebound_equals_the_difference_of_two_runs_after_the_call(whole_plant_pair):
    with_call, without = whole_plant_pair
    ts, ts0 = with_call.timeseries, without.timeseries
    dt_s = with_call.summary["dt_s"]
    c = _call(with_call, "peak")
    after = ts["t_s"].to_numpy() >= 7200
    excess_kw = ts["p_vpp_kw"].to_numpy()[after] - ts0["p_vpp_kw"].to_numpy()[after]
    assert c["rebound_kwh"] == pytest.approx(excess_kw.sum() * dt_s / 3600.0, rel=REL)
    assert c["rebound_peak_kw"] == pytest.approx(excess_kw.max(), rel=REL)


def test_what_the_call_costs_each_kind_is_the_difference_of_two_runs(whole_plant_pair):
    with_call, without = whole_plant_pair
    cost = with_call.summary["plant"]["call_cost_by_kind"]
    f1, f0 = with_call.summary["fleets"], without.summary["fleets"]
    unmet = sum(f1[n]["e_unmet_kwh"] - f0[n]["e_unmet_kwh"] for n in ("ac", "dc"))
    assert cost["ev"]["e_unmet_kwh"] == pytest.approx(unmet, abs=1e-9)
    assert cost["basestation"]["e_stored_kwh"] == pytest.approx(
        f1["towers"]["e_stored_kwh"] - f0["towers"]["e_stored_kwh"], abs=1e-9)
    assert cost["building"]["comfort_violation_kh"] == pytest.approx(
        f1["offices"]["comfort_violation_kh"] - f0["offices"]["comfort_violation_kh"], abs=1e-9)


def test_a_feeder_call_is_credited_only_with_its_own_buses():
    d = _scenario([{"id": "feeder", "direction": "reduce", "p_kw": 150, "start_s": 3600, "end_s": 5400,
                    "buses": [103, 174]}])
    with_call, without = _run(d), _run(_no_calls(d))
    bt, bt0 = with_call.bus_timeseries, without.bus_timeseries
    dt_s = with_call.summary["dt_s"]
    ts = with_call.timeseries
    rows_t = ts["t_s"].to_numpy()[ts["call.feeder.active_fraction"].to_numpy() > 0]
    sel = bt["bus"].isin([103, 174]) & bt["t_s"].isin(rows_t)
    sel0 = bt0["bus"].isin([103, 174]) & bt0["t_s"].isin(rows_t)
    truth = (bt0.loc[sel0, "p_vpp_kw"].sum() - bt.loc[sel, "p_vpp_kw"].sum()) * dt_s / 3600.0
    c = _call(with_call, "feeder")
    assert truth > 0.0
    assert c["delivered_kwh"] == pytest.approx(truth, rel=REL)


def test_overlapping_calls_share_exactly_the_change_on_their_buses():
    calls = [
        {"id": "wide", "direction": "reduce", "p_kw": 500, "start_s": 3600, "end_s": 7200},
        {"id": "feeder", "direction": "reduce", "p_kw": 200, "start_s": 4500, "end_s": 6300, "buses": [103, 174]},
    ]
    d = _scenario(calls)
    with_call, without = _run(d), _run(_no_calls(d))
    ts, ts0 = with_call.timeseries, without.timeseries
    # Per tick: the calls' delivered powers add up to what the plant moved against the no-call run.
    both = (ts["call.wide.active_fraction"] > 0).to_numpy()
    total = ts["call.wide.delivered_kw"].to_numpy() + ts["call.feeder.delivered_kw"].to_numpy()
    np.testing.assert_allclose(total[both], (ts0["p_vpp_kw"] - ts["p_vpp_kw"]).to_numpy()[both],
                               rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(ts["p_delivered_kw"].to_numpy()[both], total[both], rtol=1e-12, atol=1e-9)
    # The feeder call never gets more than the change behind its own buses.
    bt, bt0 = with_call.bus_timeseries, without.bus_timeseries
    on = bt["bus"].isin([103, 174])
    feeder_change = (bt0[on].groupby("t_s")["p_vpp_kw"].sum() - bt[on].groupby("t_s")["p_vpp_kw"].sum()).to_numpy()
    fdl = ts["call.feeder.delivered_kw"].to_numpy()
    assert np.all(np.abs(fdl) <= np.abs(feeder_change) + 1e-6)


def test_a_call_on_buses_without_devices_delivers_zero_and_is_flagged():
    d = _scenario([{"id": "empty", "direction": "reduce", "p_kw": 100, "start_s": 3600, "end_s": 5400,
                    "buses": [0, 1]}])
    sc = parse_scenario(copy.deepcopy(d))
    warnings = plant_warnings(build_plant(sc))
    assert any("empty" in w and "no devices" in w for w in warnings)
    res = run_scenario(sc)
    c = _call(res, "empty")
    assert c["delivered_kwh"] == 0.0
    assert any("empty" in w for w in res.summary["warnings"])


def test_twin_off_leaves_the_plant_unchanged_and_delivery_unknown(whole_plant_pair):
    with_call, _ = whole_plant_pair
    d = _scenario([{"id": "peak", "direction": "reduce", "p_kw": 600, "notification_s": 1800,
                    "start_s": 3600, "end_s": 7200}], measurement={"twin": False})
    off = _run(d)
    for col in ("p_vpp_kw", "fleet.ac.p_kw", "fleet.towers.p_kw", "fleet.offices.p_kw"):
        np.testing.assert_array_equal(off.timeseries[col], with_call.timeseries[col])
    c = _call(off, "peak")
    assert c["delivered_kwh"] is None and c["delivered_ratio"] is None and c["rebound_kwh"] is None
    assert off.timeseries["p_delivered_kw"].isna().all()
    assert off.summary["delivery_measured_against"] is None


def test_increase_call_is_measured_with_the_opposite_sign():
    d = _scenario([{"id": "valley", "direction": "increase", "p_kw": 300, "start_s": 3600, "end_s": 5400}])
    with_call, without = _run(d), _run(_no_calls(d))
    ts, ts0 = with_call.timeseries, without.timeseries
    rows = ts["call.valley.active_fraction"].to_numpy() > 0
    dt_s = with_call.summary["dt_s"]
    truth = _energy_kwh(ts["p_vpp_kw"].to_numpy(), rows, dt_s) - _energy_kwh(ts0["p_vpp_kw"].to_numpy(), rows, dt_s)
    assert truth > 0.0
    assert _call(with_call, "valley")["delivered_kwh"] == pytest.approx(truth, rel=REL)
