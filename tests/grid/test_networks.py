"""Network sources (built-in, SimBench, pandapower JSON, MATPOWER .m/.mat), bus names, bad networks, the city grid."""

from __future__ import annotations

import sys

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
import yaml

from vpp.build import build_grid, build_plant
from vpp.grid.networks import GRIDS_DIR, NetworkError, bus_labels, load_network, network_listing
from vpp.scenario import ScenarioError, load_scenario, parse_scenario

# --- helpers --------------------------------------------------------------------------------------


def _write_m(ppc: dict, path, numbers: np.ndarray) -> None:
    """Write a ppc (0-based bus indices) as a MATPOWER version-2 case file, bus i numbered ``numbers[i]``."""
    bus = ppc["bus"][:, :13].copy()
    gen = ppc["gen"][:, :10].copy()
    branch = ppc["branch"][:, :13].copy()
    bus[:, 0] = numbers[bus[:, 0].astype(int)]
    gen[:, 0] = numbers[gen[:, 0].astype(int)]
    branch[:, 0] = numbers[branch[:, 0].astype(int)]
    branch[:, 1] = numbers[branch[:, 1].astype(int)]

    def rows(a):
        return "\n".join("\t" + "\t".join(f"{x:.10g}" for x in r) + ";" for r in a)

    path.write_text(
        "function mpc = case_test\n%% a test case written by tests/grid/test_networks.py\n"
        "mpc.version = '2';\n"
        f"mpc.baseMVA = {ppc['baseMVA']:g};\n"
        f"mpc.bus = [\n{rows(bus)}\n];\n"
        f"mpc.gen = [\n{rows(gen)}\n];\n"
        f"mpc.branch = [\n{rows(branch)}\n];\n"
    )


def _ppc_case9() -> dict:
    from pandapower.converter.pypower import to_ppc

    return to_ppc(pn.case9(), init="flat")


def _vm(net) -> np.ndarray:
    pp.runpp(net, numba=False)
    return net.res_bus.vm_pu.to_numpy()


def _grid_error(small_dict, **grid) -> str:
    """The one-line error of building a plant on ``grid`` (validation and grid checks together)."""
    small_dict["grid"] = grid
    small_dict["dr_calls"] = []
    with pytest.raises(ScenarioError) as info:
        build_plant(parse_scenario(small_dict))
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# --- each source loads ----------------------------------------------------------------------------


def test_builtin_name():
    net = load_network("case14")
    assert len(net.bus) == 14 and len(net.ext_grid) == 1


def test_pandapower_json(tmp_path):
    pp.to_json(pn.case9(), str(tmp_path / "nine.json"))
    net = load_network(str(tmp_path / "nine.json"), "file")
    np.testing.assert_allclose(_vm(net), _vm(pn.case9()), atol=1e-10)


def test_matpower_mat_and_m_match_pandapower(tmp_path):
    """The same case as .mat and as .m (bus numbers 10, 20, ...) gives pandapower's case9 power flow."""
    from pandapower.converter.matpower import to_mpc

    to_mpc(pn.case9(), str(tmp_path / "nine.mat"), init="flat")
    _write_m(_ppc_case9(), tmp_path / "nine.m", numbers=np.arange(1, 10) * 10)
    ref = _vm(pn.case9())
    from_mat = load_network(str(tmp_path / "nine.mat"), "file")
    from_m = load_network(str(tmp_path / "nine.m"), "file")
    np.testing.assert_allclose(_vm(from_mat), ref, atol=1e-8)
    np.testing.assert_allclose(_vm(from_m), ref, atol=1e-8)
    # MATPOWER bus N is pandapower index N-1; its name is the MATPOWER number.
    assert from_m.bus.name.tolist() == [str(n) for n in range(10, 100, 10)]
    assert bus_labels(from_m, ["50", 3]) == [49, 3]


def test_relative_path_is_relative_to_the_scenario_file(tmp_path, monkeypatch, small_dict):
    (tmp_path / "nets").mkdir()
    pp.to_json(load_network("cigre_mv"), str(tmp_path / "nets" / "mine.json"))
    small_dict["grid"] = {"network": "nets/mine.json", "source": "file"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(small_dict))
    monkeypatch.chdir(tmp_path / "nets")  # not where the path is relative to
    sc = load_scenario(tmp_path / "s.yaml")
    assert sc.grid.network == str((tmp_path / "nets" / "mine.json").resolve())
    assert build_grid(sc).n_bus == 15


