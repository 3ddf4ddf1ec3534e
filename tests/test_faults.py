"""Faults and interrupted runs (ISSUE 7, items 4-7): a clear line and a complete or clearly partial result.

- the output directory is checked before any work, written through a staging
  directory, and never mixes two runs' files;
- SIGINT and SIGTERM stop a real ``vpp run`` at a tick boundary and keep what
  was computed, marked ``"complete": false`` with the last tick (exit 130/143);
- power flows that do not converge are NaN, counted and shown, never stale;
  ``--strict`` makes the first one fatal (exit 3);
- valid but suspicious input gets ``warning:`` lines, from a cheap estimate of
  flexibility that must equal what the run itself offers at the call's start.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vpp.build import build_plant, estimate_call_room, plant_warnings
from vpp.metrics.report import MANIFEST, OutputDirError, check_out_dir, summary_table, write_results
from vpp.metrics.results import Results
from vpp.run import GridNotConverged, RunError, RunInterrupted, run_scenario
from vpp.scenario import parse_scenario

# ---------------------------------------------------------------------------------------------- helpers


def _spawn(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vpp.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def _finish(proc: subprocess.Popen, timeout_s: float = 120.0) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, out, err


def _write(tmp_path: Path, d: dict, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(d))
    return path


def _tiny_results(name: str = "tiny", n: int = 3, bus_timeseries: bool = True) -> Results:
    ts = pd.DataFrame({"t_s": 60.0 * np.arange(n), "p_vpp_kw": np.ones(n)})
    buses = pd.DataFrame({"bus": [0, 1], "e_vpp_kwh": [1.0, 2.0]})
    bus_ts = pd.DataFrame({"t_s": [0.0], "bus": [0], "vm_pu": [1.0]}) if bus_timeseries else None
    meta = {"n_ticks_done": n, "n_ticks": n, "last_tick": {"index": n - 1, "t_s": 60.0 * (n - 1)}}
    return Results(name, ts, buses, {"n_ticks": n}, meta, bus_ts)


def _unwritable_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create entries in (root ignores mode bits: try /sys then)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    for candidate in (locked, Path("/sys")):
        probe = candidate / "probe"
        try:
            probe.mkdir()
        except OSError:
            return candidate
        probe.rmdir()
    pytest.skip("no unwritable directory available")


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------ output directory


def test_out_dir_refusals_name_the_path(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(OutputDirError, match=r"a_file is an existing file, not a directory"):
        check_out_dir(a_file)
    with pytest.raises(OutputDirError, match=r"cannot be created: .*a_file is a file, not a directory"):
        check_out_dir(a_file / "sub" / "dir")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputDirError, match=r"theirs is not empty and was not written by vpp; choose another "
                                             r"directory or empty it"):
        check_out_dir(theirs)
    # A directory that only looks like a run (a manifest from something else) is not ours either.
    (theirs / MANIFEST).write_text('{"files": ["thesis.tex"]}')
    with pytest.raises(OutputDirError, match="not written by vpp"):
        check_out_dir(theirs)
    with pytest.raises(OutputDirError, match=r"cannot write in"):
        check_out_dir(_unwritable_dir(tmp_path) / "out")
    # Absent (with absent parents) and empty are fine, and checking creates nothing.
    assert check_out_dir(tmp_path / "new" / "deeper") == (tmp_path / "new" / "deeper").resolve()
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty")
    assert (theirs / "thesis.tex").read_text() == "years of work"


def test_rewrite_replaces_a_run_whole_and_refuses_foreign_files(tmp_path):
    out = tmp_path / "res" / "run"
    first = write_results(_tiny_results(n=3), out)
    manifest = _json(out / MANIFEST)
    assert manifest["written_by"] == "vpp" and manifest["complete"] is True
    assert sorted(manifest["files"] + [MANIFEST]) == sorted(p.name for p in first) == sorted(os.listdir(out))
    # A second run without bus_timeseries replaces the first whole: no stale file of the first survives.
    write_results(_tiny_results(n=5, bus_timeseries=False), out)
    assert not (out / "bus_timeseries.parquet").exists()
    assert len(pd.read_parquet(out / "timeseries.parquet")) == 5
    assert sorted(os.listdir(out)) == sorted(_json(out / MANIFEST)["files"] + [MANIFEST])
    assert os.listdir(out.parent) == ["run"]  # no staging or old directory left beside it
    # A file the user added to a run directory is never deleted: the directory is refused instead.
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match=r"holds files an earlier vpp run did not write \(notes.txt\)"):
        write_results(_tiny_results(), out)
    assert (out / "notes.txt").read_text() == "mine"
    # Results from before manifests existed are recognised by their file names and meta.json, and replaced.
    old = tmp_path / "old"
    old.mkdir()
    (old / "timeseries.parquet").write_bytes(b"old")
    (old / "meta.json").write_text('{"scenario_sha256": "ab", "versions": {}}')
    write_results(_tiny_results(n=2), old)
    assert len(pd.read_parquet(old / "timeseries.parquet")) == 2 and (old / MANIFEST).is_file()


def test_a_write_that_fails_leaves_the_earlier_run_untouched(tmp_path, monkeypatch):
    from vpp.metrics import report

    out = tmp_path / "run"
    write_results(_tiny_results(n=3), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "_write_json", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_results(_tiny_results(n=7), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert os.listdir(tmp_path) == ["run"]


def test_cli_checks_out_before_the_run(tmp_path, small_dict):
    small_dict["time"]["duration_s"] = 600
    small_dict["dr_calls"] = []
    path = _write(tmp_path, small_dict)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("x")
    cases = {
        "file": (a_file, "is an existing file, not a directory"),
        "foreign": (theirs, "is not empty and was not written by vpp; choose another directory or empty it"),
        "unwritable": (_unwritable_dir(tmp_path) / "out", "cannot write in"),
    }
    procs = {k: _spawn("run", path, "--out", out) for k, (out, _) in cases.items()}
    for k, proc in procs.items():
        code, stdout, stderr = _finish(proc)
        assert code == 2, (k, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --out ") and cases[k][1] in lines[0], (k, stderr)
        assert "running" not in stderr and stdout == ""  # refused before the first tick
    assert a_file.read_text() == "x" and os.listdir(theirs) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == sorted(["a_file", "theirs", "locked", "scenario.yaml"])


# ------------------------------------------------------------------------------------------ interruption


def _long_dict() -> dict:
    """Three days of 60 s ticks, no power flow: ~10 s here, long enough to be interrupted."""
    return {
        "name": "long",
        "seed": 1,
        "time": {"clock_start_h": 0.0, "duration_s": 3 * 86400, "dt_s": 60},
        "grid": {"network": "mv_oberrhein", "power_flow": False},
        "fleets": [
            {"kind": "ev", "name": "ac", "operator": "evnet", "charger": "ac_pile", "n_devices": 50},
            {"kind": "basestation", "name": "towers", "operator": "towerco", "n_devices": 10},
        ],
        "dr_calls": [{"id": "peak", "direction": "reduce", "p_kw": 20, "start_s": 64800, "end_s": 72000}],
    }


def _wait_for(proc: subprocess.Popen, marker: str, timeout_s: float = 60.0) -> str:
    """Read the child's stderr until a line contains ``marker``; return what was read."""
    # Raw reads from the pipe: a buffered readline could hold the marker back while select waits.
    seen = b""
    fd = proc.stderr.fileno()
    deadline = time.monotonic() + timeout_s
    while marker.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0 and proc.poll() is None, f"no {marker!r} on stderr: {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            seen += os.read(fd, 65536)
    return seen.decode()


