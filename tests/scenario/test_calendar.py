"""The scenario calendar: every time form to seconds since the start, by hand, with and without daylight saving.

Expected seconds are worked out by hand in the comments (UTC offsets from the
IANA rules: Asia/Shanghai is UTC+8 all year; Europe/Berlin is UTC+1 in winter
and UTC+2 from 2025-03-30 02:00 to 2025-10-26 03:00 local time).
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from vpp.run import run_scenario
from vpp.scenario import ScenarioError, load_scenario, parse_scenario
from vpp.scenario.schema import TimeConfig
from vpp.scenario.timefmt import parse_duration_s


def _cal(start=None, tz="Asia/Shanghai", clock_start_h=None, duration_s=7 * 86400.0):
    kw = {"duration_s": duration_s, "dt_s": 300, "timezone": tz}
    if start is not None:
        kw["start"] = start
    if clock_start_h is not None:
        kw["clock_start_h"] = clock_start_h
    return TimeConfig(**kw).calendar


# --- Asia/Shanghai (no DST); the run starts 2025-07-15 12:00 +08:00 ------------------------------------------


@pytest.mark.parametrize(
    ("value", "t_s"),
    [
        (3600, 3600.0),  # seconds
        (0.5, 0.5),
        ("2025-07-15T18:00+08:00", 6 * 3600.0),  # 6 h after 12:00
        ("2025-07-15T18:00", 6 * 3600.0),  # naive: wall-clock time in Asia/Shanghai
        ("2025-07-15 18:00:00", 6 * 3600.0),
        ("2025-07-15T10:00Z", 6 * 3600.0),  # 10:00 UTC = 18:00 +08:00
        ("2025-07-16", 12 * 3600.0),  # a date alone is its midnight: 12 h after 12:00
        ("18:00", 6 * 3600.0),  # the first 18:00 at or after the start
        ("12:00", 0.0),  # the start itself counts
        ("11:00", 23 * 3600.0),  # already past today: tomorrow
        ("18:00:30", 6 * 3600.0 + 30.0),
        ("D+0 18:00", 6 * 3600.0),
        ("D+1 18:00", 30 * 3600.0),
        ("d+2 00:00", 36 * 3600.0),  # midnight starting the 17th: 12 h + 24 h
        ("day 1 13:15", 3600.0 + 900.0),
        ("day 2 06:30", 86400.0 - 5.5 * 3600.0),  # 18 h 30 min after the start
        ("Day 3 12:00", 2 * 86400.0),
        (datetime(2025, 7, 15, 18, 0, tzinfo=timezone.utc), 14 * 3600.0),  # from YAML: 18:00 UTC = 02:00 +08:00
    ],
)
def test_instants_in_shanghai(value, t_s):
    assert _cal("2025-07-15T12:00").instant_s(value) == t_s


def test_an_offset_of_another_zone_is_converted():
    # 12:00+02:00 is 10:00 UTC = 18:00 in Shanghai: 6 h after the start, not 4.
    assert _cal("2025-07-15T12:00").instant_s("2025-07-15T12:00:00+02:00") == 6 * 3600.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(7200, 7200.0), ("PT2H", 7200.0), ("PT1H30M", 5400.0), ("PT15M", 900.0), ("PT45S", 45.0), ("P1D", 86400.0),
     ("P1DT6H", 108000.0), ("P1W", 604800.0), ("PT0.5H", 1800.0), ("pt2h", 7200.0), ("PT1,5H", 5400.0)],
)
def test_durations(value, seconds):
    assert parse_duration_s(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [("P1M", "years and months have no fixed length"), ("P1Y", "years and months"), ("PT", "ISO 8601 duration"),
     ("2H", "ISO 8601 duration"), ("-PT1H", "ISO 8601 duration"), (True, "not true/false"), ("P1DT", "ISO 8601")],
)
def test_bad_durations(value, message):
    with pytest.raises(ValueError, match=message):
        parse_duration_s(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("25:00", "hours 0-23"),
        ("18:61", "minutes and seconds 0-59"),
        ("tomorrow", "seconds since the start"),
        ("PT2H", "is a duration, but this field is an instant"),
        ("2025-13-01T00:00", "not a valid ISO 8601 date-time"),
        ("day 0 18:00", "days are counted from 1"),
        ("D+1 evening", "give a clock time"),
        ("3600", "seconds since the start"),  # a number in quotes is not a number
        (True, "not true/false"),
    ],
)
def test_bad_instants_name_the_accepted_forms(value, message):
    with pytest.raises(ValueError, match=message):
        _cal("2025-07-15T12:00").instant_s(value)


# --- Europe/Berlin across both DST changes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "t_s"),
    [
        # Start 2025-03-29 12:00 CET (+01:00) = 11:00 UTC; on 2025-03-30 02:00 CET the clocks jump to 03:00 CEST.
        ("18:00", 6 * 3600.0),  # same day, before the change
        ("2025-03-30T01:30", 13.5 * 3600.0),  # 00:30 UTC
        ("2025-03-30T03:30", 14.5 * 3600.0),  # 01:30 UTC: two wall-clock hours after 01:30, one hour elapsed
        ("D+1 12:00", 23 * 3600.0),  # 10:00 UTC: a 23-hour day
        ("D+1 18:00", 29 * 3600.0),  # 16:00 UTC
        ("2025-03-30T12:00+02:00", 23 * 3600.0),
        ("day 3 00:00", 12 * 3600.0 + 23 * 3600.0),  # midnight of 31 March: 22:00 UTC on the 30th
    ],
)
def test_instants_across_spring_forward(value, t_s):
    assert _cal("2025-03-29T12:00", tz="Europe/Berlin").instant_s(value) == t_s


def test_instants_across_fall_back():
    # Start 2025-10-25 12:00 CEST (+02:00) = 10:00 UTC; on 2025-10-26 03:00 CEST the clocks go back to 02:00 CET.
    cal = _cal("2025-10-25T12:00", tz="Europe/Berlin")
    assert cal.instant_s("D+1 12:00") == 25 * 3600.0  # 11:00 UTC: a 25-hour day
    assert cal.instant_s("2025-10-26T02:30") == 14.5 * 3600.0  # twice that night: the first (CEST), 00:30 UTC
    assert cal.instant_s("2025-10-26T02:30+01:00") == 15.5 * 3600.0  # the second one, named by its offset


def test_a_wall_clock_time_the_clocks_skip_is_an_error():
    cal = _cal("2025-03-29T12:00", tz="Europe/Berlin")
    with pytest.raises(ValueError, match="does not exist in Europe/Berlin"):
        cal.instant_s("2025-03-30T02:30")
    with pytest.raises(ValueError, match="does not exist"):
        cal.instant_s("D+1 02:15")


def test_timestamps_count_elapsed_time_across_dst():
    cal = _cal("2025-03-30T00:00", tz="Europe/Berlin")
    stamps = cal.timestamps(np.array([0.0, 3600.0, 7200.0, 10800.0]))
    # 23:00 UTC on the 29th, then 00:00, 01:00, 02:00 UTC: local 00:00, 01:00, 03:00, 04:00
    assert [s.isoformat() for s in stamps] == ["2025-03-30T00:00:00+01:00", "2025-03-30T01:00:00+01:00",
                                               "2025-03-30T03:00:00+02:00", "2025-03-30T04:00:00+02:00"]
    assert cal.iso(7200.0) == "2025-03-30T03:00:00+02:00"


# --- a scenario without a date (clock_start_h only) --------------------------------------------------------


def test_clock_only_counts_days_of_24_hours_and_refuses_dates():
    cal = _cal(clock_start_h=17.0)
    assert not cal.date_known
    assert cal.instant_s("18:00") == 3600.0
    assert cal.instant_s("16:00") == 23 * 3600.0
    assert cal.instant_s("D+1 17:30") == 86400.0 + 1800.0
    assert cal.instant_s("day 1 23:00") == 6 * 3600.0
    with pytest.raises(ValueError, match="a date-time needs time.start; this scenario gives only time.clock_start_h"):
        cal.instant_s("2025-07-15T18:00+08:00")
    assert cal.timestamp(0.0) is None and cal.iso(3600.0) is None and cal.timestamps(np.zeros(3)) is None
    assert cal.summary()["date_known"] is False and "not the date" in cal.summary()["note"]


def test_time_config_forms(small_dict):
    t = TimeConfig(start="2025-07-15T12:00+00:00", duration_s=3600, dt_s=300)
    assert t.start == "2025-07-15T20:00:00+08:00" and t.clock_start_h == 20.0  # stored in time.timezone
    assert TimeConfig(start="2025-07-15T06:30", timezone="UTC", duration_s=3600).clock_start_h == 6.5
    assert TimeConfig(duration_s=3600).clock_start_h == 0.0 and TimeConfig(duration_s=3600).start is None
    # A dumped scenario with a start (and the clock hour it sets) reads back.
    small_dict["time"] = {"start": "2025-07-15T17:00", "duration_s": 10800, "dt_s": 300}
    sc = parse_scenario(small_dict)
    again = parse_scenario(sc.model_dump())
    assert again.time == sc.time and again.time.calendar == sc.time.calendar


@pytest.mark.parametrize(
    ("time", "message"),
    [
        ({"start": "2025-07-15T17:00", "clock_start_h": 9.0},
         "time.clock_start_h: give time.start or time.clock_start_h, not both: start 2025-07-15T17:00:00+08:00 sets "
         "the clock hour (17)"),
        ({"start": "2025-03-30T02:30", "timezone": "Europe/Berlin"},
         "time.start: 2025-03-30T02:30:00 does not exist in Europe/Berlin (the clocks skip it when daylight saving "
         "time starts)"),
        ({"start": "next tuesday"}, "time.start: must be an ISO 8601 date-time such as '2025-07-15T12:00+08:00' or "
                                    "'2025-07-15T12:00' (in time.timezone); got 'next tuesday'"),
        ({"start": 1752580800}, "time.start: must be an ISO 8601 date-time such as '2025-07-15T12:00+08:00' or "
                                "'2025-07-15T12:00' (in time.timezone)"),
        ({"timezone": "Mars/Olympus"}, "time.timezone: unknown time zone 'Mars/Olympus'; give an IANA name such as "
                                       "Asia/Shanghai or UTC"),
    ],
)
def test_bad_calendars(small_dict, time, message):
    small_dict["time"] = {"duration_s": 10800, "dt_s": 300, **time}
    with pytest.raises(ScenarioError) as info:
        parse_scenario(small_dict, "s.yaml")
    assert str(info.value) == f"s.yaml: {message}"


# --- files: YAML without quotes, TOML date-times ------------------------------------------------------------


def test_yaml_clock_times_are_not_base_60(tmp_path, small_dict):
    # PyYAML (YAML 1.1) reads an unquoted 18:00 as the integer 1080; the scenario loader keeps it a clock time.
    text = f"""
