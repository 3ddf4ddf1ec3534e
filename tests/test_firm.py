"""Firm capacity (vpp.firm_capacity, `vpp firm`): per-seed values read independently, the quantile and its CI, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from scipy.stats import binom

import vpp
from vpp.firm import PROBE_ID, FirmError, ProbeSaturated, firm_capacity, quantile_ci
from vpp.metrics.columns import call_col
from vpp.run import run_scenario
from vpp.scenario.overrides import with_overrides
from vpp.sweep import child_seed

# The small scenario starts at 17:00 and runs 3 h in 5-min ticks: the window 18:00-18:30 is t = 3600..5400 s.
_START_S, _END_S = 3600.0, 5400.0


def _vpp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vpp.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_firm_capacity_per_seed_values_match_their_runs(small_dict):
    res = firm_capacity(small_dict, "18:00", "PT30M", seeds=4, confidence=0.95, backend="serial")
    per = res.per_seed
    assert list(per["seed_index"]) == [0, 1, 2, 3]
    assert list(per["scenario_seed"]) == [child_seed(small_dict["seed"], s) for s in range(4)]
    assert res.settings["start_s"] == _START_S and res.settings["end_s"] == _END_S
    # Each seed's value, read independently: the same seed's scenario run on its own, the minimum over the
    # window's ticks of the probe's delivered power in its time series.
    for row in per.itertuples(index=False):
        data = {**small_dict, "seed": int(row.scenario_seed)}
        sc = with_overrides(data, res.settings["overrides"])
        assert [c.id for c in sc.dr_calls] == [PROBE_ID] and sc.platform.acceptance == "always"
        ts = run_scenario(sc).timeseries
        window = (ts["t_s"] >= _START_S) & (ts["t_s"] + 300.0 <= _END_S)
        assert window.sum() == 6 == row.n_ticks
        delivered = ts.loc[window, call_col(PROBE_ID, "delivered_kw")]
        assert row.firm_kw == pytest.approx(delivered.min(), rel=1e-12)
        assert row.mean_kw == pytest.approx(delivered.mean(), rel=1e-12)
        assert 0.0 < row.firm_kw <= row.mean_kw
        # The probe was above the room: the plant gave far less than asked in every tick.
        assert (delivered < 0.5 * ts.loc[window, call_col(PROBE_ID, "requested_kw")]).all()
    x = per["firm_kw"].to_numpy()
    st = res.stats
    assert st["firm_kw"] <= st["median_kw"] <= st["max_kw"]
    assert st["min_kw"] == x.min() and st["median_kw"] == pytest.approx(np.median(x))
    # Lower empirical 5 % quantile of 4 values: the smallest. Its distribution-free 95 % CI cannot be bounded
    # below by 4 seeds (0.95**4 > 0.025); the upper end is x_(2): P(Bin(4, 0.05) >= 2) = 0.014 <= 0.025.
    assert st["firm_kw"] == x.min()
    assert st["ci_low_kw"] is None and st["ci_high_rank"] == 2 and st["ci_high_kw"] == np.sort(x)[1]
    assert st["ci_coverage"] == pytest.approx(binom.cdf(1, 4, 0.05))
    assert "72 seeds" in st["note"]
    assert res.firm_mw == pytest.approx(st["firm_kw"] / 1000)
    json.dumps(res.to_dict(), allow_nan=True)
    assert "firm capacity (P95" in res.markdown()


def test_quantile_ci_order_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 1.0, 200)
    q = quantile_ci(x, 0.05, 0.95)
    xs = np.sort(x)
    assert q["point"] == xs[9]  # inverted_cdf: the 10th of 200 (0.05 * 200)
    assert q["low"] == xs[q["low_rank"] - 1] and q["high"] == xs[q["high_rank"] - 1]
    assert q["low"] <= q["point"] <= q["high"] and q["coverage"] >= 0.95
    alpha = 0.025  # each tail at most alpha, and the ranks are the tightest that keep it
    assert binom.cdf(q["low_rank"] - 1, 200, 0.05) <= alpha < binom.cdf(q["low_rank"], 200, 0.05)
    assert 1 - binom.cdf(q["high_rank"] - 1, 200, 0.05) <= alpha < 1 - binom.cdf(q["high_rank"] - 2, 200, 0.05)
    # 20 seeds at P95: the smallest value (reached by all 20; the 2nd is reached by 19 only = 95 %, not "at least").
    assert quantile_ci(x[:20], 0.05, 0.95)["point"] == x[:20].min()
    assert quantile_ci(x[:71], 0.05, 0.95)["low"] is None and quantile_ci(x[:72], 0.05, 0.95)["low"] == x[:72].min()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"hour": "25:00"}, r"--hour '25:00': not a clock time"),
    ({"hour": "7pm"}, r"not a clock time"),
    ({"duration": "PT0S"}, r"--duration 'PT0S': must be positive"),
    ({"duration": -60}, r"must be positive"),
    ({"duration": "soon"}, r"not a duration"),
    ({"seeds": 1}, r"--seeds 1: must be a whole number >= 2"),
    ({"confidence": 1.0}, r"--confidence 1.0: must lie strictly between 0 and 1"),
    ({"confidence": 0}, r"--confidence 0: must lie"),
    ({"direction": "down"}, r"--direction 'down': allowed: reduce, increase"),
    ({"hour": "19:30", "duration": "PT1H"}, r"after the run's end"),
    ({"hour": "18:00", "duration": "PT2M"}, r"covers no whole 300-s tick"),
])
def test_bad_input_fails_before_any_run(tmp_path, small_dict, kwargs, match):
    args = {"hour": "18:00", "duration": "PT30M", "seeds": 3, **kwargs}
    with pytest.raises(FirmError, match=match):
        firm_capacity(small_dict, backend="serial", out=tmp_path / "runs", **args)
    assert not (tmp_path / "runs").exists()


def test_a_probe_within_the_room_is_refused(small_dict):
    with pytest.raises(ProbeSaturated, match="not above its room"):
        firm_capacity(small_dict, "18:00", "PT30M", seeds=2, probe_mw=0.001, backend="serial")


def test_cli(tmp_path, small_dict):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_dict))
    for args, expected in ((["--hour", "18h"], "--hour '18h': not a clock time"),
                           (["--seeds", "1"], "--seeds 1: must be a whole number >= 2"),
                           (["--confidence", "95"], "--confidence 95.0: must lie strictly between 0 and 1"),
                           (["--duration", "PT0M"], "must be positive")):
        proc = _vpp("firm", path, *args, "--out", tmp_path / "bad")
        assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "bad").exists()
    out = tmp_path / "firm"
    proc = _vpp("firm", path, "--hour", "18:00", "--duration", "PT30M", "--seeds", "2", "--out", out, "-q",
                "--no-tracking")
    assert proc.returncode == 0, proc.stderr
    assert "firm capacity (P95" in proc.stdout
    data = json.loads((out / "firm.json").read_text())
    assert len(data["per_seed"]) == 2 and data["settings"]["tracking"] == "off"
    assert data["stats"]["firm_kw"] == min(r["firm_kw"] for r in data["per_seed"])
    assert (out / "firm.md").is_file() and (out / "firm_per_seed.csv").is_file()
    assert (out / "runs" / "sweep.parquet").is_file()


def test_lazy_export():
    assert "firm_capacity" in vpp.__all__ and vpp.firm_capacity is firm_capacity
