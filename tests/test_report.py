"""``vpp report``: the HTML and Markdown report of a run directory (vpp.metrics.html, figures in vpp.metrics.plots)."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vpp.cli import EXIT_BAD_INPUT, app
from vpp.metrics import plots
from vpp.metrics.html import ReportError, read_run, write_report

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "scenarios" / "default.yaml"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    # One run of the default scenario (144 ticks, a few seconds), shared read-only by the tests below.
    out = tmp_path_factory.mktemp("run") / "default"
    res = CliRunner().invoke(app, ["run", str(DEFAULT), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    return out


def test_report_is_self_contained(run_dir, tmp_path):
    out = tmp_path / "rep"
    paths = write_report(run_dir, out, scenario=DEFAULT)
    html = (out / "report.html").read_text(encoding="utf-8")
    # No file, script or style sheet from elsewhere: every src/href is a data: URI.
    assert not re.findall(r"""(?:src|href)=["'](?!data:)""", html)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(images) == 6  # calls, kinds, state, grid, network, baselines
    assert all(base64.b64decode(i).startswith(PNG) for i in images)
    for name in ("calls", "kinds", "state", "grid", "network", "baselines"):
        assert (out / f"{name}.png").read_bytes().startswith(PNG)
        assert out / f"{name}.png" in paths
    assert "evening_peak" in html and "Not drawn" not in html


def test_markdown_links_the_figures(run_dir, tmp_path):
    write_report(run_dir, tmp_path, scenario=DEFAULT)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert len(links) == 6 and all((tmp_path / link).is_file() for link in links)
    assert "| evening_peak | reduce |" in md


def test_default_out_is_beside_the_run(run_dir, tmp_path):
    # Not inside it: a run directory holds only its manifest's files, so that a later run may replace it.
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    write_report(copy, scenario=DEFAULT)
    assert (tmp_path / "run-report" / "report.html").is_file()
    assert not (copy / "report.html").exists()


def test_network_map_from_the_runs_own_files(run_dir, tmp_path):
    # meta.json names the grid (network, source): the map is drawn without --scenario.
    assert read_run(run_dir).meta.get("grid", {}).get("network") == "mv_oberrhein"
    write_report(run_dir, tmp_path / "with")
    assert (tmp_path / "with" / "network.png").is_file()


def test_network_map_needs_the_grid(run_dir, tmp_path):
    # A run whose files do not name the grid (written before meta.json named it): without --scenario the map
    # is left out, and said so.
    import json

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    meta = json.loads((old / "meta.json").read_text(encoding="utf-8"))
    meta.pop("grid", None)
    (old / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    results = read_run(old)
    assert not (results.summary.get("grid") or {}).get("network") and not results.meta.get("grid")
    write_report(old, tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Not drawn: the run&#x27;s files do not name its grid" in html
    assert not (tmp_path / "out" / "network.png").exists()


def test_figures_absent_without_data(run_dir):
    results = read_run(run_dir)
    results.summary = {**results.summary, "calls": []}
    results.settlement = None
    results.timeseries = results.timeseries[[c for c in results.timeseries.columns
                                             if not c.startswith("fleet.") and not c.startswith("vm_")]]
    assert plots.figure_calls(results) is None
    assert plots.figure_baselines(results) is None
    assert plots.figure_storage(results) is None
    assert plots.figure_grid(results) is None
    fig = plots.figure_kinds(results)
    assert fig is not None
    plots._pyplot().close(fig)


def test_call_panels_one_per_call(run_dir):
    results = read_run(run_dir)
    call = results.summary["calls"][0]
    results.summary = {**results.summary, "calls": [call, {**call, "id": "again"}, {**call, "id": "third"}]}
    fig = plots.figure_calls(results)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3
    assert [ax.get_title().split(":")[0] for ax in visible] == ["call evening_peak", "call again", "call third"]
    plots._pyplot().close(fig)


def test_cli_report(run_dir, tmp_path):
    res = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r"), "--scenario",
                                   str(DEFAULT)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "report.md").is_file()


def test_cli_report_bad_input(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == EXIT_BAD_INPUT
    assert "not a vpp run directory" in res.output
    with pytest.raises(ReportError):
        read_run(tmp_path / "absent")


def test_scenario_must_be_the_runs(run_dir, tmp_path):
    other = ROOT / "scenarios" / "congestion.yaml"
    with pytest.raises(ReportError, match="the run's is 'default'"):
        write_report(run_dir, tmp_path, scenario=other)
