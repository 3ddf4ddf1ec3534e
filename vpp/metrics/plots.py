"""Plots of a run (matplotlib, headless Agg backend; imported only when asked for).

``dispatch.png`` draws the run over time; ``network.png`` maps the grid. Both
draw the limits the grid KPIs count against (``summary["grid"]["vm_limits_pu"]``
and ``["loading_limit_percent"]``, the scenario's ``grid.vm_min_pu``,
``grid.vm_max_pu`` and ``grid.loading_max_percent``). :func:`figure_sweep`
draws a sweep's trade-offs (KPIs against the swept parameters).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from vpp.metrics.results import Results
from vpp.units import S_PER_H

__all__ = ["plot_dispatch", "plot_network", "figure_calls", "figure_kinds", "figure_storage", "figure_grid",
           "figure_baselines", "figure_sweep", "sweep_roles"]

_REDUCE, _INCREASE = "tab:red", "tab:blue"  # shading of a call's span, by direction
_LIMIT = dict(color="crimson", ls=(0, (4, 2)), lw=1.0)  # every limit line
_KK_MAX_BUSES = 250  # generic layout: Kamada-Kawai up to this size (O(n^2), ~2 s here); a radial tree above


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _limits(results: Results) -> tuple[tuple[float, float], float]:
    g = results.summary.get("grid") or {}
    lo, hi = g.get("vm_limits_pu") or (0.95, 1.05)
    return (float(lo), float(hi)), float(g.get("loading_limit_percent") or 100.0)


def _shade_run_calls(axes, results, ts) -> None:
    """:func:`_shade_calls` for a run's own calls, up to the end of its last tick."""
    dt_s = float((results.summary or {}).get("dt_s") or 0.0)
    t_end_s = float(ts["t_s"].iloc[-1]) + dt_s if len(ts) else 0.0
    _shade_calls(axes, (results.summary or {}).get("calls") or [], axes[0], t_end_s)


def _finish_time_axes(axes, ncol: int, ncol_first: int | None = None) -> None:
    """Grid and legend on every panel (``ncol_first`` columns on the first), the shared time axis labelled."""
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(loc="upper left", fontsize=7, ncol=ncol_first if ncol_first and a is axes[0] else ncol,
                 framealpha=0.8)
    axes[-1].set_xlabel("time since scenario start [h]")


def _shade_calls(axes, calls, label_ax, t_end_s: float) -> None:
    """Shade the time in which DR calls were on, per direction, on every panel, clipped to the run.

    Overlapping calls (the grid operator raises and reinforces many) make one
    span, labelled with the call's id or the number of calls in it.
    """
    from matplotlib.transforms import blended_transform_factory

    tr = blended_transform_factory(label_ax.transData, label_ax.transAxes)
    for direction, color in (("reduce", _REDUCE), ("increase", _INCREASE)):
        spans = sorted((c["start_s"], min(c["end_s"], t_end_s), c["id"]) for c in calls
                       if c["direction"] == direction and c["start_s"] < t_end_s)
        merged: list[list] = []
        for a, b, cid in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
                merged[-1][2].append(cid)
            else:
                merged.append([a, b, [cid]])
        for k, (a, b, ids) in enumerate(merged):
            for ax in axes:
                label = f"DR call ({direction})" if ax is label_ax and k == 0 else None
                ax.axvspan(a / S_PER_H, b / S_PER_H, color=color, alpha=0.1, lw=0, label=label)
            text = ids[0] if len(ids) == 1 else f"{len(ids)} calls"
            label_ax.text((a + b) / 2 / S_PER_H, 1.01, text, transform=tr, ha="center", va="bottom", fontsize=7,
                          color=color, clip_on=False)


def _include(ax, *values) -> None:
    """Widen the y range so that the limit lines ``values`` are inside the panel."""
    lo, hi = ax.get_ylim()
    lo, hi = min(lo, *values), max(hi, *values)
    pad = 0.04 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)


def _voltage_panel(ax, t_h, ts, vlo: float, vhi: float) -> None:
    """Lowest and highest bus voltage [pu], with the calls and (dashed) without them, against the band."""
    for q, color, name in (("vm_min", "tab:purple", "lowest"), ("vm_max", "tab:orange", "highest")):
        ax.plot(t_h, ts[f"{q}_pu"], color=color, lw=1.3, label=f"{name} bus voltage")
        if f"{q}_twin_pu" in ts:
            ax.plot(t_h, ts[f"{q}_twin_pu"], "--", color=color, lw=1.0, label=f"{name}, without calls")
    ax.axhline(vlo, **_LIMIT, label=f"voltage band {vlo:g}-{vhi:g} pu")
    ax.axhline(vhi, **_LIMIT)
    _include(ax, vlo, vhi)
    ax.set_ylabel("voltage [pu]")


