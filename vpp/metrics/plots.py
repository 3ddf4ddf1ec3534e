"""Plots of a run (matplotlib, headless Agg backend; imported only when asked for)."""

from __future__ import annotations

from pathlib import Path

from vpp.metrics.results import Results
from vpp.units import S_PER_H

__all__ = ["plot_dispatch"]


def plot_dispatch(results: Results, path: str | Path) -> Path:
    """Three stacked panels over time: plant power vs default by kind, DR requested vs delivered,
    and grid voltage extremes with and without the calls. Written as PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = results.timeseries
    t_h = ts["t_s"].to_numpy() / S_PER_H
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True, constrained_layout=True)
    ax = axes[0]
    kinds = [c for c in ts.columns if c.startswith("kind.") and c.endswith(".p_kw")]
    ax.stackplot(t_h, *[ts[c].to_numpy() / 1e3 for c in kinds], labels=[c.split(".")[1] for c in kinds], alpha=0.6)
    ax.plot(t_h, ts["p_twin_kw"] / 1e3, "k--", lw=1.2, label="no-call twin")
    ax.plot(t_h, ts["p_vpp_kw"] / 1e3, "k-", lw=1.2, label="VPP")
    ax.set_ylabel("power [MW]")
    ax.legend(loc="upper left", fontsize=8, ncol=5)
    ax.set_title(f"{results.scenario_name}: plant power")
    ax = axes[1]
    ax.step(t_h, ts["p_requested_kw"] / 1e3, where="post", label="requested", color="tab:red", lw=4, alpha=0.35)
    ax.step(t_h, ts["p_delivered_kw"] / 1e3, where="post", label="delivered (vs twin)", color="tab:green")
    ax.step(t_h, -ts["p_change_kw"] / 1e3, where="post", label="twin - plant", color="tab:gray", lw=0.8)
    ax.plot(t_h, ts["flex_down_kw"] / 1e3, ":", color="tab:blue", label="flexibility down")
    ax.set_ylabel("DR [MW]")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[2]
    if ts["grid_converged"].any():
        ax.plot(t_h, ts["vm_min_pu"], label="min voltage", color="tab:purple")
        ax.plot(t_h, ts["vm_max_pu"], label="max voltage", color="tab:orange")
        ax.plot(t_h, ts["vm_min_twin_pu"], "x", ms=3, color="tab:purple", label="min voltage without calls")
    ax.set_ylabel("voltage [pu]")
    ax.set_xlabel("time since scenario start [h]")
    ax.legend(loc="lower left", fontsize=8)
    for a in axes:
        a.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
