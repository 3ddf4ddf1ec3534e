"""`vpp report SWEEP_DIR`: trade-off plots and the parameters-vs-KPIs table of a tiny sweep."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vpp.metrics.html import ReportError, write_sweep_report
from vpp.metrics.plots import sweep_roles
from vpp.sweep import sweep


def _short(small_dict: dict) -> dict:
    d = dict(small_dict)
    d["time"] = {**d["time"], "duration_s": 5400}
    d["dr_calls"] = [{**d["dr_calls"][0], "start_s": 1800, "end_s": 3600, "notification_s": 900}]
    return d


@pytest.fixture
def sweep_dir(tmp_path, small_dict):
    out = tmp_path / "sw"
    sweep(_short(small_dict), {"dispatch.strategy": ["pro_rata", "edf"],
                               "platform.non_compliance_share": [0.0, 0.5]}, seeds=2, backend="serial", out=out)
    return out


def test_sweep_report_renders(tmp_path, sweep_dir):
    proc = subprocess.run([sys.executable, "-m", "vpp.cli", "report", str(sweep_dir), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = tmp_path / "r"
    html, md = (r / "report.html").read_text(), (r / "report.md").read_text()
    assert (r / "tradeoff-peak.png").stat().st_size > 10_000
    assert "data:image/png;base64," in html and "src='tradeoff" not in html  # self-contained
    assert "![Trade-offs: call peak](tradeoff-peak.png)" in md
    # The table: one row per combination (2 x 2), seeds that ran, mean ± std over seeds.
    rows = [line for line in md.splitlines() if line.startswith("| pro_rata |") or line.startswith("| edf |")]
    assert len(rows) == 4 and all("| 2 |" in row and "±" in row for row in rows)
    assert "platform.non_compliance_share" in md and "delivered / requested" in md


def test_roles_and_bad_input(tmp_path, sweep_dir):
    import pandas as pd

    df = pd.read_parquet(sweep_dir / "sweep.parquet")
    roles = sweep_roles(df, ["dispatch.strategy", "platform.non_compliance_share"])
    assert roles == {"x": "platform.non_compliance_share", "hue": "dispatch.strategy", "panels": [],
                     "x_numeric": True}
    with pytest.raises(ReportError, match="--x nope: not a swept path"):
        write_sweep_report(sweep_dir, tmp_path / "r", x="nope")
    with pytest.raises(ReportError, match="not a sweep directory"):
        write_sweep_report(tmp_path, tmp_path / "r2")
    paths = write_sweep_report(sweep_dir, tmp_path / "r3", x="dispatch.strategy")  # categorical x
    assert any(p.name == "tradeoff-peak.png" for p in paths)