def _loading_panel(ax, t_h, ts, limit: float) -> None:
    """The most loaded transformer and line [%], with the calls and (dashed) without them, against the limit."""
    for q, color, name in (("trafo", "tab:brown", "transformer"), ("line", "tab:cyan", "line")):
        if f"{q}_loading_max_percent" in ts:
            ax.plot(t_h, ts[f"{q}_loading_max_percent"], color=color, lw=1.3, label=f"most loaded {name}")
        if f"{q}_loading_max_twin_percent" in ts:
            ax.plot(t_h, ts[f"{q}_loading_max_twin_percent"], "--", color=color, lw=1.0,
                    label=f"most loaded {name}, without calls")
    ax.axhline(limit, **_LIMIT, label=f"loading limit {limit:g} %")
    _include(ax, 0.0, limit)
    ax.set_ylabel("loading [%]")


def plot_dispatch(results: Results, path: str | Path) -> Path:
    """Stacked panels over time, written as PNG to ``path``.

    Plant power by kind against the no-call twin; DR requested against
    delivered; and with a power flow, the lowest and highest bus voltage and
    the highest line and transformer loading, with the calls (solid) and
    without them (the twin, dashed), against the voltage band and the loading
    limit. Each DR call is a shaded span.
    """
    plt = _pyplot()
    ts = results.timeseries
    t_h = ts["t_s"].to_numpy() / S_PER_H
    grid = bool(ts["grid_converged"].any()) if "grid_converged" in ts else False
    (vlo, vhi), limit = _limits(results)
    n = 4 if grid else 2
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.6 * n + 0.8), sharex=True, constrained_layout=True)
    ax = axes[0]
    kinds = [c for c in ts.columns if c.startswith("kind.") and c.endswith(".p_kw")]
    ax.stackplot(t_h, *[ts[c].to_numpy() / 1e3 for c in kinds], labels=[c.split(".")[1] for c in kinds], alpha=0.6)
    ax.plot(t_h, ts["p_twin_kw"] / 1e3, "k--", lw=1.2, label="no-call twin")
    ax.plot(t_h, ts["p_vpp_kw"] / 1e3, "k-", lw=1.2, label="VPP")
    ax.set_ylabel("power [MW]")
    ax.set_title(f"{results.scenario_name}: plant power", pad=14)
    ax = axes[1]
    ax.step(t_h, ts["p_requested_kw"] / 1e3, where="post", label="requested", color="tab:red", lw=4, alpha=0.35)
    ax.step(t_h, ts["p_delivered_kw"] / 1e3, where="post", label="delivered (vs twin)", color="tab:green")
    ax.step(t_h, -ts["p_change_kw"] / 1e3, where="post", label="twin - plant", color="tab:gray", lw=0.8)
    ax.plot(t_h, ts["flex_down_kw"] / 1e3, ":", color="tab:blue", label="flexibility down")
    ax.set_ylabel("DR [MW]")
    if grid:
        _voltage_panel(axes[2], t_h, ts, vlo, vhi)
        _loading_panel(axes[3], t_h, ts, limit)
    _shade_run_calls(axes, results, ts)
    _finish_time_axes(axes, ncol=3, ncol_first=5)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _radial_tree(graph, root) -> dict:
    """Positions of a connected graph's nodes: a breadth-first tree from ``root``, depth as the radius, each
    subtree given an angle in proportion to its leaves (edges off the tree are drawn as chords)."""
    import networkx as nx

    tree = nx.bfs_tree(graph, root)
    leaves = {}
    for node in nx.dfs_postorder_nodes(tree, root):
        leaves[node] = sum(leaves[c] for c in tree.successors(node)) or 1
    pos, stack = {}, [(root, 0, 0.0, 2 * np.pi)]
    while stack:
        node, depth, a, b = stack.pop()
        mid = (a + b) / 2
        pos[node] = np.array([depth * np.cos(mid), depth * np.sin(mid)])
        for child in tree.successors(node):
            w = (b - a) * leaves[child] / leaves[node]
            stack.append((child, depth + 1, a, a + w))
            a += w
    return pos


