"""Dispatch latency (a DR call to per-device setpoints): compiled path against numpy and the old code, same run.

Run: ``python benchmarks/bench_dispatch.py [--max-n 1000000] [--kinds mix basestation] [--strategies pro_rata]``.
Needs numba (``pip install -e '.[fast]'``).

For one operator portfolio in the evening state ``vpp bench`` measures
(:func:`vpp.bench.latency`: fleets built and driven uncontrolled to 19:00,
5-minute ticks; set-up never timed), the wall time of the three parts of the
latency: **env** (:meth:`Portfolio.flexibility`), **agg** (:meth:`Portfolio.by_bus`)
and **split** (:meth:`Portfolio.setpoints` for a whole-VPP call asking half
the room down), on three paths, alternated repeat by repeat so that a slow
spell on this shared machine hits all three:

* **old**: the dispatch code before the compiled path, replicated here: each
  fleet's envelope in its own workspace, then copied into the portfolio's
  buffers; three ``np.bincount``; the split gathers the call's devices through
  an index array, allocates and scatters back. Fleets as they were then (EV
  envelope compiled, base stations and buildings numpy).
* **numpy**: today's code with numba switched off everywhere (every fleet's
  and the portfolio's ``use_numba = False``): no envelope copy, whole arrays
  for a whole-VPP call; the reference path.
* **numba**: today's code, compiled wherever it is available.

Reported per kind, size and strategy: medians of each part and of the total,
the total's 99th percentile (with few repeats at 10^6 it is close to the
maximum), and the ratios old/numba and numpy/numba. The setpoints of the
three paths are checked to agree to 1e-9 first.

Last, the threaded aggregation that was considered and not adopted
(vpp/dispatch/kernels_numba.py says why): the serial compiled pass against a
``parallel=True`` one over two chunks, on the same envelope.
"""

from __future__ import annotations

import argparse
import statistics

import numba
import numpy as np

from bench_fleets import _median_s  # same folder: the benchmarks run as scripts

from vpp.bench import DT_S, KIND_SPECS, T_EVENING_S, _evening, _scenario
from vpp.build import build_grid
from vpp.dispatch import ALLOCATORS, Portfolio, get_allocator
from vpp.dispatch import kernels_numba
from vpp.dr import Direction, DRCall

PATHS = ("old", "numpy", "numba")
TOL = 1e-9


@numba.njit(cache=True, parallel=True)
def aggregate_by_bus_parallel(bus_idx, p_min_kw, p_max_kw, p_default_kw, n_bus, n_chunks):
    """Per-bus default, room down and room up [kW] over ``n_chunks`` device ranges in threads (summed at the end)."""
    n = bus_idx.shape[0]
    part = np.zeros((n_chunks, 3, n_bus))
    for c in numba.prange(n_chunks):
        acc = part[c]
        for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            b = bus_idx[i]
            d = p_default_kw[i]
            acc[0, b] += d
            acc[1, b] += d - p_min_kw[i]
            acc[2, b] += p_max_kw[i] - d
    return part.sum(axis=0)


class OldDispatch:
    """The portfolio's latency path as it was before the compiled path (a faithful copy, for timing)."""

    def __init__(self, pf: Portfolio):
        self.pf = pf
        n = pf.n
        self.p_min_kw, self.p_max_kw, self.p_default_kw = np.zeros(n), np.zeros(n), np.zeros(n)
        self.p_set_kw = np.zeros(n)

    def flexibility(self, states, t_s, dt_s):
        pf = self.pf
        envs = [f.flexibility(s, t_s, dt_s) for f, s in zip(pf.fleets, states)]  # the fleets' own workspaces
        for e, (_, lo, hi) in zip(envs, pf.slices()):
            self.p_min_kw[lo:hi] = e.p_min_kw
            self.p_max_kw[lo:hi] = e.p_max_kw
            self.p_default_kw[lo:hi] = e.p_default_kw

    def by_bus(self):
        pf = self.pf
        return (np.bincount(pf.bus_idx, weights=self.p_default_kw, minlength=pf.n_bus),
                np.bincount(pf.bus_idx, weights=self.p_default_kw - self.p_min_kw, minlength=pf.n_bus),
                np.bincount(pf.bus_idx, weights=self.p_max_kw - self.p_default_kw, minlength=pf.n_bus))

    def setpoints(self, idx, delta_kw):
        pf = self.pf
        p_kw = self.p_set_kw
        np.copyto(p_kw, self.p_default_kw)
        room_kw = (p_kw[idx] - self.p_min_kw[idx]) if delta_kw < 0.0 else (self.p_max_kw[idx] - p_kw[idx])
        d_kw = pf.allocator(delta_kw, np.maximum(room_kw, 0.0), pf.cost_cny_per_kwh[idx])
        p_kw[idx] += d_kw
        return p_kw, np.bincount(pf.bus_idx[idx], weights=d_kw, minlength=pf.n_bus)


