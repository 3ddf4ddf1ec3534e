"""The command line: the README command, exit codes, one error line, nothing written on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml


def _vpp(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "vpp.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_run_writes_results(tmp_path, small_dict):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small_dict))
    out = tmp_path / "out"
    proc = _vpp("run", path, "--out", out, "--seed", 11, "--plot")
    assert proc.returncode == 0, proc.stderr
    assert "peak" in proc.stdout and "vm" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert (out / "dispatch.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("timeseries.parquet", "buses.parquet", "bus_timeseries.parquet", "summary.json", "meta.json"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 11 and len(meta["scenario_sha256"]) == 64
    assert "measured against the no-call twin" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["delivery_measured_against"] == "twin"
    assert [c["id"] for c in summary["calls"]] == ["peak"]
    assert summary["calls"][0]["requested_kwh"] == pytest.approx(400.0)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["fleets"][0].update(colour="red"), "fleets[0]: unknown key 'colour'"),
        (lambda d: d["fleets"][2].update(cap_kwh=-1), "fleets[2].cap_kwh: must be a finite number in (0, 1000000]"),
        (lambda d: d["fleets"][2].update(soc_min=0.8, soc_max=0.2), "soc_min (0.8) must be below soc_max (0.2)"),
        (lambda d: d["fleets"][0].update(buses=[123456]), "fleets[0].buses: bus 123456 does not exist"),
        (lambda d: d["dr_calls"][0].update(end_s=100), "dr_calls[0]: end_s (100.0) must be after start_s"),
    ],
)
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, small_dict, edit, expected, command):
    edit(small_dict)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(small_dict))
    out = tmp_path / "out"
    args = ("run", path, "--out", out) if command == "run" else ("validate", path)
    proc = _vpp(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_validate_ok(root):
    proc = _vpp("validate", root / "scenarios" / "default.yaml")
    assert proc.returncode == 0 and "valid" in proc.stdout


def _listed_names(what: str) -> list[str]:
    """The first word of each line ``vpp list <what>`` prints."""
    proc = _vpp("list", what)
    assert proc.returncode == 0, proc.stderr
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def _parameter_names() -> list[str]:
    from vpp.fleets.registry import KINDS

    return [f"{s.name}.{s.parameter_field}={k}" for s in KINDS.values() for k in s.parameter_sets]


def test_list_names():
    from vpp.dispatch.allocation import ALLOCATORS
    from vpp.fleets.registry import KINDS
    from vpp.profiles import PROFILES

    assert "mv_oberrhein" in _listed_names("networks")
    assert _listed_names("kinds") == list(KINDS)
    assert _listed_names("profiles") == list(PROFILES)
    assert _listed_names("strategies") == list(ALLOCATORS)
    assert _listed_names("parameters") == _parameter_names()
    bad = _vpp("list", "spaceships")
    assert bad.returncode == 2 and "allowed: networks, kinds, parameters, profiles, strategies" in bad.stderr
