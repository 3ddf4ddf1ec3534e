"""Every power-flow solver against a fresh ``pandapower.runpp`` on its own copy of the net.

Tolerances (issue 8): voltage magnitude within 1e-6 pu; line and transformer
loading within 0.1 percentage points. The reference is always an independent
net built from scratch (same network, same VPP loads, same injections) and
solved by ``runpp`` with pandapower's own Newton-Raphson, never a solver's
output. Several ticks per net, with random VPP patterns and load and
generation factors, in sequence, so the warm starts are exercised too.
"""

from __future__ import annotations

import copy
import functools
import sys

import numpy as np
import pandapower as pp
import pytest

from vpp.grid.model import GridModel
from vpp.grid.networks import load_network, simbench_available
from vpp.grid.solvers import SOLVERS, get_solver

VM_ATOL_PU = 1e-6
LOADING_ATOL_PERCENT = 0.1
N_TICKS = 4


@functools.lru_cache(maxsize=None)
def _pristine(name: str, source: str = "pandapower"):
    # Building a net takes up to a second (case33bw converts a MATPOWER case); every test gets a deep copy.
    if name == "two_ext_grids":
        # Two external grids in one island: the case lightsim2grid's LSGrid cannot take (it would distribute
        # the slack); the solver then runs lightsim2grid's algorithm on pandapower's admittance matrix.
        net = load_network("simple_mv_open_ring")
        pp.create_ext_grid(net, bus=int(net.bus.index[-1]), vm_pu=1.01, va_degree=-0.3)
        return net
    return load_network(name, source)


def _builder(name: str, source: str = "pandapower"):
    return lambda: copy.deepcopy(_pristine(name, source))


NETWORKS = {
    # name: expected lightsim2grid engine (and what the net covers)
    "mv_oberrhein": "LSGrid",  # 2 ext grids in 2 islands, open line switches, taps off neutral, 150 deg shift
    "cigre_mv": "LSGrid",  # open and closed line and trafo switches
    "cigre_lv": "LSGrid",  # closed bus-bus switches (fused buses)
    "case33bw": "LSGrid",  # lines out of service
    "two_ext_grids": "Ybus",
}


def _reference(builder, hosts_bus, load_p_mw, load_q_mvar, sgen_p_mw, sgen_q_mvar):
    """runpp on a net built from scratch with the same VPP loads and injections."""
    ref = builder()
    n_bg = len(ref.load)
    pp.create_loads(ref, buses=hosts_bus, p_mw=0.0, q_mvar=0.0, name="vpp", scaling=1.0)
    ref.load["p_mw"] = load_p_mw
    ref.load["q_mvar"] = load_q_mvar
    if len(ref.sgen):
        ref.sgen["p_mw"] = sgen_p_mw
        ref.sgen["q_mvar"] = sgen_q_mvar
    assert len(ref.load) == n_bg + len(hosts_bus)
    pp.runpp(ref, numba=False, lightsim2grid=False)
    return ref