def _generic_coordinates(net) -> None:
    """Give every bus of ``net`` a schematic position (in place): pandapower's igraph layout when igraph is
    installed; otherwise a networkx layout of pandapower's own graph of the net (Kamada-Kawai, or a radial
    tree from the external grid on larger nets), one component beside the other."""
    from pandapower.plotting.generic_geodata import IGRAPH_INSTALLED

    net.line["geo"] = None  # lines are drawn between their buses
    if IGRAPH_INSTALLED:
        import pandapower.plotting as pplot

        pplot.create_generic_coordinates(net, library="igraph", overwrite=True)
        return
    # pandapower's networkx route needs Graphviz; lay the same graph out with networkx itself.
    import networkx as nx
    from pandapower.topology import create_nxgraph

    graph = nx.Graph(create_nxgraph(net, respect_switches=False, include_out_of_service=True))
    slack = set(net.ext_grid.bus[net.ext_grid.in_service]) if len(net.ext_grid) else set()
    pos: dict = {}
    x0 = 0.0
    for nodes in sorted(nx.connected_components(graph), key=len, reverse=True):
        sub = graph.subgraph(nodes)
        if len(nodes) == 1:
            part = {next(iter(nodes)): np.zeros(2)}
        elif len(nodes) <= _KK_MAX_BUSES:
            part = nx.kamada_kawai_layout(sub, weight=None)  # hop distance: a schematic, not a map
        else:
            part = _radial_tree(sub, min(nodes & slack) if nodes & slack else min(nodes))
        xy = np.array(list(part.values()))
        extent = max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]), 1e-9)
        scale = np.sqrt(len(nodes) / len(graph)) / extent  # a component's size grows with its bus count
        for b, p in part.items():
            pos[b] = ((p[0] - xy[:, 0].min()) * scale + x0, (p[1] - xy[:, 1].mean()) * scale)
        x0 += (np.ptp(xy[:, 0]) + 0.1 * extent) * scale
    net.bus["geo"] = [json.dumps({"type": "Point", "coordinates": [float(pos[b][0]), float(pos[b][1])]})
                      for b in net.bus.index]


def _bus_xy(net) -> np.ndarray:
    return np.array([json.loads(g)["coordinates"][:2] for g in net.bus.geo], dtype=float)