name: small
time: {{start: 2025-07-15T17:00:00+08:00, duration_s: 10800, dt_s: 300}}
grid: {{network: mv_oberrhein}}
fleets: [{{kind: basestation, name: towers, operator: towerco, n_devices: 5}}]
dr_calls:
- {{id: peak, direction: reduce, p_kw: 40, notification: 17:30, start: 18:00, end: 2025-07-15 19:30:00}}
"""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    sc = load_scenario(path)
    c = sc.dr_calls[0]
    assert sc.time.start == "2025-07-15T17:00:00+08:00"
    assert (c.notification_s, c.start_s, c.end_s) == (1800.0, 3600.0, 9000.0)


def test_toml_date_times(tmp_path):
    text = """
name = "small"
[time]
start = 2025-07-15T17:00:00+08:00
duration_s = 10800
dt_s = 300
[grid]
network = "mv_oberrhein"
[[fleets]]
kind = "basestation"
name = "towers"
operator = "towerco"
n_devices = 5
[[dr_calls]]
id = "peak"
direction = "reduce"
p_kw = 40
start = 18:00:00
end = 2025-07-15T19:00:00
"""
    path = tmp_path / "s.toml"
    path.write_text(text)
    c = load_scenario(path).dr_calls[0]
    assert (c.start_s, c.end_s) == (3600.0, 7200.0)


# --- results carry timestamps (and never an invented date) -------------------------------------------------


def _short_run(small_dict, time: dict, start):
    small_dict["time"] = {"duration_s": 10800, "dt_s": 300, **time}
    small_dict["grid"]["power_flow"] = False
    small_dict["dr_calls"] = [{"id": "peak", "direction": "reduce", "p_kw": 200, "start": start,
                               "duration": "PT30M"}]
    return run_scenario(parse_scenario(small_dict))


def test_timestamps_in_results_across_spring_forward(small_dict):
    res = _short_run(small_dict, {"start": "2025-03-30T00:00", "timezone": "Europe/Berlin"}, "D+0 01:30")
    ts = res.timeseries
    assert str(ts["timestamp"].dt.tz) == "Europe/Berlin"
    assert list(ts.columns[:2]) == ["t_s", "timestamp"]
    stamp = dict(zip(ts["t_s"], ts["timestamp"]))
    # The start is 23:00 UTC on the 29th; at 01:00 UTC (t_s 7200) the clocks jump from 02:00 CET to 03:00 CEST.
    assert stamp[6900.0] == pd.Timestamp("2025-03-30T01:55+01:00")
    assert stamp[7200.0] == pd.Timestamp("2025-03-30T03:00+02:00")
    assert (np.diff(ts["timestamp"].dt.tz_convert("UTC").astype("int64")) == 300 * 10**9).all()
    call = res.summary["calls"][0]
    # The start is 23:00 UTC on the 29th: 01:30 CET (00:30 UTC) is t_s 5400; 30 min later it is 03:00 CEST.
    assert (call["start_s"], call["start_iso"], call["end_iso"]) == (
        5400.0, "2025-03-30T01:30:00+01:00", "2025-03-30T03:00:00+02:00")
    assert res.summary["calendar"] == {"start": "2025-03-30T00:00:00+01:00", "timezone": "Europe/Berlin",
                                       "clock_start_h": 0.0, "date_known": True}


def test_no_date_no_timestamps(small_dict):
    res = _short_run(small_dict, {"clock_start_h": 17.0}, "18:30")
    assert "timestamp" not in res.timeseries
    assert res.summary["calendar"]["date_known"] is False and res.summary["calendar"]["start"] is None
    call = res.summary["calls"][0]
    assert (call["start_s"], call["start_iso"], call["end_iso"], call["notification_iso"]) == (5400.0, None, None, None)
