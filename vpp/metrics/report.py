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


def _pair(a, b, spec: str, unit: str) -> str:
    return f"{_fmt(a, spec)} {unit} (no call {_fmt(b, spec)} {unit})"


def summary_table(results: Results) -> str:
    """A short plain-text table of the run for the terminal."""
    s = results.summary
    plant = s["plant"]
    twin = s.get("delivery_measured_against") == "twin"
    lines = [
        f"scenario {results.scenario_name}: {plant['n_devices']:,} devices, {s['n_ticks']} ticks of {s['dt_s']:g} s"
        + ("" if results.completed else f"  [STOPPED EARLY: {results.error}]"),
        f"VPP energy {plant['e_vpp_kwh']:,.0f} kWh"
        + (f" (no-call twin {plant['e_twin_kwh']:,.0f} kWh)" if twin else "")
        + f", peak {_fmt(plant['p_vpp_max_kw'], ',.0f')} kW, "
        f"max flexibility down {_fmt(plant['flex_down_max_kw'], ',.0f')} kW / up {_fmt(plant['flex_up_max_kw'], ',.0f')} kW",
    ]
    if s["calls"]:
        lines.append("")
        lines.append("delivery is measured against the no-call twin" if twin else
                     "delivery: unknown (measurement.twin is off)")
        lines.append(
            f"{'DR call':<18}{'dir':<9}{'req kW':>9}{'req kWh':>10}{'dlv kWh':>10}{'ratio':>7}{'worst':>7}"
            f"{'t90 min':>8}{'rebound kWh':>12}{'peak kW':>9}"
        )
        for c in s["calls"]:
            ratio, worst, t90 = c["delivered_ratio"], c["tick_ratio_min"], c["time_to_90pct_s"]
            lines.append(
                f"{c['id']:<18}{c['direction']:<9}{c['requested_kw']:>9,.0f}{c['requested_kwh']:>10,.0f}"
                f"{_fmt(c['delivered_kwh'], '>10,.0f')}{_fmt(None if ratio is None else 100 * ratio, '>6.1f')}%"
                f"{_fmt(None if worst is None else 100 * worst, '>6.0f')}%"
                f"{_fmt(None if t90 is None else t90 / 60, '>8.0f')}"
                f"{_fmt(c['rebound_kwh'], '>12,.0f')}{_fmt(c['rebound_peak_kw'], '>9,.0f')}"
            )
        cost = plant.get("call_cost_by_kind")
        if cost:
            parts = [f"{kind}: " + ", ".join(f"{k} {v:+,.1f}" for k, v in d.items()) for kind, d in cost.items()]
            lines.append("what the calls cost by the end of the run (plant - twin): " + "; ".join(parts))
    g = s.get("grid") or {}
    if "power_flows" in g:
        lines.append("")
        lines.append(
            f"grid: {g['power_flows']} power flows, {g['power_flows_not_converged']} not converged"
            + (f", vm {g['vm_min_pu']:.4f}..{g['vm_max_pu']:.4f} pu, line loading max "
               f"{_fmt(g['line_loading_max_percent'], '.1f')} %, trafo loading max "
               f"{_fmt(g['trafo_loading_max_percent'], '.1f')} %, voltage-violation ticks "
               f"{g['n_ticks_voltage_violation']}" if g["power_flows"] else "")
        )
        for c in s["calls"]:
            for label, key in (("during", "grid_during"), ("rebound", "grid_rebound")):
                d = c.get(key)
                if d:
                    lines.append(
                        f"  {label} {c['id']}: vm_min {_pair(d['vm_min_pu'], d['vm_min_twin_pu'], '.4f', 'pu')}, "
                        f"line {_pair(d['line_loading_max_percent'], d['line_loading_max_twin_percent'], '.1f', '%')}, "
                        f"trafo {_pair(d['trafo_loading_max_percent'], d['trafo_loading_max_twin_percent'], '.1f', '%')}"
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
    for w in s.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
