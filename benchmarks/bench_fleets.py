"""Fleet and dispatch throughput, work-buffer savings and the cost of the twin, across sizes.

Run: ``python benchmarks/bench_fleets.py [--max-n 1000000] [--ticks 20]``.
Set-up (session drawing, fleet construction, warm-up) is outside the timing.
Every figure is a ratio against a baseline measured in the same run:

* **envelope**: the EV envelope written into the fleet's own work buffers,
  against the same arithmetic written the plain way (a fresh array per
  operation, the taper walked over every device), which is also checked to give
  the same envelope. Reported: median time per tick and the transient memory
  of one call (tracemalloc peak above the start, in bytes and in arrays of
  length n).
* **loop**: device-steps per second of the vectorised envelope-and-step
  against the same physics as a per-device Python loop (the way per-device
  agent simulators work), measured on the smallest size.
* **twin**: wall time per tick of a whole run (agents, dispatch, fleets,
  recording; no power flow) with the no-call twin on and off.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np

from vpp.dispatch import Portfolio, get_allocator
from vpp.dr import Direction, DRCall
from vpp.fleets import EVFleet, draw_sessions
from vpp.fleets.kernels import taper_energy_kwh, taper_start_kwh
from vpp.fleets.parameters import CHARGER_PARAMETERS
from vpp.units import S_PER_H

DT_S = 60.0
CLOCK_START_H = 17.0
T_BENCH_S = 2 * 3600.0  # 19:00: the evening peak of home charging


def make_fleet(n: int, seed: int = 0) -> EVFleet:
    rng = np.random.default_rng(seed)
    params = CHARGER_PARAMETERS["ac_pile"]
    p_rated = np.full(n, params.p_rated_kw)
    sessions = draw_sessions(rng, params, p_rated, 6 * 3600.0, CLOCK_START_H)
    return EVFleet("ac", rng.integers(0, 100, n), "op", 0.5, p_rated, params.eta, rng.random(n) < 0.1, 0.3,
                   sessions, params.taper_soc, params.taper_frac)


def envelope_plain(fleet: EVFleet, s, t_s: float, dt_s: float):
    """The EV envelope the plain way: a new array per operation, the taper walked on every device."""
    dt_h = dt_s / S_PER_H
    eta = fleet.eta
    t_end_s = t_s + dt_s
    present = np.minimum(s.t_departure_s, t_end_s) - np.maximum(s.t_arrival_s, t_s)
    frac = np.where(s.plugged, np.clip(present / dt_s, 0.0, 1.0), 0.0)
    e_rem = np.where(s.plugged, np.maximum(s.e_target_kwh - s.e_kwh, 0.0), 0.0)
    e_acc = taper_energy_kwh(s.e_kwh, s.cap_kwh, fleet.p_rated_kw, s.p_accept_kw, eta, frac * dt_h,
                             fleet.taper_soc, fleet.taper_frac)
    p_max = np.minimum(e_acc, e_rem) / (eta * dt_h)
    later_h = np.maximum(s.t_departure_s - t_end_s, 0.0) / S_PER_H
    e_start = taper_start_kwh(s.e_target_kwh, s.cap_kwh, fleet.p_rated_kw, s.p_accept_kw, eta, later_h,
                              fleet.taper_soc, fleet.taper_frac)
    p_must = np.clip((e_start - s.e_kwh) * s.plugged / (eta * dt_h), 0.0, p_max)
    floor = np.maximum(e_start, fleet.soc_v2g_min * s.cap_kwh)
    p_dis = np.minimum(np.maximum(s.e_kwh - floor, 0.0) * eta / dt_h, frac * fleet.p_rated_kw) * fleet.v2g
    p_min = np.where(p_must > 0.0, p_must, -p_dis)
    p_max = np.maximum(p_max, p_min)
    return p_min, p_max, p_max.copy()


def _median_s(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def _transient_bytes(fn) -> int:
    tracemalloc.start()
    fn()  # warm (first-call allocations of lazily built objects are not per-tick cost)
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def bench_envelope(n: int, repeats: int) -> dict:
    fleet = make_fleet(n)
    s = fleet.initial_state()
    for k in range(int(T_BENCH_S / DT_S)):  # bring the fleet to the evening, uncontrolled
        fleet.step_default(s, k * DT_S, DT_S)
    fleet.advance(s, T_BENCH_S, DT_S)
    env = fleet.flexibility(s, T_BENCH_S, DT_S)
    ref = envelope_plain(fleet, s, T_BENCH_S, DT_S)
    for a, b, name in zip((env.p_min_kw, env.p_max_kw, env.p_default_kw), ref, ("p_min", "p_max", "p_default")):
        if not np.allclose(a, b, rtol=1e-9, atol=1e-9):
            raise AssertionError(f"buffered and plain envelopes differ in {name} at n={n}")
    buffered = lambda: fleet.flexibility(s, T_BENCH_S, DT_S)  # noqa: E731
    plain = lambda: envelope_plain(fleet, s, T_BENCH_S, DT_S)  # noqa: E731
    t_buf, t_plain = _median_s(buffered, repeats), _median_s(plain, repeats)
    m_buf, m_plain = _transient_bytes(buffered), _transient_bytes(plain)
    return {
        "n": n, "plugged": int(s.plugged.sum()),
        "buffered_ms": 1e3 * t_buf, "plain_ms": 1e3 * t_plain, "speedup": t_plain / t_buf,
        "buffered_bytes": m_buf, "plain_bytes": m_plain,
        "buffered_arrays": m_buf / (8 * n), "plain_arrays": m_plain / (8 * n),
    }


def loop_baseline(fleet: EVFleet, n_ticks: int) -> float:
    """Per-device Python loop over the same flat-region envelope and step; returns device-steps/s."""
    s = fleet.initial_state()
    fleet.advance(s, 0.0, DT_S)
    plugged = s.plugged.tolist()
    e = s.e_kwh.tolist()
    target = s.e_target_kwh.tolist()
    dep = s.t_departure_s.tolist()
    p_rated = fleet.p_rated_kw.tolist()
    accept = s.p_accept_kw.tolist()
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
            p_max = min(min(p_rated[i], accept[i]) * frac, rem / (eta * dt_h))
            later = eta * p_rated[i] * max(dep[i] - t_s - DT_S, 0.0) / 3600.0
            p_min = min(max((rem - later) / (eta * dt_h), 0.0), p_max)
            p = 0.5 * (p_min + p_max)
            e[i] += eta * p * dt_h
        t_s += DT_S
    return len(e) * n_ticks / (time.perf_counter() - t0)


def vector_rate(fleet: EVFleet, n_ticks: int) -> float:
    s = fleet.initial_state()
    t0 = time.perf_counter()
    for k in range(n_ticks):
        t_s = k * DT_S
        fleet.advance(s, t_s, DT_S)
        env = fleet.flexibility(s, t_s, DT_S)
        fleet.step(s, 0.5 * (env.p_min_kw + env.p_max_kw), t_s, DT_S, env)
    return fleet.n * n_ticks / (time.perf_counter() - t0)


def dispatch_latency_ms(fleet: EVFleet, n_ticks: int) -> float:
    """Mean wall time per tick of envelope + per-bus aggregation + pro-rata split + step [ms]."""
    pf = Portfolio([fleet], 100, get_allocator("pro_rata"))
    states = pf.initial_states()
    call = DRCall("c", Direction.REDUCE, 1e3, 0.0, 1e9, 0.0)
    t0 = time.perf_counter()
    for k in range(n_ticks):
        t_s = k * DT_S
        pf.advance(states, t_s, DT_S)
        env = pf.flexibility(states, t_s, DT_S)
        pf.by_bus(env)
        p_set, _ = pf.setpoints(env, [(call, -1e3)])
        pf.step(states, p_set, t_s, DT_S)
    return (time.perf_counter() - t0) / n_ticks * 1e3


def bench_twin(n_devices: int, n_ticks: int) -> dict:
    """Wall time per tick of a whole run without power flow, twin on and off."""
    from vpp.run import run_scenario
    from vpp.scenario import parse_scenario

    share = {"ac_pile": 0.6, "dc_fast": 0.02, "ebike_cabinet": 0.25}
    fleets = [{"kind": "ev", "name": k, "operator": "evnet", "charger": k, "n_devices": int(n_devices * v),
               "v2g_share": 0.1 if k == "ac_pile" else 0.0} for k, v in share.items()]
    fleets += [{"kind": "basestation", "name": "towers", "operator": "tower", "n_devices": int(n_devices * 0.12)},
               {"kind": "building", "name": "offices", "operator": "bldg", "n_devices": max(1, n_devices // 100),
                "pv_share": 0.5, "battery_share": 0.3}]
    out = {"n": sum(f["n_devices"] for f in fleets), "ticks": n_ticks}
    for twin in (False, True):
        sc = parse_scenario({
            "name": "bench", "seed": 1,
            "time": {"clock_start_h": 17.0, "duration_s": n_ticks * 300.0, "dt_s": 300},
            "grid": {"network": "mv_oberrhein", "power_flow": False},
            "fleets": fleets,
            "dr_calls": [{"id": "c", "direction": "reduce", "p_kw": 0.02 * n_devices, "start_s": 600,
                          "end_s": n_ticks * 300.0 - 600}],
            "output": {"bus_timeseries": False},
            "measurement": {"twin": twin},
        })
        res = run_scenario(sc)
        out["twin_on_ms" if twin else "twin_off_ms"] = 1e3 * (res.meta["wall_time_s"] - res.meta["build_s"]) / n_ticks
    out["twin_cost"] = out["twin_on_ms"] / out["twin_off_ms"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-n", type=int, default=1_000_000)
    ap.add_argument("--ticks", type=int, default=20)
    args = ap.parse_args()
    sizes = [n for n in (1_000, 10_000, 100_000, 1_000_000) if n <= args.max_n]

    print("EV envelope per tick at 19:00: work buffers vs the plain allocating version (same run)")
    print(f"{'n':>9}{'plugged':>9}{'buffered ms':>13}{'plain ms':>10}{'speed-up':>10}{'buf arrays':>12}{'plain arrays':>14}")
    for n in sizes:
        r = bench_envelope(n, repeats=max(3, min(50, 2_000_000 // n)))
        print(f"{r['n']:>9,}{r['plugged']:>9,}{r['buffered_ms']:>13.2f}{r['plain_ms']:>10.2f}{r['speedup']:>9.1f}x"
              f"{r['buffered_arrays']:>12.1f}{r['plain_arrays']:>14.1f}")

    print("\nEV envelope + step, device-steps/s, against a per-device Python loop (same run)")
    base = loop_baseline(make_fleet(sizes[0]), args.ticks)
    print(f"{'loop':>9}{base / 1e6:>10.2f} M/s")
    for n in sizes:
        rate = vector_rate(make_fleet(n), args.ticks)
        lat = dispatch_latency_ms(make_fleet(n), args.ticks)
        print(f"{n:>9,}{rate / 1e6:>10.2f} M/s{rate / base:>8.1f}x   envelope+aggregate+split+step {lat:8.2f} ms/tick")

    print("\nTwin cost: whole run per tick (no power flow), mixed plant, twin on vs off (same run)")
    for n in (s for s in (10_000, 100_000) if s <= args.max_n):
        r = bench_twin(n, n_ticks=24)
        print(f"{r['n']:>9,} devices: twin off {r['twin_off_ms']:7.1f} ms/tick, on {r['twin_on_ms']:7.1f} ms/tick "
              f"({r['twin_cost']:.2f}x)")


if __name__ == "__main__":
    main()
