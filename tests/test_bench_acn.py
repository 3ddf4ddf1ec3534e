"""ACN-Sim as a baseline (vpp.bench_acn): the same sessions, converted faithfully, deliver vpp's energy.

Skipped without acnportal (``pip install 'vpp[acn]'``). No assertion is about time.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("acnportal")

from vpp import bench, bench_acn  # noqa: E402

N_TICKS = bench.DAY_TICKS  # a whole day: most sessions start and finish inside it
DT_H = bench.DT_S / 3600.0


@pytest.fixture
def day():
    """40 AC piles charged uncontrolled by vpp for a day: (fleet, vpp's grid energy [kWh], sessions cut short)."""
    from vpp.build import build_plant

    fleet = build_plant(bench._ac_scenario(40, N_TICKS)).fleets[0]
    s = fleet.initial_state()
    for k in range(N_TICKS):
        fleet.step_default(s, k * bench.DT_S, bench.DT_S)
    summary = fleet.summary(s)
    n_cut = summary["n_sessions_unmet"] + summary["n_sessions_plugged_at_end"]
    return fleet, s.e_grid_kwh, n_cut


def test_sessions_convert_to_whole_periods_without_overlap(day):
    fleet, _, _ = day
    ses = bench_acn.acn_sessions(fleet, N_TICKS, bench.DT_S)
    assert len(ses["charger"]) + ses["n_dropped"] == fleet.sessions.n_sessions
    assert np.all(ses["arrival"] >= 0) and np.all(ses["departure"] <= N_TICKS)
    assert np.all(ses["departure"] > ses["arrival"])
    # A charger's next vehicle never plugs in before the previous one has left.
    same = ses["charger"][1:] == ses["charger"][:-1]
    assert np.all(ses["arrival"][1:][same] >= ses["departure"][:-1][same])
    # Grid-side request: what the vehicle stores to reach its target, over the charging efficiency.
    assert np.all(ses["requested_kwh"] >= 0.0)
    assert np.all(ses["init_kwh"] <= ses["capacity_kwh"])


def test_acn_charges_the_same_sessions_to_vpp_energy(day):
    fleet, e_vpp_kwh, n_cut = day
    unc = bench_acn.acn_run(fleet, N_TICKS, bench.DT_S, "uncontrolled")
    edf = bench_acn.acn_run(fleet, N_TICKS, bench.DT_S, "edf")
    assert e_vpp_kwh > 300.0  # a day with real charging in it
    assert unc["n_sessions"] == edf["n_sessions"] > 0
    # EDF with no binding constraint caps each last period at the remaining demand: no overshoot.
    assert edf["e_over_request_kwh"] == pytest.approx(0.0, abs=1e-9)
    # Uncontrolled gives full pilot to the end of the period a vehicle finishes in; without that overshoot it
    # is EDF. Tolerance: ACN-Sim calls a vehicle done within 1e-3 kWh of its request (EV.fully_charged).
    assert unc["e_over_request_kwh"] > 0.0
    assert unc["e_grid_kwh"] - unc["e_over_request_kwh"] == pytest.approx(edf["e_grid_kwh"],
                                                                          abs=1e-3 * unc["n_sessions"])
    # EDF against vpp. A session that reaches its target delivers exactly its request in both (same ODE,
    # same request). Only sessions cut short by departure or the end of the day can differ: ACN-Sim plugs
    # in and out at whole periods (rounded, at most half a tick at each end, so at most one tick at the
    # 7 kW rating per session) and its taper ends at 0 rather than 5 % at full (only above 80 % SoC).
    p_rated_kw = float(fleet.p_rated_kw.max())
    assert n_cut > 0
    assert abs(edf["e_grid_kwh"] - e_vpp_kwh) <= n_cut * p_rated_kw * DT_H
    # On this instance the difference is far smaller than that bound: 0.1 % of the day's energy.
    assert edf["e_grid_kwh"] == pytest.approx(e_vpp_kwh, rel=1e-3)


def test_acn_baseline_rows_in_run_bench_terms():
    lines = []
    acn = bench.acn_baseline([20], 12, 60.0, repeats=1, say=lines.append)
    assert acn["installed"] and acn["status"].startswith("acnportal ")
    (row,) = acn["rows"]
    for a in bench_acn.ALGORITHMS:
        r = row[a]
        assert r["device_ticks_per_s"] > 0 and r["ratio_run"] > 0 and r["ratio_fleet"] > 0
        assert r["e_rel_diff_vs_vpp"] == pytest.approx(r["e_grid_kwh"] / row["e_grid_vpp_kwh"] - 1.0)
    assert lines and lines[0].startswith("ACN-Sim n=20")
    assert "ACN-Sim baseline (acnportal" in bench.format_table(
        {"machine": bench.machine_info(), "settings": {"strategies": ["pro_rata"], "kinds": []}, "latency": [],
         "throughput": {k: {"n": 1, "ticks": 1, "device_ticks_per_s": 1.0, "run_s": 1.0, "build_s": 1.0}
                        for k in ("no_grid", "grid")},
         "baseline_simpy": {"ticks": 12, "dt_s": bench.DT_S, "rows": [], "headline": None},
         "baseline_acn": acn, "wall_s": 0.0})


def test_unknown_algorithm_lists_the_valid_ones(day):
    fleet, _, _ = day
    with pytest.raises(ValueError, match="uncontrolled, edf"):
        bench_acn.acn_run(fleet, 4, bench.DT_S, "fcfs")
