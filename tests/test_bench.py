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
                          throughput_ticks=6, baseline_sizes=[50], baseline_ticks=6)
    m = res["machine"]
    assert {"cpu_model", "cores", "memory_gib"} <= set(m)
    assert {"python", "numpy", "numba", "pandapower", "lightsim2grid"} <= set(m["versions"])
    assert {r["kind"] for r in res["latency"]} == {"ev_ac_pile", "mix"}
    for r in res["latency"]:
        assert r["state_bytes_per_device"] > 0
        for s in ALLOCATORS:
            assert {"median_ms", "p99_ms", "envelope_ms", "aggregate_ms", "split_ms"} <= set(r["strategies"][s])
    assert res["throughput"]["grid"]["device_ticks_per_s"] > 0
    assert res["throughput"]["no_grid"]["device_ticks_per_s"] > 0
    assert res["baseline_simpy"][0]["ratio_run"] > 0
    out = tmp_path / "bench.json"
    bench.write_json(res, out)
    assert json.loads(out.read_text())["machine"]["cores"] == m["cores"]
    bench.write_plot(res, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Aggregation latency" in bench.format_table(res)


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