def test_sigint_and_sigterm_stop_at_a_tick_and_keep_what_was_computed(tmp_path):
    path = _write(tmp_path, _long_dict())
    procs = {sig: (_spawn("run", path, "--out", tmp_path / sig.name), tmp_path / sig.name)
             for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig, (proc, _) in procs.items():
        _wait_for(proc, "running 4,320 ticks")  # printed after the first tick
        proc.send_signal(sig)
    for sig, (proc, out) in procs.items():
        code, _, stderr = _finish(proc)
        assert code == 128 + sig, stderr
        assert "Traceback" not in stderr
        assert f"interrupted by {sig.name}: " in stderr and "marked incomplete" in stderr
        summary, meta = _json(out / "summary.json"), _json(out / "meta.json")
        n = summary["n_ticks_done"]
        assert 1 <= n < 4320
        for doc in (summary, meta, _json(out / MANIFEST)):
            assert doc["complete"] is False and doc["stopped_by"] == sig.name
            assert doc["last_tick"] == {"index": n - 1, "t_s": 60.0 * (n - 1)}
        ts = pd.read_parquet(out / "timeseries.parquet")
        assert len(ts) == n and ts["t_s"].iloc[-1] == 60.0 * (n - 1)
        assert not ts["p_vpp_kw"].isna().any()
        assert len(pd.read_parquet(out / "bus_timeseries.parquet")) == n * len(pd.read_parquet(out / "buses.parquet"))


def test_stop_callback_ends_the_run_at_a_tick_boundary(small_dict, tmp_path):
    small_dict["grid"]["power_flow"] = False
    sc = parse_scenario(small_dict)
    done = []
    with pytest.raises(RunInterrupted, match=r"interrupted by SIGTERM after the tick at t_s=1200 \(tick 4\)") as info:
        run_scenario(sc, progress=lambda i, n: done.append(i), stop=lambda: "SIGTERM" if len(done) == 5 else None)
    res = info.value.results
    assert not res.completed and res.stopped_by == "SIGTERM"
    assert len(res.timeseries) == 5 and res.meta["last_tick"] == {"index": 4, "t_s": 1200.0}
    assert res.summary["complete"] is False and res.summary["last_tick"] == res.meta["last_tick"]
    assert "INCOMPLETE: 5 of 36 ticks" in summary_table(res)
    # A stop asked for before the first tick still gives a written, clearly empty result.
    with pytest.raises(RunInterrupted, match="before the first tick") as info:
        run_scenario(sc, stop=lambda: "SIGINT")
    res = info.value.results
    assert len(res.timeseries) == 0 and res.meta["last_tick"] is None
    write_results(res, tmp_path / "empty_run")
    assert _json(tmp_path / "empty_run" / "summary.json")["n_ticks_done"] == 0


# ------------------------------------------------------------------------------------------ grid faults


def _weak_grid_dict() -> dict:
    """case33bw at four times its load: the evening ticks do not converge, whatever the start."""
    return {
        "name": "weak",
        "seed": 1,
        "time": {"clock_start_h": 17.0, "duration_s": 1800, "dt_s": 300},
        "grid": {"network": "case33bw", "load_scale": 4},
        "fleets": [{"kind": "ev", "name": "ac", "operator": "evnet", "charger": "ac_pile", "n_devices": 30}],
    }


def test_power_flows_that_do_not_converge_are_nan_counted_and_shown():
    res = run_scenario(parse_scenario(_weak_grid_dict()))
    assert res.completed
    ts = res.timeseries
    failed = ~ts["grid_converged"].to_numpy()
    assert failed.sum() == 5 and not failed[0]
    for col in ("vm_min_pu", "vm_max_pu", "line_loading_max_percent", "p_ext_grid_mw", "p_loss_mw"):
        assert ts[col][failed].isna().all() and ts[col][~failed].notna().all(), col
    bus_ts = res.bus_timeseries
    assert bus_ts.loc[bus_ts["t_s"] > 0, "vm_pu"].isna().all()
    conv = res.summary["grid"]["convergence"]
    assert conv["n_ticks"] == 6 and conv["n_not_converged"] == 5 and conv["first_not_converged_t_s"] == 300.0
    assert "5 of 6 ticks did not converge, first at t_s=300" in conv["note"]
    assert "grid: 5 of 6 ticks did not converge, first at t_s=300" in summary_table(res)


def test_a_failed_tick_is_nan_never_the_previous_ticks_values(small_dict, monkeypatch):
    from vpp.grid import model

    real = model.GridModel.solve
    seen = {"n": 0}

    def fails_on_fourth(self, *args, **kwargs):
        state = real(self, *args, **kwargs)
        seen["n"] += 1
        if seen["n"] == 4:  # the plant's flow of tick 3 (the twin only solves when its injections differ)
            nan = np.full_like(state.vm_pu, np.nan)
            return model.GridState(False, nan, state.line_loading_percent * np.nan,
                                   state.trafo_loading_percent * np.nan, float("nan"), float("nan"), 2)
        return state

    monkeypatch.setattr(model.GridModel, "solve", fails_on_fourth)
    small_dict["dr_calls"] = []
    res = run_scenario(parse_scenario(small_dict))
    ts = res.timeseries
    assert res.completed and ts["grid_converged"].tolist()[:5] == [True, True, True, False, True]
    assert np.isnan(ts["vm_min_pu"][3]) and np.isfinite(ts["vm_min_pu"][[2, 4]]).all()
    assert res.summary["grid"]["convergence"]["note"] == "1 of 36 ticks did not converge, first at t_s=900"

    seen["n"] = 0
    with pytest.raises(GridNotConverged, match=r"did not converge at t_s=900 \(tick 3\)") as info:
        run_scenario(parse_scenario(small_dict), strict=True)
    res = info.value.results
    assert res.stopped_by == "grid_not_converged" and len(res.timeseries) == 4
    assert res.meta["last_tick"] == {"index": 3, "t_s": 900.0}


def test_cli_strict_exits_3_and_writes_what_it_has(tmp_path):
    path = _write(tmp_path, _weak_grid_dict())
    loose = _spawn("run", path, "--out", tmp_path / "loose", "--quiet")
    strict = _spawn("run", path, "--out", tmp_path / "strict", "--strict")
    code, _, stderr = _finish(loose)
    assert code == 0, stderr
    assert "warning: grid: 5 of 6 ticks did not converge, first at t_s=300" in stderr
    code, stdout, stderr = _finish(strict)
    assert code == 3, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "did not converge at t_s=300 (tick 1)" in errors[0] and "--strict" in errors[0]
    summary = _json(tmp_path / "strict" / "summary.json")
    assert summary["complete"] is False and summary["stopped_by"] == "grid_not_converged"
    assert summary["last_tick"] == {"index": 1, "t_s": 300.0}
    assert len(pd.read_parquet(tmp_path / "strict" / "timeseries.parquet")) == 2


def test_help_documents_every_exit_code():
    code, stdout, _ = _finish(_spawn("--help"))
    assert code == 0
    text = " ".join(stdout.split())
    for item in ("0 ok", "1 the run failed mid-way", "2 bad input", "3 a power flow did not converge under --strict",
                 "130 / 143 interrupted by SIGINT / SIGTERM"):
        assert item in text, item


# ------------------------------------------------------------------------------------------ warnings


def test_room_estimate_is_what_the_run_offers_at_the_call_start(small_dict):
    # Before its start the plant is its no-call twin, so the plant's offered room at the start tick is exactly
    # the estimate's whole-plant room.
    small_dict["grid"]["power_flow"] = False
    sc = parse_scenario(small_dict)
    (room_kw, down_kw, up_kw), = estimate_call_room(build_plant(sc), sc.time.dt_s)
    ts = run_scenario(sc).timeseries.set_index("t_s")
    assert room_kw == down_kw
    assert down_kw == pytest.approx(ts.loc[3600.0, "flex_down_kw"], rel=1e-12)
    assert up_kw == pytest.approx(ts.loc[3600.0, "flex_up_kw"], rel=1e-12)


def test_warnings_for_calls_larger_than_their_room(small_dict):
    sc = parse_scenario(small_dict)
    assert plant_warnings(build_plant(sc), sc.time) == []
    plant = build_plant(sc)
    hosted = np.unique(np.concatenate([f.bus_idx for f in plant.fleets]))
    bus = int(plant.grid.bus_index[hosted[0]])
    small_dict["dr_calls"] = [
        {"id": "feeder", "direction": "reduce", "p_kw": 5000, "start_s": 3600, "end_s": 5400, "buses": [bus]},
        {"id": "soak", "direction": "increase", "p_kw": 10, "start_s": 1800, "end_s": 2400},
    ]
    sc = parse_scenario(small_dict)
    warnings = plant_warnings(build_plant(sc), sc.time)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("dr call 'feeder': asks to reduce by 5,000 kW but its target buses offer ")
    assert "at its start (t_s=3600, estimated with no earlier call); it cannot be fully delivered" in warnings[0]
    small_dict["dr_calls"] = [{"id": "huge", "direction": "reduce", "p_mw": 500, "start_s": 3600, "end_s": 5400}]
    sc = parse_scenario(small_dict)
    warnings = plant_warnings(build_plant(sc), sc.time)
    assert len(warnings) == 1 and warnings[0].startswith("the whole plant offers at most ")
    assert "less than the smallest call ('huge', 500,000 kW): no call can be fully delivered" in warnings[0]


def test_run_reads_call_rooms_from_its_twin_as_the_estimate_does(small_dict):
    # run_scenario no longer simulates the twin's path before the run: its twin measures each call's room at
    # the call's start tick. Both are the same no-call path, so the numbers and the warnings must agree.
    plant = build_plant(parse_scenario(small_dict))
    hosted = np.unique(np.concatenate([f.bus_idx for f in plant.fleets]))
    bus = int(plant.grid.bus_index[hosted[0]])
    small_dict["dr_calls"] = [
        {"id": "feeder", "direction": "reduce", "p_kw": 5000, "start_s": 3600, "end_s": 5400, "buses": [bus]},
        {"id": "soak", "direction": "increase", "p_kw": 10, "start_s": 1800, "end_s": 2400},
    ]
    small_dict["grid"]["power_flow"] = False
    sc = parse_scenario(small_dict)
    expected = estimate_call_room(build_plant(sc), sc.time.dt_s)
    before = plant_warnings(build_plant(sc), sc.time)
    from vpp.run import run_scenario as run

    from vpp.dispatch.portfolio import Portfolio  # noqa: F401  (the engine's own import path)
    import vpp.sim.engine as engine_mod

    seen = {}
    original = engine_mod.Engine.run

    def spy(self, on_tick):
        original(self, on_tick)
        seen.update(self.call_room)

    engine_mod.Engine.run = spy
    try:
        res = run(sc)
    finally:
        engine_mod.Engine.run = original
    for c, (room_kw, down_kw, up_kw) in zip(sc.dr_calls, expected):
        got = seen[c.id]
        assert got == pytest.approx((room_kw, down_kw, up_kw), rel=1e-12, abs=1e-9), c.id
    assert res.summary["warnings"] == before and len(before) == 1


def test_validate_and_run_print_warnings(tmp_path, small_dict):
    small_dict["time"]["duration_s"] = 5400
    small_dict["grid"]["power_flow"] = False
    small_dict["dr_calls"][0]["p_mw"] = 500
    del small_dict["dr_calls"][0]["p_kw"]
    path = _write(tmp_path, small_dict)
    validate = _spawn("validate", path)
    run = _spawn("run", path, "--out", tmp_path / "out", "--quiet")
    for proc in (validate, run):
        code, _, stderr = _finish(proc)
        assert code == 0, stderr
        warnings = [line for line in stderr.splitlines() if line.startswith("warning: ")]
        assert len(warnings) == 1 and "less than the smallest call ('peak', 500,000 kW)" in warnings[0], stderr
    assert _json(tmp_path / "out" / "summary.json")["warnings"] == [warnings[0].removeprefix("warning: ")]


def test_run_error_still_a_run_error():
    # The two new stops are RunErrors: code that catches RunError keeps every partial result.
    assert issubclass(RunInterrupted, RunError) and issubclass(GridNotConverged, RunError)


def test_calls_outside_their_tier_are_warned_about(small_dict):
    # Tier terms from vpp.programme.tiers (figures checked there): minute_level lasts >= 15 min and responds
    # within 5 min; day_ahead asks >= 5 MW (Guangdong), at most 6 h, and >= 12 h of notice (an error, not this).
    from vpp.build import tier_warnings

    small_dict["time"]["duration_s"] = 50400
    small_dict["dr_calls"] = [
        {"id": "short", "tier": "minute_level", "direction": "reduce", "p_kw": 400, "start_s": 3600, "end_s": 4200,
         "ramp_up_s": 420},
        {"id": "small", "tier": "day_ahead", "direction": "reduce", "p_kw": 400, "notification_s": 0,
         "start_s": 43200, "end_s": 46800},
        {"id": "fine", "tier": "minute_level", "direction": "reduce", "p_kw": 400, "start_s": 7200, "end_s": 9000},
    ]
    sc = parse_scenario(small_dict)
    lines = tier_warnings(build_plant(sc).calls)
    assert lines == [
        "dr call 'short': lasts 10 min, less than the minute_level tier's minimum of 15 min",
        "dr call 'short': ramps up over 7 min, longer than the minute_level tier's response time of 5 min",
        "dr call 'small': asks for 400 kW, less than the day_ahead tier's minimum capacity of 5,000 kW",
    ]
    assert set(lines) <= set(plant_warnings(build_plant(sc)))
