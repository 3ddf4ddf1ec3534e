"""Fleet and dispatch throughput across sizes, as ratios against a per-device Python loop.

Run: ``python benchmarks/bench_fleets.py [--max-n 1000000]``. Set-up (session
drawing, fleet construction) is outside the timing. The baseline is the same
EV envelope-and-step physics written as a Python loop over devices (the way
per-device agent simulators work), measured in the same process on the
smallest size; ratios compare device-steps per second.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vpp.dispatch import Portfolio, get_allocator
from vpp.dr import Direction, DRCall
from vpp.fleets import EVFleet, draw_sessions
from vpp.fleets.parameters import CHARGER_PARAMETERS

DT_S = 60.0
CLOCK_START_H = 17.0


def make_fleet(n: int, seed: int = 0) -> EVFleet:
    rng = np.random.default_rng(seed)
    params = CHARGER_PARAMETERS["ac_pile"]
    p_rated = np.full(n, params.p_rated_kw)
    sessions = draw_sessions(rng, params, p_rated, 6 * 3600.0, CLOCK_START_H)
    return EVFleet("ac", rng.integers(0, 100, n), "op", 0.5, p_rated, params.eta, rng.random(n) < 0.1, 0.3, sessions)


def loop_baseline(fleet: EVFleet, n_ticks: int) -> float:
    """Per-device Python loop over the same envelope and step; returns device-steps/s."""
    fleet.flexibility(0.0, DT_S)  # plug in the vehicles present at t = 0
    plugged = fleet.plugged.tolist()
    e = fleet.e_kwh.tolist()
    target = fleet.e_target_kwh.tolist()
    dep = fleet.t_departure_s.tolist()
    p_rated = fleet.p_rated_kw.tolist()
    eta = fleet.eta
    dt_h = DT_S / 3600.0
    t0 = time.perf_counter()
    t_s = 0.0
    for _ in range(n_ticks):
        for i in range(len(e)):
            if not plugged[i]:
                continue
            rem = max(target[i] - e[i], 0.0)
            frac = min(max((dep[i] - t_s) / DT_S, 0.0), 1.0)
            p_max = min(p_rated[i] * frac, rem / (eta * dt_h))
            later = eta * p_rated[i] * max(dep[i] - t_s - DT_S, 0.0) / 3600.0
            p_min = min(max((rem - later) / (eta * dt_h), 0.0), p_max)
            p = 0.5 * (p_min + p_max)
            e[i] += eta * p * dt_h
        t_s += DT_S
    return len(e) * n_ticks / (time.perf_counter() - t0)


def vector_rate(fleet: EVFleet, n_ticks: int) -> float:
    t0 = time.perf_counter()
    for k in range(n_ticks):
        t_s = k * DT_S
        env = fleet.flexibility(t_s, DT_S)
        fleet.step(0.5 * (env.p_min_kw + env.p_max_kw), t_s, DT_S)
    return fleet.n * n_ticks / (time.perf_counter() - t0)


def dispatch_latency_ms(fleet: EVFleet, n_ticks: int) -> float:
    """Mean wall time per tick of envelope + per-bus aggregation + pro-rata split + step [ms]."""
    pf = Portfolio([fleet], 100, get_allocator("pro_rata"))
    call = DRCall("c", Direction.REDUCE, 1e3, 0.0, 1e9, 0.0)
    t0 = time.perf_counter()
    for k in range(n_ticks):
        t_s = k * DT_S
        env = pf.flexibility(t_s, DT_S)
        pf.by_bus(env)
        pf.step(pf.setpoints(env, [(call, -1e3)]), t_s, DT_S)
    return (time.perf_counter() - t0) / n_ticks * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-n", type=int, default=1_000_000)
    ap.add_argument("--ticks", type=int, default=30)
    args = ap.parse_args()
    sizes = [n for n in (1_000, 10_000, 100_000, 1_000_000) if n <= args.max_n]
    base = loop_baseline(make_fleet(sizes[0]), args.ticks)
    print(f"baseline (Python loop over devices, n={sizes[0]:,}): {base / 1e6:.2f} M device-steps/s")
    print(f"{'n devices':>12}{'M dev-steps/s':>15}{'x baseline':>12}{'dispatch ms/tick':>18}")
    for n in sizes:
        rate = vector_rate(make_fleet(n), args.ticks)
        lat = dispatch_latency_ms(make_fleet(n, seed=1), args.ticks)
        print(f"{n:>12,}{rate / 1e6:>15.2f}{rate / base:>12.1f}{lat:>18.2f}")


if __name__ == "__main__":
    main()
