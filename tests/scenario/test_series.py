"""User time series (background load, PV, prices) and SimBench profiles, put on the scenario's tick.

Reference values:

* A tick's value is the mean over the tick of the step function the file
  describes (each value holds from its stamp to the next): checked against a
  brute-force integration at 1 s resolution, and for energy conservation
  (tick means x dt sum to the file's integral over the run).
* A file holding a built-in profile's value at each tick start reproduces
  that profile's run exactly (the profile is evaluated at the tick start).
* SimBench: the tick values are means of ``simbench.get_absolute_values``'s
  15-minute rows for the chosen day.

Files are generated in ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import copy
import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml

from vpp.build import build_plant
from vpp.fleets.config import SeriesFile
from vpp.profiles import get_profile
from vpp.run import run_scenario
from vpp.scenario import ScenarioError, load_scenario, parse_scenario
from vpp.scenario.series import (
    PV_PERFORMANCE_RATIO,
    StepSeries,
    interval_ends,
    read_series,
    resample_mean,
)
from vpp.scenario.schema import TimeConfig
from vpp.units import hour_of_day

# A small plant (one EV fleet, one building fleet) on CIGRE MV with PV and wind: 12 ticks of 5 min from 17:00.
_BASE = {
    "name": "series",
    "seed": 1,
    "time": {"clock_start_h": 17.0, "duration_s": 3600, "dt_s": 300},
    "grid": {"network": "cigre_mv_der"},
    "fleets": [
        {"kind": "ev", "name": "ac", "operator": "evnet", "charger": "ac_pile", "n_devices": 40},
        {"kind": "building", "name": "offices", "operator": "bldg", "n_devices": 3, "pv_share": 1.0},
    ],
}


@pytest.fixture
def base() -> dict:
    return copy.deepcopy(_BASE)


def _csv(path, **columns) -> str:
    pd.DataFrame(columns).to_csv(path, index=False)
    return str(path)


def _time(duration_s=3600.0, dt_s=300.0, clock_start_h=17.0) -> TimeConfig:
    return TimeConfig(duration_s=duration_s, dt_s=dt_s, clock_start_h=clock_start_h)


# --------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------


def _brute_mean(stamps, values, a, b, step=1.0):
    """Mean over [a, b) of the step function, summed second by second (stamps and edges on whole seconds)."""
    ends = list(stamps) + [stamps[-1] + (stamps[-1] - stamps[-2])]
    total, t = 0.0, a
    while t < b:
        i = max(k for k in range(len(stamps)) if ends[k] <= t)
        total += values[i] * step
        t += step
    return total / (b - a)


@pytest.mark.parametrize("dt_s", [60.0, 300.0, 420.0, 3600.0])
def test_resample_mean_is_the_exact_window_mean(dt_s):
    rng = np.random.default_rng(0)
    stamps = np.concatenate([[0.0], np.cumsum(rng.integers(30, 900, size=79))]) - 100.0  # irregular, from -100 s
    values = rng.uniform(0.0, 2.0, size=80)
    edges = np.arange(0.0, 6 * dt_s + 1.0, dt_s)
    assert interval_ends(stamps)[-1] >= edges[-1]
    got = resample_mean(interval_ends(stamps), values, edges)
    want = [_brute_mean(stamps, values, a, b) for a, b in zip(edges[:-1], edges[1:])]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_resample_mean_preserves_energy_and_holds_coarse_data():
    # Hourly values, 5-min ticks: each tick holds its hour's value; energy over the run is the file's.
    stamps = np.arange(0.0, 4 * 3600.0, 3600.0)
    p_mw = np.array([1.0, 3.0, 2.0, 5.0])
    edges = np.arange(0.0, 4 * 3600.0 + 1.0, 300.0)
    ticks = resample_mean(interval_ends(stamps), p_mw, edges)
    assert ticks == pytest.approx(np.repeat(p_mw, 12), rel=1e-15)
    assert ticks.sum() * 300.0 == pytest.approx((p_mw * 3600.0).sum(), rel=1e-14)
    # Fine data (1 min), coarse ticks (15 min): the mean of the 15 values.
    fine = np.random.default_rng(1).uniform(size=60)
    ticks = resample_mean(interval_ends(np.arange(60) * 60.0), fine, np.arange(0.0, 3601.0, 900.0))
    assert ticks == pytest.approx(fine.reshape(4, 15).mean(axis=1), rel=1e-13)


def test_step_series_matches_resample_mean_for_many_elements():
    rng = np.random.default_rng(2)
    ends = np.arange(-900.0, 9000.0, 900.0)
    values = rng.uniform(size=(ends.shape[0] - 1, 5))
    edges = np.arange(0.0, 7200.0 + 1.0, 600.0) + 360.0  # windows straddling the 15-min rows
    both = resample_mean(ends, values, edges)
    step = StepSeries(ends, values)
    for k in range(edges.shape[0] - 1):
        assert step.mean(edges[k], edges[k + 1]) == pytest.approx(both[k], rel=1e-13)


# --------------------------------------------------------------------------------------------
# Reading: time columns, days, zones, units, Parquet
# --------------------------------------------------------------------------------------------


def test_iso_timestamps_are_placed_by_day_and_clock_start(tmp_path):
    # 15-min prices for two days; the run starts on the second day at 17:00.
    stamps = pd.date_range("2024-07-15 00:00", periods=192, freq="15min")
    price = np.arange(192, dtype=float)
    path = _csv(tmp_path / "p.csv", time=stamps.strftime("%Y-%m-%dT%H:%M"), price_cny_per_mwh=price)
    spec = SeriesFile(path=path, column="price_cny_per_mwh", day=dt.date(2024, 7, 16))
    s = read_series(spec, "price", _time(), "prices")
    row = 96 + 17 * 4  # 2024-07-16 17:00
    assert s.unit == "cny_per_kwh"
    assert s.values == pytest.approx(price[row + np.arange(12) // 3] / 1000.0)
    # Default day: the first timestamp's (2024-07-15).
    s = read_series(SeriesFile(path=path, column="price_cny_per_mwh"), "price", _time(), "prices")
    assert s(0.0) == pytest.approx(price[17 * 4] / 1000.0)


def test_utc_offsets_need_a_timezone_and_count_elapsed_seconds(tmp_path):
    stamps = pd.date_range("2024-07-15 08:00", periods=48, freq="15min", tz="UTC")  # 16:00 in Shanghai
    path = _csv(tmp_path / "l.csv", time=stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), load_factor=np.arange(48.0))
    spec = SeriesFile(path=path, column="load_factor", timezone="Asia/Shanghai")
    s = read_series(spec, "load", _time(), "grid.load_profile")
    assert s(0.0) == pytest.approx(4.0)  # 17:00 Shanghai = 09:00 UTC = row 4
    with pytest.raises(ScenarioError, match=r"grid\.load_profile: .*l\.csv: line 2, column 'time': timestamps carry "
                                            r"a UTC offset; give the scenario clock's timezone"):
        read_series(SeriesFile(path=path, column="load_factor"), "load", _time(), "grid.load_profile")


def test_units_are_converted_and_parquet_reads_alike(tmp_path):
    t = np.arange(0.0, 3900.0, 300.0)
    df = pd.DataFrame({"t_s": t, "roof_irradiance_w_per_m2": np.full(t.shape, 500.0), "feeder_p_kw": 2000.0 + t})
    df.to_parquet(tmp_path / "d.parquet")
    pv = read_series(SeriesFile(path=str(tmp_path / "d.parquet"), column="roof_irradiance_w_per_m2"), "sgen", _time(),
                     "grid.sgen_profile")
    assert pv.unit == "factor" and pv.values == pytest.approx(np.full(12, 0.5 * PV_PERFORMANCE_RATIO))
    load = read_series(SeriesFile(path=str(tmp_path / "d.parquet"), column="feeder_p_kw"), "load", _time(),
                       "grid.load_profile")
    assert load.unit == "p_mw" and load.values == pytest.approx((2000.0 + t[:12]) / 1000.0)


# --------------------------------------------------------------------------------------------
# Wired into runs
# --------------------------------------------------------------------------------------------


def test_file_holding_the_profile_reproduces_the_builtin_run(tmp_path, base):
    """Tick-start values of residential_mv and pv_clear_sky in files give bit-identical grid results."""
    t = np.arange(0.0, 3900.0, 300.0)
    hod = hour_of_day(t, 17.0)
    _csv(tmp_path / "bg.csv", t_s=t, load_factor=get_profile("residential_mv")(hod),
         pv_fraction=get_profile("pv_clear_sky")(hod))
    ref = run_scenario(parse_scenario(base))
    base["grid"]["load_profile"] = {"path": "bg.csv", "column": "load_factor"}
    base["grid"]["sgen_profile"] = {"path": "bg.csv", "column": "pv_fraction"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(base))
    got = run_scenario(load_scenario(tmp_path / "s.yaml"))  # relative paths: the scenario file's folder
    for col in ("vm_min_pu", "vm_max_pu", "p_ext_grid_mw", "line_loading_max_percent"):
        assert got.timeseries[col].to_numpy() == pytest.approx(ref.timeseries[col].to_numpy(), rel=1e-12), col


def test_total_power_column_scales_the_nominal_loads(tmp_path, base):
    t = np.arange(0.0, 3900.0, 300.0)
    _csv(tmp_path / "load.csv", t_s=t, p_mw=np.linspace(20.0, 30.0, t.shape[0]))
    base["grid"]["load_profile"] = {"path": str(tmp_path / "load.csv"), "column": "p_mw"}
    base["grid"]["load_scale"] = 0.5
    plant = build_plant(parse_scenario(base))
    net = plant.grid.net
    nominal_mw = float((net.load.p_mw * net.load.scaling)[net.load.in_service].sum())
    for k in range(12):
        load_factor, _ = plant.background(k * 300.0)
        assert load_factor * nominal_mw == pytest.approx(0.5 * np.linspace(20.0, 30.0, 13)[k], rel=1e-12)


def test_prices_add_a_column_and_costs(tmp_path, base):
    t = np.arange(0.0, 3900.0, 300.0)
    price = np.linspace(0.3, 1.5, t.shape[0])
    _csv(tmp_path / "price.csv", t_s=t, price_cny_per_kwh=price)
    base["prices"] = {"path": str(tmp_path / "price.csv"), "column": "price_cny_per_kwh"}
    res = run_scenario(parse_scenario(base))
    ts = res.timeseries
    assert ts["price_cny_per_kwh"].to_numpy() == pytest.approx(price[:12])
    want = float((ts["p_vpp_kw"] * ts["price_cny_per_kwh"]).sum() * 300.0 / 3600.0)
    assert res.summary["prices"]["cost_cny"] == pytest.approx(want, rel=1e-12)
    assert res.summary["prices"]["cost_change_cny"] == pytest.approx(0.0, abs=1e-9)  # no call: plant = twin


def test_building_pv_follows_an_irradiance_file(tmp_path, base):
    t = np.arange(0.0, 3900.0, 60.0)  # 1-min data, 5-min ticks: the tick means
    pv = 0.5 + 0.4 * np.sin(t / 900.0)
    _csv(tmp_path / "pv.csv", t_s=t, pv_fraction=pv)
    base["fleets"][1]["irradiance_profile"] = {"path": str(tmp_path / "pv.csv"), "column": "pv_fraction"}
    plant = build_plant(parse_scenario(base))
    fleet = plant.fleets[1]
    state = fleet.initial_state()
    for k in range(12):
        fleet.advance(state, k * 300.0, 300.0)
        assert state.p_pv_kw == pytest.approx(-fleet.pv_kwp * pv[5 * k:5 * k + 5].mean(), rel=1e-12)


# --------------------------------------------------------------------------------------------
# Bad input: one line naming field, file, line and column
# --------------------------------------------------------------------------------------------

_T = np.arange(0.0, 3900.0, 300.0)


@pytest.mark.parametrize(
    ("columns", "spec", "message"),
    [
        ({"t_s": _T, "load_factor": _T * 0 + 1}, {"column": "feeder_load_factor"},
         r"missing column 'feeder_load_factor'; the file has: 't_s', 'load_factor'"),
        ({"when": _T, "load_factor": _T * 0 + 1}, {"column": "load_factor"},
         r"no time column: give 't_s' .* or 'time' .*; the file has: 'when', 'load_factor'"),
        ({"time": ["2024-07-15T17:00", "2024-07-15T17:30", "2024-13-01T18:00"], "load_factor": [1.0, 1.0, 1.0]},
         {"column": "load_factor"}, r"line 4, column 'time': cannot parse '2024-13-01T18:00' as a timestamp"),
        ({"t_s": [0.0, 1800.0, 1800.0, 3600.0], "load_factor": [1.0] * 4}, {"column": "load_factor"},
         r"line 4, column 't_s': time repeats \(t_s=1800 after 1800\); times must increase"),
        ({"t_s": [0.0, 1200.0, 2400.0], "load_factor": [1.0] * 3}, {"column": "load_factor"},
         r"column 't_s': covers t_s 0\.\.3600 s but the run needs 0\.\.7200 s"),
        ({"t_s": _T, "load_factor": np.where(_T == 900.0, -0.1, 1.0)}, {"column": "load_factor"},
         r"line 5, column 'load_factor': -0\.1 is below 0"),
        ({"t_s": _T, "load_factor": ["1.0"] * 6 + ["n/a"] + ["1.0"] * 6}, {"column": "load_factor"},
         r"line 8, column 'load_factor': 'n/a' is not a finite number"),
    ],
    ids=["missing_column", "no_time_column", "bad_timestamp", "time_repeats", "short_range", "negative", "not_number"],
)
def test_bad_series_files_are_one_line_errors(tmp_path, columns, spec, message):
    path = _csv(tmp_path / "bad.csv", **columns)
    with pytest.raises(ScenarioError, match=r"^grid\.load_profile: .*bad\.csv: " + message) as err:
        read_series(SeriesFile(path=path, **spec), "load", _time(duration_s=7200.0 if "covers" in message else 3600.0),
                    "grid.load_profile")
    assert "\n" not in str(err.value)


def test_a_missing_file_stops_the_cli_with_exit_2(tmp_path, base):
    import subprocess
    import sys

    base["grid"]["load_profile"] = {"path": "missing.csv", "column": "load_factor"}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(base))
    proc = subprocess.run([sys.executable, "-m", "vpp.cli", "validate", str(tmp_path / "a.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"grid.load_profile: {tmp_path}/missing.csv: cannot read (No such file or directory)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unknown_file_type_is_refused(tmp_path, base):
    (tmp_path / "notes.txt").write_text("t_s,load_factor\n0,1\n")
    base["grid"]["sgen_profile"] = {"path": str(tmp_path / "notes.txt"), "column": "sgen_factor"}
    with pytest.raises(ScenarioError, match=r"^grid\.sgen_profile: .*notes\.txt: unknown file type '\.txt'; "
                                            r"allowed: \.csv, \.parquet, \.pq$"):
        build_plant(parse_scenario(base))


def test_schema_checks_units_and_simbench_day(base):
    base["grid"]["load_profile"] = {"path": "x.csv", "column": "load"}
    with pytest.raises(ScenarioError, match=r"grid\.load_profile: column 'load' does not end with a unit; "
                                            r"allowed: load_factor, p_mw, p_kw"):
        parse_scenario(base)
    base["grid"]["load_profile"] = "simbench"
    with pytest.raises(ScenarioError, match=r"load_profile 'simbench' needs simbench_day"):
        parse_scenario(base)
    base["grid"]["load_profile"] = "evening"
    with pytest.raises(ScenarioError, match=r"unknown profile 'evening'; allowed: .*residential_mv.*simbench, or a "
                                            r"mapping \{path, column\}"):
        parse_scenario(base)


# --------------------------------------------------------------------------------------------
# SimBench profiles (optional extra)
# --------------------------------------------------------------------------------------------


def test_simbench_profiles_are_the_days_quarter_hours_resampled(base):
    sb = pytest.importorskip("simbench")
    from vpp.grid.model import GridModel

    base["grid"] = {"network": "1-MV-urban--0-sw", "source": "simbench", "simbench_day": 196}
    # 10-min ticks from 17:06: the first covers 9 min of the 17:00 row and 1 min of the 17:15 row.
    base["time"] = {"clock_start_h": 17.1, "duration_s": 3600, "dt_s": 600}
    scenario = parse_scenario(base)
    plant = build_plant(scenario)
    absolute = sb.get_absolute_values(plant.grid.net, profiles_instead_of_study_cases=True)
    load_p = absolute[("load", "p_mw")].to_numpy()
    sgen_p = absolute[("sgen", "p_mw")].to_numpy()
    row = 195 * 96 + 17 * 4
    load_factor, sgen_factor, lp, lq, sp = plant.background(0.0)
    assert (load_factor, sgen_factor) == (1.0, 1.0)
    assert lp == pytest.approx(0.9 * load_p[row] + 0.1 * load_p[row + 1], rel=1e-12)
    assert sp == pytest.approx(0.9 * sgen_p[row] + 0.1 * sgen_p[row + 1], rel=1e-12, abs=1e-15)
    # The grid model takes them per element: one power flow against runpp on a copy with those values set.
    import pandapower as pp

    grid = GridModel(plant.grid.net, solver="pandapower")
    state = grid.solve(np.zeros(grid.n_bus), *plant.background(0.0))
    net = copy.deepcopy(plant.grid.net)
    net.load["p_mw"], net.load["q_mvar"], net.sgen["p_mw"] = lp, lq, sp
    pp.runpp(net)
    assert state.converged
    assert state.vm_pu == pytest.approx(net.res_bus.vm_pu.to_numpy(), abs=1e-9)
    assert state.p_ext_grid_mw == pytest.approx(float(net.res_ext_grid.p_mw.sum()), abs=1e-9)
