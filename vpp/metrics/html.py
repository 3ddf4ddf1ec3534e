"""``vpp report RUN_DIR``: a run's results as a self-contained HTML page and a Markdown page, with figures.

Reads what ``vpp run`` wrote (timeseries.parquet, buses.parquet,
branches.parquet, settlement.parquet, summary.json, meta.json) and writes, into
``<RUN_DIR>-report/`` beside the run by default (not inside it: a run directory
holds only the files its manifest lists, so that a later run may replace it):

- ``report.html``: every figure embedded as a base64 PNG, no external file,
  script or style sheet; it opens anywhere and can be mailed as one file;
- ``report.md`` and the figures as PNG files next to it.

Figures (:mod:`vpp.metrics.plots`): each DR call on its own panel; power by
fleet kind; fleet state (state of charge, backup-reserve margin, indoor
temperature) where the time series has it; voltage and loading against their
limits; the network map; settlement baselines against the twin where the run
settled events. A figure the run has nothing for is left out and the page says so.

The network map needs the pandapower net, which a run does not write. It is
re-loaded by name (:func:`vpp.grid.networks.load_network`): from the run's
files when they name the grid (``meta["grid"]`` or ``summary["grid"]``
``network``/``source``), else from the scenario file given with
``--scenario``; with neither, the map is left out.

A sweep directory (``vpp sweep --out``, it holds ``sweep.parquet``) gets its
own report (:func:`write_sweep_report`): trade-off plots of each call's KPIs
against the swept parameters, and a table of parameters against KPIs.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Callable

import pandas as pd

from vpp.metrics.results import Results
from vpp.units import S_PER_H

__all__ = ["ReportError", "read_run", "write_report", "read_sweep", "write_sweep_report"]


class ReportError(ValueError):
    """A run directory that cannot be reported on (one line, naming the path)."""


def _read_table(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None


def read_run(run_dir: str | Path) -> Results:
    """The :class:`Results` of a run directory written by ``vpp run`` (``net`` None)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: not a directory")
    missing = [n for n in ("timeseries.parquet", "summary.json") if not (run_dir / n).is_file()]
    if missing:
        raise ReportError(f"{run_dir}: not a vpp run directory (no {', '.join(missing)})")
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        meta = json.loads((run_dir / "meta.json").read_text(encoding="utf-8")) if (run_dir / "meta.json").is_file() \
            else {}
        ts = pd.read_parquet(run_dir / "timeseries.parquet")
        buses = _read_table(run_dir / "buses.parquet")
        return Results(
            scenario_name=str(meta.get("scenario") or summary.get("scenario") or run_dir.name),
            timeseries=ts, buses=buses if buses is not None else pd.DataFrame(), summary=summary, meta=meta,
            completed=bool(summary.get("complete", True)), stopped_by=summary.get("stopped_by"),
            error=summary.get("error"), branches=_read_table(run_dir / "branches.parquet"),
            settlement=_read_table(run_dir / "settlement.parquet"),
        )
    except (OSError, ValueError) as exc:
        raise ReportError(f"{run_dir}: cannot read the run: {exc}") from None


def _grid_name(results: Results, scenario: str | Path | None) -> tuple[str, str, str | None] | None:
    """``(network, source, base_dir)`` of the run's grid, or None when nothing names it.

    A given ``scenario`` must be the run's own (checked by name) and wins; else the run's meta names it.
    """
    if scenario is None:
        for holder in (results.meta.get("grid"), (results.summary.get("grid") or {})):
            if isinstance(holder, dict) and holder.get("network"):
                return str(holder["network"]), str(holder.get("source") or "pandapower"), None
    if scenario is not None:
        from vpp.scenario import ScenarioError, load_scenario

        try:
            sc = load_scenario(scenario)
        except ScenarioError as exc:
            raise ReportError(f"--scenario {scenario}: {exc}") from None
        if sc.name != results.scenario_name:
            raise ReportError(f"--scenario {scenario} is scenario {sc.name!r}, the run's is "
                              f"{results.scenario_name!r}")
        return sc.grid.network, sc.grid.source, str(Path(scenario).resolve().parent)
    return None


