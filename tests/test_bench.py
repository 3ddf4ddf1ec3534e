"""`vpp bench` at tiny sizes: it runs, it reports what it promises, and its SimPy baseline is the same physics.

No assertion here is about time: these check structure and energy only.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from vpp import bench
from vpp.dispatch import ALLOCATORS


@pytest.fixture
def grid():
    from vpp.build import build_grid

    return build_grid(bench._scenario(bench.KIND_SPECS["basestation"](1), 4, calls=False))


def test_run_bench_tiny_has_the_promised_keys(tmp_path):
    res = bench.run_bench(sizes=[200], repeats=1, kinds=["ev_ac_pile", "mix"], throughput_n=100,
                          throughput_ticks=6, baseline_sizes=[50], baseline_ticks=6, baseline_repeats=1,
                          acn_sizes=[])
    m = res["machine"]
    assert {"cpu_model", "cores", "memory_gib"} <= set(m)
    assert {"python", "numpy", "numba", "pandapower", "lightsim2grid"} <= set(m["versions"])
    assert {r["kind"] for r in res["latency"]} == {"ev_ac_pile", "mix"}
    for r in res["latency"]:
        assert r["state_bytes_per_device"] > 0
        # The traced peak holds at least the lasting state and parameters it built.
        assert r["peak_traced_bytes_per_device"] >= r["state_bytes_per_device"]
        for s in ALLOCATORS:
            assert {"median_ms", "p99_ms", "envelope_ms", "aggregate_ms", "split_ms"} <= set(r["strategies"][s])
    assert res["throughput"]["grid"]["device_ticks_per_s"] > 0
    assert res["throughput"]["no_grid"]["device_ticks_per_s"] > 0
    base = res["baseline_simpy"]
    row = base["rows"][0]
    assert row["ratio_run"] > 0 and row["ratio_run_no_twin"] > 0 and row["ratio_fleet"] > 0
    # The kernel, vpp run's plant and the SimPy baseline charge the same sessions alike.
    assert row["e_grid_vpp_run_kwh"] == pytest.approx(row["e_grid_vpp_kwh"], rel=1e-9)
    assert base["headline"]["n"] == 50 and base["headline"]["target"] == 300.0
    assert base["headline"]["ratio"] == row["ratio_run"]
    assert "status" in res["baseline_acn"]
    assert res["process_peak_rss_mib"] > 0
    out = tmp_path / "bench.json"
    bench.write_json(res, out)
    assert json.loads(out.read_text())["machine"]["cores"] == m["cores"]
    bench.write_plot(res, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = bench.format_table(res)
    assert "Aggregation latency" in text and "Headline vs issue 9's target" in text


def _fleet_only():
    """vpp figures without running vpp: the baseline's bookkeeping, tested cheaply."""
    from vpp.build import build_plant

    def figures(n, n_ticks):
        fleet = build_plant(bench._ac_scenario(n, n_ticks)).fleets[0]
        return fleet, {"n_sessions": fleet.sessions.n_sessions, "vpp_run_device_ticks_per_s": 1e6,
                       "vpp_run_no_twin_device_ticks_per_s": 2e6, "vpp_fleet_device_ticks_per_s": 1e7,
                       "e_grid_vpp_kwh": 1.0, "e_grid_vpp_run_kwh": 1.0, "repeats": 1}

    return figures


def test_simpy_baseline_skips_sizes_predicted_over_budget():
    # The first size always runs; with no budget the next is predicted over it and skipped, vpp still measured.
    base = bench.simpy_baseline([20, 40], 6, 0.0, vpp_figures=_fleet_only())
    first, second = base["rows"]
    assert first["simpy_s"] is not None and first["ratio_run"] > 0
    assert second["simpy_s"] is None and second["ratio_run"] is None and "budget" in second["simpy_skipped"]
    assert second["vpp_run_device_ticks_per_s"] == 1e6
    assert base["headline"]["n"] == 20
    assert "SimPy skipped" in bench.format_table(_with(base))


def _with(base, acn=None):
    """A result dict around one baseline section, enough for format_table and write_plot."""
    return {"machine": bench.machine_info(), "settings": {"strategies": ["pro_rata"], "kinds": [], "ev_envelope": "x"},
            "latency": [], "throughput": {k: {"n": 1, "ticks": 1, "device_ticks_per_s": 1.0, "run_s": 1.0,
                                              "build_s": 1.0} for k in ("no_grid", "grid")},
            "baseline_simpy": base, "baseline_acn": acn or {"status": "x", "installed": False, "rows": []},
            "wall_s": 0.0}


def test_predicted_time_uses_the_measured_exponent():
    assert bench._predict_s([], 10**6) == 0.0
    assert bench._predict_s([(100, 1.0)], 1000) == pytest.approx(10.0)
    assert bench._predict_s([(100, 1.0)], 1000, exponent=2.0) == pytest.approx(100.0)
    assert bench._predict_s([(100, 1.0), (200, 4.0)], 400) == pytest.approx(16.0)  # measured exponent 2
    assert bench._predict_s([(100, 1.0), (200, 1.0)], 400) == pytest.approx(2.0)  # clipped to at least 1


def test_acn_baseline_without_acnportal_says_so(monkeypatch):
    from vpp import bench_acn

    monkeypatch.setattr(bench_acn, "acn_available", lambda: False)
    lines = []
    acn = bench.acn_baseline([20], 6, 60.0, vpp_figures=_fleet_only(), say=lines.append)
    assert acn == {"status": "ACN-Sim: acnportal not installed (pip install 'vpp[acn]')", "installed": False,
                   "rows": []}
    assert lines == [acn["status"]]
    base = bench.simpy_baseline([20], 6, 60.0, vpp_figures=_fleet_only())
    assert acn["status"] in bench.format_table(_with(base, acn))


def test_traced_peak_sees_numpy_buffers():
    with bench._traced_peak() as mem:
        a = np.ones(2**20)  # 8 MiB
        del a
    assert mem["peak_bytes"] >= 8 * 2**20


def test_simpy_baseline_delivers_the_same_energy_as_vpp_default_power(grid):
    # Same sessions (the fleet's own table), same tick rules, uncontrolled charging at the most each
    # vehicle takes. The two differ only in float summation order, so 1e-9 relative is ample.
    from vpp.build import build_plant

    n_ticks = 36
    fleet = build_plant(bench._ac_scenario(300, n_ticks), grid=grid).fleets[0]
    e_simpy_kwh, _ = bench.simpy_ev_energy(fleet, n_ticks)
    s = fleet.initial_state()
    for k in range(n_ticks):
        fleet.step_default(s, k * bench.DT_S, bench.DT_S)
    assert s.e_grid_kwh > 100.0  # the evening has real charging in it
    assert e_simpy_kwh == pytest.approx(s.e_grid_kwh, rel=1e-9)


def test_state_bytes_count_session_tables(grid):
    fleets, states = bench._evening(bench.KIND_SPECS["ev_ac_pile"](100), grid)
    per_device = bench.state_bytes_per_device(fleets, states)
    table_bytes = sum(getattr(fleets[0].sessions, f).nbytes for f in fleets[0].sessions.__dataclass_fields__)
    assert per_device >= table_bytes / 100
    assert np.isfinite(per_device)


def test_cli_bench_rejects_a_non_json_out(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "vpp.cli", "bench", "--quick", "--out", tmp_path / "b.txt"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --out")
    assert not (tmp_path / "b.txt").exists()
