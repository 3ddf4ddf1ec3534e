"""DR events as a scenario writes them (OpenADR 2.0b shaped) and as the run receives them (vpp.dr.DRCall).

Every time below is worked out by hand from the scenario start; the bad-input
cases that can live in one file are in ``tests/scenario/bad/event_*.yaml`` and
``time_*.yaml`` (run by test_bad_input.py); those that need an events file
beside the scenario are here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from vpp.build import build_calls, build_grid, build_plant
from vpp.cli import app
from vpp.dr import Direction
from vpp.run import run_scenario
from vpp.scenario import ScenarioError, load_scenario, parse_scenario, scenario_hash

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scenarios" / "events" / "demo.yaml"

# The small fixture on a calendar: t_s = 0 is 2025-07-15 17:00 in Asia/Shanghai; 3 hours.
CAL = {"start": "2025-07-15T17:00", "duration_s": 10800, "dt_s": 300}


def _calls(small_dict, *events, time=CAL):
    d = copy.deepcopy(small_dict)
    d["time"] = dict(time)
    d["dr_calls"] = list(events)
    return parse_scenario(d)


def _built(sc):
    return build_calls(sc, build_grid(sc))


def test_an_event_in_full(small_dict):
    event = {
        "id": "ev", "modification": 2, "direction": "reduce", "tier": "hour_ahead", "response_required": "never",
        "notification": "PT1H30M", "start": "2025-07-15T18:30+08:00", "ramp_up_s": "PT10M", "recovery_s": "PT1H",
        "targets": {"operators": ["evnet"], "fleets": ["ac", "dc"]},
        "signals": [
            {"type": "delta_kw", "intervals": [{"duration": "PT30M", "value": 300},
                                               {"start": "19:00", "duration": 900, "value": 500}]},
            {"type": "price_cny_per_kwh", "intervals": [{"duration": "PT45M", "value": 2.0}]},
        ],
    }
    sc = _calls(small_dict, event)
    c = sc.dr_calls[0]
    # 18:30 is 1.5 h after 17:00; the notice is 1.5 h before that; the intervals end the event at 19:15.
    assert (c.start_s, c.end_s, c.notification_s, c.ramp_up_s, c.recovery_s) == (5400.0, 8100.0, 0.0, 600.0, 3600.0)
    assert c.start is c.end is c.notification is c.duration is None
    (call,) = _built(sc)
    assert call.intervals == ((5400.0, 7200.0, 300.0), (7200.0, 8100.0, 500.0))
    assert call.price_intervals == ((5400.0, 8100.0, 2.0),)
    assert (call.p_kw, call.signal, call.tier, call.response_required, call.modification) == (
        500.0, "delta_kw", "hour_ahead", "never", 2)
    assert call.operators == ("evnet",) and call.fleets == ("ac", "dc") and call.bus_idx is None
    assert call.direction is Direction.REDUCE
    # ramp 0 -> 300 kW over 600 s, 300 kW for the other 1200 s of the first interval, then 500 kW for 900 s:
    # (150 x 600 + 300 x 1200 + 500 x 900) kW s
    assert call.energy_kwh() == pytest.approx((90_000 + 360_000 + 450_000) / 3600.0, rel=1e-12)


@pytest.mark.parametrize(
    "forms",
    [
        {"start": "18:00", "end": "19:00", "notification": "17:30"},
        {"start": "2025-07-15T18:00+08:00", "end": "2025-07-15T11:00Z", "notification": "PT30M"},
        {"start_s": "D+0 18:00", "duration": "PT1H", "notification_s": "day 1 17:30"},
        {"start": 3600, "duration": 3600, "notification": 1800},
    ],
)
def test_every_form_of_the_same_event_is_the_same_call(small_dict, forms):
    ref = _calls(small_dict, {"id": "e", "direction": "reduce", "p_kw": 400, "start_s": 3600, "end_s": 7200,
                              "notification_s": 1800})
    sc = _calls(small_dict, {"id": "e", "direction": "reduce", "p_kw": 400, **forms})
    assert sc.dr_calls == ref.dr_calls
    assert scenario_hash(sc) == scenario_hash(ref)


def test_levels_are_fractions_of_p_kw(small_dict):
    levels = {"type": "level", "p_mw": 0.6, "intervals": [{"duration": 600, "value": v} for v in (0, 1, 2, 3)]}
    sc = _calls(small_dict, {"id": "e", "direction": "increase", "start": "18:00", "signals": [levels]},
                {"id": "f", "direction": "increase", "start": "18:00",
                 "signals": [{**levels, "level_fractions": [0, 0.25, 0.5, 0.9]}]})
    default, custom = _built(sc)
    assert [v for _, _, v in default.intervals] == pytest.approx([0.0, 200.0, 400.0, 600.0])
    assert [v for _, _, v in custom.intervals] == pytest.approx([0.0, 150.0, 300.0, 540.0])
    assert default.signal == "level" and default.p_kw == pytest.approx(600.0) and custom.p_kw == pytest.approx(540.0)
    assert default.end_s == 3600.0 + 2400.0


def test_price_only_event(small_dict):
    sc = _calls(small_dict, {"id": "p", "direction": "reduce", "start": "18:00", "signals": [
        {"type": "price_cny_per_kwh", "intervals": [{"duration": "PT1H", "value": 3.5}]}]})
    (call,) = _built(sc)
    assert (call.signal, call.p_kw, call.requested_kw(3600.0, 7200.0), call.price_at(4000.0)) == (
        "price_cny_per_kwh", 0.0, 0.0, 3.5)


def test_modifications_become_versions(small_dict):
    sc = _calls(small_dict, {
        "id": "e", "direction": "reduce", "start": "18:00", "notification": "17:00", "signals": [
            {"type": "delta_kw", "intervals": [{"duration": "PT30M", "value": 300}, {"duration": "PT30M", "value": 500}]},
            {"type": "price_cny_per_kwh", "intervals": [{"duration": "PT1H", "value": 2.0}]}],
        "modifications": [
            {"at": "18:10", "modification": 1, "end": "19:20"},  # the last interval runs on to 19:20
            {"at": "18:20", "modification": 2, "duration": "PT20M"},  # cut inside the first interval
            {"at": "18:25", "modification": 5, "signals": [
                {"type": "delta_kw", "intervals": [{"duration": "PT45M", "value": 100}]}], "ramp_up_s": 60},
            {"at": "18:40", "modification": 6, "cancelled": True},
        ]})
    (call,) = _built(sc)
    (a0, v0), (a1, v1), (a2, v2), (a3, v3), (a4, v4) = call.versions
    assert (a0, a1, a2, a3, a4) == (0.0, 4200.0, 4800.0, 5100.0, 6000.0)
    assert [v.modification for _, v in call.versions] == [0, 1, 2, 5, 6]
    assert v1.intervals == ((3600.0, 5400.0, 300.0), (5400.0, 8400.0, 500.0))
    assert v1.price_intervals == ((3600.0, 8400.0, 2.0),)
    assert v2.intervals == ((3600.0, 4800.0, 300.0),) and v2.end_s == 4800.0 and v2.p_kw == 300.0
    assert v3.intervals == ((3600.0, 6300.0, 100.0),) and v3.ramp_up_s == 60.0 and v3.p_kw == 100.0
    assert v3.price_intervals == () and v4.cancelled and v4.end_s == v3.end_s
    # v2 ended the event at 18:20, as announced then; v3 (18:25) restarts it until v4 cancels at 18:40.
    assert call.requested_kw(4800.0, 5100.0) == 0.0 and call.active_s(4800.0, 5100.0) == 0.0
    assert call.requested_kw(5100.0, 6000.0) == 100.0 and call.requested_kw(6000.0, 6300.0) == 0.0
    assert call.effective_end_s == 6000.0


def test_short_form_modification_changes_p_kw(small_dict):
    sc = _calls(small_dict, {"id": "e", "direction": "reduce", "p_kw": 400, "start": "18:00", "end": "19:00",
                             "modifications": [{"at": "18:30", "modification": 1, "p_mw": 0.25}]})
    (call,) = _built(sc)
    assert call.latest.intervals == ((3600.0, 7200.0, 250.0),) and call.latest.p_kw == 250.0
    assert call.requested_kw(3600.0, 7200.0) == pytest.approx((400.0 + 250.0) / 2.0)


def test_a_validated_scenario_holds_seconds_and_reads_back(small_dict):
    sc = _calls(small_dict, {"id": "e", "direction": "reduce", "start": "18:00", "notification": "PT1H",
                             "signals": [{"type": "delta_kw", "intervals": [{"start": "18:00", "duration": "PT1H",
                                                                             "value": 300}]}],
                             "modifications": [{"at": "18:10", "modification": 1, "end": "18:40"}]})
    dumped = sc.model_dump(mode="json")
    text = json.dumps(dumped["dr_calls"])
    assert "18:" not in text and "PT" not in text  # every time in seconds
    assert dumped["dr_calls"][0]["modifications"][0]["at"] == 4200.0
    again = parse_scenario(dumped)
    assert again == sc and scenario_hash(again) == scenario_hash(sc)


# --- the events file -------------------------------------------------------------------------------------------

EVENTS = [
    {"id": "evening", "direction": "reduce", "tier": "minute_level", "start": "18:00", "duration": "PT1H",
     "signals": [{"type": "delta_kw", "intervals": [{"duration": "PT30M", "value": 200},
                                                    {"duration": "PT30M", "value": 400}]}]},
    {"id": "late", "direction": "increase", "p_kw": 100, "start": "19:00", "end": "19:30"},
]


def _write_scenario(folder: Path, small_dict, events_ref: str, inline=()) -> Path:
    d = copy.deepcopy(small_dict)
    d["time"] = dict(CAL)
    d["dr_calls"] = list(inline)
    d["dr_events_file"] = events_ref
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


@pytest.mark.parametrize("fmt", ["list.yaml", "mapping.yml", "list.json"])
def test_events_file_is_read_beside_the_scenario(tmp_path, small_dict, monkeypatch, fmt):
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    body = EVENTS if fmt.startswith("list") else {"dr_calls": EVENTS}
    (events_dir / fmt).write_text(json.dumps(body) if fmt.endswith(".json") else yaml.safe_dump(body))
    inline = [{"id": "first", "direction": "reduce", "p_kw": 50, "start_s": 600, "end_s": 1200}]
    path = _write_scenario(tmp_path, small_dict, f"events/{fmt}", inline)
    monkeypatch.chdir(ROOT)  # the path is relative to the scenario's folder, not the working directory
    sc = load_scenario(path)
    assert [c.id for c in sc.dr_calls] == ["first", "evening", "late"]
    assert sc.dr_call_labels == ["dr_calls[0]", f"events/{fmt}: dr_calls[0]", f"events/{fmt}: dr_calls[1]"]
    assert sc.dr_events_file.path == str(events_dir / fmt) and sc.dr_events_file.dr_calls == []
    same = _calls(small_dict, *inline, *EVENTS)
    assert sc.dr_calls == same.dr_calls
    assert parse_scenario(sc.model_dump()).dr_calls == sc.dr_calls  # reads back without the file


def _rejected(path: Path) -> list[str]:
    out = path.parent / "out"
    for args in (["validate", path], ["run", path, "--out", out, "--quiet"]):
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        lines = result.stderr.splitlines()
        assert lines and all(line.startswith("error: ") for line in lines), result.stderr
        assert not out.exists()
    return lines


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.yaml", None, "dr_events_file: missing.yaml: cannot read events file (No such file or directory)"),
        ("e.txt", "[]", "dr_events_file: e.txt: unknown events file type '.txt'; allowed: .yaml, .yml, .json"),
        ("e.yaml", "- id: a\n  start: [18:00\n", "dr_events_file: e.yaml: line 3, column 1: not valid YAML: "),
        ("e.yaml", "events: []\n", "dr_events_file: e.yaml: must hold a list of DR events, or a mapping with the one "
                                   "key dr_calls (got dict)"),
        ("e.yaml", "", "dr_events_file: e.yaml: must hold a list of DR events, or a mapping with the one key "
                       "dr_calls (the file is empty)"),
        ("e.json", '[{"id": "a", "id": "b"}]', "dr_events_file: e.json: duplicate key 'id'; remove one of them"),
        ("e.json", "[{,}]", "dr_events_file: e.json: line 1, column 3: not valid JSON: Expecting property name "
                            "enclosed in double quotes"),
    ],
)
def test_an_events_file_that_cannot_be_read(tmp_path, small_dict, name, content, expected):
    if content is not None:
        (tmp_path / name).write_text(content)
    path = _write_scenario(tmp_path, small_dict, name)
    lines = _rejected(path)
    assert any(line.startswith(f"error: {path}: {expected}") for line in lines), lines


def test_an_events_file_error_names_the_file_and_the_field(tmp_path, small_dict):
    bad = copy.deepcopy(EVENTS)
    bad[0]["signals"][0]["intervals"][1]["start"] = "18:40"  # the first interval ends at 18:30
    bad[1]["tier"] = "weekly"
    bad[1]["targets"] = {"operators": ["nobody"]}
    (tmp_path / "ev.yaml").write_text(yaml.safe_dump(bad))
    path = _write_scenario(tmp_path, small_dict, "ev.yaml")
    lines = _rejected(path)
    assert lines == [
        f"error: {path}: ev.yaml: dr_calls[1].tier: unknown programme tier 'weekly'; valid tiers: ['day_ahead', "
        "'hour_ahead', 'minute_level', 'real_time']",
    ]
    del bad[1]["tier"]
    (tmp_path / "ev.yaml").write_text(yaml.safe_dump(bad))
    assert _rejected(path) == [
        f"error: {path}: ev.yaml: dr_calls[0].signals[0].intervals[1].start: intervals must be contiguous: this one "
        "starts 600 s after the previous one ends (it ends at t_s=5400 = 2025-07-15T18:30:00+08:00)",
        f"error: {path}: ev.yaml: dr_calls[1].targets.operators[0]: unknown operator 'nobody'; the scenario's "
        "operators: evnet, towerco, bldg",
    ]


def test_ids_are_unique_across_the_scenario_and_the_file(tmp_path, small_dict):
    (tmp_path / "ev.yaml").write_text(yaml.safe_dump(EVENTS))
    path = _write_scenario(tmp_path, small_dict, "ev.yaml", [{**EVENTS[1], "start": 0, "end": 60}])
    assert _rejected(path) == [f"error: {path}: dr_calls: DR call ids must be unique; repeated: late"]


def test_a_bus_missing_from_the_grid_names_the_events_file(tmp_path, small_dict):
    (tmp_path / "ev.yaml").write_text(yaml.safe_dump([{**EVENTS[1], "targets": {"buses": [123456]}}]))
    path = _write_scenario(tmp_path, small_dict, "ev.yaml")
    with pytest.raises(ScenarioError, match=r"^ev.yaml: dr_calls\[0\].targets.buses: bus 123456 does not exist"):
        build_plant(load_scenario(path))


# --- the shipped example -----------------------------------------------------------------------------------


def test_the_shipped_demo_runs_on_its_calendar():
    sc = load_scenario(DEMO)
    assert [c.id for c in sc.dr_calls] == ["evening_peak", "afternoon_ev"]
    res = run_scenario(sc)
    ts = res.timeseries
    assert str(ts["timestamp"].dt.tz) == "Asia/Shanghai"
    assert ts["timestamp"].iloc[0] == pd.Timestamp("2025-07-15T05:00+08:00")
    peak, ev = res.summary["calls"]
    assert (peak["start_iso"], peak["end_iso"], peak["notification_iso"]) == (
        "2025-07-15T18:00:00+08:00", "2025-07-15T20:30:00+08:00", "2025-07-15T05:30:00+08:00")
    assert peak["modification"] == 1 and peak["tier"] == "day_ahead" and peak["opt"] == "optIn"
    assert [v["announced_iso"] for v in peak["versions"]] == ["2025-07-15T05:30:00+08:00", "2025-07-15T18:30:00+08:00"]
    # 2 MW from 18:00 ramping in over 15 min, 3 MW from 19:00, run on to 20:30:
    # (2000 x 1 h - 2000 x 0.25 h / 2) + 3000 x 1.5 h = 1750 + 4500 kWh
    assert peak["requested_kwh"] == pytest.approx(6250.0, rel=1e-12)
    req = ts.set_index("timestamp")["call.evening_peak.requested_kw"]
    assert req[pd.Timestamp("2025-07-15T18:05+08:00")] == pytest.approx(1000.0)  # ramp: 667 -> 1333 kW
    assert req[pd.Timestamp("2025-07-15T20:25+08:00")] == 3000.0 and req[pd.Timestamp("2025-07-15T20:30+08:00")] == 0.0
    # The hour-ahead call was cancelled at 14:10, before its start at 15:00: never active.
    assert ev["cancelled"] is True and ev["requested_kwh"] == 0.0 and ev["n_ticks_active"] == 0
    assert ev["end_iso"] == ev["start_iso"] == "2025-07-15T15:00:00+08:00"
    assert (ts["call.afternoon_ev.requested_kw"] == 0.0).all()


def test_vpp_validate_reads_the_events_file():
    result = CliRunner().invoke(app, ["validate", str(DEMO)])
    assert result.exit_code == 0, result.output
    assert "2 DR calls with 2 modifications" in result.stdout
    assert "2025-07-15T05:00:00+08:00 to 2025-07-15T23:00:00+08:00" in result.stdout
    old = CliRunner().invoke(app, ["validate", str(ROOT / "scenarios" / "default.yaml")])
    assert "from clock hour 12 on an unknown date" in old.stdout


# --- earlier scenarios run as they did ---------------------------------------------------------------------

# scenarios/default.yaml cut to 8 h (12:00-20:00, its call 18:00-20:00 included), run at commit ed0bd78,
# before the calendar and the event model: sums over the run and the value at tick 80 (18:40).
# These are pinned numbers: a change to the fleets' physics or dispatch moves them legitimately;
# record them again from the commit before such a change, never from the change itself.
HEAD_ED0BD78 = {
    "p_vpp_kw": (1396948.610962633, 11676.902558986612),
    "p_twin_kw": (1418973.7309086067, 12589.983589955445),
    "p_requested_kw": (72000.0, 3000.0),
    "p_delivered_kw": (22025.119945973558, 913.0810309688329),
    "call.evening_peak.requested_kw": (72000.0, 3000.0),
    "call.evening_peak.delivered_kw": (22025.119945973558, 913.0810309688329),
    "vm_min_pu": (92.67081351278762, 0.9606055193854136),
    "trafo_loading_max_percent": (9811.068294628083, 112.76316884571969),
}


@pytest.fixture(scope="module")
def default_8h():
    sc = load_scenario(ROOT / "scenarios" / "default.yaml",
                       overrides={"time": {"clock_start_h": 12.0, "duration_s": 28800, "dt_s": 300}})
    return sc, run_scenario(sc)


def test_default_scenario_gives_the_numbers_it_gave_before(default_8h):
    _, res = default_8h
    ts = res.timeseries
    assert "timestamp" not in ts  # clock_start_h only: no date, no timestamps
    for col, (total, at_80) in HEAD_ED0BD78.items():
        x = ts[col].to_numpy()
        assert (float(np.nansum(x)), float(x[80])) == (total, at_80), col
    call = res.summary["calls"][0]
    assert (call["requested_kwh"], call["delivered_kwh"]) == (6000.0, 1835.426662164463)


def test_the_short_form_and_the_event_form_run_identically(default_8h):
    sc, res = default_8h
    d = sc.model_dump()
    d["time"] = {"start": "2025-07-15T12:00", "duration_s": 28800, "dt_s": 300}
    d["dr_calls"] = [{"id": "evening_peak", "direction": "reduce", "notification": "16:00", "start": "18:00",
                      "duration": "PT2H", "signals": [{"type": "delta_kw", "intervals": [
                          {"duration": "PT1H", "value": 3000}, {"duration": "PT1H", "value": 3000}]}]}]
    new = run_scenario(parse_scenario(d)).timeseries
    pd.testing.assert_frame_equal(new.drop(columns="timestamp"), res.timeseries, check_exact=True)


def test_a_call_on_one_fleet_moves_only_that_fleet(small_dict):
    # Only which devices move is checked: the platform still splits a call over every operator by the room each
    # offers on the target buses (vpp.sim.agents.PlatformAgent._room_kw knows no fleets), so the towers' operator
    # is asked for a share only, and the other operators' shares go undelivered.
    d = copy.deepcopy(small_dict)
    d["time"] = dict(CAL)
    d["grid"]["power_flow"] = False
    d["dr_calls"] = [{"id": "t", "direction": "reduce", "p_kw": 60, "start": "18:00", "duration": "PT1H",
                      "targets": {"fleets": ["towers"]}}]
    res = run_scenario(parse_scenario(d))
    ts = res.timeseries
    for name in ("ac", "dc", "offices"):
        np.testing.assert_array_equal(ts[f"fleet.{name}.p_kw"], ts[f"fleet.{name}.p_twin_kw"])
    assert (ts["fleet.towers.p_kw"] < ts["fleet.towers.p_twin_kw"] - 1e-9).any()
    call = res.summary["calls"][0]
    assert call["target_fleets"] == ["towers"]
    assert call["delivered_by_kind_kwh"]["ev"] == 0.0 and call["delivered_by_kind_kwh"]["building"] == 0.0
    assert call["delivered_by_kind_kwh"]["basestation"] > 0.0
