"""Writing results to disk: Parquet tables and JSON, written only at the edge.

Output directories
------------------
A run's files are written into a fresh temporary directory beside ``out_dir``
(same parent, named ``.<name>.vpp-tmp-*``) and moved into place with one
rename when every file is written, so ``out_dir`` never holds half a run.
Reuse policy: a run never mixes its files with an earlier run's.

- ``out_dir`` absent or an empty directory: used.
- ``out_dir`` holds a ``manifest.json`` written by vpp and nothing but the
  files it lists (an earlier run's results): replaced whole. The old directory
  is renamed aside, the new one renamed into place, then the old one deleted.
  Results written before manifests existed count as vpp's when they hold
  only vpp's file names and their ``meta.json`` has vpp's scenario hash.
- any other non-empty directory: refused (:class:`OutputDirError`); vpp never
  deletes files it did not write.
- an existing file, or a path whose parent cannot be written: refused.

:func:`check_out_dir` applies these rules; the CLI calls it before a run
starts, and :func:`write_results` again before it writes.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

from vpp.metrics.results import Results

__all__ = ["MANIFEST", "OutputDirError", "check_out_dir", "write_results", "summary_table", "format_settlement"]

MANIFEST = "manifest.json"
"""The file that marks a directory as one run's results and lists its files."""

_WRITTEN_BY = "vpp"