def plot_network(results: Results, path: str | Path) -> Path:
    """A map of the grid over the run, written as PNG to ``path``.

    Buses are coloured by their worst voltage over the run (the lowest or the
    highest, whichever lies further beyond, or closer to, its limit), lines
    and transformers by their peak loading over the run, both with the VPP's
    calls; the colour bars mark the voltage band and the loading limit. Buses
    are placed by the net's geodata, or where it has none by a generic layout.
    Needs ``results.net`` (set by :func:`vpp.run.run_scenario` when the run
    had a power flow) and ``results.branches``.
    """
    plt = _pyplot()
    import pandapower.plotting as pplot
    from matplotlib import cm
    from matplotlib.lines import Line2D

    if results.net is None:
        raise ValueError("plot_network needs results.net: the run had no power flow")
    net = copy.deepcopy(results.net)  # coordinates are written into the net
    geo = net.bus["geo"] if "geo" in net.bus else None
    if geo is None or geo.isna().any():
        _generic_coordinates(net)
    line_geo = "geo" in net.line and bool(len(net.line)) and net.line["geo"].notna().all()
    xy = _bus_xy(net)
    span = float(max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]), 1e-9))
    pos = {b: i for i, b in enumerate(net.bus.index)}
    ends = [xy[[pos[b] for b in net.line[s]]] for s in ("from_bus", "to_bus")] if len(net.line) else None
    seg = np.hypot(*(ends[0] - ends[1]).T) if ends is not None else np.zeros(0)
    seg = seg[seg > 0]
    # Bus markers small beside the map and beside its typical line, so that lines stay visible.
    size = min(span * 0.006, 0.2 * float(np.median(seg))) if seg.size else span * 0.006
    (vlo, vhi), limit = _limits(results)

    buses = results.buses.set_index("bus").reindex(net.bus.index)
    vmin, vmax = buses["vm_min_pu"].to_numpy(), buses["vm_max_pu"].to_numpy()
    worst = np.where(vlo - vmin >= vmax - vhi, vmin, vmax)
    ok = np.isfinite(worst)
    v_lo = min(vlo - 0.01, np.nanmin(worst) if ok.any() else vlo)
    v_hi = max(vhi + 0.01, np.nanmax(worst) if ok.any() else vhi)
    # Buses blue (low) - grey - brown (high), apart from the lines' green - red, so neither reads as the other.
    v_cmap, v_norm = pplot.cmap_continuous([(v_lo, "#081d58"), (vlo, "#4393c3"), ((vlo + vhi) / 2, "#e7e7e7"),
                                            (vhi, "#bf812d"), (v_hi, "#543005")])

    br = results.branches if results.branches is not None else None
    peaks = {}
    for element in ("line", "trafo"):
        rows = br[br["element"] == element] if br is not None else None
        peaks[element] = (rows.set_index("index")["loading_max_percent"].reindex(net[element].index).to_numpy()
                          if rows is not None else np.full(len(net[element]), np.nan))
    all_peaks = np.concatenate([peaks["line"], peaks["trafo"]])
    l_hi = max(1.25 * limit, np.nanmax(all_peaks) if np.isfinite(all_peaks).any() else 0.0)
    l_cmap, l_norm = pplot.cmap_continuous([(0.0, "#66bd63"), (0.5 * limit, "#d9ef8b"), (0.8 * limit, "#fdae61"),
                                            (limit, "#d73027"), (l_hi, "#3f0011")])

    collections = []
    line_kw = dict(use_bus_geodata=not line_geo, plot_colormap=False)
    on = np.isfinite(peaks["line"])
    if (~on).any():
        collections.append(pplot.create_line_collection(net, lines=net.line.index[~on], color="0.75", linewidths=0.8,
                                                        linestyles="dashed", **line_kw))
    if on.any():
        collections.append(pplot.create_line_collection(net, lines=net.line.index[on], z=peaks["line"][on],
                                                        cmap=l_cmap, norm=l_norm, linewidths=2.0, **line_kw))
    t_on = np.isfinite(peaks["trafo"])
    t_xy = {s: xy[[pos[b] for b in net.trafo[f"{s}_bus"]]] for s in ("hv", "lv")}
    t_mid = (t_xy["hv"] + t_xy["lv"]) / 2
    # pandapower draws a transformer as two circles between its buses; where both buses share one
    # position (geodata often does) a coloured ring at that position stands for it instead.
    apart = np.hypot(*(t_xy["hv"] - t_xy["lv"]).T) > 2 * size
    drawn = t_on & apart
    if drawn.any():
        colors = [tuple(c) for c in l_cmap(l_norm(peaks["trafo"][drawn]))]
        # Rings (edge colours), not pandapower's filled colormapped circles, which hide a dense net.
        collections.extend(pplot.create_trafo_collection(net, trafos=net.trafo.index[drawn], size=size * 1.2,
                                                         color=colors, linewidths=1.5))
    if (~ok).any():
        collections.append(pplot.create_bus_collection(net, buses=net.bus.index[~ok], size=size, color="0.6",
                                                       zorder=3))
    if ok.any():
        collections.append(pplot.create_bus_collection(net, buses=net.bus.index[ok], size=size, z=worst[ok],
                                                       cmap=v_cmap, norm=v_norm, plot_colormap=False, zorder=4,
                                                       edgecolor="0.25", linewidth=0.4))
    if len(net.ext_grid):
        collections.append(pplot.create_ext_grid_collection(net, size=size * 2.2, orientation=0, color="k",
                                                            zorder=5))

    fig, ax = plt.subplots(figsize=(11, 7.5), constrained_layout=True)
    pplot.draw_collections(collections, ax=ax, plot_colorbars=False)
    rings = t_on & ~apart
    if rings.any():
        ax.scatter(t_mid[rings, 0], t_mid[rings, 1], s=160, facecolors="none", linewidths=2.5, zorder=6,
                   edgecolors=l_cmap(l_norm(peaks["trafo"][rings])))
    for cmap, norm, label, marks in ((v_cmap, v_norm, "worst bus voltage over the run [pu]", (vlo, vhi)),
                                     (l_cmap, l_norm, "peak loading over the run [%]", (limit,))):
        cb = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.6, pad=0.01, label=label)
        for m in marks:
            cb.ax.axhline(m, color="k", lw=1.2)
        cb.set_ticks(sorted({*cb.get_ticks(), *marks}))
        cb.ax.set_ylim(norm.vmin, norm.vmax)

    # Name the worst bus and the most loaded line and transformer on the map.
    notes = []
    if ok.any():
        k = int(np.nanargmax(np.fmax(vlo - worst, worst - vhi)))
        b = net.bus.index[k]
        notes.append((xy[k], f"bus {net.bus.name.get(b) or b}: {worst[k]:.3f} pu"))
    for element, a, z in (("line", "from_bus", "to_bus"), ("trafo", "hv_bus", "lv_bus")):
        p = peaks[element]
        if np.isfinite(p).any():
            k = int(np.nanargmax(p))
            row = net[element].iloc[k]
            mid = (xy[pos[row[a]]] + xy[pos[row[z]]]) / 2
            name = row.get("name") or net[element].index[k]
            notes.append((mid, f"{element} {name}: {p[k]:.1f} %"))
    for ((x, y), text), (dx, dy) in zip(notes, ((14, -26), (14, 14), (-14, 30))):
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8,
                    ha="left" if dx > 0 else "right",
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="0.5", alpha=0.85),
                    arrowprops=dict(arrowstyle="-", color="0.3", lw=0.8), zorder=10)
    g = results.summary.get("grid") or {}
    p, tw = g.get("plant") or {}, g.get("twin")
    sub = ""
    if p.get("n_ticks_solved"):
        pv, po = p["voltage_violation"], p["overload"]
        sub = (f"\nwith the calls: {pv['n_ticks']} ticks outside {vlo:g}-{vhi:g} pu, {po['n_ticks']} above "
               f"{limit:g} % loading")
        if tw and tw.get("n_ticks_solved"):
            sub += (f"; without: {tw['voltage_violation']['n_ticks']} and {tw['overload']['n_ticks']}")
    ax.set_title(f"{results.scenario_name}: worst bus voltage and peak branch loading over the run{sub}",
                 fontsize=10)
    handles = [Line2D([], [], color="0.75", ls="--", label="out of service / never solved")] if (~on).any() else []
    if len(net.ext_grid):
        handles.append(Line2D([], [], color="k", marker="s", ls="", label="external grid"))
    if t_on.any():
        handles.append(Line2D([], [], color="0.3", marker="o", mfc="none", ls="", label="transformer"))
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.8)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- figures of the HTML report (vpp report; vpp.metrics.html) -----------------------------------------
# Each returns a matplotlib Figure (or None when the run has nothing to draw); the caller saves and closes it.