def _set_path(pf: Portfolio, path: str) -> None:
    """Switch the fleets and the portfolio to a path's kernels."""
    for f in pf.fleets:
        if hasattr(f, "use_numba"):
            # The old code had a compiled EV envelope and numpy everywhere else.
            f.use_numba = path == "numba" or (path == "old" and f.kind == "ev")
    pf.use_numba = path == "numba"


def evening(kind: str, n: int, grid):
    """Fleets of ``kind`` driven to 19:00 and advanced into the tick (set-up, never timed)."""
    fleets, states = _evening(KIND_SPECS[kind](n), grid)
    for f, s in zip(fleets, states):
        f.advance(s, T_EVENING_S, DT_S)
    return fleets, states


def bench(fleets, states, kind: str, strategy: str, repeats: int, grid) -> dict:
    t_s = T_EVENING_S
    pf = Portfolio(fleets, len(grid.bus_index), get_allocator(strategy))
    old = OldDispatch(pf)
    _set_path(pf, "numpy")
    env = pf.flexibility(states, t_s, DT_S)
    room_kw = float(np.maximum(env.p_default_kw - env.p_min_kw, 0.0).sum())
    delta_kw = -0.5 * room_kw if room_kw > 0.0 else -1.0  # as vpp.bench.latency
    call = DRCall("c", Direction.REDUCE, max(-delta_kw, 1e-3), t_s, t_s + 3600.0, t_s)
    idx = pf.targets(call)  # the old code found the targets once per call too

    def run(path: str):
        if path == "old":
            return (lambda: old.flexibility(states, t_s, DT_S), old.by_bus, lambda: old.setpoints(idx, delta_kw))
        return (lambda: pf.flexibility(states, t_s, DT_S), lambda: pf.by_bus(pf._env),
                lambda: pf.setpoints(pf._env, [(call, delta_kw)]))

    # Warm-up (compilation or cache load, first-touch of buffers) and agreement of the setpoints.
    p_set = {}
    for path in PATHS:
        _set_path(pf, path)
        env_fn, agg_fn, split_fn = run(path)
        env_fn(), agg_fn()
        p_set[path] = split_fn()[0].copy()
    for path in ("old", "numpy"):
        # Relative to the request: merit order's cumulative sum of 10^6 rooms rounds at ~1e-14 of it, and the
        # device where the request runs out takes that difference (5.7e-8 kW of 1.9e6 kW at 10^6 base stations).
        scale = TOL * max(1.0, abs(delta_kw), float(np.abs(p_set[path]).max(initial=0.0)))
        if not np.allclose(p_set["numba"], p_set[path], rtol=TOL, atol=scale):
            raise AssertionError(f"{kind} n={pf.n} {strategy}: numba and {path} setpoints differ")

    samples = {path: {"env": [], "agg": [], "split": [], "total": []} for path in PATHS}
    for _ in range(repeats):
        for path in PATHS:
            _set_path(pf, path)
            env_fn, agg_fn, split_fn = run(path)
            t = {"env": _median_s(env_fn, 1), "agg": _median_s(agg_fn, 1), "split": _median_s(split_fn, 1)}
            t["total"] = t["env"] + t["agg"] + t["split"]
            for k, v in t.items():
                samples[path][k].append(v)
    out = {"kind": kind, "n": pf.n, "strategy": strategy, "repeats": repeats}
    for path in PATHS:
        for part, v in samples[path].items():
            out[f"{path}_{part}_ms"] = 1e3 * statistics.median(v)
        out[f"{path}_p99_ms"] = 1e3 * float(np.percentile(samples[path]["total"], 99))
        out[f"{path}_agg_split_ms"] = 1e3 * statistics.median(
            [a + s for a, s in zip(samples[path]["agg"], samples[path]["split"])])

    # The threaded aggregation (not adopted), on the same envelope.
    _set_path(pf, "numba")
    env = pf.flexibility(states, t_s, DT_S)
    bus = pf.bus_idx
    ref = pf.by_bus(env)
    par = aggregate_by_bus_parallel(bus, env.p_min_kw, env.p_max_kw, env.p_default_kw, pf.n_bus, 2)
    if not np.allclose(par[1], ref.down_kw, rtol=TOL, atol=TOL * max(1.0, room_kw)):
        raise AssertionError("parallel aggregation differs")
    ser_s, par_s = [], []
    for _ in range(repeats):
        ser_s.append(_median_s(lambda: pf.by_bus(env), 1))
        par_s.append(_median_s(lambda: aggregate_by_bus_parallel(bus, env.p_min_kw, env.p_max_kw, env.p_default_kw,
                                                                 pf.n_bus, 2), 1))
    out["agg_serial_ms"] = 1e3 * statistics.median(ser_s)
    out["agg_parallel2_ms"] = 1e3 * statistics.median(par_s)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-n", type=int, default=1_000_000)
    ap.add_argument("--sizes", nargs="+", type=int, help="sizes to run instead of 10^3..--max-n")
    ap.add_argument("--kinds", nargs="+", default=list(KIND_SPECS), choices=sorted(KIND_SPECS))
    ap.add_argument("--strategies", nargs="+", default=sorted(ALLOCATORS), choices=sorted(ALLOCATORS))
    args = ap.parse_args()
    sizes = args.sizes or [n for n in (1_000, 10_000, 100_000, 1_000_000) if n <= args.max_n]
    grid = build_grid(_scenario(KIND_SPECS["basestation"](1), 4, calls=False))

    print(f"Dispatch latency at 19:00 (envelope + per-bus sums + split of a whole-VPP call), ms; numba "
          f"{numba.__version__}, threading layer for the parallel column: {numba.config.THREADING_LAYER}")
    print("old: the code before the compiled path; numpy: today's, numba off; numba: today's, compiled. "
          "Medians of each part; p99 of the total.")
    head = (f"{'kind':<12}{'n':>10} {'strategy':<12}{'path':<6}{'env':>8}{'agg':>7}{'split':>7}{'agg+split':>10}"
            f"{'total':>8}{'p99':>8}")
    print(head)
    rows = []
    for n in sizes:
        repeats = max(20, min(200, 10**7 // n))
        for kind in args.kinds:
            fleets, states = evening(kind, n, grid)
            for strategy in args.strategies:
                r = bench(fleets, states, kind, strategy, repeats, grid)
                rows.append(r)
                for path in PATHS:
                    print(f"{r['kind']:<12}{r['n']:>10,} {strategy:<12}{path:<6}{r[f'{path}_env_ms']:>8.3f}"
                          f"{r[f'{path}_agg_ms']:>7.3f}{r[f'{path}_split_ms']:>7.3f}{r[f'{path}_agg_split_ms']:>10.3f}"
                          f"{r[f'{path}_total_ms']:>8.3f}{r[f'{path}_p99_ms']:>8.3f}")
                print(f"{'':<28}ratio old/numba: total {r['old_total_ms'] / r['numba_total_ms']:.1f}x, agg+split "
                      f"{r['old_agg_split_ms'] / r['numba_agg_split_ms']:.1f}x; numpy/numba: total "
                      f"{r['numpy_total_ms'] / r['numba_total_ms']:.1f}x, agg+split "
                      f"{r['numpy_agg_split_ms'] / r['numba_agg_split_ms']:.1f}x", flush=True)

    print("\nPer-bus aggregation, compiled: serial (adopted) against parallel=True over 2 chunks (not adopted), ms")
    print(f"{'kind':<12}{'n':>10}{'serial':>9}{'parallel':>10}{'ratio':>8}")
    seen = set()
    for r in rows:
        if (r["kind"], r["n"]) in seen:
            continue
        seen.add((r["kind"], r["n"]))
        print(f"{r['kind']:<12}{r['n']:>10,}{r['agg_serial_ms']:>9.3f}{r['agg_parallel2_ms']:>10.3f}"
              f"{r['agg_serial_ms'] / r['agg_parallel2_ms']:>7.2f}x")


if __name__ == "__main__":
    main()