def test_bare_name_finds_the_shipped_grids(small_dict, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small_dict["grid"] = {"network": "city.json", "source": "file"}
    sc = parse_scenario(small_dict)
    assert sc.grid.network == str((GRIDS_DIR / "city.json").resolve())
    listing = network_listing()
    assert "city.json" in listing and "mv_oberrhein" in listing and "<simbench-code>" in listing


# --- bus names ------------------------------------------------------------------------------------


def test_bus_names_stand_for_indices(small_dict):
    net = load_network("mv_oberrhein")
    labels = [int(b) for b in net.bus.index[[3, 40, 77]]]
    names = [str(net.bus.name.at[b]) for b in labels]
    by_name, by_index = small_dict, parse_scenario(small_dict).model_dump()
    by_name["fleets"][0]["buses"] = [names[0], labels[1]]  # names and indices may mix
    by_name["dr_calls"][0]["buses"] = names[1:]
    by_index["fleets"][0]["buses"] = labels[:2]
    by_index["dr_calls"][0]["buses"] = labels[1:]
    a, b = build_plant(parse_scenario(by_name)), build_plant(parse_scenario(by_index))
    np.testing.assert_array_equal(a.fleets[0].bus_idx, b.fleets[0].bus_idx)
    assert a.calls[0].bus_idx == b.calls[0].bus_idx == tuple(a.grid.position(x) for x in labels[1:])


def test_unknown_and_ambiguous_bus_names(small_dict):
    small_dict["fleets"][0]["buses"] = ["Bus 9999"]
    with pytest.raises(ScenarioError) as info:
        build_plant(parse_scenario(small_dict))
    assert str(info.value).startswith(
        "fleets[0].buses: bus name 'Bus 9999' does not exist in grid 'mv_oberrhein'; closest: 'Bus 99'"
    )
    net = load_network("case14")
    net.bus.loc[[2, 5], "name"] = "twin"
    with pytest.raises(NetworkError, match=r"^bus name 'twin' is ambiguous: 2 buses have it \(indices 2, 5\)"):
        bus_labels(net, ["twin"])


# --- bad input: one clear line each ---------------------------------------------------------------


def _no_ext_grid(tmp_path, out_of_service: bool) -> str:
    net = pn.case9()
    if out_of_service:
        net.ext_grid["in_service"] = False
    else:
        net.ext_grid.drop(net.ext_grid.index, inplace=True)
    path = tmp_path / f"noslack_{out_of_service}.json"
    pp.to_json(net, str(path))
    return str(path)


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        ({"network": "atlantis"},
         r"^<scenario>: grid\.network: unknown network 'atlantis' \(source: pandapower; .*allowed: case118, "),
        ({"network": "grids/mine.json"},
         r"^<scenario>: grid\.network: unknown network .*; for a network file give source: file$"),
        ({"network": "nowhere.json", "source": "file"},
         r"^<scenario>: grid\.network: network file 'nowhere\.json' does not exist \(looked for .*nowhere\.json and "
         r".*grids/nowhere\.json\); shipped: city\.json"),
        ({"network": "net.xlsx", "source": "file"},
         r"^<scenario>: grid\.network: network file 'net\.xlsx' has an unknown suffix '\.xlsx'; allowed: \.json "),
        ({"network": "CASE9.MAT", "source": "file"},
         r"^<scenario>: grid\.network: network file 'CASE9\.MAT' has an unknown suffix '\.MAT'; allowed: \.json "),
        ({"network": "{tmp}/broken.json", "source": "file"},
         r"^grid\.network: network file 'broken\.json' does not parse as a pandapower JSON network: "),
        ({"network": "{tmp}/plain.json", "source": "file"},
         r"^grid\.network: network file 'plain\.json' is JSON but not a pandapower network"),
        ({"network": "{tmp}/broken.m", "source": "file"},
         r"^grid\.network: network file 'broken\.m' does not parse as a MATPOWER case: "),
        ({"network": "{tmp}/broken.mat", "source": "file"},
         r"^grid\.network: network file 'broken\.mat' does not parse as a MATPOWER case: "),
        ({"network": "{noslack}", "source": "file"},
         r"^grid\.network: network 'noslack_False\.json' has no external grid \(its ext_grid table is empty\); "),
        ({"network": "{noslack_off}", "source": "file"},
         r"^grid\.network: network 'noslack_True\.json' has 1 external grid\(s\) but none in service "),
    ],
)
def test_bad_network_is_one_line(small_dict, tmp_path, monkeypatch, grid, expected):
    import re

    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.json").write_text('{"bus": ')
    (tmp_path / "plain.json").write_text('[1, 2, 3]')
    (tmp_path / "broken.m").write_text("function mpc = broken\nmpc.version = '2';\nmpc.bus = [ 1 3 ;\n")
    (tmp_path / "broken.mat").write_bytes(b"MATLAB 5.0 MAT-file, not really")
    if "{noslack" in grid["network"]:
        grid = {**grid, "network": _no_ext_grid(tmp_path, out_of_service="_off" in grid["network"])}
    grid = {k: v.format(tmp=tmp_path) for k, v in grid.items()}
    text = _grid_error(small_dict, **grid)
    assert re.search(expected, text), text


