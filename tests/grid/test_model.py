"""The grid model: VPP power lands on the right buses and the results match a direct runpp."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest

from vpp.grid.model import GridModel
from vpp.grid.networks import PANDAPOWER_NETWORKS, load_network


def test_solve_matches_direct_runpp():
    net = load_network("cigre_mv")
    model = GridModel(net, "cigre_mv")
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
    pp.runpp(ref, numba=False)
    np.testing.assert_allclose(state.vm_pu, ref.res_bus.vm_pu.reindex(model.bus_index).to_numpy(), atol=1e-9)
    np.testing.assert_allclose(state.p_ext_grid_mw, ref.res_ext_grid.p_mw.sum(), rtol=1e-9)


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