_MAX_CALL_PANELS = 24  # more calls (a congestion run raises many): the first ones, the rest in the table


def _t_h(ts) -> np.ndarray:
    return ts["t_s"].to_numpy() / S_PER_H


def _call_kw(ts, cid: str, quantity: str) -> np.ndarray | None:
    from vpp.metrics.columns import call_col

    col = call_col(cid, quantity)
    return ts[col].to_numpy(dtype=float) if col in ts else None


def figure_calls(results: Results):
    """One panel per DR call, over its notice, active period and recovery window [kW].

    Requested change (the target) against the change delivered by the call's
    targets measured against the no-call twin, in the call's direction, so a
    rebound after the end shows below zero (shaded). Panel titles carry the
    summary's KPIs (delivered/requested energy, rebound energy and peak).
    """
    calls = (results.summary or {}).get("calls") or []
    ts = results.timeseries
    if not calls or not len(ts):
        return None
    plt = _pyplot()
    shown = calls[:_MAX_CALL_PANELS]
    ncols = 1 if len(shown) == 1 else 2
    nrows = -(-len(shown) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(11 if ncols == 2 else 10, 3.1 * nrows + 0.6), squeeze=False,
                             constrained_layout=True)
    t_s = ts["t_s"].to_numpy()
    dt_s = float((results.summary or {}).get("dt_s") or (t_s[1] - t_s[0] if len(t_s) > 1 else 1.0))
    t_end = t_s[-1] + dt_s
    for ax, c in zip(axes.flat, shown):
        cid = c["id"]
        start, end = float(c["start_s"]), float(c["end_s"])
        rec = c.get("recovery_window_s") or [end, min(t_end, end + (end - start))]
        before = max(start - float(c.get("notification_s") or start), 0.5 * (end - start), 2 * dt_s)
        a, b = max(0.0, start - min(before, 0.5 * (end - start) + 2 * dt_s)), min(t_end, max(rec[1], end + 2 * dt_s))
        sel = (t_s >= a) & (t_s <= b)
        th = t_s[sel] / S_PER_H
        req = _call_kw(ts, cid, "requested_kw")
        got = _call_kw(ts, cid, "target_change_kw")
        if got is None:
            got = _call_kw(ts, cid, "delivered_kw")
        if req is not None:
            ax.step(th, req[sel], where="post", color="tab:red", lw=4, alpha=0.35, label="requested (target)")
        if got is not None:
            g = got[sel]
            ax.step(th, g, where="post", color="tab:green", lw=1.4, label="delivered vs twin (its targets)")
            after = t_s[sel] >= end
            ax.fill_between(th, g, 0.0, where=after & (g < 0), step="post", color="tab:orange", alpha=0.5,
                            label="rebound")
        ax.axvspan(start / S_PER_H, min(end, t_end) / S_PER_H, color=_REDUCE if c["direction"] == "reduce"
                   else _INCREASE, alpha=0.08, lw=0)
        if rec[1] > rec[0]:
            ax.axvline(min(rec[1], t_end) / S_PER_H, color="0.4", lw=0.8, ls=":")
        ax.axhline(0.0, color="0.3", lw=0.6)
        ratio = c.get("delivered_ratio")
        kpis = [f"{c['direction']} {c.get('requested_kw_max') or 0:,.0f} kW"]
        if ratio is not None:
            kpis.append(f"delivered {ratio:.0%} of the energy")
        if c.get("rebound_kwh") is not None:
            kpis.append(f"rebound {c['rebound_kwh']:,.0f} kWh, peak {c.get('rebound_peak_kw') or 0:,.0f} kW")
        if c.get("cancelled"):
            kpis.append("cancelled")
        elif c.get("accepted") is False:
            kpis.append("declined")
        ax.set_title(f"call {cid}: " + "; ".join(kpis), fontsize=8.5)
        ax.set_ylabel("change [kW]")
        ax.set_xlabel("time since scenario start [h]", fontsize=8)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
        else:  # the time series has no column of this call
            ax.text(0.5, 0.5, "no time series of this call", transform=ax.transAxes, ha="center", color="0.4")
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    if len(calls) > len(shown):
        fig.suptitle(f"the first {len(shown)} of {len(calls)} DR calls (all are in the table)", fontsize=9)
    return fig