def test_unknown_simbench_code(small_dict):
    pytest.importorskip("simbench")
    text = _grid_error(small_dict, network="1-MV-urban-0-sw", source="simbench")
    assert text.startswith("grid.network: unknown SimBench code '1-MV-urban-0-sw'; closest: 1-MV-urban--0-sw, ")


def test_bus_index_outside_the_grid(small_dict):
    small_dict["dr_calls"][0]["buses"] = [424242]
    with pytest.raises(ScenarioError, match=r"^dr_calls\[0\]\.buses: bus 424242 does not exist in grid 'mv_oberrhein'"):
        build_plant(parse_scenario(small_dict))


@pytest.mark.parametrize("bad", ["", "x" * 201, 1.5, -3, None])
def test_bus_reference_type(small_dict, bad):
    small_dict["fleets"][0]["buses"] = [bad]
    with pytest.raises(ScenarioError, match=r"fleets\[0\]\.buses\[0\]: "):
        parse_scenario(small_dict)


# --- the city grid --------------------------------------------------------------------------------


def _city_builder():
    sys.path.insert(0, str(GRIDS_DIR))
    try:
        import build_city
    finally:
        sys.path.remove(str(GRIDS_DIR))
    return build_city


def test_city_file_is_what_the_builder_builds():
    import pandas as pd

    shipped = load_network("city.json", "file")
    built = _city_builder().build()
    for table in ("bus", "line", "trafo", "load", "gen", "ext_grid"):
        a, b = (t[table].astype(object).where(t[table].notna(), None) for t in (shipped, built))  # None == NaN
        pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=table)


def test_city_converges_at_1_gw_extra_and_balances():
    """+1 GW over the substations in proportion to their load: converged, within limits, power balanced.

    Balance (closed form, pandapower's load convention): the external grid's
    import equals all load plus line and transformer losses minus all generation.
    """
    builder = _city_builder()
    net = load_network("city.json", "file")
    subs = builder.substation_buses(net)
    assert len(subs) >= 100 and set(net.load.bus) <= set(subs)
    p_before_mw = net.load.p_mw.sum()
    builder.add_vpp_load(net, 1000.0)
    assert net.load.p_mw.sum() - p_before_mw == pytest.approx(1000.0, rel=1e-12)
    pp.runpp(net, numba=False)
    assert net.converged
    p_loss_mw = net.res_line.pl_mw.sum() + net.res_trafo.pl_mw.sum()
    expected_mw = net.res_load.p_mw.sum() + p_loss_mw - net.res_gen.p_mw.sum() - net.res_sgen.p_mw.sum()
    assert net.res_ext_grid.p_mw.sum() == pytest.approx(expected_mw, rel=1e-6)
    assert 0.95 <= net.res_bus.vm_pu.min() and net.res_bus.vm_pu.max() <= 1.05
    assert net.res_line.loading_percent.max() < 100.0 and net.res_trafo.loading_percent.max() < 100.0


def test_400k_devices_land_on_the_substations(small_dict):
    small_dict["grid"] = {"network": "city.json", "source": "file"}
    small_dict["fleets"] = [{"kind": "basestation", "name": "towers", "operator": "towerco", "n_devices": 400_000}]
    small_dict["dr_calls"] = []
    plant = build_plant(parse_scenario(small_dict))
    hosts = np.unique(plant.fleets[0].bus_idx)
    names = plant.grid.net.bus.name.to_numpy()[hosts]
    assert hosts.size >= 100 and all(str(n).startswith("S") and len(str(n)) == 4 for n in names)
