"""The grid operator calls on the VPP when it sees congestion (ISSUE 8 item 4).

References: the buses behind a transformer are recomputed here with networkx
from the pandapower graph without transformers; the shed needed to clear an
overload is the closed form ``S * (1 - limit/loading)`` with ``S`` the
transformer's apparent power flow; whether the call helped is judged against
the no-call twin's power flow.
"""

from __future__ import annotations

import copy
import warnings

import networkx as nx
import numpy as np
import pytest

from vpp.grid.congestion import Topology
from vpp.run import run_scenario
from vpp.scenario import parse_scenario


@pytest.fixture(scope="module")
def oberrhein():
    import pandapower.networks as pn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pn.mv_oberrhein()


def test_buses_behind_a_transformer_are_its_lv_island(oberrhein):
    import pandapower.topology as top

    net = oberrhein
    topo = Topology(net, net.bus.index.to_numpy())
    g = top.create_nxgraph(net, respect_switches=True, include_trafos=False)
    for t in net.trafo.index:
        expected = nx.node_connected_component(g, int(net.trafo.at[t, "lv_bus"]))
        got = {int(net.bus.index[p]) for p in topo.behind("trafo", t)}
        assert got == expected
        assert not got & set(net.ext_grid.bus)


def test_overload_sizing_is_the_closed_form(oberrhein):
    net = oberrhein
    topo = Topology(net, net.bus.index.to_numpy())
    loading = np.array([120.0, 90.0])
    (c,) = topo.overloads(np.zeros(len(net.line)), loading, 100.0)
    s_mva = 1.2 * float(net.trafo.sn_mva.iloc[0] * net.trafo.parallel.iloc[0])
    assert c.element == "trafo" and c.index == net.trafo.index[0]
    assert c.need_mw == pytest.approx(s_mva * (1 - 100.0 / 120.0), rel=1e-12)


def _evening(congestion: bool) -> dict:
    return {
        "name": "congestion",
        "seed": 5,
        "time": {"clock_start_h": 16.0, "duration_s": 5 * 3600, "dt_s": 300},
        "grid": {"network": "mv_oberrhein", "load_scale": 1.1},
        "fleets": [
            {"kind": "ev", "name": "ac", "operator": "evnet", "charger": "ac_pile", "n_devices": 2500,
             "v2g_share": 0.2},
            {"kind": "basestation", "name": "towers", "operator": "towerco", "n_devices": 400},
            {"kind": "building", "name": "offices", "operator": "bldg", "n_devices": 30, "battery_share": 0.6,
             "pv_share": 0.5},
        ],
        "grid_operator": {"congestion_calls": congestion, "loading_max_percent": 95.0, "horizon_s": 900},
    }


@pytest.fixture(scope="module")
def evening_runs():
    on = run_scenario(parse_scenario(copy.deepcopy(_evening(True))))
    off = run_scenario(parse_scenario(copy.deepcopy(_evening(False))))
    return on, off


def test_the_grid_operator_raises_calls_behind_the_congested_element(evening_runs, oberrhein):
    on, off = evening_runs
    assert off.summary["calls"] == []
    calls = [c for c in on.summary["calls"] if c["origin"].startswith("grid_operator:")]
    assert calls, "the twin overloads a transformer, so the operator must call"
    log = on.summary["grid_operator"]["log"]
    raised = [e for e in log if e["action"] == "raised"]
    assert raised and all(e["value"] > e["limit"] or e["forecast"] for e in raised)
    # A transformer call targets exactly the buses behind that transformer.
    net = oberrhein
    topo = Topology(net, net.bus.index.to_numpy())
    for c in calls:
        element = c["origin"].split(":", 1)[1]
        if element.startswith("trafo"):
            assert c["target_buses"] == len(topo.behind("trafo", int(element[5:])))


def test_the_calls_lower_the_overload_against_the_no_call_twin(evening_runs):
    on, _ = evening_runs
    ts = on.timeseries
    plant, twin = ts["trafo_loading_max_percent"].to_numpy(), ts["trafo_loading_max_twin_percent"].to_numpy()
    assert np.nanmax(twin) > 100.0, "the scenario must overload the transformer without the VPP"
    assert (plant > 100.0).sum() < (twin > 100.0).sum()
    assert np.nanmax(plant) < np.nanmax(twin)


def test_the_same_plant_without_congestion_calls_is_its_own_twin(evening_runs):
    _, off = evening_runs
    np.testing.assert_array_equal(off.timeseries["p_vpp_kw"], off.timeseries["p_twin_kw"])


def test_shipped_congestion_scenario_removes_the_overload(root):
    """scenarios/congestion.yaml: the transformer overloads in the no-call twin and not in the plant."""
    from vpp.scenario import load_scenario

    res = run_scenario(load_scenario(root / "scenarios" / "congestion.yaml"))
    ts = res.timeseries
    assert ts["trafo_loading_max_twin_percent"].max() > 105.0
    assert ts["trafo_loading_max_percent"].max() <= 100.0
    assert (ts["trafo_loading_max_percent"] > 100.0).sum() == 0
    assert res.summary["grid_operator"]["n_calls_raised"] >= 1
