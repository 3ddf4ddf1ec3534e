"""The ``optimal`` strategy's cost: LP solve time against groups x horizon, and end to end at 10^3..10^6 devices.

Run: ``python benchmarks/bench_optimal.py [--quick] [--skip-lp] [--sizes 1000 100000] [--max-group-ticks 30000]``
(opt-in; never part of the tests).

1. **LP alone** (:func:`vpp.dispatch.optimal.solve_groups`): synthetic but
   consistent groups (EV-like stores with departure bounds, batteries,
   leaky thermal stores), ``G`` groups x ``H`` ticks; median wall time of
   building the arrays and of the HiGHS call through
   ``scipy.optimize.linprog(method="highs")``, and, for the same arrays, of
   ``highspy`` called directly (``Highs.passModel`` + ``run``), to see whether
   the direct interface pays. Size: ``5 G H + 2 H`` variables, ``2 G H + H`` rows.
2. **End to end** (one operator portfolio: the Shenzhen-like mix of
   :func:`vpp.bench._mix`, driven uncontrolled to 19:00 as ``vpp bench``
   does; set-up never timed): for a whole-portfolio reduce call of a quarter
   of the room lasting 2 h, the first tick of :meth:`Portfolio.setpoints`
   with ``optimal`` (a fresh plan each repeat) split into *groups* (each
   fleet's :meth:`~vpp.fleets.base.Fleet.flex_groups`: the per-device
   forecast over the window, O(devices x H)), *LP* (solver) and the rest
   (disaggregation), against the merit order on the same envelope. Ticks of
   5 min (H = 24) and 1 min (H = 120); EV departure buckets of 1 h and 15 min.

Since the plan covers the recovery window and a 4-h return phase after the
call (``return_s``), H is 72 at 5-min ticks and 288 at 1-min ticks (the
``max_horizon_ticks`` cap) for this 2-h call; ``--quick`` then measured (loaded
machine, 1-h buckets): 10^3 104 ms, 10^4 88 ms, 10^5 230 ms per plan at 5 min;
0.76 s, 0.68 s, 1.27 s at 1 min (groups 22-27; 15-min buckets 2-3x the LP).
The figures below are from before, with the window alone (H = 24 and 120).

Measured on this machine (2 cores shared with other work, Python 3.11,
scipy 1.17 / HiGHS 1.16; medians of 7, ranges over two runs):

* LP alone (G groups x H ticks): 10 x 24 7 ms, 10 x 96 31 ms, 10 x 288
  0.15 s; 30 x 24 24 ms, 30 x 96 80 ms, 30 x 288 0.59 s; 100 x 24 0.12 s,
  100 x 96 0.50 s, 100 x 288 5.6 s; 300 x 24 0.76 s, 300 x 48 2.0 s;
  1000 x 12 1.5 s, 1000 x 24 13 s. Within 1 s per solve: up to about
  10,000-15,000 group-ticks (~50,000-70,000 variables), e.g. 100 groups x 96
  ticks or 30 groups x 288; beyond that the time grows faster than linearly.
* highspy called directly (same arrays, same optimum) was 5-40 % faster than
  scipy's ``linprog`` wrapper on these LPs (2.5 vs 4.0 ms at 10 x 12, 422 vs
  499 ms at 100 x 96, 5.3 vs 5.6 s at 100 x 288). End to end the LP is a
  small part of a plan at realistic group counts (below), so this saves ~1-5
  % of a plan: scipy's HiGHS is kept and highspy is not a dependency.
* End to end (the mix at 19:00; groups 14-15 with 1-h buckets, 30-39 with
  15-min ones): H = 24 (5-min ticks): 10^3 13-18 ms, 10^4 17-55 ms, 10^5
  54-113 ms, 10^6 0.7-1.6 s per plan; H = 120 (1-min ticks): 10^3 62-156 ms,
  10^4 86-270 ms, 10^5 0.23-1.1 s, 10^6 2-3 s. The LP stays at 10-60 ms
  (H = 24) and 60-480 ms (H = 120); the per-device forecast of the groups
  (O(devices x H)) dominates from 10^5 devices on. Within 1 s per plan:
  10^6 devices for a 2-h call at 5-min ticks with 1-h buckets (0.7 s), 10^5
  at 1-min ticks (0.2-0.4 s with 1-h buckets; up to 1.1 s with 15-min ones). The merit order on the same envelope takes 0.01-6 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench_fleets import _median_s  # same folder: the benchmarks run as scripts
from vpp.bench import DT_S, KIND_SPECS, T_EVENING_S, _evening, _scenario
from vpp.build import build_grid
from vpp.dispatch import Portfolio, get_allocator
from vpp.dispatch.optimal import OptimalConfig, lp_arrays, solve_groups
from vpp.dr import Direction, DRCall
from vpp.fleets.base import FlexGroups


def synthetic_groups(n_g: int, n_t: int, dt_s: float, seed: int = 0) -> FlexGroups:
    """``n_g`` consistent groups over ``n_t`` ticks: a third EV-like, a third batteries, a third thermal."""
    rng = np.random.default_rng(seed)
    dt_h = dt_s / 3600.0
    kind = np.arange(n_g) % 3
    p_kw = rng.uniform(50.0, 500.0, n_g)
    cap_kwh = p_kw * rng.uniform(1.0, 4.0, n_g)
    shape = (n_g, n_t)
    k = np.arange(n_t)[None, :]
    # EV-like: charge only, must reach 60-90 % of the capacity by a deadline inside or after the window.
    deadline = rng.integers(1, 2 * n_t, n_g)[:, None]
    present = (k < deadline).astype(float)
    c_max = p_kw[:, None] * np.where(kind[:, None] == 2, 1.0, present)
    d_max = np.where(kind[:, None] == 1, p_kw[:, None], 0.0) * np.ones(shape)
    e0 = np.where(kind == 2, 0.0, 0.2 * cap_kwh)
    target = np.where(kind == 0, rng.uniform(0.6, 0.9, n_g) * cap_kwh, 0.0)[:, None]
    lax = target - 0.95 * p_kw[:, None] * dt_h * np.maximum(deadline - k - 1, 0)
    e_min = np.where(kind[:, None] == 0, np.maximum(lax, e0[:, None]),
                     np.where(kind[:, None] == 1, 0.1 * cap_kwh[:, None], -0.3 * cap_kwh[:, None]))
    e_max = np.where(kind[:, None] == 0, np.maximum(target, e0[:, None]),
                     np.where(kind[:, None] == 1, cap_kwh[:, None], 0.6 * cap_kwh[:, None])) * np.ones(shape)
    p_base = np.where(kind[:, None] == 0, p_kw[:, None] * present * (k < deadline // 2),
                      np.where(kind[:, None] == 2, 0.5 * p_kw[:, None], 0.0))
    leak = np.where(kind == 2, 0.97, 1.0)
    w = np.where(kind[:, None] == 2, 0.5 * p_kw[:, None] * dt_h * (1.0 - 0.03), 0.0) * np.ones(shape)
    return FlexGroups(
        labels=tuple(f"g{i}" for i in range(n_g)), member=np.arange(n_g), group=np.arange(n_g),
        share_down=np.ones(n_g), share_up=np.ones(n_g), p_base_kw=p_base, p_fixed_kw=np.zeros(shape),
        c_max_kw=c_max, d_max_kw=d_max, e0_kwh=e0, e_min_kwh=e_min, e_max_kwh=e_max, leak=leak,
        gain_c=np.where(kind == 2, 1.0, 0.95), gain_d=np.where(kind == 1, 1.0 / 0.95, 0.0), w_kwh=w,
    )


def _highspy_solve(lp) -> float:
    """Solve the same LP with highspy directly; returns the objective (for the agreement check)."""
    import highspy

    a = lp.a_eq.tocsc()
    model = highspy.HighsLp()
    model.num_col_ = lp.obj.shape[0]
    model.num_row_ = a.shape[0]
    model.col_cost_ = lp.obj
    model.col_lower_ = lp.lb
    model.col_upper_ = np.where(np.isfinite(lp.ub), lp.ub, highspy.kHighsInf)
    model.row_lower_ = lp.b_eq
    model.row_upper_ = lp.b_eq
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.start_ = a.indptr
    model.a_matrix_.index_ = a.indices
    model.a_matrix_.value_ = a.data
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(model)
    h.run()
    return h.getInfo().objective_function_value


def bench_lp(sizes_g, sizes_h, repeats: int, with_highspy: bool, max_group_ticks: int = 60_000) -> list[dict]:
    dt_s = 300.0
    rows = []
    for n_g in sizes_g:
        for n_t in sizes_h:
            if n_g * n_t > max_group_ticks:
                continue
            g = synthetic_groups(n_g, n_t, dt_s)
            down0 = np.maximum(g.p_base_kw[:, 0], 0.0)
            up0 = np.maximum(g.c_max_kw[:, 0] - g.p_base_kw[:, 0], 0.0)
            cost = np.linspace(0.5, 2.0, n_g)
            request = -0.3 * float(down0.sum()) * np.ones(n_t)
            args = (g, cost, down0, up0, request, dt_s)
            res = solve_groups(*args)  # warm-up and the agreement check
            build_s = _median_s(lambda: lp_arrays(*args), repeats)
            total_s = _median_s(lambda: solve_groups(*args), repeats)
            row = {"groups": n_g, "ticks": n_t, "vars": 5 * n_g * n_t + 2 * n_t, "status": res.status,
                   "build_ms": 1e3 * build_s, "solve_ms": 1e3 * (total_s - build_s), "total_ms": 1e3 * total_s}
            if with_highspy:
                lp = lp_arrays(*args)
                from scipy.optimize import linprog

                ref = linprog(lp.obj, A_eq=lp.a_eq, b_eq=lp.b_eq, bounds=np.column_stack([lp.lb, lp.ub]),
                              method="highs").fun
                obj = _highspy_solve(lp)
                assert abs(obj - ref) <= 1e-6 * max(1.0, abs(ref)), (obj, ref)
                hs = _median_s(lambda: _highspy_solve(lp), repeats)
                row["highspy_ms"] = 1e3 * hs
                row["linprog_ms"] = row["solve_ms"]
            rows.append(row)
            print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
    return rows


def bench_end_to_end(sizes_n, repeats: int) -> list[dict]:
    grid = build_grid(_scenario(KIND_SPECS["basestation"](1), 4, calls=False))
    n_bus = len(grid.bus_index)
    rows = []
    for n in sizes_n:
        fleets, states = _evening(KIND_SPECS["mix"](n), grid)
        for dt_s in (300.0, 60.0):
            for bucket_s in (3600.0, 900.0):
                t_s = T_EVENING_S
                pf = Portfolio(fleets, n_bus, get_allocator("optimal"), optimal_config=OptimalConfig(bucket_s=bucket_s))
                ref = Portfolio(fleets, n_bus, get_allocator("merit_order"))
                for f, s in zip(fleets, states):
                    f.advance(s, t_s, DT_S)  # idempotent within the tick
                env = pf.flexibility(states, t_s, dt_s)
                room_kw = float(np.maximum(env.p_default_kw - env.p_min_kw, 0.0).sum())
                delta_kw = -0.25 * room_kw
                parts = {"groups": [], "lp": [], "split": [], "total": []}
                for r in range(repeats):
                    call = DRCall(f"c{r}", Direction.REDUCE, -delta_kw, t_s, t_s + 7200.0, t_s)  # a fresh plan
                    b0, s0 = pf.optimal.build_s, pf.optimal.solve_s
                    t0 = time.perf_counter()
                    p_set, _ = pf.setpoints(env, [(call, delta_kw)])
                    total = time.perf_counter() - t0
                    parts["groups"].append(pf.optimal.build_s - b0)
                    parts["lp"].append(pf.optimal.solve_s - s0)
                    parts["total"].append(total)
                    parts["split"].append(total - parts["groups"][-1] - parts["lp"][-1])
                plan = pf.optimal.plans[f"c{repeats - 1}"]
                moved = float((p_set - env.p_default_kw).sum())
                env_ref = ref.flexibility(states, t_s, dt_s)
                call = DRCall("m", Direction.REDUCE, -delta_kw, t_s, t_s + 7200.0, t_s)
                ref.setpoints(env_ref, [(call, delta_kw)])
                merit_s = _median_s(lambda: ref.setpoints(env_ref, [(call, delta_kw)]), repeats)
                row = {"n": sum(f.n for f in fleets), "dt_s": dt_s, "H": plan.request_kw.shape[0],
                       "bucket_s": bucket_s, "groups": len(plan.labels),
                       **{f"{k}_ms": 1e3 * statistics.median(v) for k, v in parts.items()},
                       "merit_order_ms": 1e3 * merit_s, "delivered_share": moved / delta_kw}
                rows.append(row)
                print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    ap.add_argument("--max-n", type=int, default=1_000_000)
    ap.add_argument("--no-highspy", action="store_true", help="skip the direct highspy comparison")
    ap.add_argument("--max-group-ticks", type=int, default=30_000, help="skip LPs with more groups x ticks")
    ap.add_argument("--skip-lp", action="store_true", help="only the end-to-end part")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10**3, 10**4, 10**5], help="end-to-end sizes")
    args = ap.parse_args()
    reps = 3 if args.quick else 7
    if not args.skip_lp:
        print("# LP alone: groups x ticks")
        bench_lp([10, 30, 100] if args.quick else [10, 30, 100, 300, 1000],
                 [24, 96] if args.quick else [12, 24, 48, 96, 288], reps, not args.no_highspy, args.max_group_ticks)
    print("# end to end: one portfolio of the mix at 19:00, a 2-h call")
    bench_end_to_end([n for n in args.sizes if n <= args.max_n], reps)


if __name__ == "__main__":
    main()