def _check_against_runpp(builder, solver, engine=None, seed=0):
    net = builder()
    model = GridModel(net, solver=solver)
    rng = np.random.default_rng(seed)
    n_host = min(12, model.n_bus)
    hosts = np.sort(rng.choice(model.n_bus, size=n_host, replace=False))
    model.attach_vpp(hosts)
    assert model.solver_name == solver, model.solver_note
    if engine is not None:
        assert model.solver.engine_kind == engine
    nominal_kw = max(float((net.load.p_mw * net.load.scaling).sum()) * 1000.0, 100.0)
    for _ in range(N_TICKS):
        p_bus_kw = np.zeros(model.n_bus)
        p_bus_kw[hosts] = rng.dirichlet(np.ones(n_host)) * rng.uniform(0.0, 0.5) * nominal_kw
        p_bus_kw[hosts[0]] *= -0.5  # one host feeds in (V2G, PV behind the meter)
        load_factor, sgen_factor = rng.uniform(0.3, 1.1), rng.uniform(0.0, 1.0)
        state = model.solve(p_bus_kw, load_factor, sgen_factor)
        assert state.converged and state.attempts == 1

        n_bg = len(net.load)
        load_p = np.concatenate([net.load.p_mw.to_numpy() * load_factor, p_bus_kw[hosts] / 1000.0])
        load_q = np.concatenate([net.load.q_mvar.to_numpy() * load_factor, np.zeros(n_host)])
        assert load_p.size == n_bg + n_host
        ref = _reference(builder, model.bus_index[hosts], load_p, load_q,
                         net.sgen.p_mw.to_numpy() * sgen_factor, net.sgen.q_mvar.to_numpy())

        vm_ref = ref.res_bus.vm_pu.reindex(model.bus_index).to_numpy()
        np.testing.assert_array_equal(np.isnan(state.vm_pu), np.isnan(vm_ref))
        np.testing.assert_allclose(state.vm_pu, vm_ref, rtol=0.0, atol=VM_ATOL_PU, equal_nan=True)
        np.testing.assert_allclose(state.line_loading_percent, ref.res_line.loading_percent.to_numpy(),
                                   rtol=0.0, atol=LOADING_ATOL_PERCENT, equal_nan=True)
        np.testing.assert_allclose(state.trafo_loading_percent, ref.res_trafo.loading_percent.to_numpy(),
                                   rtol=0.0, atol=LOADING_ATOL_PERCENT, equal_nan=True)
        p_loss_ref = ref.res_line.pl_mw.sum() + ref.res_trafo.pl_mw.sum()
        np.testing.assert_allclose(state.p_ext_grid_mw, ref.res_ext_grid.p_mw.sum(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(state.p_loss_mw, p_loss_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("name", list(NETWORKS))
def test_solver_matches_runpp(name, solver):
    _check_against_runpp(_builder(name), solver, NETWORKS[name] if solver == "lightsim2grid" else None)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_solver_matches_runpp_on_simbench(solver):
    if not simbench_available():
        pytest.skip("simbench is not installed (pip install 'vpp[simbench]')")
    # bus-bus switches, transformer taps
    _check_against_runpp(_builder("1-MV-urban--0-sw", "simbench"), solver,
                         "LSGrid" if solver == "lightsim2grid" else None)


def test_unknown_solver_lists_valid():
    with pytest.raises(KeyError, match="valid: pandapower, lightsim2grid"):
        get_solver("newton")
    with pytest.raises(KeyError, match="valid: "):
        GridModel(_builder("case33bw")(), solver="newton")


def test_voltage_dependent_loads_fall_back_to_runpp_with_a_reason():
    net = _builder("cigre_mv")()
    net.load["const_z_p_percent"] = 30.0
    model = GridModel(net, solver="lightsim2grid")
    model.attach_vpp(np.array([3]))
    assert model.solver_name == "pandapower"
    assert "voltage-dependent" in model.solver_note and "runpp runs instead" in model.solver_note
    assert "\n" not in model.solver_note
    assert model.solve(np.full(model.n_bus, 100.0), 1.0, 0.0).converged


def test_missing_lightsim2grid_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightsim2grid", None)  # import lightsim2grid now raises ImportError
    model = GridModel(_builder("cigre_mv")())
    assert model.solver_name == "pandapower"
    assert "not installed" in model.solver_note


def test_no_note_when_the_fast_solver_runs():
    model = GridModel(_builder("mv_oberrhein")())
    assert (model.solver_name, model.solver_note) == ("lightsim2grid", "")


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_clone_solves_on_its_own(solver):
    # The twin's grid: its own solver and warm start. Solving one must not move the other.
    model = GridModel(_builder("mv_oberrhein")(), solver=solver)
    hosts = np.array([5, 40, 100])
    model.attach_vpp(hosts)
    twin = model.clone()
    high = np.zeros(model.n_bus)
    high[hosts] = 3000.0
    low = np.zeros(model.n_bus)
    a1 = model.solve(high, 1.0, 0.2)
    b1 = twin.solve(low, 1.0, 0.2)
    a2 = model.solve(high, 1.0, 0.2)
    fresh = GridModel(_builder("mv_oberrhein")(), solver=solver)
    fresh.attach_vpp(hosts)
    b_ref = fresh.solve(low, 1.0, 0.2)
    assert twin.solver_name == solver
    np.testing.assert_allclose(b1.vm_pu, b_ref.vm_pu, atol=1e-9)
    np.testing.assert_allclose(a2.vm_pu, a1.vm_pu, atol=1e-9)
    assert np.nanmin(a1.vm_pu) < np.nanmin(b1.vm_pu)


def test_fast_solver_does_not_converge_where_runpp_does_not_and_recovers():
    # Four times case33bw's load has no solution: NaN throughout after a retry, never an earlier tick's values;
    # the next feasible tick converges (from the build-time solution, not the failed one).
    model = GridModel(_builder("case33bw")(), solver="lightsim2grid")
    zero = np.zeros(model.n_bus)
    assert model.solve(zero, 1.0, 0.0).converged
    bad = model.solve(zero, 4.0, 0.0)
    assert not bad.converged and bad.attempts == 2
    assert np.isnan(bad.vm_pu).all() and np.isnan(bad.line_loading_percent).all()
    assert np.isnan(bad.p_ext_grid_mw) and np.isnan(bad.p_loss_mw)
    good = model.solve(zero, 1.0, 0.0)
    assert good.converged and good.attempts == 1


def test_per_element_background_arrays():
    # Background loads may come per element (SimBench profiles): they replace the nominal values.
    net = _builder("cigre_mv")()
    model = GridModel(net, solver="lightsim2grid")
    model.attach_vpp(np.array([4]))
    p_bus_kw = np.zeros(model.n_bus)
    by_factor = model.solve(p_bus_kw, 0.7, 0.0)
    by_array = model.solve(p_bus_kw, 1.0, 0.0, net.load.p_mw.to_numpy() * 0.7, net.load.q_mvar.to_numpy() * 0.7)
    np.testing.assert_allclose(by_array.vm_pu, by_factor.vm_pu, atol=1e-10)


def test_scenario_chooses_the_solver_and_the_results_name_it(small_dict):
    from vpp.run import run_scenario
    from vpp.scenario import parse_scenario

    cols = ["vm_min_pu", "line_loading_max_percent", "trafo_loading_max_percent", "vm_min_twin_pu"]
    out = {}
    for solver in SOLVERS:
        d = copy.deepcopy(small_dict)
        d["grid"]["solver"] = solver
        d["time"]["duration_s"] = 5400  # 18 ticks, the call (from 3600 s) active for the last 6
        d["dr_calls"][0]["end_s"] = 5400
        res = run_scenario(parse_scenario(d))
        assert res.summary["grid"]["solver"] == {"name": solver, "requested": solver, "note": None}
        out[solver] = res.timeseries[cols].to_numpy(dtype=float)
    ref = out["pandapower"]
    for solver, got in out.items():
        np.testing.assert_allclose(got[:, [0, 3]], ref[:, [0, 3]], rtol=0.0, atol=VM_ATOL_PU)
        np.testing.assert_allclose(got[:, 1:3], ref[:, 1:3], rtol=0.0, atol=LOADING_ATOL_PERCENT)


def test_scenario_solver_name_is_checked(small_dict):
    from vpp.scenario import ScenarioError, parse_scenario

    small_dict["grid"]["solver"] = "newton"
    with pytest.raises(ScenarioError, match=r"grid\.solver.*unknown solver 'newton'; allowed: lightsim2grid, pandapower"):
        parse_scenario(small_dict)
    small_dict["grid"].pop("solver")
    assert parse_scenario(small_dict).grid.solver == "lightsim2grid"