def figure_kinds(results: Results):
    """Plant power by fleet kind [MW], with the calls (solid) and the no-call twin (dashed); calls shaded."""
    ts = results.timeseries
    kinds = [c.split(".")[1] for c in ts.columns if c.startswith("kind.") and c.endswith(".p_kw")]
    if not kinds:
        return None
    plt = _pyplot()
    t_h = _t_h(ts)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.2), sharex=True, constrained_layout=True,
                             gridspec_kw={"height_ratios": [2, 1.2]})
    ax = axes[0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, color in zip(kinds, colors * 4):
        ax.plot(t_h, ts[f"kind.{k}.p_kw"] / 1e3, color=color, lw=1.4, label=k)
        if f"kind.{k}.p_twin_kw" in ts and ts[f"kind.{k}.p_twin_kw"].notna().any():
            ax.plot(t_h, ts[f"kind.{k}.p_twin_kw"] / 1e3, "--", color=color, lw=0.9, label=f"{k}, no-call twin")
    ax.set_ylabel("power by kind [MW]")
    ax.set_title(f"{results.scenario_name}: power by fleet kind (load positive)", pad=14)
    ax = axes[1]
    ax.plot(t_h, ts["p_vpp_kw"] / 1e3, "k-", lw=1.3, label="VPP")
    if "p_twin_kw" in ts and ts["p_twin_kw"].notna().any():
        ax.plot(t_h, ts["p_twin_kw"] / 1e3, "k--", lw=1.0, label="no-call twin")
    ax.set_ylabel("plant power [MW]")
    _shade_run_calls(axes, results, ts)
    _finish_time_axes(axes, ncol=4)
    return fig


_STATE_PANELS = (  # (column-name start, y label) of the fleet state columns the time series may hold
    ("soc", "state of charge [-]"),
    ("reserve_margin_min_kwh", "reserve margin [kWh]\n(lowest site)"),
    ("t_in", "indoor temperature [degC]"),
)


def figure_storage(results: Results):
    """State of charge, backup-reserve margin and indoor temperature of the fleets that record them.

    Draws whichever of ``fleet.<name>.soc*``, ``fleet.<name>.reserve_margin_min_kwh``
    (energy above each site's backup reserve [kWh]: below 0 the reserve is
    breached, the band drawn in red) and ``fleet.<name>.t_in*_c`` the time
    series has; None when it has none.
    """
    ts = results.timeseries
    groups = []
    for key, label in _STATE_PANELS:
        cols = [c for c in ts.columns if c.startswith("fleet.") and c.split(".")[-1].startswith(key)]
        if cols:
            groups.append((key, label, cols))
    if not groups:
        return None
    plt = _pyplot()
    t_h = _t_h(ts)
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 2.7 * len(groups) + 0.8), sharex=True, squeeze=False,
                             constrained_layout=True)
    axes = axes[:, 0]
    for ax, (key, label, cols) in zip(axes, groups):
        for col in cols:
            _, fleet, q = col.split(".", 2)
            ax.plot(t_h, ts[col], lw=1.3, label=f"{fleet}: {q}")
        if key == "soc":
            ax.set_ylim(-0.02, 1.02)
        if key == "reserve_margin_min_kwh":
            ax.axhline(0.0, **_LIMIT)
            _include(ax, 0.0)
            lo, hi = ax.get_ylim()
            ax.axhspan(lo, 0.0, color="crimson", alpha=0.12, lw=0, label="reserve breached (< 0)")
            ax.set_ylim(lo, hi)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7, ncol=3, framealpha=0.8)
    _shade_run_calls(axes, results, ts)
    axes[0].set_title(f"{results.scenario_name}: fleet state", pad=14)
    axes[-1].set_xlabel("time since scenario start [h]")
    return fig


