"""Parameter sweeps (vpp.sweep, `vpp sweep`): planning, seeds, the store, resume, serial == Dask, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

import vpp
from vpp.run import run_scenario
from vpp.scenario import ScenarioError, parse_scenario
from vpp.sweep import SweepError, child_seed, flatten_summary, plan, sweep

_DELIVERED = "kpi.calls.peak.delivered_ratio"


def _short(small_dict: dict) -> dict:
    """The small scenario cut to 1 h 30 min (18 ticks) around its call: a case takes a fraction of a second."""
    d = dict(small_dict)
    d["time"] = {**d["time"], "duration_s": 5400}
    d["dr_calls"] = [{**d["dr_calls"][0], "start_s": 1800, "end_s": 3600, "notification_s": 900}]
    return d


def _vpp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vpp.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def _write_spec(tmp_path, small_dict, grid, seeds=1, name="spec.yaml") -> object:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(_short(small_dict)))
    spec = tmp_path / name
    spec.write_text(yaml.safe_dump({"scenario": "base.yaml", "grid": grid, "seeds": seeds}))
    return spec


# --- planning and seeds ----------------------------------------------------------------------------


def test_plan_is_the_product_times_seeds_in_order(small_dict):
    cases = plan(small_dict, {"dispatch.strategy": ["pro_rata", "edf"], "fleets.0.v2g_share": [0.0, 0.5, 1.0]},
                 seeds=2)
    assert len(cases) == 12 and [c.index for c in cases] == list(range(12))
    assert cases[0].params == {"dispatch.strategy": "pro_rata", "fleets.0.v2g_share": 0.0}
    assert cases[3].params == {"dispatch.strategy": "pro_rata", "fleets.0.v2g_share": 0.5}
    assert cases[6].params == {"dispatch.strategy": "edf", "fleets.0.v2g_share": 0.0}
    assert [c.seed_index for c in cases[:4]] == [0, 1, 0, 1]
    assert cases[7].scenario.dispatch.strategy == "edf" and cases[7].scenario.fleets[0].v2g_share == 0.0
    assert len({c.key for c in cases}) == 12


def test_seeds_are_seedsequence_children_by_seed_index(small_dict):
    cases = plan(small_dict, {"dispatch.strategy": ["pro_rata", "edf"]}, seeds=3)
    children = np.random.SeedSequence(small_dict["seed"]).spawn(3)
    expected = [int(ch.generate_state(1, np.uint64)[0] >> np.uint64(1)) for ch in children]
    assert [c.scenario.seed for c in cases] == expected * 2  # common random numbers across combinations
    assert len(set(expected)) == 3
    assert child_seed(small_dict["seed"], 1) == expected[1]
    # Adding replicates keeps the earlier ones (and their stored results).
    more = plan(small_dict, {"dispatch.strategy": ["pro_rata"]}, seeds=5)
    assert [c.scenario.seed for c in more[:3]] == expected
    assert [c.key for c in more[:3]] == [c.key for c in cases[:3]]


def test_keys_depend_on_the_case_and_the_code_version(small_dict):
    a = plan(small_dict, {"seed": [1, 2]}, version="x")
    b = plan(small_dict, {"seed": [1, 2]}, version="y")
    assert a[0].key != a[1].key and a[0].key != b[0].key
    assert plan(small_dict, {"seed": [1, 2]}, version="x")[1].key == a[1].key


# --- bad input: all before any case runs -------------------------------------------------------------


@pytest.mark.parametrize(("grid", "seeds", "match"), [
    ({"dispatch.strategy": []}, 1, r"grid\.dispatch\.strategy: an empty list of values"),
    ({"platform.non_complance_share": [0.1]}, 1, r"platform has no key 'non_complance_share'; allowed: .*"
                                                 r"non_compliance_share"),
    ({"fleets.9.n_devices": [1]}, 1, r"fleets has 4 items; index 9 does not exist"),
    ({"fleets.0.v2g_share": [0.5, 2.0]}, 1, r"case 1 \(fleets\.0\.v2g_share=2\.0, seed index 0\): "
                                            r"fleets\[0\]\.v2g_share: .*\(got 2\.0\)"),
    ({"dispatch.strategy": "edf"}, 1, r"must be a list of values"),
    ({}, 1, r"grid: must be a mapping"),
    ({"seed": [1]}, 0, r"seeds: must be a whole number >= 1"),
])
def test_bad_sweeps_fail_before_anything_runs(tmp_path, small_dict, grid, seeds, match):
    out = tmp_path / "out"
    with pytest.raises(SweepError, match=match):
        sweep(small_dict, grid, seeds, out=out, backend="serial")
    assert not out.exists()


def test_unreachable_scheduler_fails_before_anything_is_written(tmp_path, small_dict, monkeypatch):
    out = tmp_path / "out"
    with pytest.raises(SweepError, match=r"--scheduler tcp://127\.0\.0\.1:9: cannot reach the Dask scheduler"):
        sweep(small_dict, {"seed": [1]}, out=out, scheduler="tcp://127.0.0.1:9", connect_timeout_s=0.5)
    monkeypatch.setenv("VPP_DASK_SCHEDULER", "tcp://127.0.0.1:9")
    with pytest.raises(SweepError, match=r"tcp://127\.0\.0\.1:9"):
        sweep(small_dict, {"seed": [1]}, out=out, connect_timeout_s=0.5)
    assert not out.exists()


def test_cli_bad_input_exit_2_nothing_written(tmp_path, small_dict):
    out = tmp_path / "out"
    cases = [
        ({"dispatch.strategy": []}, "an empty list of values"),
        ({"dispatch.nope": ["x"]}, "dispatch has no key 'nope'"),
        ({"fleets.0.v2g_share": [0.1, 3]}, "case 1 (fleets.0.v2g_share=3"),
    ]
    for i, (grid, expected) in enumerate(cases):
        spec = _write_spec(tmp_path, small_dict, grid, name=f"bad{i}.yaml")
        proc = _vpp("sweep", spec, "--out", out, "--backend", "serial")
        assert proc.returncode == 2, proc.stderr
        assert expected in proc.stderr and proc.stderr.startswith("error: ")
        assert "Traceback" not in proc.stderr
        assert not out.exists()
    spec = _write_spec(tmp_path, small_dict, {"seed": [1]})
    proc = _vpp("sweep", spec, "--out", out, "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "0.5")
    assert proc.returncode == 2 and "--scheduler tcp://127.0.0.1:9: cannot reach" in proc.stderr
    assert not out.exists()
    proc = _vpp("sweep", tmp_path / "missing.yaml", "--out", out)
    assert proc.returncode == 2 and "missing.yaml" in proc.stderr


def test_cli_set_for_run_and_validate(tmp_path, small_dict):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_short(small_dict)))
    proc = _vpp("validate", path, "--set", "fleets.0.n_devices=7", "--set", "platform.non_compliance_share=0.5")
    assert proc.returncode == 0, proc.stderr
    assert "82 devices" in proc.stdout  # 7 + 20 + 50 + 5
    proc = _vpp("validate", path, "--set", "fleets.0.v2g_share=2")
    assert proc.returncode == 2 and "fleets[0].v2g_share" in proc.stderr and "--set fleets.0.v2g_share=2" in \
        proc.stderr
    proc = _vpp("validate", path, "--set", "fleets.5.n_devices=1")
    assert proc.returncode == 2 and "--set fleets.5.n_devices: fleets has 4 items" in proc.stderr
    proc = _vpp("run", path, "--set", "seed", "-q", "--out", tmp_path / "o")
    assert proc.returncode == 2 and "must be dotted.path=value" in proc.stderr
    out = tmp_path / "run"
    proc = _vpp("run", path, "-q", "--out", out, "--set", "dispatch.strategy=edf", "--set", "seed=8")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "meta.json").read_text())["seed"] == 8


# --- running -----------------------------------------------------------------------------------------


def test_a_case_equals_run_scenario_and_the_table_is_tidy(tmp_path, small_dict):
    base = _short(small_dict)
    df = sweep(base, {"dispatch.strategy": ["pro_rata", "edf"]}, seeds=1, backend="serial", out=tmp_path / "o")
    assert list(df.columns[:7]) == ["case", "dispatch.strategy", "seed_index", "scenario_seed", "status", "error",
                                    "key"]
    assert len(df) == 2 and (df["status"] == "ok").all()
    assert df[_DELIVERED].between(0, 2).all() and "kpi.grid.vm_min_pu" in df and "kpi.plant.e_vpp_kwh" in df
    # The case's network came from the per-process cache; a plain run of the same scenario agrees exactly.
    sc = parse_scenario({**base, "seed": int(df["scenario_seed"][1]), "dispatch": {"strategy": "edf"}})
    direct = flatten_summary(json.loads(json.dumps(run_scenario(sc).summary, default=float)))
    row = df.iloc[1]
    for k, v in direct.items():
        assert (np.isnan(v) and np.isnan(row[k])) if isinstance(v, float) and np.isnan(v) else row[k] == v, k
    # The store: one JSON per case named by its key, and the table.
    stored = sorted(p.stem for p in (tmp_path / "o" / "cases").glob("*.json"))
    assert stored == sorted(df["key"])
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "o" / "sweep.parquet"), df)
    record = json.loads((tmp_path / "o" / "cases" / f"{df['key'][0]}.json").read_text())
    assert record["params"] == {"dispatch.strategy": "pro_rata"} and record["summary"]["calls"][0]["id"] == "peak"


def test_resume_runs_only_the_missing_cases(tmp_path, small_dict):
    base = _short(small_dict)
    out = tmp_path / "o"
    first = sweep(base, {"seed": [1, 2]}, backend="serial", out=out)
    with pytest.raises(SweepError, match="not empty, holds an earlier sweep"):
        sweep(base, {"seed": [1, 2, 3]}, backend="serial", out=out)
    more = sweep(base, {"seed": [1, 2, 3]}, backend="serial", out=out, resume=True)
    assert more.attrs["n_resumed"] == 2 and more.attrs["n_run"] == 1
    pd.testing.assert_frame_equal(more.iloc[:2].drop(columns="case"), first.drop(columns="case"))


def test_vpp_sweep_is_the_function_also_after_importing_the_module():
    import vpp.sweep as module

    assert callable(vpp.sweep) and callable(module)
    assert vpp.sweep.__doc__ and "sweep" in vpp.__all__


def test_serial_and_dask_give_identical_tables(tmp_path, small_dict):
    """A 2-worker local cluster on loopback against the serial backend: the same table, bit for bit."""
    from vpp.sweep import BLAS_ENV, dask_client

    base = _short(small_dict)
    grid = {"dispatch.strategy": ["pro_rata", "edf"], "platform.non_compliance_share": [0.0, 0.3]}
    serial = sweep(base, grid, seeds=1, backend="serial")
    with dask_client(n_workers=2) as client:  # what sweep(backend="dask") opens by default
        env = client.run(lambda: {k: os.environ.get(k) for k in BLAS_ENV})
        hosts = list(client.scheduler_info()["workers"])
        dask = sweep(base, grid, seeds=1, backend="dask", client=client, out=tmp_path / "o")
    assert len(hosts) == 2 and all(h.startswith("tcp://127.0.0.1:") for h in hosts)  # loopback only
    assert all(e == BLAS_ENV for e in env.values())  # one BLAS thread per worker
    pd.testing.assert_frame_equal(serial, dask)
    assert serial[_DELIVERED].nunique() > 1
    records = [json.loads(p.read_text()) for p in (tmp_path / "o" / "cases").glob("*.json")]
    assert {r["worker_pid"] for r in records}.isdisjoint({os.getpid()})  # ran in the workers


def test_a_killed_sweep_resumes_to_the_same_table(tmp_path, small_dict):
    """SIGKILL a real `vpp sweep` midway; --resume keeps every finished case and ends as if never killed."""
    spec = _write_spec(tmp_path, small_dict, {"dispatch.strategy": ["pro_rata", "edf", "merit_order"],
                                              "platform.non_compliance_share": [0.0, 0.2, 0.4, 0.6]})
    out = tmp_path / "o"
    cases = out / "cases"
    proc = subprocess.Popen([sys.executable, "-m", "vpp.cli", "sweep", str(spec), "--out", str(out),
                             "--backend", "serial"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if cases.is_dir() and len(list(cases.glob("*.json"))) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done = {p.name: p.stat().st_mtime_ns for p in cases.glob("*.json")}
    assert 3 <= len(done) < 12 and not (out / "sweep.parquet").exists()

    resumed = _vpp("sweep", spec, "--out", out, "--backend", "serial")
    assert resumed.returncode == 2 and "--resume" in resumed.stderr  # not without --resume
    resumed = _vpp("sweep", spec, "--out", out, "--backend", "serial", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"({len(done)} resumed)" in resumed.stdout
    assert {p.name: p.stat().st_mtime_ns for p in cases.glob("*.json") if p.name in done} == done  # untouched
    assert len(list(cases.glob("*.json"))) == 12 and not list(cases.glob(".*"))
    table = pd.read_parquet(out / "sweep.parquet")

    base = yaml.safe_load((tmp_path / "base.yaml").read_text())
    never_killed = sweep(base, yaml.safe_load(spec.read_text())["grid"], backend="serial")
    pd.testing.assert_frame_equal(table, never_killed)
