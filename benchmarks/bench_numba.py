"""Compiled (numba) against numpy EV envelope, across sizes, in the same run.

Run: ``python benchmarks/bench_numba.py [--max-n 1000000] [--chargers ac_pile dc_fast]``.
Needs numba (``pip install -e '.[fast]'``).

* **compile**: wall time of the first compiled call in a fresh interpreter,
  once with an empty numba cache (import numba + compile) and once with the
  cache that run left behind (import numba + load), each against the same
  interpreter's first numpy call. Never part of the per-tick figures.
* **envelope**: median wall time of ``EVFleet.flexibility`` per tick (the
  envelope plus the base class's ordering guard) at 19:00, after a warm-up
  call, on the numba path and on the numpy path of the same fleet and state;
  the two envelopes are checked to agree to 1e-9 first. "past flat" counts the
  plugged vehicles already on the tapered part of their curve. Set-up (sessions,
  driving the fleet to the evening) is outside the timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_fleets import _median_s  # same folder: the benchmarks run as scripts

from vpp.fleets import EVFleet, draw_sessions
from vpp.fleets.parameters import CHARGER_PARAMETERS

DT_S = 60.0
CLOCK_START_H = 17.0
T_BENCH_S = 2 * 3600.0  # 19:00: the evening peak of home charging

_FIRST_CALL = """
import json, sys, time
sys.path.insert(0, {here!r})
from bench_numba import make_fleet, T_BENCH_S, DT_S
fleet = make_fleet("ac_pile", 1000)
s = fleet.initial_state()
fleet.advance(s, T_BENCH_S, DT_S)
fleet.use_numba = False
t0 = time.perf_counter(); fleet.flexibility(s, T_BENCH_S, DT_S); t_numpy = time.perf_counter() - t0
fleet.use_numba = True
t0 = time.perf_counter(); fleet.flexibility(s, T_BENCH_S, DT_S); t_numba = time.perf_counter() - t0
print(json.dumps({{"numba_s": t_numba, "numpy_s": t_numpy}}))
"""


def make_fleet(charger: str, n: int, seed: int = 0) -> EVFleet:
    rng = np.random.default_rng(seed)
    params = CHARGER_PARAMETERS[charger]
    p_rated = np.full(n, params.p_rated_kw)
    sessions = draw_sessions(rng, params, p_rated, 6 * 3600.0, CLOCK_START_H)
    return EVFleet(charger, rng.integers(0, 100, n), "op", 0.5, p_rated, params.eta, rng.random(n) < 0.1, 0.3,
                   sessions, params.taper_soc, params.taper_frac)


def first_call_s() -> dict:
    """First-call times [s] in fresh interpreters: empty numba cache (compile), then warm cache (load)."""
    code = _FIRST_CALL.format(here=str(Path(__file__).resolve().parent))
    out = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "VPP_NO_NUMBA": ""}
        for label in ("cold", "cached"):
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
            out[label] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def bench_envelope(charger: str, n: int, repeats: int) -> dict:
    fleet = make_fleet(charger, n)
    s = fleet.initial_state()
    for k in range(int(T_BENCH_S / DT_S)):  # bring the fleet to the evening, uncontrolled
        fleet.step_default(s, k * DT_S, DT_S)
    fleet.advance(s, T_BENCH_S, DT_S)
    envs = {}
    for use_numba in (False, True):
        fleet.use_numba = use_numba
        envs[use_numba] = fleet.flexibility(s, T_BENCH_S, DT_S, work=fleet.new_workspace())  # also the warm-up
    diff = max(float(np.max(np.abs(getattr(envs[True], k) - getattr(envs[False], k)), initial=0.0))
               for k in ("p_min_kw", "p_max_kw", "p_default_kw"))
    for k in ("p_min_kw", "p_max_kw", "p_default_kw"):
        if not np.allclose(getattr(envs[True], k), getattr(envs[False], k), rtol=1e-9, atol=1e-9):
            raise AssertionError(f"numba and numpy envelopes differ in {k} at n={n}")
    times = {}
    # Alternate the two paths so that a slow spell on the machine hits both.
    samples = {False: [], True: []}
    for _ in range(repeats):
        for use_numba in (False, True):
            fleet.use_numba = use_numba
            samples[use_numba].append(_median_s(lambda: fleet.flexibility(s, T_BENCH_S, DT_S), 1))
    times = {k: statistics.median(v) for k, v in samples.items()}
    plugged = s.plugged
    return {
        "charger": charger, "n": n, "plugged": int(plugged.sum()),
        "tapered": int((plugged & (s.e_kwh > fleet._soc_flat * s.cap_kwh)).sum()),
        "numpy_ms": 1e3 * times[False], "numba_ms": 1e3 * times[True], "speedup": times[False] / times[True],
        "max_abs_diff_kw": diff,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-n", type=int, default=1_000_000)
    ap.add_argument("--chargers", nargs="+", default=["ac_pile", "dc_fast"], choices=sorted(CHARGER_PARAMETERS))
    args = ap.parse_args()
    # 10 and 100: the compiled call has a fixed cost (argument checks) that must not eat its gain.
    sizes = [n for n in (10, 100, 1_000, 10_000, 100_000, 1_000_000) if n <= args.max_n]

    r = first_call_s()
    print("First call in a fresh interpreter, 1,000 AC piles (import + compile or cache load; not in the table below)")
    print(f"  empty numba cache: numba {r['cold']['numba_s']:.2f} s, numpy {1e3 * r['cold']['numpy_s']:.1f} ms")
    print(f"  warm numba cache:  numba {r['cached']['numba_s']:.2f} s, numpy {1e3 * r['cached']['numpy_s']:.1f} ms")

    print("\nEV flexibility per tick at 19:00 (1-minute ticks), median after warm-up, numba vs numpy (same run)")
    print(f"{'charger':>14}{'n':>11}{'plugged':>9}{'past flat':>11}{'numpy ms':>10}{'numba ms':>10}{'speed-up':>10}"
          f"{'max |diff| kW':>15}")
    for charger in args.chargers:
        for n in sizes:
            r = bench_envelope(charger, n, repeats=max(5, min(1000, 2_000_000 // n)))
            print(f"{r['charger']:>14}{r['n']:>11,}{r['plugged']:>9,}{r['tapered']:>11,}{r['numpy_ms']:>10.3f}"
                  f"{r['numba_ms']:>10.3f}{r['speedup']:>9.1f}x{r['max_abs_diff_kw']:>15.1e}")


if __name__ == "__main__":
    main()
