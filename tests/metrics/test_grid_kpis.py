"""Grid KPIs with and without the calls (summary["grid"]["plant"] / ["twin"]), the branch table and the plots.

Reference values are worked by hand for a ten-tick series, and recomputed
independently from a run's per-tick columns (and from the power flows
themselves, for the per-branch peaks).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vpp.metrics.kpis import grid_kpis, grid_side_kpis
from vpp.metrics.report import summary_table, write_results
from vpp.run import run_scenario
from vpp.scenario import parse_scenario

DT_S = 300.0
NAN = np.nan
# Ten ticks; tick 4 did not converge (NaN everywhere) and counts nowhere.
T_S = np.arange(10) * DT_S
VM_MIN = np.array([0.96, 0.94, 0.93, 0.96, NAN, 0.97, 0.949, 0.96, 0.96, 0.96])
VM_MAX = np.array([1.02, 1.02, 1.02, 1.02, NAN, 1.02, 1.02, 1.02, 1.06, 1.02])
LINE = np.array([50.0, 60.0, 101.0, 102.0, NAN, 99.0, 100.0, 100.5, 40.0, 30.0])
TRAFO = np.array([80.0, 110.0, 90.0, 90.0, NAN, 120.0, 50.0, 50.0, 50.0, 50.0])
P_LOSS = np.array([1.0, 1.0, 1.0, 1.0, NAN, 1.0, 1.0, 1.0, 1.0, 1.0])
P_EXT = np.array([10.0, 10.0, 10.0, 10.0, NAN, 10.0, 10.0, 10.0, 10.0, 10.0])


def _side(**change):
    args = dict(t_s=T_S, vm_min_pu=VM_MIN, vm_max_pu=VM_MAX, line_loading_max_percent=LINE,
                trafo_loading_max_percent=TRAFO, p_loss_mw=P_LOSS, p_ext_grid_mw=P_EXT, dt_s=DT_S,
                vm_limits_pu=(0.95, 1.05), loading_limit_percent=100.0)
    return grid_side_kpis(**{**args, **change})


def test_hand_made_series_known_answers():
    k = _side()
    assert k["n_ticks_solved"] == 9
    # Voltage: below 0.95 at ticks 1, 2, 6 and above 1.05 at tick 8; the worst is 0.93 pu (0.02 below) at tick 2.
    assert k["voltage_violation"] == {"n_ticks": 4, "duration_s": 1200.0, "longest_s": 600.0, "worst_vm_pu": 0.93,
                                      "worst_excess_pu": pytest.approx(0.02), "t_s_at_worst": 600.0}
    assert (k["vm_min_pu"], k["t_s_at_vm_min"], k["vm_max_pu"], k["t_s_at_vm_max"]) == (0.93, 600.0, 1.06, 2400.0)
    # Loading above 100 % (strictly) at ticks 1 (trafo), 2, 3 (line), 5 (trafo), 7 (line); tick 6 sits at 100 %.
    assert k["overload"] == {"n_ticks": 5, "duration_s": 1500.0, "longest_s": 900.0, "worst_loading_percent": 120.0,
                             "worst_excess_percent": 20.0, "worst_element": "trafo", "t_s_at_worst": 1500.0}
    assert (k["line_loading_max_percent"], k["t_s_at_line_loading_max"]) == (102.0, 900.0)
    assert (k["trafo_loading_max_percent"], k["t_s_at_trafo_loading_max"]) == (120.0, 1500.0)
    # 9 solved ticks of 1 MW losses and 10 MW import, 300 s each.
    assert k["e_loss_kwh"] == pytest.approx(9 * 1000.0 * 300.0 / 3600.0)  # 750 kWh
    assert k["e_ext_grid_kwh"] == pytest.approx(9 * 10_000.0 * 300.0 / 3600.0)  # 7,500 kWh
    assert k["p_loss_max_mw"] == 1.0


def test_inside_the_limits_the_worst_is_the_margin():
    k = _side(vm_limits_pu=(0.90, 1.10), loading_limit_percent=150.0)
    assert k["voltage_violation"]["n_ticks"] == 0 and k["voltage_violation"]["duration_s"] == 0.0
    # Inside 0.90-1.10 pu the worst is the voltage closest to its limit:
    # 0.93 pu, 0.03 above 0.90 (1.06 pu is 0.04 below 1.10).
    assert k["voltage_violation"]["worst_vm_pu"] == 0.93
    assert k["voltage_violation"]["worst_excess_pu"] == pytest.approx(-0.03)
    assert k["overload"]["n_ticks"] == 0 and k["overload"]["worst_excess_percent"] == pytest.approx(-30.0)


def test_no_trafo_and_nothing_solved():
    no_trafo = _side(trafo_loading_max_percent=np.full(10, NAN))
    assert no_trafo["overload"]["worst_element"] == "line" and no_trafo["overload"]["n_ticks"] == 3
    assert no_trafo["trafo_loading_max_percent"] is None and no_trafo["t_s_at_trafo_loading_max"] is None
    nan = np.full(10, NAN)
    k = _side(vm_min_pu=nan, vm_max_pu=nan, line_loading_max_percent=nan, trafo_loading_max_percent=nan,
              p_loss_mw=nan, p_ext_grid_mw=nan)
    assert k["n_ticks_solved"] == 0 and k["e_loss_kwh"] is None and k["vm_min_pu"] is None
    assert k["voltage_violation"]["n_ticks"] == 0 and k["voltage_violation"]["worst_vm_pu"] is None
    assert k["overload"]["worst_element"] is None
    empty = _side(**{name: np.zeros(0) for name in ("t_s", "vm_min_pu", "vm_max_pu", "line_loading_max_percent",
                                                     "trafo_loading_max_percent", "p_loss_mw", "p_ext_grid_mw")})
    assert empty["n_ticks_solved"] == 0 and empty["overload"]["longest_s"] == 0.0


def _ts(twin: bool) -> pd.DataFrame:
    cols = {"t_s": T_S, "grid_converged": np.isfinite(VM_MIN), "p_twin_kw": np.full(10, 1.0 if twin else NAN)}
    for suffix, shift in (("", 0.0), ("_twin", 0.005)):
        cols |= {f"vm_min{suffix}_pu": VM_MIN - shift, f"vm_max{suffix}_pu": VM_MAX,
                 f"line_loading_max{suffix}_percent": LINE, f"trafo_loading_max{suffix}_percent": TRAFO + 10 * shift,
                 f"p_loss{suffix}_mw": P_LOSS, f"p_ext_grid{suffix}_mw": P_EXT}
    return pd.DataFrame(cols)


def test_grid_kpis_plant_and_twin_sides():
    g = grid_kpis(_ts(True), 0.95, 1.05, 100.0, dt_s=DT_S)
    assert g["plant"] == _side()
    assert g["twin"]["vm_min_pu"] == pytest.approx(0.925) and g["twin"]["trafo_loading_max_percent"] == 120.05
    # The flat keys of earlier summaries agree with the plant's side.
    assert g["n_ticks_voltage_violation"] == g["plant"]["voltage_violation"]["n_ticks"]
    assert g["n_ticks_overload"] == g["plant"]["overload"]["n_ticks"]
    assert g["vm_limits_pu"] == [0.95, 1.05] and g["loading_limit_percent"] == 100.0
    assert grid_kpis(_ts(False), 0.95, 1.05, 100.0, dt_s=DT_S)["twin"] is None


def _spy_power_flows(monkeypatch):
    """Every power flow GridModel.solve returns, per model, in call order (copies of the arrays)."""
    from vpp.grid import model

    seen: dict[int, list] = {}
    real = model.GridModel.solve

    def solve(self, *args, **kwargs):
        state = real(self, *args, **kwargs)
        seen.setdefault(id(self), []).append((np.array(state.line_loading_percent, copy=True),
                                              np.array(state.trafo_loading_percent, copy=True)))
        return state

    monkeypatch.setattr(model.GridModel, "solve", solve)
    return seen


def test_run_kpis_match_an_independent_recomputation(small_dict, monkeypatch):
    # Limits tightened so that both the plant and its twin cross them on mv_oberrhein this evening.
    small_dict["grid"].update(vm_min_pu=0.976, loading_max_percent=88.0)
    seen = _spy_power_flows(monkeypatch)
    res = run_scenario(parse_scenario(small_dict))
    ts, g, dt_s = res.timeseries, res.summary["grid"], 300.0
    lo, hi, limit = 0.976, 1.05, 88.0
    for side, sfx in (("plant", ""), ("twin", "_twin")):
        k = g[side]
        v_bad = (ts[f"vm_min{sfx}_pu"] < lo) | (ts[f"vm_max{sfx}_pu"] > hi)
        l_bad = (ts[f"line_loading_max{sfx}_percent"] > limit) | (ts[f"trafo_loading_max{sfx}_percent"] > limit)
        assert k["voltage_violation"]["n_ticks"] == v_bad.sum() > 0, side
        assert k["voltage_violation"]["duration_s"] == v_bad.sum() * dt_s
        assert k["overload"]["n_ticks"] == l_bad.sum() > 0, side
        assert k["overload"]["duration_s"] == l_bad.sum() * dt_s
        assert k["voltage_violation"]["worst_vm_pu"] == ts[f"vm_min{sfx}_pu"].min()  # undervoltage dominates here
        worst_load = ts[[f"line_loading_max{sfx}_percent", f"trafo_loading_max{sfx}_percent"]].max(axis=1)
        assert k["overload"]["worst_loading_percent"] == worst_load.max()
        assert k["overload"]["t_s_at_worst"] == ts["t_s"][worst_load.idxmax()]
        assert k["trafo_loading_max_percent"] == ts[f"trafo_loading_max{sfx}_percent"].max()
        assert k["t_s_at_trafo_loading_max"] == ts["t_s"][ts[f"trafo_loading_max{sfx}_percent"].idxmax()]
        assert k["e_loss_kwh"] == pytest.approx(sum(p * 1e3 * dt_s / 3600.0 for p in ts[f"p_loss{sfx}_mw"]),
                                                rel=1e-12)
        assert k["n_ticks_solved"] == 36
    # The twin is the plant until the call starts; during it the twin carries more load, so more losses.
    before = ts["t_s"] < 3600.0
    np.testing.assert_array_equal(ts.loc[before, "p_loss_twin_mw"], ts.loc[before, "p_loss_mw"])
    during = ts["call.peak.active_fraction"] > 0
    assert (ts.loc[during, "p_loss_twin_mw"] > ts.loc[during, "p_loss_mw"]).all()
    assert (ts.loc[during, "p_ext_grid_twin_mw"] > ts.loc[during, "p_ext_grid_mw"]).all()

    # Per-branch peaks: against every power flow of the plant's own grid model (the first to solve).
    plant_flows = next(iter(seen.values()))
    assert len(plant_flows) == 36
    br = res.branches
    for j, element in enumerate(("line", "trafo")):
        rows = br[br["element"] == element]
        per_tick = np.array([flow[j] for flow in plant_flows])
        np.testing.assert_array_equal(rows["loading_max_percent"], np.nanmax(per_tick, axis=0))
        np.testing.assert_array_equal(rows["t_s_at_loading_max"], ts["t_s"].to_numpy()[np.nanargmax(per_tick, axis=0)])
        assert rows["loading_max_twin_percent"].max() == ts[f"{element}_loading_max_twin_percent"].max()
        assert len(rows) == len(res.net[element]) and (rows["index"] == res.net[element].index).all()
    table = summary_table(res)
    p, tw = g["plant"], g["twin"]
    assert (f"grid with calls vs without: violation ticks voltage {p['voltage_violation']['n_ticks']} vs "
            f"{tw['voltage_violation']['n_ticks']}, loading {p['overload']['n_ticks']} vs "
            f"{tw['overload']['n_ticks']}") in table
    assert f"trafo loading max {p['trafo_loading_max_percent']:.1f} %" in table


def test_plots_and_branch_table_written(small_dict, tmp_path, monkeypatch):
    small_dict["time"]["duration_s"] = 7200  # 24 ticks; the call runs 3600-7200
    res = run_scenario(parse_scenario(small_dict))
    paths = write_results(res, tmp_path / "out", plot=True)
    names = {p.name for p in paths}
    assert {"dispatch.png", "network.png", "branches.parquet"} <= names
    for name in ("dispatch.png", "network.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    branches = pd.read_parquet(tmp_path / "out" / "branches.parquet")
    assert list(branches.columns) == ["element", "index", "name", "loading_max_percent", "t_s_at_loading_max",
                                      "loading_max_twin_percent"]
    assert len(branches) == len(res.net.line) + len(res.net.trafo)

    # A net without geodata gets generic coordinates (Kamada-Kawai on mv_oberrhein's 179 buses, and the radial
    # tree used on larger nets); results.net itself is left as it was.
    from vpp.metrics import plots

    res.net.bus = res.net.bus.drop(columns="geo")
    res.net.line = res.net.line.drop(columns="geo")
    plots.plot_network(res, tmp_path / "generic.png")
    monkeypatch.setattr(plots, "_KK_MAX_BUSES", 10)
    plots.plot_network(res, tmp_path / "radial.png")
    for name in ("generic.png", "radial.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert "geo" not in res.net.bus


def test_radial_tree_layout():
    import networkx as nx

    from vpp.metrics.plots import _radial_tree

    # A root with a two-leaf branch and a one-leaf branch, and a chord closing a loop.
    graph = nx.Graph([(0, 1), (0, 2), (1, 3), (1, 4), (2, 5), (4, 5)])
    pos = _radial_tree(graph, 0)
    assert set(pos) == set(graph)
    np.testing.assert_allclose(pos[0], [0.0, 0.0])
    radius = {n: float(np.hypot(*p)) for n, p in pos.items()}
    assert radius == pytest.approx({0: 0.0, 1: 1.0, 2: 1.0, 3: 2.0, 4: 2.0, 5: 2.0})


def test_without_power_flow_no_network_map(small_dict, tmp_path):
    small_dict["grid"]["power_flow"] = False
    small_dict["time"]["duration_s"] = 1800
    small_dict["dr_calls"] = []
    res = run_scenario(parse_scenario(small_dict))
    assert res.branches is None and res.net is None and res.summary["grid"] is None
    names = {p.name for p in write_results(res, tmp_path / "out", plot=True)}
    assert "dispatch.png" in names and "network.png" not in names and "branches.parquet" not in names
