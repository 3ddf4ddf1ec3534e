"""Size checks before allocation: the memory estimate bounds what a run really allocates, and runs that
cannot fit fail at validation, quickly and without allocating."""

from __future__ import annotations

import gc
import time
import tracemalloc

import pytest

from vpp.scenario import ScenarioError, parse_scenario
from vpp.scenario import limits


def _scenario(fleets, duration_s=600.0, **extra):
    return {
        "name": "lim", "seed": 1,
        "time": {"clock_start_h": 17.0, "duration_s": duration_s, "dt_s": 300},
        "grid": {"network": "mv_oberrhein", "power_flow": False},
        "fleets": fleets,
        "dr_calls": [{"id": "c", "direction": "reduce", "p_kw": 100, "start_s": 0, "end_s": duration_s}],
        "output": {"bus_timeseries": False},
        **extra,
    }


def _traced_peak_bytes(fn) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def grid():
    from vpp.build import build_grid

    return build_grid(parse_scenario(_scenario([{"kind": "basestation", "name": "f", "operator": "o", "n_devices": 1}])))


@pytest.mark.parametrize(
    ("fleet", "duration_s"),
    [
        ({"kind": "ev", "charger": "ac_pile"}, 900.0),
        ({"kind": "ev", "charger": "dc_fast"}, 1800.0),  # 7 sessions a day: a wider session table
        ({"kind": "basestation"}, 900.0),
        ({"kind": "building", "pv_share": 0.5, "battery_share": 0.5}, 900.0),
    ],
    ids=["ev-ac", "ev-dc", "basestation", "building"],
)
def test_fleet_estimate_bounds_the_measured_peak(monkeypatch, grid, fleet, duration_s):
    # Peak traced memory of a whole run (twin on) with n devices, less the same run with 10 devices,
    # against the fleet's estimate: an upper bound, within a factor of three. The network is built
    # once, outside the traced runs (pandapower's allocations are slow to trace and not per device).
    import copy

    import vpp.build
    from vpp.run import run_scenario

    n = 10_000

    def run(n_devices):
        data = _scenario([{**fleet, "name": "f", "operator": "o", "n_devices": n_devices}], duration_s)
        data["time"]["dt_s"] = 900
        sc = parse_scenario(data)
        net = copy.deepcopy(grid)
        monkeypatch.setattr(vpp.build, "build_grid", lambda scenario: net)
        return sc, _traced_peak_bytes(lambda: run_scenario(sc))

    run(10)  # imports and caches out of the way
    _, small = run(10)
    sc, big = run(n)
    measured = big - small
    estimated = sc.fleets[0].estimate_bytes(sc.time.duration_s, sc.time.clock_start_h)
    print(f"{fleet}: measured {measured / n:.0f} B, estimated {estimated / n:.0f} B per device")
    assert measured <= estimated <= 3 * measured, (measured / n, estimated / n)


def test_a_fleet_of_10_to_the_12_fails_fast_without_allocating():
    data = _scenario([{"kind": "ev", "name": "f", "operator": "o", "n_devices": 10**12}])
    t0 = time.perf_counter()
    peak = _traced_peak_bytes(lambda: pytest.raises(ScenarioError, parse_scenario, data, "s.yaml"))
    assert time.perf_counter() - t0 < 1.0
    assert peak < 5 * 2**20
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "s.yaml")
    assert str(info.value) == "s.yaml: fleets[0].n_devices: must be a whole number in [0, 100000000] (got 1000000000000)"


def test_a_run_that_cannot_fit_names_the_fields_to_reduce():
    data = _scenario([{"kind": "ev", "name": "ac", "operator": "o", "n_devices": 10_000_000},
                      {"kind": "basestation", "name": "t", "operator": "o", "n_devices": 1000}],
                     duration_s=7 * 86_400.0)
    sc = parse_scenario(data, check_resources=False)
    est = limits.estimate(sc)
    assert est.parts[0][0] == "fleets[0].n_devices"
    t0 = time.perf_counter()
    problems = limits.resource_problems(sc, available_bytes=8 * 10**9)
    assert time.perf_counter() - t0 < 0.1
    assert len(problems) == 1
    line = problems[0]
    assert line.startswith("fleets[0].n_devices: the run would need about ")
    assert "fleet 'ac', 10,000,000 devices: " in line
    assert line.endswith("more than the 6.4 GB it may use here (80% of 8 GB available); reduce fleets[0].n_devices")
    assert limits.resource_problems(sc, available_bytes=10**15) == []


def test_the_check_runs_in_parse_scenario(monkeypatch):
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 10**9)
    data = _scenario([{"kind": "ev", "name": "ac", "operator": "o", "n_devices": 2_000_000}])
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "s.yaml")
    assert str(info.value).startswith("s.yaml: fleets[0].n_devices: the run would need about ")
    parse_scenario(data, "s.yaml", check_resources=False)


def test_per_tick_results_and_bus_series_count():
    one_year_1s = _scenario([{"kind": "basestation", "name": "t", "operator": "o", "n_devices": 10}],
                            duration_s=366 * 86_400.0)
    one_year_1s["time"]["dt_s"] = 1
    one_year_1s["output"] = {"bus_timeseries": True}
    one_year_1s["grid"]["power_flow"] = True
    sc = parse_scenario(one_year_1s, check_resources=False)
    est = limits.estimate(sc)
    assert est.parts[0][0] == "output.bus_timeseries"
    assert est.seconds > limits.MAX_RUN_S
    problems = limits.resource_problems(sc, available_bytes=10**15)
    assert problems == [
        "time.duration_s: the run would take about 18.8 days (31,622,400 ticks, 10 devices), more than the "
        "7 days allowed; shorten time.duration_s, raise time.dt_s or reduce the fleets' n_devices"
    ]


def test_available_memory_is_known_here():
    avail = limits.available_memory_bytes()
    assert avail is None or avail > 0


def test_column_and_network_tables_match_the_code():
    from vpp.grid.networks import PANDAPOWER_NETWORKS
    from vpp.metrics.columns import GRID, PLANT

    assert limits._FIXED_COLUMNS >= len(PLANT) + len(GRID) + 1
    assert set(limits.NETWORK_BUSES) == set(PANDAPOWER_NETWORKS)
