"""EV sessions replayed from a file (ACN-Data format or plain CSV), per fleet.

Reference values:

* Uncontrolled charging of a replayed session follows
  ``dE/dt = eta * min(p_rated, p_accept * f(E / cap))`` from plug-in until the
  target ``E0 + need`` or departure (../shared/DOMAIN.md: "Session power is the
  lower of the pile rating and the vehicle's acceptance ... Acceptance tapers
  with SoC"). :func:`uncontrolled_reference_kwh` (tests/helpers/ev_reference.py)
  integrates it session by session in plain Python (no numpy, no fleet
  kernels): classical RK4 with 1 s steps, which is within ~1e-6 kWh of the
  exact solution (tests/fleets/test_ev.py checks that loop against closed forms). Delivered and unmet energy per session
  must match a vpp run at default power (no calls) within REF_TOL_KWH.
* ACN-Data's ``kWhDelivered`` is metered at the charger: a session with time
  enough replays to exactly that grid energy.

Files are generated in ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
from ev_reference import uncontrolled_reference_kwh  # tests/helpers (pytest pythonpath)

from vpp.build import build_plant, plant_warnings
from vpp.fleets.parameters import CHARGER_PARAMETERS
from vpp.run import run_scenario
from vpp.scenario import ScenarioError, parse_scenario

REF_TOL_KWH = 1e-5  # per session [kWh]: RK4 at 1 s steps is within ~1e-6 kWh of the exact ODE
E_TOL_KWH = 1e-6  # the fleet's own threshold for "unmet" [kWh]

_BASE = {
    "name": "replay",
    "seed": 5,
    "time": {"clock_start_h": 8.0, "duration_s": 36000, "dt_s": 60},
    "grid": {"network": "cigre_mv", "power_flow": False},
    "fleets": [{"kind": "ev", "name": "acn", "operator": "evnet", "charger": "ac_pile", "n_devices": 6}],
}


@pytest.fixture
def base() -> dict:
    return copy.deepcopy(_BASE)


def _plain_sessions(rng, n_chargers, per_charger, dt_s, with_vehicle):
    """Sessions on whole seconds, mid-tick, at least two ticks apart on a charger (no same-tick queueing)."""
    p = CHARGER_PARAMETERS["ac_pile"]
    rows = []
    for j in range(n_chargers):
        t = float(rng.integers(0, 3600))
        for _ in range(per_charger):
            stay = float(rng.integers(1800, 3 * 3600))
            cap = float(rng.uniform(*p.cap_kwh))
            soc = float(rng.uniform(0.1, 0.85))  # some start near or on the taper (above 80 %)
            need = float(rng.uniform(0.05, 0.95)) * (1.0 - soc) * cap  # some beyond what the stay allows
            row = {"arrival_s": t, "departure_s": t + stay, "e_need_kwh": round(need, 3), "charger": j}
            if with_vehicle:
                row.update(cap_kwh=round(cap, 3), soc_arrival=round(soc, 4),
                           p_accept_kw=round(float(rng.uniform(6.6, 11.0)), 3))
            rows.append(row)
            t += stay + 2 * dt_s + float(rng.integers(0, 1800))
    return pd.DataFrame(rows)


def _departures_at_default_power(fleet, n_ticks, dt_s):
    """Step ``fleet`` at default power; per departed session ``(charger, arrival_s)``: (stored, missing) [kWh]."""
    state = fleet.initial_state()
    out = {}
    for i in range(n_ticks + 1):
        t_s = i * dt_s
        leaving = np.flatnonzero(state.plugged & (state.t_departure_s <= t_s))
        for j in leaving:
            out[(int(j), float(state.t_arrival_s[j]))] = (float(state.e_kwh[j]),
                                                           float(state.e_target_kwh[j] - state.e_kwh[j]))
        if i < n_ticks:
            fleet.step_default(state, t_s, dt_s)
    return out


@pytest.mark.parametrize("with_vehicle", [True, False], ids=["vehicle_in_file", "vehicle_drawn"])
def test_uncontrolled_replay_matches_a_plain_reference_loop(tmp_path, base, with_vehicle):
    dt_s = 60.0
    df = _plain_sessions(np.random.default_rng(11), 6, 2, dt_s, with_vehicle)
    df.to_csv(tmp_path / "sessions.csv", index=False)
    base["fleets"][0]["sessions_file"] = str(tmp_path / "sessions.csv")
    scenario = parse_scenario(base)
    n_ticks = scenario.time.n_ticks
    assert df.departure_s.max() < scenario.time.duration_s  # every session ends inside the run

    fleet = build_plant(scenario).fleets[0]
    tab = fleet.sessions.dense()
    knots = (fleet.taper_soc, fleet.taper_frac)
    departed = _departures_at_default_power(fleet, n_ticks, dt_s)
    assert len(departed) == len(df)
    ref_delivered = ref_unmet = 0.0
    n_unmet = n_tapered = 0
    for _, row in df.iterrows():
        j = int(row.charger)
        k = int(np.flatnonzero(tab.arrival_s[j] == row.arrival_s)[0])
        cap, e0, p_accept = float(tab.cap_kwh[j, k]), float(tab.e_arrival_kwh[j, k]), float(tab.p_accept_kw[j, k])
        if with_vehicle:  # the file's vehicle, as given
            assert (cap, e0 / cap, p_accept) == pytest.approx((row.cap_kwh, row.soc_arrival, row.p_accept_kw))
        need = float(row.e_need_kwh)
        assert tab.e_need_kwh[j, k] == pytest.approx(need, rel=1e-12)  # plain format: battery side, as given
        delivered = uncontrolled_reference_kwh(e0, need, cap, fleet.p_rated_kw[j], p_accept, fleet.eta, knots,
                                   row.departure_s - row.arrival_s)
        e_end, missing = departed[(j, float(row.arrival_s))]
        assert e_end - e0 == pytest.approx(delivered, abs=REF_TOL_KWH)
        assert missing == pytest.approx(need - delivered, abs=REF_TOL_KWH)
        ref_delivered += delivered
        ref_unmet += need - delivered
        n_unmet += need - delivered > E_TOL_KWH
        n_tapered += e_end / cap > fleet.taper_soc[1]  # ended on the falling part of the curve (above 80 %)
    assert 0 < n_unmet < len(df)  # both outcomes exercised
    assert n_tapered > 0 or not with_vehicle  # the file's vehicles reach the taper; drawn ones (SoC <= 0.6) may not

    # The same figures from a whole run at default power (no calls).
    res = run_scenario(scenario).summary["fleets"]["acn"]
    tol = REF_TOL_KWH * len(df)
    assert res["n_sessions_arrived"] == res["n_sessions_departed"] == len(df)
    assert res["n_sessions_unmet"] == n_unmet
    assert res["e_to_vehicles_kwh"] == pytest.approx(ref_delivered, abs=tol)
    assert res["e_unmet_kwh"] == pytest.approx(ref_unmet, abs=tol)
    assert res["e_grid_kwh"] == pytest.approx(ref_delivered / fleet.eta, abs=tol)


def test_session_under_way_at_the_start_keeps_what_it_charged_before(tmp_path, base):
    df = pd.DataFrame({"arrival_s": [-5400.0, 600.0], "departure_s": [5400.0, 9000.0], "e_need_kwh": [30.0, 12.0],
                       "charger": [0, 1], "cap_kwh": [60.0, 60.0], "soc_arrival": [0.2, 0.3],
                       "p_accept_kw": [7.4, 11.0]})
    df.to_csv(tmp_path / "s.csv", index=False)
    base["fleets"][0]["sessions_file"] = str(tmp_path / "s.csv")
    fleet = build_plant(parse_scenario(base)).fleets[0]
    knots = (fleet.taper_soc, fleet.taper_frac)
    departed = _departures_at_default_power(fleet, 200, 60.0)
    e_end, missing = departed[(0, -5400.0)]
    whole = uncontrolled_reference_kwh(12.0, 30.0, 60.0, 7.0, 7.4, fleet.eta, knots, 10800.0)  # from its real arrival
    assert e_end - 12.0 == pytest.approx(whole, abs=REF_TOL_KWH)
    assert missing == pytest.approx(30.0 - whole, abs=REF_TOL_KWH)


# --------------------------------------------------------------------------------------------
# ACN-Data format
# --------------------------------------------------------------------------------------------


def _acn(rows, tz="-07:00"):
    """ACN-Data-like rows ``(connect, disconnect, done, kwh, station)`` with local times 'HH:MM' on 2019-07-15."""
    def stamp(hhmm):
        return "" if hhmm is None else f"2019-07-15T{hhmm}:00{tz}"
    return pd.DataFrame({
        "_id": [f"s{i}" for i in range(len(rows))],
        "connectionTime": [stamp(r[0]) for r in rows],
        "disconnectTime": [stamp(r[1]) for r in rows],
        "doneChargingTime": [stamp(r[2]) for r in rows],
        "kWhDelivered": [r[3] for r in rows],
        "stationID": [r[4] for r in rows],
        "siteID": "0002",
    })


_ACN_ROWS = [
    ("08:10", "17:02", "11:40", 14.2, "2-39-91-441"),
    ("09:31", "12:55", "12:01", 6.5, "2-39-78-362"),
    ("13:20", "18:45", None, 9.8, "2-39-78-362"),
    ("10:05", "16:30", "13:10", 18.7, "2-39-123-559"),
]


def test_acn_sessions_replay_their_metered_energy_on_their_stations(tmp_path, base):
    _acn(_ACN_ROWS).to_csv(tmp_path / "acn.csv", index=False)
    base["fleets"][0].update(sessions_file=str(tmp_path / "acn.csv"), sessions_timezone="America/Los_Angeles",
                             n_devices=4)
    scenario = parse_scenario(base)
    plant = build_plant(scenario)
    tab = plant.fleets[0].sessions.dense()
    # Stations in sorted order ("2-39-123-559" < "2-39-78-362" < "2-39-91-441") are chargers 0, 1, 2;
    # charger 3 has none (a note says so). t_s = 0 is 08:00 Pacific on the first connection's day.
    assert tab.arrival_s[0, 0] == (2 * 60 + 5) * 60.0
    assert list(tab.arrival_s[1, :2]) == [(1 * 60 + 31) * 60.0, (5 * 60 + 20) * 60.0]
    assert tab.arrival_s[2, 0] == 10 * 60.0 and np.isinf(tab.arrival_s[3]).all()
    assert any("3 stations on 4 chargers" in w for w in plant_warnings(plant))
    p = CHARGER_PARAMETERS["ac_pile"]
    real = np.isfinite(tab.arrival_s)
    assert (tab.cap_kwh[real] >= p.cap_kwh[0]).all() and (tab.cap_kwh[real] <= p.cap_kwh[1]).all()
    res = run_scenario(scenario).summary["fleets"]["acn"]
    assert res["n_sessions_unmet"] == 0
    # Metered at the charger: the vehicle's need is kWhDelivered x eta, so the grid energy is kWhDelivered.
    assert res["e_grid_kwh"] == pytest.approx(sum(r[3] for r in _ACN_ROWS), rel=1e-9)


def test_acn_without_stations_takes_the_charger_free_longest(tmp_path, base):
    df = _acn(_ACN_ROWS).drop(columns="stationID")
    df.to_parquet(tmp_path / "acn.parquet")
    base["fleets"][0].update(sessions_file=str(tmp_path / "acn.parquet"), sessions_timezone="America/Los_Angeles",
                             n_devices=3)
    tab = build_plant(parse_scenario(base)).fleets[0].sessions.dense()
    # 08:10 -> 0; 09:31 -> 1; 10:05 -> 2; 13:20: charger 1 is free since 12:55 (0 and 2 are busy).
    assert tab.arrival_s[1, 1] == pytest.approx((5 * 60 + 20) * 60.0)
    base["fleets"][0]["n_devices"] = 2
    with pytest.raises(ScenarioError, match=r"acn\.parquet: row 4, column 'connectionTime': more than 2 vehicles "
                                            r"plugged in at once \(t_s=7500\)"):
        build_plant(parse_scenario(base))


def test_sessions_outside_the_run_are_dropped_with_a_warning(tmp_path, base):
    rows = _ACN_ROWS + [("06:00", "07:30", None, 3.0, "2-39-91-441"), ("19:00", "20:00", None, 2.0, "2-39-91-441")]
    _acn(rows).to_csv(tmp_path / "acn.csv", index=False)
    base["time"]["duration_s"] = 10 * 3600.0 + 60 * 60.0  # to 19:00: the 19:00 arrival is at the end
    base["fleets"][0].update(sessions_file=str(tmp_path / "acn.csv"), sessions_timezone="America/Los_Angeles")
    plant = build_plant(parse_scenario(base))
    assert plant.fleets[0].sessions.n_sessions == 4
    assert "fleets[0].sessions_file: 2 of 6 sessions lie outside the run (t_s 0..39600 s) and were dropped" in \
        plant_warnings(plant)


# --------------------------------------------------------------------------------------------
# Bad input: one line naming field, file, line and column
# --------------------------------------------------------------------------------------------

_PLAIN = {"arrival_s": [0.0, 500.0, 100.0], "departure_s": [3600.0, 7200.0, 4000.0], "e_need_kwh": [5.0, 6.0, 7.0],
          "charger": [0, 1, 2]}


def _edit(frame: dict, **changes) -> pd.DataFrame:
    df = pd.DataFrame(frame)
    for key, value in changes.items():
        col, row = key.rsplit("__", 1)
        df[col] = df[col].astype(object)
        df.loc[int(row), col] = value
    return df


@pytest.mark.parametrize(
    ("frame", "fleet", "message"),
    [
        (_edit(_PLAIN, departure_s__1=100.0), {},
         r"line 3, column 'departure_s': departure \(departure_s, t_s=100\) is not after the arrival "
         r"\(arrival_s, t_s=500\)"),
        (pd.DataFrame(_PLAIN).drop(columns="charger"), {},
         r"missing columns: ACN-Data format needs connectionTime, disconnectTime, kWhDelivered; plain format needs "
         r"charger; the file has: 'arrival_s', 'departure_s', 'e_need_kwh'"),
        (_edit(_PLAIN, charger__2=7), {},
         r"line 4, column 'charger': charger 7 does not exist: the fleet has 6 chargers \(0\.\.5\)"),
        (_edit(_PLAIN, charger__2=0), {},
         r"line 4, column 'arrival_s': arrives at t_s=100 on charger 0 while the session of line 2 is there until "
         r"t_s=3600; sessions on one charger must not overlap"),
        (_edit(_PLAIN, e_need_kwh__0="lots"), {}, r"line 2, column 'e_need_kwh': 'lots' is not a finite number"),
        (_edit(_PLAIN, arrival_s__0=40000.0, arrival_s__1=50000.0, arrival_s__2=60000.0,
               departure_s__0=41000.0, departure_s__1=51000.0, departure_s__2=61000.0), {},
         r"no session overlaps the run \(t_s 0\.\.36000 s\); check arrival_s"),
        (_acn(_ACN_ROWS).assign(disconnectTime=["2019-07-15T17:02:00-07:00", "soon", "x", "y"]),
         {"sessions_timezone": "America/Los_Angeles"},
         r"line 3, column 'disconnectTime': cannot parse 'soon' as a timestamp"),
        (_acn(_ACN_ROWS), {}, r"line 2, column 'connectionTime': timestamps carry a UTC offset; give the scenario "
                              r"clock's timezone"),
        (_acn(_ACN_ROWS), {"sessions_timezone": "America/Los_Angeles", "n_devices": 2},
         r"column 'stationID': 3 stations but the fleet has 2 chargers; each station is one charger: set n_devices "
         r"to at least 3"),
        (_acn(_ACN_ROWS).assign(doneChargingTime=["2019-07-15T08:00:00-07:00", "", "", ""]),
         {"sessions_timezone": "America/Los_Angeles"},
         r"line 2, column 'doneChargingTime': doneChargingTime is before connectionTime"),
        (_acn(_ACN_ROWS).assign(kWhDelivered=[1.0, -2.0, 1.0, 1.0]), {"sessions_timezone": "America/Los_Angeles"},
         r"line 3, column 'kWhDelivered': -2 is below 0"),
    ],
    ids=["departure_before_arrival", "missing_column", "charger_out_of_range", "overlap", "not_a_number",
         "outside_run", "unparseable_time", "offset_without_zone", "too_many_stations", "done_before_connect",
         "negative_energy"],
)
def test_bad_session_files_are_one_line_errors(tmp_path, base, frame, fleet, message):
    frame.to_csv(tmp_path / "bad.csv", index=False)
    base["fleets"][0].update(sessions_file=str(tmp_path / "bad.csv"), **fleet)
    with pytest.raises(ScenarioError, match=r"^fleets\[0\]\.sessions_file: .*bad\.csv: " + message) as err:
        build_plant(parse_scenario(base))
    assert "\n" not in str(err.value)


def test_schema_refuses_draw_settings_with_a_file_and_file_settings_without(base):
    base["fleets"][0].update(sessions_file="s.csv", sessions_per_day=3.0)
    with pytest.raises(ScenarioError, match=r"fleets\[0\]: sessions_per_day only shape drawn sessions; with "
                                            r"sessions_file the sessions come from the file: remove them"):
        parse_scenario(base)
    base["fleets"][0] = {**_BASE["fleets"][0], "sessions_timezone": "Mars/Olympus"}
    with pytest.raises(ScenarioError, match=r"fleets\[0\]\.sessions_timezone: unknown time zone 'Mars/Olympus'"):
        parse_scenario(base)
    base["fleets"][0] = {**_BASE["fleets"][0], "sessions_day": "2019-07-15"}
    with pytest.raises(ScenarioError, match=r"fleets\[0\]: sessions_day applies only with sessions_file"):
        parse_scenario(base)


def test_replay_is_deterministic_and_leaves_drawing_fleets_alone(tmp_path, base):
    _acn(_ACN_ROWS).to_csv(tmp_path / "acn.csv", index=False)
    base["fleets"].append({"kind": "ev", "name": "drawn", "operator": "evnet", "charger": "dc_fast", "n_devices": 3})
    drawn_alone = build_plant(parse_scenario(base)).fleets[1].sessions
    base["fleets"][0].update(sessions_file=str(tmp_path / "acn.csv"), sessions_timezone="America/Los_Angeles")
    a, b = (build_plant(parse_scenario(base)) for _ in range(2))
    assert np.array_equal(a.fleets[0].sessions.cap_kwh, b.fleets[0].sessions.cap_kwh)
    # Each fleet draws from its own child generator: replaying one leaves the other's draws unchanged.
    assert np.array_equal(a.fleets[1].sessions.arrival_s, drawn_alone.arrival_s)
    assert math.isfinite(float(a.fleets[0].sessions.e_need_kwh[np.isfinite(a.fleets[0].sessions.arrival_s)].sum()))
