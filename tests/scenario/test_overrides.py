"""Overrides by dotted path (vpp.scenario.overrides): set in the mapping, validated as a scenario file."""

from __future__ import annotations

import copy

import pytest
import yaml

from vpp.scenario import ScenarioError, parse_scenario
from vpp.scenario.overrides import (
    check_path,
    load_with_overrides,
    parse_assignment,
    scenario_data,
    set_path,
    split_path,
    with_overrides,
)


def test_split_path_reads_digits_as_indices():
    assert split_path("fleets.0.n_devices") == ("fleets", 0, "n_devices")
    assert split_path("seed") == ("seed",)
    for bad in ("", "a..b", ".a", "a."):
        with pytest.raises(ScenarioError, match="path"):
            split_path(bad)


@pytest.mark.parametrize(("text", "path", "value"), [
    ("fleets.0.n_devices=500", "fleets.0.n_devices", 500),
    ("platform.non_compliance_share=0.2", "platform.non_compliance_share", 0.2),
    ("dispatch.strategy=edf", "dispatch.strategy", "edf"),
    ("measurement.twin=false", "measurement.twin", False),
    ("time.duration_s=1e4", "time.duration_s", 1e4),  # YAML 1.2: a number, as in a scenario file
    ("fleets.0.buses=[1, 2]", "fleets.0.buses", [1, 2]),
    ("name='007'", "name", "007"),
    ("description=a=b", "description", "a=b"),  # only the first '=' splits
])
def test_parse_assignment_reads_the_value_as_yaml(text, path, value):
    assert parse_assignment(text) == (path, value)


@pytest.mark.parametrize("text", ["seed", "=3", "fleets..x=1", "seed=[1"])
def test_parse_assignment_rejects_malformed_text(text):
    with pytest.raises(ScenarioError):
        parse_assignment(text)


def test_set_path_copies_and_creates_missing_mappings(small_dict):
    before = copy.deepcopy(small_dict)
    out = set_path(small_dict, "platform.non_compliance_share", 0.3)
    out = set_path(out, "fleets.1.n_devices", 7)
    assert small_dict == before  # the input is not changed
    assert out["platform"] == {"non_compliance_share": 0.3}
    assert out["fleets"][1]["n_devices"] == 7
    with pytest.raises(ScenarioError, match="fleets has 4 items"):
        set_path(small_dict, "fleets.4.n_devices", 1)


def test_check_path_names_the_path_and_what_is_allowed(small_dict):
    full = parse_scenario(small_dict).model_dump(mode="json")
    check_path(full, "platform.non_compliance_share")  # a default, not in the mapping: exists
    check_path(full, "fleets.3.battery_share")
    with pytest.raises(ScenarioError, match=r"^platform\.nope: platform has no key 'nope'; allowed: .*acceptance"):
        check_path(full, "platform.nope")
    with pytest.raises(ScenarioError, match=r"fleets\.9\.n_devices: fleets has 4 items; index 9 does not exist"):
        check_path(full, "fleets.9.n_devices")
    with pytest.raises(ScenarioError, match="is a list; address its items by index"):
        check_path(full, "fleets.ac.n_devices")
    with pytest.raises(ScenarioError, match=r"seed\.x: seed is a value \(3\)"):
        check_path(full, "seed.x")


def test_with_overrides_validates_like_a_file(small_dict):
    sc = with_overrides(small_dict, {"fleets.0.n_devices": 500, "dispatch.strategy": "edf",
                                     "platform.non_compliance_share": 0.25})
    assert sc.fleets[0].n_devices == 500 and sc.dispatch.strategy == "edf"
    assert sc.platform.non_compliance_share == 0.25
    # The same as editing the mapping by hand.
    edited = copy.deepcopy(small_dict)
    edited["fleets"][0]["n_devices"] = 500
    edited["dispatch"] = {"strategy": "edf"}
    edited["platform"] = {"non_compliance_share": 0.25}
    assert sc == parse_scenario(edited)
    with pytest.raises(ScenarioError, match=r"fleets\[0\]\.v2g_share: .*\(got 1\.5\)") as info:
        with_overrides(small_dict, {"fleets.0.v2g_share": 1.5})
    assert "--set fleets.0.v2g_share=1.5" in str(info.value)  # the error names the override
    with pytest.raises(ScenarioError, match="unknown strategy 'nope'; allowed: .*pro_rata"):
        with_overrides(small_dict, {"dispatch.strategy": "nope"})
    with pytest.raises(ScenarioError, match=r"--set dispatch\.nope: dispatch has no key 'nope'"):
        with_overrides(small_dict, {"dispatch.nope": 1})


def test_a_validated_scenario_round_trips(small_dict):
    sc = parse_scenario(small_dict)
    data, _, _ = scenario_data(sc)
    assert with_overrides(data, {}) == sc
    assert with_overrides(data, {"seed": 9}).seed == 9


def test_load_with_overrides_from_a_file(tmp_path, small_dict):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_dict))
    sc = load_with_overrides(path, ["fleets.0.n_devices=123", "seed=5"])
    assert sc.fleets[0].n_devices == 123 and sc.seed == 5
    assert load_with_overrides(path, ["seed=5"], extra={"seed": 6}).seed == 6  # --seed wins over --set seed
    with pytest.raises(ScenarioError, match=r"s\.yaml: --set fleets\.7\.n_devices: fleets has 4 items"):
        load_with_overrides(path, ["fleets.7.n_devices=1"])