# --- tables -----------------------------------------------------------------------------------------


def _num(x, spec: str = ",.1f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return format(x, spec)
    return str(x)


def _h(t_s) -> str:
    return "–" if t_s is None else f"{float(t_s) / S_PER_H:.2f}"


def _tables(results: Results) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the report's tables."""
    s, m = results.summary, results.meta
    out = []
    run_rows = [
        ["scenario", results.scenario_name],
        ["complete", _num(results.completed) + ("" if results.completed else f" (stopped by {results.stopped_by})")],
        ["ticks", f"{_num(s.get('n_ticks_done'), ',d')} of {_num(s.get('n_ticks_total') or s.get('n_ticks'), ',d')}"
                  f", dt {_num(s.get('dt_s'), 'g')} s"],
        ["delivery measured against", str(s.get("delivery_measured_against") or "–")],
        ["seed", _num(m.get("seed"), "d")],
        ["vpp version", str((m.get("versions") or {}).get("vpp", "–"))],
        ["wall time [s]", _num(m.get("wall_time_s"), ".2f")],
    ]
    out.append(("Run", ["", ""], run_rows))
    calls = s.get("calls") or []
    if calls:
        out.append(("DR calls", ["id", "direction", "start [h]", "end [h]", "requested [kW]", "accepted",
                                 "delivered [kWh]", "delivered / requested", "rebound [kWh]", "rebound peak [kW]"],
                    [[str(c["id"]), c["direction"], _h(c.get("start_s")), _h(c.get("end_s")),
                      _num(c.get("requested_kw_max"), ",.0f"), _num(c.get("accepted")),
                      _num(c.get("delivered_kwh"), ",.0f"), _num(c.get("delivered_ratio"), ".1%"),
                      _num(c.get("rebound_kwh"), ",.0f"), _num(c.get("rebound_peak_kw"), ",.0f")] for c in calls]))
    g = s.get("grid") or {}
    if g.get("plant"):
        (lo, hi), lim = g.get("vm_limits_pu") or (0.95, 1.05), g.get("loading_limit_percent") or 100.0
        rows = []
        for name, key in (("with the calls", "plant"), ("without (twin)", "twin")):
            k = g.get(key) or {}
            if not k.get("n_ticks_solved"):
                continue
            rows.append([name, _num(k.get("vm_min_pu"), ".4f"), _num(k.get("vm_max_pu"), ".4f"),
                         _num(k.get("line_loading_max_percent"), ".1f"), _num(k.get("trafo_loading_max_percent"), ".1f"),
                         _num((k.get("voltage_violation") or {}).get("n_ticks"), "d"),
                         _num((k.get("overload") or {}).get("n_ticks"), "d")])
        out.append((f"Grid (limits {lo:g}-{hi:g} pu, {lim:g} %)",
                    ["", "lowest voltage [pu]", "highest voltage [pu]", "line loading max [%]",
                     "transformer loading max [%]", "ticks outside the band", "ticks overloaded"], rows))
    settle = s.get("settlement") or []
    rows = []
    for e in settle if isinstance(settle, list) else []:
        for ref, r in (e.get("references") or {}).items():
            rows.append([str(e.get("id")), ref, _num(r.get("ok")), _num(r.get("delivered_kwh"), ",.0f"),
                         _num(r.get("performance_ratio"), ".1%"), _num(r.get("net_cny"), ",.0f"),
                         "" if r.get("ok") else str(r.get("reason") or "")])
    if rows:
        out.append(("Settlement: baselines against the twin",
                    ["event", "reference", "ok", "delivered [kWh]", "performance", "net [CNY]", "why not"], rows))
    return out


# --- writers ----------------------------------------------------------------------------------------

_FIGURES = (
    ("calls", "DR calls", "figure_calls", "Each DR call on its own panel: the requested change (target) against the "
     "change its targets delivered, measured against the no-call twin; after the end, a rebound shows below zero."),
    ("kinds", "Power by fleet kind", "figure_kinds", "Plant power by device kind with the calls (solid) and in the "
     "no-call twin (dashed); DR calls shaded."),
    ("state", "State of charge and backup reserve", "figure_storage", "Fleet state where the run records it: mean "
     "state of charge, the lowest site's margin above its backup reserve (below 0: breached), indoor temperature."),
    ("grid", "Voltage and loading", "figure_grid", "Lowest and highest bus voltage and the most loaded line and "
     "transformer, with the calls (solid) and without (dashed), against the limits (red dashed)."),
    ("network", "Network map", None, "Each bus's worst voltage and each branch's peak loading over the run."),
    ("baselines", "Baselines against the twin", "figure_baselines", "Metered plant power during each settled "
     "event against each settlement baseline and the no-call twin, per settlement interval."),
)

_CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .5em;
text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%;height:auto}
.note{color:#666;font-size:.9em}"""


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, scenario: str | Path | None = None,
                 progress: Callable[[int], object] | None = None) -> list[Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` with its PNG figures; return their paths.

    ``out_dir`` defaults to ``<run_dir>-report`` beside the run. ``scenario``:
    the run's scenario file, for the network map when the run's files do not
    name the grid. ``progress(1)`` is called after each figure. Raises
    :class:`ReportError` for a directory that is not a run.
    """
    from vpp.metrics import plots

    run_dir = Path(run_dir)
    results = read_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir.with_name(run_dir.name + "-report")
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str, str, Path | None, str]] = []  # key, title, caption, png, why absent
    for key, title, func, caption in _FIGURES:
        png, why = out / f"{key}.png", ""
        if key == "network":
            why = _network_png(results, scenario, png)
            png = None if why else png
        else:
            fig = getattr(plots, func)(results)
            if fig is None:
                png, why = None, "the run has nothing to draw here"
            else:
                fig.savefig(png, dpi=100)
                plots._pyplot().close(fig)
        figures.append((key, title, caption, png, why))
        if progress is not None:
            progress(1)
    tables = _tables(results)
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(_html(results, run_dir, tables, figures), encoding="utf-8")
    md_path.write_text(_markdown(results, run_dir, tables, figures), encoding="utf-8")
    return [html_path, md_path] + [f[3] for f in figures if f[3] is not None]


def _network_png(results: Results, scenario, png: Path) -> str:
    """Draw the network map into ``png``; '' when drawn, else why not."""
    from vpp.metrics.plots import plot_network

    if results.branches is None or not len(results.buses) or "vm_min_pu" not in results.buses:
        return "the run had no power flow"
    name = _grid_name(results, scenario)
    if name is None:
        return "the run's files do not name its grid: give the scenario file (vpp report RUN_DIR --scenario FILE)"
    from vpp.grid.networks import NetworkError, load_network

    network, source, base_dir = name
    try:
        results.net = load_network(network, source, base_dir)
    except (NetworkError, ImportError) as exc:
        return f"the grid {network!r} could not be loaded: {exc}"
    plot_network(results, png)
    return ""


def _title(results: Results) -> str:
    return f"vpp report: {results.scenario_name}"


def _html(results: Results, run_dir: Path, tables, figures) -> str:
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(_title(results))}</title>"
             f"<style>{_CSS}</style></head><body><h1>{e(_title(results))}</h1>"
             f"<p class='note'>from {e(str(run_dir))}{'' if results.completed else ' (incomplete run)'}</p>"]
    if results.summary.get("scenario") and isinstance(results.meta.get("description"), str):
        parts.append(f"<p>{e(results.meta['description'])}</p>")
    for title, header, rows in tables:
        parts.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    for key, title, caption, png, why in figures:
        parts.append(f"<h2 id='{key}'>{e(title)}</h2>")
        if png is None:
            parts.append(f"<p class='note'>Not drawn: {e(why)}.</p>")
            continue
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f"<p>{e(caption)}</p><img alt='{e(title)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _markdown(results: Results, run_dir: Path, tables, figures) -> str:
    def cell(x: str) -> str:
        return x.replace("|", "\\|").replace("\n", " ")

    lines = [f"# {_title(results)}", "", f"from `{run_dir}`" + ("" if results.completed else " (incomplete run)"), ""]
    for title, header, rows in tables:
        lines += [f"## {title}", "", "| " + " | ".join(cell(h) for h in header) + " |",
                  "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
        lines.append("")
    for key, title, caption, png, why in figures:
        lines += [f"## {title}", ""]
        lines += [f"Not drawn: {why}.", ""] if png is None else [caption, "", f"![{title}]({png.name})", ""]
    return "\n".join(lines)


# --- sweeps -------------------------------------------------------------------------------------------

_SWEEP_KPIS = (  # (KPI under kpi.calls.<id>., axis label, scale, table header)
    ("delivered_ratio", "delivered / requested [-]", 1.0, "delivered / requested"),
    ("tick_ratio_min", "worst tick: delivered / requested [-]", 1.0, "worst tick ratio"),
    ("rebound_kwh", "rebound [MWh]", 1e-3, "rebound [MWh]"),
)


def read_sweep(sweep_dir: str | Path) -> tuple[pd.DataFrame, list[str], dict]:
    """A sweep directory's table, its swept paths (in grid order) and ``sweep.json`` (may be empty)."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / "sweep.parquet"
    if not path.is_file():
        raise ReportError(f"{sweep_dir}: not a sweep directory (no sweep.parquet)")
    try:
        df = pd.read_parquet(path)
        meta = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8")) \
            if (sweep_dir / "sweep.json").is_file() else {}
    except (OSError, ValueError) as exc:
        raise ReportError(f"{sweep_dir}: cannot read the sweep: {exc}") from None
    cols = list(df.columns)
    if "case" not in cols or "seed_index" not in cols:
        raise ReportError(f"{sweep_dir}: sweep.parquet has no case/seed_index columns: not written by vpp sweep")
    params = list(meta.get("grid") or cols[cols.index("case") + 1:cols.index("seed_index")])
    params = [p for p in params if p in df]
    return df, params, meta


def _sweep_calls(df: pd.DataFrame) -> list[str]:
    ids = []
    for c in df.columns:
        if c.startswith("kpi.calls.") and c.endswith(".delivered_ratio"):
            ids.append(c[len("kpi.calls."):-len(".delivered_ratio")])
    return ids


def _sweep_table(df: pd.DataFrame, params: list[str], call_id: str | None) -> tuple[list[str], list[list[str]]]:
    """Per combination of the swept values: seeds, then mean ± std over seeds of the main KPIs."""
    ok = df[df["status"] == "ok"]
    kpis = [(f"kpi.calls.{call_id}.{k}", head, scale) for k, _, scale, head in _SWEEP_KPIS] if call_id else []
    kpis += [("kpi.grid.vm_min_pu", "min voltage [pu]", 1.0)] if "kpi.grid.vm_min_pu" in df else []
    kpis = [k for k in kpis if k[0] in ok]
    header = list(params) + ["seeds ok"] + [h for _, h, _ in kpis]
    rows = []
    if not params:
        return header, rows
    for key, g in ok.groupby(params, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = [_num(v, "g") if isinstance(v, float) else str(v) for v in key] + [str(len(g))]
        for col, _, scale in kpis:
            v = g[col].dropna() * scale
            spec = ".3f" if scale == 1.0 else ",.2f"
            row.append("–" if not len(v) else format(v.mean(), spec) + (f" ± {v.std(ddof=1):{spec}}" if len(v) > 1
                                                                       else ""))
        rows.append(row)
    return header, rows


def write_sweep_report(sweep_dir: str | Path, out_dir: str | Path | None = None, x: str | None = None,
                       hue: str | None = None, progress: Callable[[int], object] | None = None) -> list[Path]:
    """Report of a sweep directory (``vpp sweep --out``): trade-off plots and a parameters-vs-KPIs table.

    One figure per DR call found in the table (``kpi.calls.<id>.*``):
    delivered/requested, the worst tick's ratio and the rebound against a
    swept parameter, one line per value of another, panels for the rest
    (roles chosen by :func:`vpp.metrics.plots.sweep_roles`, or ``x`` and
    ``hue``), seed spread as error bars. The table gives, per combination,
    the number of seeds that ran and the mean ± standard deviation over
    seeds. Writes ``report.html`` (self-contained), ``report.md`` and the
    PNGs into ``out_dir`` (default ``<sweep_dir>-report`` beside it).
    """
    from vpp.metrics import plots

    sweep_dir = Path(sweep_dir)
    df, params, meta = read_sweep(sweep_dir)
    for name, p in (("--x", x), ("--hue", hue)):
        if p is not None and p not in params:
            raise ReportError(f"{name} {p}: not a swept path; swept: {', '.join(params)}")
    out = Path(out_dir) if out_dir is not None else sweep_dir.with_name(sweep_dir.name + "-report")
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    calls = _sweep_calls(df)
    figures: list[tuple[str, str, str, Path | None, str]] = []
    roles = plots.sweep_roles(df[df["status"] == "ok"], params, x, hue)
    for cid in calls:
        kpis = [(f"kpi.calls.{cid}.{k}", label, scale) for k, label, scale, _ in _SWEEP_KPIS]
        fig = plots.figure_sweep(df, params, kpis, x=x, hue=hue, title=f"call {cid}")
        key = f"tradeoff-{cid}"
        png, why = out / f"{key}.png", ""
        if fig is None:
            png, why = None, "no swept parameter varies, or no case ran"
        else:
            fig.savefig(png, dpi=100)
            plots._pyplot().close(fig)
        caption = (f"Call {cid}: KPIs against {roles['x']}" + (f", one line per {roles['hue']}" if roles["hue"] else "")
                   + (f", one column per {', '.join(roles['panels'])}" if roles["panels"] else "")
                   + ". Points: mean over seeds; error bars: the seeds' min to max.")
        figures.append((key, f"Trade-offs: call {cid}", caption, png, why))
        if progress is not None:
            progress(1)
    if not calls:
        figures.append(("tradeoff", "Trade-offs", "", None, "the sweep's scenario has no DR call"))
    n_fail = int((df["status"] != "ok").sum())
    run = [["cases", str(len(df))], ["failed cases", str(n_fail)],
           ["seeds per combination", str(meta.get("seeds", int(df.groupby(params).size().max()) if params else 1))],
           ["swept", "; ".join(f"{p}: {', '.join(_label(v) for v in df[p].unique())}" for p in params)],
           ["fixed (set)", "; ".join(f"{k} = {v}" for k, v in (meta.get("overrides") or {}).items()) or "–"],
           ["backend", str(meta.get("backend", "–"))],
           ["wall time [s]", _num(meta.get("wall_time_s"), ",.1f")],
           ["code version", str(meta.get("code_version", "–"))]]
    tables = [("Sweep", ["", ""], run)]
    for cid in calls or [None]:
        header, rows = _sweep_table(df, params, cid)
        tables.append((f"Parameters and KPIs{f' (call {cid})' if cid else ''}: mean ± std over seeds", header, rows))
    if n_fail:
        failed = df[df["status"] != "ok"]
        tables.append(("Failed cases", ["case"] + params + ["error"],
                       [[str(r["case"])] + [str(r[p]) for p in params] + [str(r["error"])[:200]]
                        for _, r in failed.iterrows()]))
    title = f"vpp sweep report: {sweep_dir.name}"
    html_path, md_path = out / "report.html", out / "report.md"
    shim = Results(scenario_name=sweep_dir.name, timeseries=pd.DataFrame(), buses=pd.DataFrame(), summary={},
                   meta={}, completed=n_fail == 0)
    html_path.write_text(_html(shim, sweep_dir, tables, figures).replace(_title(shim), title), encoding="utf-8")
    md_path.write_text(_markdown(shim, sweep_dir, tables, figures).replace(_title(shim), title), encoding="utf-8")
    return [html_path, md_path] + [f[3] for f in figures if f[3] is not None]


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
