"""Firm capacity: how many MW the plant delivers for a given duration at a given hour, with a given confidence.

``firm_capacity(scenario, hour="19:00", duration="PT1H", seeds=20, confidence=0.95)``
answers the question a VPP operator bids with. The method, step by step:

1. **A probe call, measured, not assumed.** Every seed runs the scenario with
   its DR events replaced by one probe call (id ``firm_probe``, the given
   ``direction``) over the window ``[hour, hour + duration)``, sized far
   above the plant's room (``probe_mw``, default 1,000 MW; a run whose
   delivery reaches 99 % of the request in some tick is flagged
   ``saturated`` and the result is refused, since the plant might have
   given more). Asked for more than it has, the platform sends every device
   to the edge of its envelope; what the plant then delivers *against its
   no-call twin* (``call.firm_probe.delivered_kw``, same kernels, same
   draws) is the power it can actually give, with arrivals, departures,
   state of charge, backup reserves, non-compliant devices and the grid as
   they are in that seed. The platform opts in to the whole call
   (``platform.acceptance: always``: an energy-based acceptance would
   scale the oversized probe down and measure the acceptance rule, not the
   plant), the twin is on, and the grid operator's congestion calls are off
   (a DSO call in the window would be counted in the probe's delivery).
   Nothing else of the scenario changes; every seed's scenario goes through
   the same validation as a scenario file (:mod:`vpp.scenario.overrides`).

2. **Firm means sustained: the minimum per tick.** A seed's value is the
   minimum over the window's ticks of the delivered power, not the
   energy average: a bid of P MW for an hour is honoured only if P is
   delivered in every settlement tick, and energy-limited resources (V2G,
   batteries, towers' backup above reserve) give most in the first ticks
   and fade. Only ticks wholly inside the window count (a window that is
   not aligned with the tick counts its whole ticks only). The energy
   average is reported beside it. An oversized probe makes those resources
   give all they can from the first tick, so the minimum is a lower bound
   of what a call sized exactly at the firm level could sustain if the
   platform paced them: conservative, as a firm offer should be.

3. **The firm capacity at ``confidence`` c is the (1 - c)-quantile over
   seeds**, the level the plant reaches in a share c of the random worlds:
   the lower empirical quantile (``numpy.quantile(..., method="inverted_cdf")``,
   an observed seed's value, never interpolated upwards). Seeds are the
   sweep's ``SeedSequence`` children of the scenario's seed
   (:mod:`vpp.sweep`), so the same call gives the same answer.

4. **Its confidence interval** is distribution-free, from order statistics:
   the number of seeds below the true quantile is Binomial(n, 1 - c), so
   ``[x_(l), x_(u)]`` covers it with probability
   ``B(u-1; n, 1-c) - B(l-1; n, 1-c)``; ``l`` and ``u`` are the ranks
   that leave at most ``(1 - ci_level)/2`` in each tail (the coverage
   actually reached is reported). With few seeds an end cannot be bounded
   by the data at all and is reported as None: for c = 0.95 and a 95 %
   interval the lower end needs at least 72 seeds (``0.95**n <= 0.025``).
   With 20 seeds the P95 is the sample minimum and its interval is wide.

Tracking (``tracking``): ``None`` (the default) keeps the scenario's own
``platform.tracking``. With a probe above the room every compliant device is
already at the edge of its envelope, so the closed loop cannot raise the
delivery; forcing it on would only change the plant being measured.
``True`` turns it on against the pre-event load (``tracking_reference:
pre_event``), ``False`` off.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vpp.scenario.load import ScenarioError

__all__ = ["firm_capacity", "FirmError", "FirmResult", "probe_delivery", "quantile_ci", "PROBE_ID",
           "DEFAULT_PROBE_MW", "ProbeSaturated", "write"]

PROBE_ID = "firm_probe"
DEFAULT_PROBE_MW = 1000.0  # far above the room of any shipped plant; a saturated probe is refused
SATURATION = 0.99  # a tick delivering this share of the probe means the probe was not above the room
_HOUR = re.compile(r"^(?:[01]?\d|2[0-3]):[0-5]\d$")
_M = "kpi.measure."


class FirmError(ScenarioError):
    """Bad input to a firm-capacity estimate, found before any run."""


class ProbeSaturated(RuntimeError):
    """The plant delivered (nearly) all of the probe: it was not above the room, so the runs measure nothing firm."""


@dataclass
class FirmResult:
    """A firm-capacity estimate: the statistics [kW], the per-seed table and how it was made."""

    stats: dict[str, Any]
    per_seed: Any  # pandas.DataFrame, one row per seed
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def firm_mw(self) -> float:
        """The firm capacity at the requested confidence [MW]."""
        return self.stats["firm_kw"] / 1000.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, statistics and the per-seed values."""
        # Not DataFrame.to_json: it rounds to 10 significant digits.
        rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                for r in self.per_seed.to_dict("records")]
        return {"settings": self.settings, "stats": self.stats, "per_seed": rows}

    def markdown(self) -> str:
        """The distribution and the per-seed values as Markdown tables."""
        s, st = self.settings, self.stats
        pct = f"P{round(s['confidence'] * 100):g}"

        def mw(v):
            return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v / 1000.0:,.3f}"

        lo = mw(st["ci_low_kw"]) if st["ci_low_kw"] is not None else "not bounded (below the sample minimum)"
        hi = mw(st["ci_high_kw"]) if st["ci_high_kw"] is not None else "not bounded (above the sample maximum)"
        lines = [
            f"# Firm capacity: {s['scenario']}",
            "",
            f"{s['direction']} for {s['duration_s'] / 3600:g} h from {s['hour']} "
            f"(t = {s['start_s']:g} to {s['end_s']:g} s, {st['n_ticks']} whole ticks), {st['n']} seeds, "
            f"probe {s['probe_mw']:g} MW, tracking {s['tracking']}.",
            "",
            "| statistic | MW |",
            "|---|---:|",
            f"| **firm capacity ({pct}: reached in {s['confidence']:.0%} of seeds)** | **{mw(st['firm_kw'])}** |",
            f"| {st['ci_level']:.0%} CI, low{_rank(st['ci_low_rank'])} | {lo} |",
            f"| {st['ci_level']:.0%} CI, high{_rank(st['ci_high_rank'])} | {hi} |",
            f"| minimum | {mw(st['min_kw'])} |",
            f"| median | {mw(st['median_kw'])} |",
            f"| mean | {mw(st['mean_kw'])} |",
            f"| maximum | {mw(st['max_kw'])} |",
            f"| energy average over the window, median | {mw(st['window_mean_median_kw'])} |",
            "",
            f"CI coverage reached: {st['ci_coverage']:.3f}. {st['note']}",
            "",
            "| seed index | scenario seed | sustained (min per tick) MW | window average MW | first tick MW "
            "| last tick MW | min at t [s] |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.per_seed.itertuples(index=False):
            lines.append(f"| {r.seed_index} | {r.scenario_seed} | {r.firm_kw / 1000:,.3f} | {r.mean_kw / 1000:,.3f} "
                         f"| {r.first_kw / 1000:,.3f} | {r.last_kw / 1000:,.3f} | {r.t_min_s:g} |")
        lines += ["", "Method: see `vpp.firm` (a probe call above the room per seed, measured against the no-call "
                  "twin; the minimum delivered power over the window's ticks; the lower empirical quantile over "
                  "seeds; a distribution-free order-statistic interval)."]
        return "\n".join(lines) + "\n"


def _rank(r) -> str:
    return f" (order statistic x_({r}))" if r else ""


def probe_delivery(results) -> dict[str, float]:
    """The probe's delivered power over the window's whole ticks [kW] (a :func:`vpp.sweep` ``measure``).

    ``min_kw``: the minimum per tick (firm: sustained); ``mean_kw``: the
    energy average; ``first_kw``, ``last_kw``; ``t_min_s``: the start of the
    tick of the minimum; ``requested_kw``; ``n_ticks``; ``saturated_ticks``:
    ticks delivering at least 99 % of the request.
    """
    from vpp.metrics.columns import call_col

    ts = results.timeseries
    active = ts[call_col(PROBE_ID, "active_fraction")].to_numpy(float)
    whole = active >= 1.0 - 1e-9
    if not whole.any():
        raise ValueError("the probe covers no whole tick")
    dlv = ts[call_col(PROBE_ID, "delivered_kw")].to_numpy(float)[whole]
    req = ts[call_col(PROBE_ID, "requested_kw")].to_numpy(float)[whole]
    t_s = ts["t_s"].to_numpy(float)[whole]
    if np.isnan(dlv).any():
        raise ValueError("delivery unknown (no twin)")
    i = int(np.argmin(dlv))
    return {"min_kw": float(dlv[i]), "mean_kw": float(dlv.mean()), "first_kw": float(dlv[0]),
            "last_kw": float(dlv[-1]), "t_min_s": float(t_s[i]), "requested_kw": float(req.max()),
            "n_ticks": int(whole.sum()), "saturated_ticks": int((dlv >= SATURATION * req).sum())}


def quantile_ci(values, q: float, level: float) -> dict[str, Any]:
    """Lower empirical ``q``-quantile of ``values`` and its distribution-free order-statistic interval.

    The count of values below the true quantile is Binomial(n, q). Ranks
    (1-based) ``l`` = the largest with P(Bin <= l-1) <= (1-level)/2 and
    ``u`` = the smallest with P(Bin >= u) <= (1-level)/2; an end whose rank
    falls outside 1..n is None (the data cannot bound it). ``coverage`` is
    P(x_(l) <= quantile <= x_(u)) with a missing end taken as unbounded.
    """
    from scipy.stats import binom

    x = np.sort(np.asarray(values, float))
    n = x.size
    alpha = (1.0 - level) / 2.0
    point = float(np.quantile(x, q, method="inverted_cdf"))
    ranks = np.arange(0, n + 2)
    cdf = binom.cdf(ranks - 1, n, q)  # cdf[r] = P(Bin <= r-1) = P(x_(r) > quantile)
    ok_low = np.flatnonzero((cdf <= alpha) & (ranks >= 1) & (ranks <= n))
    low_rank = int(ok_low.max()) if ok_low.size else None
    ok_high = np.flatnonzero((1.0 - cdf <= alpha) & (ranks >= 1) & (ranks <= n))
    high_rank = int(ok_high.min()) if ok_high.size else None
    p_low = binom.cdf(low_rank - 1, n, q) if low_rank else 0.0
    p_high = binom.cdf(high_rank - 1, n, q) if high_rank else 1.0
    # Seeds needed before the lower end exists: P(Bin <= 0) = (1-q)^n <= alpha.
    n_low = math.ceil(math.log(alpha) / math.log(1.0 - q)) if 0 < q < 1 else None
    return {"point": point, "low": float(x[low_rank - 1]) if low_rank else None,
            "high": float(x[high_rank - 1]) if high_rank else None, "low_rank": low_rank, "high_rank": high_rank,
            "coverage": float(p_high - p_low), "n_for_low_bound": n_low}


def _check(hour, duration, seeds, confidence, direction, probe_mw, ci_level) -> float:
    from vpp.scenario.timefmt import parse_duration_s

    problems = []
    if not isinstance(hour, str) or not _HOUR.match(hour.strip()):
        problems.append(f"--hour {hour!r}: not a clock time; give HH:MM, e.g. 19:00")
    duration_s = None
    try:
        duration_s = float(parse_duration_s(duration)) if isinstance(duration, str) else float(duration)
    except (ValueError, TypeError) as exc:
        problems.append(f"--duration {duration!r}: not a duration ({exc}); give ISO 8601 like PT1H or seconds")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        problems.append(f"--duration {duration!r}: must be positive")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2:
        problems.append(f"--seeds {seeds!r}: must be a whole number >= 2 (a quantile over seeds needs several)")
    for name, v in (("--confidence", confidence), ("--ci-level", ci_level)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) < 1.0:
            problems.append(f"{name} {v!r}: must lie strictly between 0 and 1, e.g. 0.95")
    if direction not in ("reduce", "increase"):
        problems.append(f"--direction {direction!r}: allowed: reduce, increase")
    if isinstance(probe_mw, bool) or not isinstance(probe_mw, (int, float)) or not 0 < probe_mw <= 1e5:
        problems.append(f"--probe-mw {probe_mw!r}: must be > 0 and <= 100000 MW")
    if problems:
        raise FirmError("\n".join(problems))
    return duration_s


def firm_capacity(scenario, hour: str = "19:00", duration: str | float = "PT1H", seeds: int = 20,
                  confidence: float = 0.95, *, direction: str = "reduce", probe_mw: float = DEFAULT_PROBE_MW,
                  tracking: bool | None = None, ci_level: float = 0.95, backend: str = "serial",
                  out: str | Path | None = None, resume: bool = False, n_workers: int | None = None,
                  scheduler: str | None = None, overrides: Mapping[str, Any] | None = None,
                  progress: Callable[[int, int, dict], None] | None = None) -> FirmResult:
    """Firm capacity of ``scenario`` (a path, mapping or Scenario) over ``[hour, hour + duration)`` (see module doc).

    ``hour``: a clock time ``HH:MM`` (the first at or after the scenario
    start); ``duration``: ISO 8601 (``PT1H``) or seconds; ``seeds`` >= 2
    Monte Carlo replicates, run as a :func:`vpp.sweep` on ``backend``
    (``out``: its store, resumable); ``confidence`` in (0, 1): the share of
    seeds that reach the firm level; ``ci_level``: of the quantile's
    interval. ``overrides``: dotted paths set in every seed's scenario.
    Raises :class:`FirmError` (a ScenarioError) before any run for bad input,
    a window outside the run or covering no whole tick.
    """
    from vpp.scenario.overrides import scenario_data
    from vpp.sweep import code_version, plan, sweep

    duration_s = _check(hour, duration, seeds, confidence, direction, probe_mw, ci_level)
    hour = hour.strip()
    data, source, _ = scenario_data(scenario)
    probe = {"id": PROBE_ID, "direction": direction, "p_mw": float(probe_mw), "start": hour, "duration": duration_s}
    fixed: dict[str, Any] = dict(overrides or {})
    fixed.update({"dr_calls": [probe], "dr_events_file": None, "platform.acceptance": "always",
                  "measurement.twin": True, "grid_operator.congestion_calls": False})
    if tracking is not None:
        fixed["platform.tracking"] = bool(tracking)
        if tracking:
            fixed["platform.tracking_reference"] = "pre_event"
    grid = {f"dr_calls.0.p_mw": [float(probe_mw)]}  # the probe size, the sweep's one combination
    version = f"{code_version()}|measure={probe_delivery.__module__}.{probe_delivery.__qualname__}"
    try:
        cases = plan(scenario, grid, seeds, fixed, version)
    except ScenarioError as exc:
        raise FirmError(str(exc)) from None
    sc = cases[0].scenario
    call = sc.dr_calls[0]
    t = sc.time
    if call.end_s > t.duration_s + 1e-9:
        raise FirmError(f"--hour {hour} --duration {duration}: the window ends at t = {call.end_s:g} s, after the "
                        f"run's end ({t.duration_s:g} s) in {source}; choose an earlier hour or a shorter duration")
    first = math.ceil(call.start_s / t.dt_s - 1e-9) * t.dt_s
    if first + t.dt_s > call.end_s + 1e-9:
        raise FirmError(f"--duration {duration}: the window t = {call.start_s:g}..{call.end_s:g} s covers no whole "
                        f"{t.dt_s:g}-s tick; give at least one tick")
    df = sweep(scenario, grid, seeds, overrides=fixed, out=out, resume=resume, backend=backend,
               n_workers=n_workers, scheduler=scheduler, progress=progress, cases=cases, measure=probe_delivery)
    failed = df[df["status"] != "ok"]
    if len(failed):
        raise RuntimeError(f"{len(failed)} of {len(df)} seeds failed; first: {failed['error'].iloc[0]}")
    per_seed = df[["seed_index", "scenario_seed"]].copy()
    for name in ("min_kw", "mean_kw", "first_kw", "last_kw", "t_min_s", "requested_kw", "n_ticks",
                 "saturated_ticks"):
        per_seed[name] = df[_M + name].to_numpy()
    per_seed = per_seed.rename(columns={"min_kw": "firm_kw"})
    if (per_seed["saturated_ticks"] > 0).any():
        raise ProbeSaturated(f"--probe-mw {probe_mw:g}: the plant delivered {SATURATION:.0%} of the probe in some tick "
                        "(the probe is not above its room); give a larger --probe-mw")
    x = per_seed["firm_kw"].to_numpy(float)
    # Rounded: 1 - 0.95 is 0.05000000000000004 in floating point, which would move the quantile up one rank.
    q = quantile_ci(x, round(1.0 - confidence, 12), ci_level)
    n = int(x.size)
    note = (f"Interval from {n} seeds, distribution-free: wide with few seeds."
            + (f" Its lower end needs at least {q['n_for_low_bound']} seeds to be bounded by the data."
               if q["low"] is None else ""))
    stats = {
        "n": n, "n_ticks": int(per_seed["n_ticks"].iloc[0]), "firm_kw": q["point"], "confidence": confidence,
        "ci_level": ci_level, "ci_low_kw": q["low"], "ci_high_kw": q["high"], "ci_low_rank": q["low_rank"],
        "ci_high_rank": q["high_rank"], "ci_coverage": q["coverage"], "ci_method": "order statistics (binomial)",
        "quantile_method": "lower empirical quantile (numpy inverted_cdf)",
        "min_kw": float(x.min()), "median_kw": float(np.median(x)), "mean_kw": float(x.mean()),
        "max_kw": float(x.max()), "std_kw": float(x.std(ddof=1)),
        "window_mean_median_kw": float(np.median(per_seed["mean_kw"])), "note": note,
        "wall_time_s": float(df.attrs.get("wall_time_s", float("nan"))),
    }
    settings = {"scenario": str(source), "hour": hour, "duration_s": duration_s, "start_s": float(call.start_s),
                "end_s": float(call.end_s), "seeds": seeds, "confidence": confidence, "direction": direction,
                "probe_mw": float(probe_mw),
                "tracking": "scenario's own" if tracking is None else ("on (pre_event)" if tracking else "off"),
                "platform_tracking": bool(sc.platform.tracking), "backend": backend, "overrides": fixed}
    return FirmResult(stats, per_seed, json.loads(json.dumps(settings, default=str)))


def write(result: FirmResult, out: str | Path) -> list[Path]:
    """``firm.json``, ``firm.md`` and ``firm_per_seed.csv`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "firm.json", out / "firm.md", out / "firm_per_seed.csv"]
    paths[0].write_text(json.dumps(result.to_dict(), indent=1, allow_nan=True))
    paths[1].write_text(result.markdown())
    result.per_seed.to_csv(paths[2], index=False)
    return paths
