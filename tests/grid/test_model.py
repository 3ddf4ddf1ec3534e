"""The grid model: VPP power lands on the right buses and the results match a direct runpp."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest

from vpp.grid.model import GridModel
from vpp.grid.networks import PANDAPOWER_NETWORKS, load_network


@pytest.mark.parametrize("solver, atol_pu", [("pandapower", 1e-9), ("lightsim2grid", 1e-6)])
def test_solve_matches_direct_runpp(solver, atol_pu):
    net = load_network("cigre_mv")
    model = GridModel(net, "cigre_mv", solver=solver)
    rng = np.random.default_rng(0)
    p_bus_kw = np.zeros(model.n_bus)
    hosts = np.array([3, 5, 8, 11])
    p_bus_kw[hosts] = rng.uniform(100, 800, size=hosts.size)
    model.attach_vpp(hosts)
    state = model.solve(p_bus_kw, load_factor=0.8, sgen_factor=0.0)
    assert state.converged

    ref = load_network("cigre_mv")
    ref.load["p_mw"] *= 0.8
    ref.load["q_mvar"] *= 0.8
    for pos in hosts:
        pp.create_load(ref, bus=model.bus_index[pos], p_mw=p_bus_kw[pos] / 1000.0)
    pp.runpp(ref, numba=False, lightsim2grid=False)
    assert model.solver_name == solver
    np.testing.assert_allclose(state.vm_pu, ref.res_bus.vm_pu.reindex(model.bus_index).to_numpy(), atol=atol_pu)
    np.testing.assert_allclose(state.p_ext_grid_mw, ref.res_ext_grid.p_mw.sum(), rtol=1e-6)


def test_more_load_lowers_voltage_and_caller_net_untouched():
    net = load_network("cigre_mv")
    n_load = len(net.load)
    res_before = net.res_bus.copy()
    model = GridModel(net)
    model.attach_vpp(np.arange(1, model.n_bus))
    low = model.solve(np.full(model.n_bus, 10.0), 1.0, 0.0)
    high = model.solve(np.full(model.n_bus, 500.0), 1.0, 0.0)
    assert np.nanmin(high.vm_pu) < np.nanmin(low.vm_pu)
    assert len(net.load) == n_load
    assert net.res_bus.equals(res_before)
    # Results are copies: a later solve does not rewrite an earlier state.
    assert np.nanmax(low.line_loading_percent) < np.nanmax(high.line_loading_percent)


def test_unknown_network_lists_valid():
    with pytest.raises(KeyError, match="valid: .*mv_oberrhein"):
        load_network("atlantis")


def test_registry_builders_exist():
    import pandapower.networks as pn

    for func_name, _ in PANDAPOWER_NETWORKS.values():
        assert hasattr(pn, func_name)


def _patched_runpp(monkeypatch, fail_inits):
    """Make pandapower's runpp fail for the given ``init`` values, recording every call's init."""
    from vpp.grid import model as grid_model

    real = pp.runpp
    calls = []

    def runpp(net, init="auto", **kwargs):
        calls.append((init, kwargs.get("max_iteration")))
        if init in fail_inits:
            raise pp.LoadflowNotConverged("patched: no convergence")
        return real(net, init=init, **kwargs)

    monkeypatch.setattr(grid_model.pp, "runpp", runpp)
    return calls


def test_a_power_flow_that_does_not_converge_is_retried_from_another_start(monkeypatch):
    model = GridModel(load_network("cigre_mv"), solver="pandapower")
    model.attach_vpp(np.array([3, 5]))
    p_bus_kw = np.full(model.n_bus, 200.0)
    reference = model.solve(p_bus_kw, 1.0, 0.0)  # converged: the next tick warm-starts
    calls = _patched_runpp(monkeypatch, fail_inits={"results"})
    state = model.solve(p_bus_kw, 1.0, 0.0)
    assert calls == [("results", "auto"), ("dc", 30)]
    assert state.converged and state.attempts == 2
    np.testing.assert_allclose(state.vm_pu, reference.vm_pu, atol=1e-8)


def test_a_power_flow_that_fails_twice_is_nan_never_the_last_result(monkeypatch):
    model = GridModel(load_network("cigre_mv"), solver="pandapower")
    model.attach_vpp(np.array([3, 5]))
    p_bus_kw = np.full(model.n_bus, 200.0)
    assert model.solve(p_bus_kw, 1.0, 0.0).converged
    calls = _patched_runpp(monkeypatch, fail_inits={"results", "dc"})
    state = model.solve(p_bus_kw, 1.0, 0.0)
    assert not state.converged and state.attempts == 2
    assert np.isnan(state.vm_pu).all() and np.isnan(state.line_loading_percent).all()
    assert np.isnan(state.trafo_loading_percent).all() and np.isnan(state.p_ext_grid_mw)
    # After a failure the next tick starts cold, not from the failed solution.
    calls.clear()
    assert model.solve(p_bus_kw, 1.0, 0.0).converged
    assert calls == [("auto", "auto")]


def test_an_overloaded_net_does_not_converge():
    # Four times case33bw's load: no start converges (the fault the run must count, not hide).
    model = GridModel(load_network("case33bw"))
    state = model.solve(np.zeros(model.n_bus), 4.0, 0.0)
    assert not state.converged and state.attempts == 2 and np.isnan(state.vm_pu).all()