def figure_grid(results: Results):
    """Lowest and highest bus voltage [pu] and the most loaded line and transformer [%] over time, with the
    calls (solid) and without them (the twin, dashed), against the voltage band and the loading limit."""
    ts = results.timeseries
    if "vm_min_pu" not in ts or not ts["vm_min_pu"].notna().any():
        return None
    plt = _pyplot()
    t_h = _t_h(ts)
    (vlo, vhi), limit = _limits(results)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.2), sharex=True, constrained_layout=True)
    _voltage_panel(axes[0], t_h, ts, vlo, vhi)
    axes[0].set_title(f"{results.scenario_name}: voltage and loading against their limits", pad=14)
    _loading_panel(axes[1], t_h, ts, limit)
    _shade_run_calls(axes, results, ts)
    _finish_time_axes(axes, ncol=3)
    return fig


def figure_baselines(results: Results):
    """Per settled DR event: metered plant power against each settlement baseline and the twin [kW], per
    settlement interval, with each reference's performance ratio in the legend; None without settlement."""
    st = results.settlement
    if st is None or not len(st) or "reference_kw" not in st:
        return None
    events = list(dict.fromkeys(st["event_id"]))[:_MAX_CALL_PANELS]
    plt = _pyplot()
    fig, axes = plt.subplots(len(events), 1, figsize=(10, 3.2 * len(events) + 0.6), squeeze=False,
                             constrained_layout=True)
    for ax, eid in zip(axes[:, 0], events):
        ev = st[st["event_id"] == eid]
        first = ev[ev["reference"] == ev["reference"].iloc[0]].sort_values("t_s")
        t0 = first["t_s"].to_numpy()
        width = float(np.min(np.diff(t0))) if len(t0) > 1 else 900.0  # the settlement interval [s]

        def steps(t_s, values):
            # Each value holds for its whole interval: the last one too.
            return np.append(t_s, t_s[-1] + width) / S_PER_H, np.append(values, values[-1])

        ax.step(*steps(t0, first["metered_kw"].to_numpy()), where="post", color="k", lw=1.6, label="metered (plant)")
        for ref, rows in ev.groupby("reference", sort=False):
            rows = rows.sort_values("t_s")
            if not rows["reference_kw"].notna().any():
                continue
            req = rows["requested_kwh"].sum()
            got = rows["delivered_kwh"].sum()
            ratio = f", {got / req:.0%} delivered" if req else ""
            twin = ref == "twin"
            ax.step(*steps(rows["t_s"].to_numpy(), rows["reference_kw"].to_numpy()), where="post",
                    lw=2.2 if twin else 1.1,
                    ls="-" if twin else "--", color="tab:green" if twin else None,
                    label=f"{'no-call twin' if twin else ref}{ratio}")
        missing = [r for r, rows in ev.groupby("reference", sort=False) if not rows["reference_kw"].notna().any()]
        title = f"event {eid}: metered power against its baselines per settlement interval"
        if missing:
            title += f"\n(no value: {', '.join(missing)})"
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("power [kW]")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, framealpha=0.8)
    axes[-1, 0].set_xlabel("time since scenario start [h]")
    return fig


# --- sweeps -------------------------------------------------------------------------------------------


def _is_numeric(values) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
               for v in values)


