"""Writing results to disk: Parquet tables and JSON, written only at the edge."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vpp.metrics.results import Results

__all__ = ["write_results", "summary_table"]


def _clean(obj: Any) -> Any:
    # JSON has no NaN/inf: write null.
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalar
        return _clean(obj.item())
    return obj


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def _write_parquet(path: Path, df) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    df.to_parquet(tmp, index=False, engine="pyarrow")
    tmp.replace(path)


def write_results(results: Results, out_dir: str | Path) -> list[Path]:
    """Write every table and document of ``results`` into ``out_dir``; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    tables = {
        "timeseries.parquet": results.timeseries,
        "buses.parquet": results.buses,
        "bus_timeseries.parquet": results.bus_timeseries,
        "devices.parquet": results.devices,
    }
    for name, df in tables.items():
        if df is not None:
            _write_parquet(out / name, df)
            written.append(out / name)
    summary = {"scenario": results.scenario_name, "completed": results.completed, "error": results.error,
               **results.summary}
    _write_json(out / "summary.json", summary)
    _write_json(out / "meta.json", results.meta)
    written += [out / "summary.json", out / "meta.json"]
    return written


def _fmt(x, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def summary_table(results: Results) -> str:
    """A short plain-text table of the run for the terminal."""
    s = results.summary
    plant = s["plant"]
    lines = [
        f"scenario {results.scenario_name}: {plant['n_devices']:,} devices, {s['n_ticks']} ticks of {s['dt_s']:g} s"
        + ("" if results.completed else f"  [STOPPED EARLY: {results.error}]"),
        f"VPP energy {plant['e_vpp_kwh']:,.0f} kWh, peak {_fmt(plant['p_vpp_max_kw'], ',.0f')} kW, "
        f"max flexibility down {_fmt(plant['flex_down_max_kw'], ',.0f')} kW / up {_fmt(plant['flex_up_max_kw'], ',.0f')} kW",
    ]
    if s["dr_calls"]:
        lines.append("")
        lines.append(f"{'DR call':<20}{'dir':<9}{'req kW':>10}{'req kWh':>11}{'dlv kWh':>11}{'perf':>7}{'min kW':>10}")
        for cid, c in s["dr_calls"].items():
            perf = c["performance"]
            lines.append(
                f"{cid:<20}{c['direction']:<9}{c['p_requested_kw']:>10,.0f}{c['e_requested_kwh']:>11,.0f}"
                f"{c['e_delivered_kwh']:>11,.0f}{_fmt(None if perf is None else 100 * perf, '>6.1f')}%"
                f"{_fmt(c['p_delivered_min_kw'], '>10,.0f')}"
            )
    g = s.get("grid") or {}
    if g.get("power_flows"):
        lines.append("")
        lines.append(
            f"grid: {g['power_flows']} power flows, vm {g['vm_min_pu']:.4f}..{g['vm_max_pu']:.4f} pu, "
            f"line loading max {_fmt(g['line_loading_max_percent'], '.1f')} %, "
            f"voltage-violation ticks {g['n_ticks_voltage_violation']}, not converged {g['power_flows_not_converged']}"
        )
        for cid, c in s["dr_calls"].items():
            d = c.get("grid_during_call")
            if d:
                lines.append(
                    f"  during {cid}: vm_min {_fmt(d['vm_min_pu'], '.4f')} pu "
                    f"(without the call {_fmt(d['vm_min_without_call_pu'], '.4f')} pu), line loading max "
                    f"{_fmt(d['line_loading_max_percent'], '.1f')} % (without {_fmt(d['line_loading_max_without_call_percent'], '.1f')} %)"
                )
    ev = [f for f in s["fleets"].values() if f["kind"] == "ev"]
    if ev:
        unmet = sum(f["e_unmet_kwh"] for f in ev)
        n_unmet = sum(f["n_sessions_unmet"] for f in ev)
        n_dep = sum(f["n_sessions_departed"] for f in ev)
        lines.append(f"EV sessions departed {n_dep:,}, of which unmet {n_unmet:,} ({unmet:,.1f} kWh missing)")
    bs = [f for f in s["fleets"].values() if f["kind"] == "basestation"]
    if bs:
        lines.append(f"base stations: reserve breaches {sum(f['n_reserve_breaches'] for f in bs)}")
    return "\n".join(lines)
