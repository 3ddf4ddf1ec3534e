"""Scenario validation: every bad input names its field and what is allowed."""

from __future__ import annotations

import pytest

from vpp.fleets.registry import KINDS
from vpp.scenario import ScenarioError, load_scenario, parse_scenario, scenario_hash


def _error(data) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "s.yaml")
    return str(info.value)


def test_small_scenario_is_valid(small_dict):
    sc = parse_scenario(small_dict)
    assert sc.time.n_ticks == 36
    assert sc.dr_calls[0].request_kw == 400.0


def test_unknown_key_names_it_and_lists_allowed(small_dict):
    small_dict["fleets"][2]["capacity"] = 5
    msg = _error(small_dict)
    assert msg.count("\n") == 0
    assert msg.startswith("s.yaml: fleets[2]: unknown key 'capacity'; allowed keys: ")
    assert "cap_kwh" in msg and "backup_h" in msg


def test_unknown_top_level_key(small_dict):
    small_dict["colour"] = "red"
    assert "unknown key 'colour'" in _error(small_dict)


def test_negative_capacity(small_dict):
    small_dict["fleets"][2]["cap_kwh"] = -25
    msg = _error(small_dict)
    assert msg == "s.yaml: fleets[2].cap_kwh: must be a finite number in (0, 1000000] (got -25)"


def test_soc_min_above_soc_max(small_dict):
    small_dict["fleets"][2].update(soc_min=0.9, soc_max=0.5)
    msg = _error(small_dict)
    assert msg == "s.yaml: fleets[2]: soc_min (0.9) must be below soc_max (0.5)"


def test_call_ending_before_it_starts(small_dict):
    small_dict["dr_calls"][0].update(start_s=7200, end_s=3600)
    assert _error(small_dict) == "s.yaml: dr_calls[0]: end_s (3600.0) must be after start_s (7200.0)"


def test_call_needs_exactly_one_power(small_dict):
    small_dict["dr_calls"][0]["p_mw"] = 1.0
    assert "give exactly one of p_kw or p_mw" in _error(small_dict)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("fleets", 0, "charger"), "warp_drive", "unknown charger 'warp_drive'; allowed: ac_pile, dc_fast"),
        (("grid", "network"), "atlantis", "grid.network: unknown network 'atlantis' (source: pandapower"),
        (("fleets", 0, "kind"), "toaster", "fleets[0]"),
        (("time", "dt_s"), 7, "duration_s (10800.0) must be a whole number (>= 1) of dt_s (7.0)"),
        (("time", "dt_s"), 3600, "time.dt_s: must be a finite number in [1, 900] (got 3600)"),
        (("fleets", 0, "v2g_share"), 1.5, "fleets[0].v2g_share: must be a finite number in [0, 1] (got 1.5)"),
        (("fleets", 0, "n_devices"), -1, "fleets[0].n_devices: must be a whole number in [0, 100000000] (got -1)"),
    ],
)
def test_bad_values_name_field_and_allowed(small_dict, path, value, expected):
    node = small_dict
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert expected in _error(small_dict)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("fleets", 0, "name"), "fleets[0].name"),
        (("fleets", 1, "operator"), "fleets[1].operator"),
        (("dr_calls", 0, "id"), "dr_calls[0].id"),
        (("name",), "name"),
    ],
)
def test_names_may_not_contain_dots(small_dict, path, field):
    # Result columns are namespaced with dots (fleet.<name>.p_kw): a dotted name could collide.
    node = small_dict
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "a.b"
    msg = _error(small_dict)
    assert msg == (f"s.yaml: {field}: must be 1 to 64 characters, each a letter, digit, '_' or '-' "
                   "(no dots, spaces or slashes) (got 'a.b')")


def test_column_like_names_are_fine(small_dict):
    for f, name in zip(small_dict["fleets"], ["vpp", "p_vpp_kw", "ev", "default"]):
        f["name"] = name
    small_dict["dr_calls"][0]["id"] = "t_s"
    sc = parse_scenario(small_dict)
    assert [f.name for f in sc.fleets] == ["vpp", "p_vpp_kw", "ev", "default"]


def test_fleet_kinds_come_from_the_registry(small_dict):
    sc = parse_scenario(small_dict)
    for f in sc.fleets:
        assert isinstance(f, KINDS[f.kind].config)
    small_dict["fleets"][0]["kind"] = "toaster"
    msg = _error(small_dict)
    assert msg.startswith("s.yaml: fleets[0]: ")
    assert all(f"'{kind}'" in msg for kind in KINDS)


def test_measurement_twin_defaults_on(small_dict):
    assert parse_scenario(small_dict).measurement.twin is True
    small_dict["measurement"] = {"twin": False}
    assert parse_scenario(small_dict).measurement.twin is False
    small_dict["measurement"] = {"twin": True, "baseline": "x"}
    assert "measurement: unknown key 'baseline'; allowed keys: twin" in _error(small_dict)


def test_call_recovery_window(small_dict):
    assert parse_scenario(small_dict).dr_calls[0].recovery_s is None  # default: the rest of the run
    small_dict["dr_calls"][0]["recovery_s"] = 900
    assert parse_scenario(small_dict).dr_calls[0].recovery_s == 900.0
    small_dict["dr_calls"][0]["recovery_s"] = -1
    assert _error(small_dict) == "s.yaml: dr_calls[0].recovery_s: must be a finite number in [0, 31622400] (got -1)"


def test_duplicate_fleet_names(small_dict):
    small_dict["fleets"][1]["name"] = "ac"
    assert "fleet names must be unique; repeated: ac" in _error(small_dict)


def test_scenario_is_immutable(small_dict):
    sc = parse_scenario(small_dict)
    with pytest.raises(Exception):
        sc.seed = 5  # type: ignore[misc]


def test_hash_tracks_content(small_dict):
    a = scenario_hash(parse_scenario(small_dict))
    small_dict["seed"] = 4
    assert scenario_hash(parse_scenario(small_dict)) != a
    small_dict["seed"] = 3
    assert scenario_hash(parse_scenario(small_dict)) == a


def test_yaml_and_toml_load_the_same(tmp_path, small_dict):
    import yaml

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(small_dict))
    toml = """
name = "small"
seed = 3
[time]
clock_start_h = 17.0
duration_s = 10800
dt_s = 300
[grid]
network = "mv_oberrhein"
[[fleets]]
kind = "ev"
name = "ac"
operator = "evnet"
charger = "ac_pile"
n_devices = 300
v2g_share = 0.2
[[fleets]]
kind = "ev"
name = "dc"
operator = "evnet"
charger = "dc_fast"
n_devices = 20
[[fleets]]
kind = "basestation"
name = "towers"
operator = "towerco"
n_devices = 50
[[fleets]]
kind = "building"
name = "offices"
operator = "bldg"
n_devices = 5
pv_share = 0.5
battery_share = 0.5
[[dr_calls]]
id = "peak"
direction = "reduce"
p_kw = 400
notification_s = 1800
start_s = 3600
end_s = 7200
"""
    (tmp_path / "s.toml").write_text(toml)
    assert scenario_hash(load_scenario(tmp_path / "s.yaml")) == scenario_hash(load_scenario(tmp_path / "s.toml"))


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    txt = tmp_path / "s.txt"
    txt.write_text("name: x")
    with pytest.raises(ScenarioError, match="allowed: .yaml, .yml, .toml"):
        load_scenario(txt)


def test_shipped_scenarios_validate(root):
    for path in sorted((root / "scenarios").glob("*.yaml")):
        load_scenario(path)