def sweep_roles(df, params: list[str], x: str | None = None, hue: str | None = None) -> dict:
    """Which swept parameter goes where in :func:`figure_sweep`: ``x``, ``hue`` (lines), ``panels`` (columns).

    Only parameters with more than one value take a role. ``x``: the numeric
    parameter with the most values (the last in grid order on a tie: the
    innermost numeric axis of the sweep), else the first categorical one;
    ``hue``: the first categorical parameter left, else the numeric one left
    with the fewest values; ``panels``: the rest (one column per combination
    of their values). Given ``x`` or ``hue`` win.
    """
    varied = [p for p in params if df[p].nunique(dropna=False) > 1]
    numeric = [p for p in varied if _is_numeric(df[p].unique())]
    categorical = [p for p in varied if p not in numeric]
    if x is None:
        if numeric:
            most = max(df[p].nunique() for p in numeric)
            x = [p for p in numeric if df[p].nunique() == most][-1]
        elif categorical:
            x = categorical[0]
    rest = [p for p in varied if p not in (x, hue)]
    if hue is None and rest:
        cats = [p for p in rest if p in categorical]
        hue = cats[0] if cats else min(rest, key=lambda p: df[p].nunique())
    panels = [p for p in varied if p not in (x, hue)]
    return {"x": x, "hue": hue, "panels": panels, "x_numeric": x in numeric}


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def figure_sweep(df, params: list[str], kpis: list[tuple[str, str, float]], x: str | None = None,
                 hue: str | None = None, title: str = "sweep"):
    """Trade-off plots of a sweep table: each KPI against ``x``, one line per ``hue`` value, panels for the rest.

    ``kpis``: ``(column, axis label, scale)``, one row of panels each (the
    column is multiplied by ``scale``). A point is the mean over the seeds
    of that combination; its error bar spans the seeds' minimum to maximum
    (the seed spread; seeds are common random numbers across combinations,
    so lines differ by the parameters, not by draws). Lines of different
    ``hue`` are offset slightly along x so that their bars do not hide each
    other. Failed cases are left out. None when nothing varies.
    """
    ok = df[df["status"] == "ok"] if "status" in df else df
    roles = sweep_roles(ok, params, x, hue)
    x, hue, panels = roles["x"], roles["hue"], roles["panels"]
    kpis = [k for k in kpis if k[0] in ok and ok[k[0]].notna().any()]
    if x is None or not kpis or not len(ok):
        return None
    plt = _pyplot()
    panel_keys = list(ok.groupby(panels, sort=True).groups) if panels else [None]
    panel_keys = [k if isinstance(k, tuple) or k is None else (k,) for k in panel_keys]
    hue_values = list(dict.fromkeys(ok[hue])) if hue else [None]
    x_values = sorted(ok[x].unique()) if roles["x_numeric"] else list(dict.fromkeys(ok[x]))
    x_pos = {v: (float(v) if roles["x_numeric"] else float(i)) for i, v in enumerate(x_values)}
    span = (max(x_pos.values()) - min(x_pos.values())) or 1.0
    step = 0.012 * span if len(hue_values) > 1 else 0.0
    n_rows, n_cols = len(kpis), len(panel_keys)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(max(4.2 * n_cols, 7.0), 3.3 * n_rows + 0.9),
                             sharex=True, sharey="row", squeeze=False, constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^vP*X"
    for c, pkey in enumerate(panel_keys):
        sub = ok
        if pkey is not None:
            for p, v in zip(panels, pkey):
                sub = sub[sub[p] == v]
        for r, (col, ylabel, scale) in enumerate(kpis):
            ax = axes[r][c]
            for h, hv in enumerate(hue_values):
                line = sub if hv is None else sub[sub[hue] == hv]
                g = line.groupby(x, sort=False)[col].agg(["mean", "min", "max", "count"])
                g = g.loc[[v for v in x_values if v in g.index]]
                if not len(g):
                    continue
                xs = np.array([x_pos[v] for v in g.index]) + (h - (len(hue_values) - 1) / 2) * step
                mean, lo, hi = g["mean"] * scale, g["min"] * scale, g["max"] * scale
                ax.errorbar(xs, mean, yerr=[mean - lo, hi - mean], color=colors[h % len(colors)],
                            marker=markers[h % len(markers)], ms=5, lw=1.5, capsize=3, elinewidth=1.0,
                            label=None if hv is None else f"{hue} = {_label(hv)}")
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel(ylabel)
            if r == 0 and pkey is not None:
                ax.set_title(", ".join(f"{p} = {_label(v)}" for p, v in zip(panels, pkey)), fontsize=10)
            if r == n_rows - 1:
                ax.set_xlabel(x)
                if not roles["x_numeric"]:
                    ax.set_xticks([x_pos[v] for v in x_values], [_label(v) for v in x_values])
                else:
                    ax.set_xticks(list(x_pos.values()), [_label(v) for v in x_values])
    handles, labels = axes[0][0].get_legend_handles_labels()
    n_seeds = int(ok.groupby(params)[kpis[0][0]].count().max()) if params else len(ok)
    fig.suptitle(f"{title}: mean over {n_seeds} seed(s); error bars span the seeds' min to max", fontsize=11)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=9)
    return fig