class OutputDirError(ValueError):
    """An output directory vpp cannot or will not write; ``str()`` is one line that starts with the path."""


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
    path.write_text(json.dumps(_clean(data), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _is_scratch(name: str) -> bool:
    # Staging directories of this or an interrupted earlier write, beside out_dir.
    return name.startswith(".") and (".vpp-tmp-" in name or ".vpp-old-" in name or ".vpp-probe-" in name)


def _manifest_files(out: Path) -> list[str] | None:
    """The files a vpp manifest in ``out`` lists, or None when there is no readable vpp manifest."""
    try:
        doc = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("written_by") != _WRITTEN_BY or not isinstance(doc.get("files"), list):
        return None
    return [str(f) for f in doc["files"]]


_LEGACY_FILES = frozenset({"timeseries.parquet", "buses.parquet", "bus_timeseries.parquet", "devices.parquet",
                           "summary.json", "meta.json", "dispatch.png"})


def _legacy_run(out: Path, entries: list[str]) -> bool:
    """Whether ``out`` holds results of a vpp from before manifests: only its file names and its meta.json."""
    if not set(entries) <= _LEGACY_FILES or "meta.json" not in entries:
        return False
    try:
        meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "scenario_sha256" in meta and "versions" in meta


def _probe_writable(directory: Path, what: str) -> None:
    """Create and remove a directory in ``directory``: the only test of writability that root cannot fool."""
    probe = directory / f".vpp-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        probe.mkdir()
    except OSError as exc:
        raise OutputDirError(f"{what}: cannot write in {directory} ({_reason(exc)})") from None
    probe.rmdir()


def check_out_dir(out_dir: str | Path) -> Path:
    """Check that a run's results can go to ``out_dir``, before any work; return it as an absolute path.

    Raises :class:`OutputDirError` (one line, naming the path) when ``out_dir``
    is an existing file, sits under a file, cannot be created or written, or is
    a non-empty directory that is not an earlier vpp run's (see the module
    docstring for the reuse policy). Creates nothing.
    """
    given = Path(out_dir)
    out = Path(os.path.realpath(given))  # the directory a symlink names is the one replaced
    if out.parent == out:
        raise OutputDirError(f"{given} is a filesystem root; give a directory below it")
    if out.exists():
        if not out.is_dir():
            raise OutputDirError(f"{given} is an existing file, not a directory")
        try:
            entries = sorted(p.name for p in out.iterdir())
        except OSError as exc:
            raise OutputDirError(f"{given} cannot be read ({_reason(exc)})") from None
        if entries:
            listed = _manifest_files(out)
            if listed is None and _legacy_run(out, entries):
                listed = entries
            if listed is None:
                raise OutputDirError(
                    f"{given} is not empty and was not written by vpp; choose another directory or empty it"
                )
            foreign = [e for e in entries if e != MANIFEST and e not in listed]
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise OutputDirError(
                    f"{given} holds files an earlier vpp run did not write ({shown}); "
                    "choose another directory or remove them"
                )
        _probe_writable(out.parent, str(given))
        return out
    # Absent: its nearest existing ancestor must be a directory we can write in.
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputDirError(f"{given} cannot be created: {ancestor} is a file, not a directory")
    _probe_writable(ancestor, f"{given} cannot be created")
    return out


def _commit(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` into place as ``out``, replacing an empty or earlier-run ``out`` whole."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.parent / f".{out.name}.vpp-old-{os.getpid()}-{secrets.token_hex(4)}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_results(results: Results, out_dir: str | Path, plot: bool = False) -> list[Path]:
    """Write every table and document of ``results`` into ``out_dir``; return the paths written.

    The files are staged in a temporary directory beside ``out_dir`` and moved
    into place together; ``manifest.json`` lists them. ``out_dir`` is checked
    with :func:`check_out_dir` first (:class:`OutputDirError` if refused).
    ``plot`` also writes ``dispatch.png`` and, when the run had a power flow,
    ``network.png`` (:mod:`vpp.metrics.plots`).
    """
    out = check_out_dir(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.vpp-tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        names = []
        tables = {
            "timeseries.parquet": results.timeseries,
            "buses.parquet": results.buses,
            "bus_timeseries.parquet": results.bus_timeseries,
            "devices.parquet": results.devices,
            "branches.parquet": results.branches,
            "settlement.parquet": results.settlement,
        }
        for name, df in tables.items():
            if df is not None:
                df.to_parquet(tmp / name, index=False, engine="pyarrow")
                names.append(name)
        _write_json(tmp / "summary.json", {"scenario": results.scenario_name, **results.status(),
                                           **results.summary})
        _write_json(tmp / "meta.json", results.meta)
        names += ["summary.json", "meta.json"]
        if plot:
            from vpp.metrics.plots import plot_dispatch, plot_network

            plot_dispatch(results, tmp / "dispatch.png")
            names.append("dispatch.png")
            if results.net is not None:
                plot_network(results, tmp / "network.png")
                names.append("network.png")
        # The manifest is written last: a directory with a manifest holds every file it lists.
        _write_json(tmp / MANIFEST, {"written_by": _WRITTEN_BY, "scenario": results.scenario_name,
                                     **results.status(), "files": names})
        _commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / name for name in names + [MANIFEST]]


def _fmt(x, spec: str) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        width = re.match(r"[<>^]?\d*", spec).group(0)  # keep the column's alignment and width
        return format("-", width if width[:1] in "<>^" and width[1:] else (">" + width if width else ""))
    return format(x, spec)


def _pair(a, b, spec: str, unit: str) -> str:
    return f"{_fmt(a, spec)} {unit} (no call {_fmt(b, spec)} {unit})"


def _vs(a, b, spec: str) -> str:
    return f"{_fmt(a, spec)} vs {_fmt(b, spec)}"


def _grid_vs_twin(p: dict, tw: dict) -> str:
    """One line: the grid with the calls (the plant) against without them (the twin)."""
    pv, tv, po, to = p["voltage_violation"], tw["voltage_violation"], p["overload"], tw["overload"]
    return (
        f"  grid with calls vs without: violation ticks voltage {_vs(pv['n_ticks'], tv['n_ticks'], 'd')}, "
        f"loading {_vs(po['n_ticks'], to['n_ticks'], 'd')}; "
        f"worst vm {_vs(pv['worst_vm_pu'], tv['worst_vm_pu'], '.4f')} pu; "
        f"peak trafo {_vs(p['trafo_loading_max_percent'], tw['trafo_loading_max_percent'], '.1f')} %, "
        f"line {_vs(p['line_loading_max_percent'], tw['line_loading_max_percent'], '.1f')} %; "
        f"losses {_vs(p['e_loss_kwh'], tw['e_loss_kwh'], ',.0f')} kWh"
    )


def summary_table(results: Results) -> str:
    """A short plain-text table of the run for the terminal."""
    s = results.summary
    plant = s["plant"]
    twin = s.get("delivery_measured_against") == "twin"
    lines = [
        f"scenario {results.scenario_name}: {plant['n_devices']:,} devices, {s['n_ticks']} ticks of {s['dt_s']:g} s"
        + ("" if results.completed else
           f"  [INCOMPLETE: {s['n_ticks']} of {results.meta.get('n_ticks')} ticks; {results.error}]"),
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
                f"{c['id']:<18}{c['direction']:<9}{c.get('requested_kw_max') or c['requested_kw']:>9,.0f}{c['requested_kwh']:>10,.0f}"
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
    if g:
        conv = g.get("convergence") or {}
        solver = g.get("solver") or {}
        n_pf = conv.get("n_ticks", g.get("power_flows", 0))
        if conv.get("n_not_converged") or conv.get("twin_n_not_converged"):
            head = f"grid: {conv['note']} (NaN for those ticks)"
        else:
            head = f"grid: {n_pf} power flows, all converged"
        lines.append("")
        lines.append(
            head
            + (f"; vm {g['vm_min_pu']:.4f}..{g['vm_max_pu']:.4f} pu, line loading max "
               f"{_fmt(g['line_loading_max_percent'], '.1f')} %, trafo loading max "
               f"{_fmt(g['trafo_loading_max_percent'], '.1f')} %, voltage-violation ticks "
               f"{g['n_ticks_voltage_violation']}" if g.get("power_flows") else "")
            + (f"; solver {solver['name']}" if solver.get("name") else "")
        )
        if solver.get("note"):
            lines.append(f"  solver: {solver['note']}")
        if g.get("plant") and g.get("twin") and s["calls"]:
            lines.append(_grid_vs_twin(g["plant"], g["twin"]))
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
    settled = format_settlement(s.get("settlement") or [])
    if settled:
        lines += [""] + settled
    for w in s.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def format_settlement(per_event: list[dict]) -> list[str]:
    """Terminal lines for the settlement of each event (``per_event`` from :mod:`vpp.metrics.settle`).

    One row per event: its tier and the baseline it settles on, delivered energy
    against the twin and against that baseline, the performance ratio and net
    money under the tier [CNY], avoided CO2 (against the twin) and
    carbon-inclusive credits (against the settlement baseline); then one line
    per event with each baseline's error against the twin (bias [kWh], relative
    [%], RMSE [kW]), and the reasons of those unknown.
    """
    if not per_event:
        return []
    lines = [
        "settlement (delivered: twin / settlement baseline; money and credits on the settlement baseline)",
        f"{'event':<18}{'tier':<14}{'baseline':<15}{'twin kWh':>10}{'base kWh':>10}{'ratio':>7}{'net CNY':>11}"
        f"{'CO2 kg':>9}{'tCO2e':>8}",
    ]
    for e in per_event:
        st = e.get("settled") or {}
        ratio = st.get("performance_ratio")
        credits = (e.get("carbon_credits") or {}).get("credits_tco2e")
        lines.append(
            f"{e['id']:<18}{e['tier']:<14}{e['settlement_baseline']:<15}{_fmt(e.get('delivered_kwh_twin'), '>10,.0f')}"
            f"{_fmt(st.get('delivered_kwh'), '>10,.0f')}{_fmt(None if ratio is None else 100 * ratio, '>6.1f')}%"
            f"{_fmt(st.get('net_cny'), '>11,.0f')}{_fmt(e.get('avoided_co2_kg'), '>9,.0f')}{_fmt(credits, '>8.2f')}"
        )
    for e in per_event:
        if not e.get("ok"):
            lines.append(f"  {e['id']}: not settled: {e.get('reason')}")
            continue
        known, unknown = [], []
        for name, b in (e.get("baselines") or {}).items():
            if b.get("ok") and b.get("bias_kwh") is not None:
                rel = b.get("rel_error")
                known.append(f"{name} {b['bias_kwh']:+,.0f} kWh ({_fmt(None if rel is None else 100 * rel, '+.1f')} %,"
                             f" rmse {_fmt(b.get('rmse_kw'), ',.0f')} kW)")
            else:
                unknown.append(b.get("reason") or f"{name}: unknown")
        lines.append(f"  {e['id']} baseline - twin: " + ("; ".join(known) if known else "none known"))
        # One line per distinct reason, naming every baseline it applies to ("name: why" -> "a, b: why").
        by_reason: dict[str, list[str]] = {}
        for reason in unknown:
            name, sep, why = reason.partition(": ")
            by_reason.setdefault(why if sep else reason, []).append(name if sep else "")
        for why, names in by_reason.items():
            who = ", ".join(n for n in names if n)
            lines.append(f"    unknown {who}: {why}" if who else f"    unknown {why}")
        for note in e.get("notes") or []:
            lines.append(f"    note: {note}")
    return lines
