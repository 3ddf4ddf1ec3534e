"""Per-tick power-flow cost: pandapower's ``runpp`` against each fast solver, on the same ticks.

Run: ``python benchmarks/bench_grid.py [--ticks 144] [--nets mv_oberrhein 1-MV-urban--0-sw]``.
SimBench codes need the optional extra (``pip install simbench``); without it
they are skipped with a note.

What is timed is one :meth:`vpp.grid.model.GridModel.solve` call, i.e. what a
run pays per tick: write the tick's injections (background loads and
generators scaled by the day's profiles, the VPP's per-bus power), solve
warm-started from the previous tick, read voltages, line and transformer
loading, losses and the external grid's power. For ``pandapower`` that is
``runpp(init="results")`` on the model's net, as the model uses it.

Set-up (loading the net, building each solver once) is outside the timing and
reported separately. Every solver sees the same sequence of ticks. Each runs
its own pass over the day, as in a run, twice, passes alternating between
solvers so that a change of load on the machine falls on all alike. Reported
per net and solver: the median time per tick (five warm-up ticks dropped per
pass), the speed-up as the ratio of ``runpp``'s median to the solver's with a
95 % bootstrap interval over ticks, the same ratio when the solvers take
turns within each tick ("in turns": the fast solver then runs with caches
churned by ``runpp``, a pessimistic figure), and the largest difference from
``runpp``'s results over the ticks (voltage [pu]; line and transformer
loading [percentage points]).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from vpp.grid.model import GridModel
from vpp.grid.networks import PANDAPOWER_NETWORKS, load_network, simbench_available
from vpp.grid.solvers import SOLVERS
from vpp.profiles import get_profile

DT_S = 600.0  # ticks 10 minutes apart: a day is 144 ticks
N_WARMUP = 5
N_HOSTS = 30  # buses carrying VPP load
VPP_SHARE = 0.3  # the VPP's mean draw as a share of the net's nominal load


def _ticks(net, n_bus: int, hosts: np.ndarray, n_ticks: int, seed: int = 0):
    """(p_vpp_bus_kw, load_factor, sgen_factor) per tick: a summer day with a wandering VPP."""
    rng = np.random.default_rng(seed)
    load_profile, sgen_profile = get_profile("residential_mv"), get_profile("pv_clear_sky")
    nominal_kw = float((net.load.p_mw * net.load.scaling).sum()) * 1000.0
    share = rng.dirichlet(np.ones(hosts.size))
    level = 1.0
    out = []
    for k in range(n_ticks):
        hod_h = (k * DT_S / 3600.0) % 24.0
        level = float(np.clip(level + rng.normal(0.0, 0.1), 0.2, 2.0))
        share = np.abs(share + rng.normal(0.0, 0.01, hosts.size))
        p_bus_kw = np.zeros(n_bus)
        p_bus_kw[hosts] = share / share.sum() * level * VPP_SHARE * nominal_kw
        out.append((p_bus_kw, float(load_profile(hod_h)), float(sgen_profile(hod_h))))
    return out


def _build(net, code: str, name: str, hosts: np.ndarray):
    t0 = time.perf_counter()
    model = GridModel(net, code, solver=name)
    model.attach_vpp(hosts)  # builds the solver
    return model, time.perf_counter() - t0


def _pass(model, ticks, keep_states: bool = False):
    """Solve every tick in order; seconds per tick (and the states)."""
    times, states = [], []
    for p_bus_kw, load_factor, sgen_factor in ticks:
        t0 = time.perf_counter()
        st = model.solve(p_bus_kw, load_factor, sgen_factor)
        times.append(time.perf_counter() - t0)
        if keep_states:
            states.append(st)
    return times[N_WARMUP:], states


def _ratio_ci(t_ref: np.ndarray, t: np.ndarray, rng, n_boot: int = 2000):
    ratio = statistics.median(t_ref) / statistics.median(t)
    i_ref = rng.integers(0, t_ref.size, size=(n_boot, t_ref.size))
    i = rng.integers(0, t.size, size=(n_boot, t.size))
    lo, hi = np.percentile(np.median(t_ref[i_ref], axis=1) / np.median(t[i], axis=1), [2.5, 97.5])
    return ratio, lo, hi


def bench_net(code: str, n_ticks: int) -> None:
    source = "pandapower" if code in PANDAPOWER_NETWORKS else "simbench"
    if source == "simbench" and not simbench_available():
        print(f"{code}: skipped (SimBench codes need `pip install simbench`)")
        return
    net = load_network(code, source)
    n_bus = len(net.bus)
    hosts = np.sort(np.random.default_rng(1).choice(n_bus, size=min(N_HOSTS, n_bus), replace=False))
    ticks = _ticks(net, n_bus, hosts, n_ticks)
    names = list(SOLVERS)

    # Each solver on its own pass over the day, as in a run; passes alternate (A B A B) so that a change of
    # load on the machine falls on all alike. Every pass starts from a freshly built model.
    times = {name: [] for name in names}
    states = {}
    info = {}
    for rep in range(2):
        for name in names:
            model, build_s = _build(net, code, name, hosts)
            t, st = _pass(model, ticks, keep_states=rep == 0)
            times[name] += t
            if rep == 0:
                states[name] = st
                info[name] = (model, build_s)
    # Pessimistic variant: solvers take turns within each tick, so the fast one runs with caches just
    # churned by runpp's pandas work (a run has only its fleets' work between two power flows).
    models = {name: _build(net, code, name, hosts)[0] for name in names}
    turns = {name: [] for name in names}
    for k, (p_bus_kw, load_factor, sgen_factor) in enumerate(ticks):
        for name, model in models.items():
            t0 = time.perf_counter()
            model.solve(p_bus_kw, load_factor, sgen_factor)
            if k >= N_WARMUP:
                turns[name].append(time.perf_counter() - t0)

    ref = states["pandapower"]
    print(f"\n{code} ({source}): {n_bus} buses, {len(net.line)} lines, {len(net.trafo)} transformers, "
          f"{len(net.load)} loads, {len(net.sgen)} sgens, {len(net.ext_grid)} external grids; "
          f"{n_ticks} ticks, medians over 2 x {n_ticks - N_WARMUP}")
    print(f"{'solver':<15}{'engine':<8}{'build ms':>9}{'ms/tick':>9}{'speed-up':>10}{'95% CI':>14}"
          f"{'in turns':>10}{'dvm pu':>10}{'dline pp':>10}{'dtrafo pp':>10}{'not conv':>9}")
    rng = np.random.default_rng(2)
    t_ref = np.asarray(times["pandapower"])
    t_ref_turns = np.asarray(turns["pandapower"])
    for name in names:
        model, build_s = info[name]
        t = np.asarray(times[name])
        ratio, lo, hi = _ratio_ci(t_ref, t, rng)
        ratio_turns = statistics.median(t_ref_turns) / statistics.median(turns[name])
        d = np.zeros(3)
        n_bad = 0
        for st, st_ref in zip(states[name], ref):
            n_bad += not st.converged
            if st.converged and st_ref.converged:
                d = np.maximum(d, [np.nanmax(np.abs(st.vm_pu - st_ref.vm_pu), initial=0.0),
                                   np.nanmax(np.abs(st.line_loading_percent - st_ref.line_loading_percent), initial=0.0),
                                   np.nanmax(np.abs(st.trafo_loading_percent - st_ref.trafo_loading_percent),
                                             initial=0.0)])
        label = name if not model.solver_note else f"{name}->{model.solver_name}"
        engine = getattr(model.solver, "engine_kind", "")
        print(f"{label:<15}{engine:<8}{build_s * 1e3:>9.0f}{statistics.median(t) * 1e3:>9.3f}{ratio:>9.0f}x"
              f"{f'[{lo:.0f}x, {hi:.0f}x]':>14}{ratio_turns:>9.0f}x{d[0]:>10.1e}{d[1]:>10.1e}{d[2]:>10.1e}{n_bad:>9d}")
        if model.solver_note:
            print(f"  note: {model.solver_note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=144, help="ticks per net (at least 100 + 5 warm-up)")
    parser.add_argument("--nets", nargs="+", default=["mv_oberrhein", "1-MV-urban--0-sw"],
                        help="pandapower names or SimBench codes")
    args = parser.parse_args()
    if args.ticks < 100 + N_WARMUP:
        parser.error(f"--ticks must be at least {100 + N_WARMUP} (medians over at least 100 ticks)")
    for code in args.nets:
        bench_net(code, args.ticks)


if __name__ == "__main__":
    main()
