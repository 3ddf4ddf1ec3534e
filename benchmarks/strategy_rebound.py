"""Delivery and rebound per call, every shipped scenario, one run per device-level strategy.

Issue 10's done-when compares ``optimal`` with ``pro_rata``: delivered energy
measured against the no-call twin, and the rebound over each call's recovery
window (both from :func:`vpp.metrics.kpis.call_kpis`). Not a timing benchmark:
a table of physics. Usage::

    python benchmarks/strategy_rebound.py [--strategies pro_rata,optimal] [--scenarios a.yaml,...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["default.yaml", "events/demo.yaml", "evening-peak-day-ahead.yaml", "reserve-minute.yaml",
           "week-baselines.yaml", "district.yaml", "congestion.yaml"]


def run(path: Path, strategy: str) -> list[dict]:
    from vpp.run import run_scenario
    from vpp.scenario.overrides import load_with_overrides

    import numpy as np

    from vpp.metrics.columns import call_col

    sc = load_with_overrides(path, extra={"dispatch.strategy": strategy})
    res = run_scenario(sc)
    ts = res.timeseries
    t = ts["t_s"].to_numpy()
    dt_h = float(t[1] - t[0]) / 3600.0 if t.size > 1 else 0.0
    out = []
    for c in res.summary["calls"]:
        row = {k: c.get(k) for k in ("id", "direction", "requested_kwh", "delivered_kwh", "rebound_kwh",
                                     "rebound_peak_kw", "recovery_window_s")}
        # What a recovery window does not see: the rebound over the 4 h after it (energy pushed past it).
        end = (c.get("recovery_window_s") or [None, None])[1]
        row["after_kwh"] = row["after_peak_kw"] = None
        if end is not None and c.get("recovery_cut_by_call") is None:
            after = (t >= end) & (t < end + 4 * 3600.0)
            if after.any():
                rb = -ts[call_col(c["id"], "target_change_kw")].to_numpy()[after]
                row["after_kwh"], row["after_peak_kw"] = float(rb.sum() * dt_h), float(rb.max())
        # Energy the plant drew less than the twin over the whole run: what is still owed at its end (deferred
        # past the last tick), plus what thermal savings and losses change; the same for every call of a run.
        plant = res.summary["plant"]
        row["behind_twin_at_end_kwh"] = (plant["e_twin_kwh"] - plant["e_vpp_kwh"]
                                         if plant.get("e_twin_kwh") is not None else None)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", default="pro_rata,optimal")
    ap.add_argument("--scenarios", default=",".join(SHIPPED))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = []
    for name in a.scenarios.split(","):
        for strat in a.strategies.split(","):
            t0 = time.perf_counter()
            for c in run(ROOT / "scenarios" / name, strat):
                rows.append({"scenario": name, "strategy": strat, **c})
            print(f"{name:32s} {strat:10s} {time.perf_counter() - t0:6.1f} s", flush=True)
    print(f"{'scenario':30s} {'call':16s} {'strategy':10s} {'req kWh':>9s} {'dlv kWh':>9s} {'rebound kWh':>12s} "
          f"{'peak kW':>9s} {'4h after kWh':>13s} {'peak kW':>9s} {'run: twin-plant kWh':>20s}")

    def fmt(v, spec=",.0f"):
        return "n/a" if v is None else format(v, spec)

    for r in rows:
        print(f"{r['scenario']:30s} {str(r['id']):16s} {r['strategy']:10s} {fmt(r['requested_kwh']):>9s} "
              f"{fmt(r['delivered_kwh']):>9s} {fmt(r['rebound_kwh']):>12s} {fmt(r['rebound_peak_kw']):>9s} "
              f"{fmt(r['after_kwh']):>13s} {fmt(r['after_peak_kw']):>9s} {fmt(r['behind_twin_at_end_kwh']):>20s}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
