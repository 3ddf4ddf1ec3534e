"""``vpp bench``: aggregation latency, end-to-end throughput, a per-device SimPy baseline, scaling.

Everything here returns plain dicts; the only IO is :func:`write_json` and
:func:`write_plot` at the edge (and reading ``/proc`` for the machine's
description). Set-up (building fleets, advancing them to an evening state,
loading the net) is never inside a timed region.

* **Aggregation latency**: wall time from a DR call reaching the platform to
  per-device setpoints for one operator portfolio: the envelope on the current
  state (:meth:`Portfolio.flexibility`), the per-bus sums
  (:meth:`Portfolio.by_bus`) and the split of the call
  (:meth:`Portfolio.setpoints`). Median and 99th percentile over repeats, per
  device kind, per strategy, per size.
* **Throughput**: device-ticks per second of :func:`vpp.run.run_scenario`
  (fleets, twin, agents, dispatch, recording) on a generated mixed scenario,
  without the grid and with it (lightsim2grid); build time excluded.
* **Baseline**: the default (uncontrolled, full power) EV AC-pile physics
  written the textbook way, one SimPy process per charger, on the same
  sessions, against ``run_scenario`` on the same fleet and horizon.
* **Scaling**: bytes of state and parameters per device, and latency, against N.

Time is in seconds throughout; powers in kW, energies in kWh.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = [
    "KIND_SPECS",
    "machine_info",
    "latency",
    "throughput",
    "simpy_baseline",
    "simpy_ev_energy",
    "state_bytes_per_device",
    "run_bench",
    "format_table",
    "write_json",
    "write_plot",
]

DT_S = 300.0
CLOCK_START_H = 17.0
T_EVENING_S = 2 * 3600.0  # latency is measured at 19:00, the evening peak of home charging
NETWORK = "mv_oberrhein"


def _mix(n: int) -> list[dict]:
    """A Shenzhen-like mix of ``n`` devices (shares after the 2024 figures in issue 9, buildings added)."""
    share = {"ac_pile": 0.6, "dc_fast": 0.02, "ebike_cabinet": 0.25}
    fleets = [{"kind": "ev", "name": k, "operator": "op", "charger": k, "n_devices": max(1, int(n * v)),
               "v2g_share": 0.1 if k == "ac_pile" else 0.0} for k, v in share.items()]
    fleets += [{"kind": "basestation", "name": "towers", "operator": "op", "n_devices": max(1, int(n * 0.12))},
               {"kind": "building", "name": "offices", "operator": "op", "n_devices": max(1, n // 100),
                "pv_share": 0.5, "battery_share": 0.3}]
    return fleets


# Device kinds measured one by one, and the mix: name -> fleets of n devices (one operator).
KIND_SPECS = {
    "ev_ac_pile": lambda n: [{"kind": "ev", "name": "ac", "operator": "op", "charger": "ac_pile", "n_devices": n,
                              "v2g_share": 0.1}],
    "ev_dc_fast": lambda n: [{"kind": "ev", "name": "dc", "operator": "op", "charger": "dc_fast", "n_devices": n}],
    "basestation": lambda n: [{"kind": "basestation", "name": "towers", "operator": "op", "n_devices": n}],
    "building": lambda n: [{"kind": "building", "name": "offices", "operator": "op", "n_devices": n,
                            "pv_share": 0.5, "battery_share": 0.3}],
    "mix": _mix,
}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("numpy", "numba", "simpy", "pandapower", "lightsim2grid", "acnportal"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _proc_field(path: str, key: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info() -> dict:
    """CPU model, cores, memory and the versions that matter to the figures."""
    mem = _proc_field("/proc/meminfo", "MemTotal")  # "24683768 kB"
    mem_gib = round(int(mem.split()[0]) / 2**20, 2) if mem else None
    return {
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "versions": _versions(),
    }


def _scenario(fleets: list[dict], n_ticks: int, *, power_flow: bool = False, twin: bool = True,
              calls: bool = True, seed: int = 1):
    from vpp.scenario import parse_scenario

    total = sum(f["n_devices"] for f in fleets)
    duration_s = n_ticks * DT_S
    d = {
        "name": "bench", "seed": seed,
        "time": {"clock_start_h": CLOCK_START_H, "duration_s": duration_s, "dt_s": DT_S},
        "grid": {"network": NETWORK, "power_flow": power_flow},
        "fleets": fleets,
        "dr_calls": [{"id": "c", "direction": "reduce", "p_kw": max(1.0, 0.02 * total), "start_s": 2 * DT_S,
                      "end_s": duration_s - 2 * DT_S}] if calls and n_ticks > 4 else [],
        "output": {"bus_timeseries": False},
        "measurement": {"twin": twin},
    }
    return parse_scenario(d)


def _array_bytes(obj) -> int:
    """Bytes held in numpy arrays that are attributes of ``obj`` (one level into dataclass attributes)."""
    seen, total = set(), 0
    attrs = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    if hasattr(obj, "__slots__") or hasattr(obj, "__dataclass_fields__"):
        attrs += [getattr(obj, f) for f in getattr(obj, "__dataclass_fields__", {})]
    for v in attrs:
        if isinstance(v, np.ndarray):
            if id(v) not in seen:
                seen.add(id(v))
                total += v.nbytes
        elif hasattr(v, "__dataclass_fields__"):
            for f in v.__dataclass_fields__:
                a = getattr(v, f)
                if isinstance(a, np.ndarray) and id(a) not in seen:
                    seen.add(id(a))
                    total += a.nbytes
    return total


def state_bytes_per_device(fleets, states) -> float:
    """Bytes of state and parameters per device: nbytes of the states' and fleets' arrays over n.

    Fleet parameters include the EV session tables; work buffers are not counted.
    """
    n = sum(f.n for f in fleets)
    total = sum(_array_bytes(f) for f in fleets) + sum(_array_bytes(s) for s in states)
    return total / max(n, 1)


def _evening(fleets_spec: list[dict], grid):
    """Build a portfolio's fleets and advance them, uncontrolled, to 19:00 (not timed)."""
    from vpp.build import build_plant

    n_ticks = int(T_EVENING_S / DT_S) + 4
    plant = build_plant(_scenario(fleets_spec, n_ticks, calls=False), grid=grid)
    states = [f.initial_state() for f in plant.fleets]
    for k in range(int(T_EVENING_S / DT_S)):
        for f, s in zip(plant.fleets, states):
            f.step_default(s, k * DT_S, DT_S)
    return plant.fleets, states


def latency(kind: str, n: int, strategies, repeats: int, grid) -> dict:
    """Aggregation latency of one portfolio of ``n`` devices of ``kind`` at 19:00, per strategy.

    Returns per strategy the median and p99 [ms] of envelope + per-bus
    aggregation + split, and the medians of each part.
    """
    from vpp.dispatch import Portfolio, get_allocator
    from vpp.dr import Direction, DRCall

    fleets, states = _evening(KIND_SPECS[kind](n), grid)
    t_s = T_EVENING_S
    for f, s in zip(fleets, states):
        f.advance(s, t_s, DT_S)
    n_bus = len(grid.bus_index)
    out = {"kind": kind, "n": sum(f.n for f in fleets), "state_bytes_per_device": state_bytes_per_device(fleets, states),
           "strategies": {}}
    for name in strategies:
        pf = Portfolio(fleets, n_bus, get_allocator(name))
        env = pf.flexibility(states, t_s, DT_S)
        room_kw = float(np.maximum(env.p_default_kw - env.p_min_kw, 0.0).sum())
        # Half the room down: every device with room takes part and no allocator saturates trivially.
        delta_kw = -0.5 * room_kw if room_kw > 0.0 else -1.0
        call = DRCall("c", Direction.REDUCE, max(-delta_kw, 1e-3), t_s, t_s + 3600.0, t_s)
        pf.setpoints(env, [(call, delta_kw)])  # warm: the call's targets are found once per call and cached
        tot, t_env, t_agg, t_split = [], [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            env = pf.flexibility(states, t_s, DT_S)
            t1 = time.perf_counter()
            pf.by_bus(env)
            t2 = time.perf_counter()
            pf.setpoints(env, [(call, delta_kw)])
            t3 = time.perf_counter()
            tot.append(t3 - t0)
            t_env.append(t1 - t0)
            t_agg.append(t2 - t1)
            t_split.append(t3 - t2)
        out["strategies"][name] = {
            "median_ms": 1e3 * statistics.median(tot),
            "p99_ms": 1e3 * float(np.percentile(tot, 99)),
            "envelope_ms": 1e3 * statistics.median(t_env),
            "aggregate_ms": 1e3 * statistics.median(t_agg),
            "split_ms": 1e3 * statistics.median(t_split),
            "repeats": repeats,
        }
    return out


def _run_rate(sc) -> dict:
    from vpp.run import run_scenario

    t0 = time.perf_counter()
    res = run_scenario(sc)
    # meta's times are rounded to the millisecond; measure the whole call here and take the build out.
    run_s = time.perf_counter() - t0 - res.meta["build_s"]
    n = sum(f.n_devices for f in sc.fleets)
    n_ticks = int(round(sc.time.duration_s / sc.time.dt_s))
    return {"n": n, "ticks": n_ticks, "run_s": run_s, "build_s": res.meta["build_s"],
            "device_ticks_per_s": n * n_ticks / run_s}


def throughput(n: int, n_ticks: int) -> dict:
    """Device-ticks per second of a whole run of the mix (twin on, one call), without and with the grid."""
    out = {}
    for label, pf in (("no_grid", False), ("grid", True)):
        out[label] = _run_rate(_scenario(_mix(n), n_ticks, power_flow=pf))
    return out


# ---------------------------------------------------------------- the per-device SimPy baseline


def _flat_taper(taper_soc, taper_frac) -> tuple[float, float]:
    """(fraction on the flat start of the taper curve, SoC where it stops being flat)."""
    frac0 = float(taper_frac[0])
    for s_prev, f in zip(taper_soc, taper_frac[1:]):
        if f < frac0:
            return frac0, float(s_prev)
    return frac0, 1.0


def simpy_ev_energy(fleet, n_ticks: int, dt_s: float = DT_S) -> tuple[float, float]:
    """Uncontrolled EV charging written the textbook way: one SimPy process per charger.

    Each charger's process waits for its next vehicle, then charges it at the
    most it takes (pile rating, the vehicle's tapered acceptance, the energy it
    asked for, the fraction of the tick it is present) tick by tick until
    departure: vpp's default-power physics and tick rules, on ``fleet``'s own
    session table. Returns (energy drawn from the grid [kWh], wall time [s]).
    """
    import simpy

    from vpp.fleets.kernels import taper_energy_kwh

    tab = fleet.sessions.dense()  # per-charger rows, as a per-device simulator holds them
    eta = fleet.eta
    dt_h = dt_s / 3600.0
    taper_soc, taper_frac = fleet.taper_soc, fleet.taper_frac
    frac_flat, soc_flat = _flat_taper(taper_soc, taper_frac)
    # Python lists, as a per-device simulator holds them.
    arrival, departure = tab.arrival_s.tolist(), tab.departure_s.tolist()
    cap, e_arr, e_need, accept = (tab.cap_kwh.tolist(), tab.e_arrival_kwh.tolist(), tab.e_need_kwh.tolist(),
                                  tab.p_accept_kw.tolist())
    p_rated = fleet.p_rated_kw.tolist()
    drawn = [0.0]

    def charger(env, i):
        for k in range(len(arrival[i])):
            arr, dep = arrival[i][k], departure[i][k]
            if dep <= 0.0:
                continue  # over before the run
            if not math.isfinite(arr):
                return
            # Plugged in at the start of the tick it arrives in, once the charger is free.
            t_plug = max(math.floor(arr / dt_s) * dt_s, env.now, 0.0)
            if t_plug > env.now:
                yield env.timeout(t_plug - env.now)
            e = e_arr[i][k]
            target = min(e + e_need[i][k], cap[i][k])
            p_top = min(p_rated[i], accept[i][k] * frac_flat)
            while env.now < dep:
                t = env.now
                frac = min(max((min(dep, t + dt_s) - max(arr, t)) / dt_s, 0.0), 1.0)
                e_rem = max(target - e, 0.0)
                e_acc = eta * p_top * frac * dt_h
                if e + e_acc > cap[i][k] * soc_flat:
                    e_acc = float(taper_energy_kwh(e, cap[i][k], p_rated[i], accept[i][k], eta, frac * dt_h,
                                                   taper_soc, taper_frac))
                p_kw = min(min(e_acc, e_rem) / (eta * dt_h), frac * p_rated[i])
                e_new = e + p_kw * eta * dt_h
                e = min(e_new, max(target, e))
                drawn[0] += p_kw * dt_h
                yield env.timeout(dt_s)

    env = simpy.Environment()
    t0 = time.perf_counter()
    for i in range(fleet.n):
        env.process(charger(env, i))
    env.run(until=n_ticks * dt_s)
    return drawn[0], time.perf_counter() - t0


def _ac_scenario(n: int, n_ticks: int):
    spec = [{"kind": "ev", "name": "ac", "operator": "op", "charger": "ac_pile", "n_devices": n}]
    return _scenario(spec, n_ticks, twin=False, calls=False)


def simpy_baseline(sizes, n_ticks: int, budget_s: float, grid) -> list[dict]:
    """EV AC piles, uncontrolled, no calls: the SimPy baseline against ``run_scenario`` (no grid, no twin).

    Sizes grow until the baseline's last run took more than ``budget_s / 10``
    (the next, ten times larger, would exceed the budget).
    """
    from vpp.build import build_plant

    out = []
    for n in sizes:
        sc = _ac_scenario(n, n_ticks)
        fleet = build_plant(sc, grid=grid).fleets[0]
        e_simpy_kwh, simpy_s = simpy_ev_energy(fleet, n_ticks)
        s = fleet.initial_state()
        t0 = time.perf_counter()
        for k in range(n_ticks):
            fleet.step_default(s, k * DT_S, DT_S)
        kernel_s = time.perf_counter() - t0
        vpp = _run_rate(sc)
        dev_ticks = n * n_ticks
        out.append({
            "n": n, "ticks": n_ticks,
            "simpy_s": simpy_s, "simpy_device_ticks_per_s": dev_ticks / simpy_s,
            "vpp_run_device_ticks_per_s": vpp["device_ticks_per_s"],
            "vpp_fleet_device_ticks_per_s": dev_ticks / kernel_s,
            "ratio_run": vpp["device_ticks_per_s"] / (dev_ticks / simpy_s),
            "ratio_fleet": (dev_ticks / kernel_s) / (dev_ticks / simpy_s),
            "e_grid_simpy_kwh": e_simpy_kwh, "e_grid_vpp_kwh": s.e_grid_kwh,
        })
        if simpy_s > budget_s / 10.0:
            break
    return out


# ---------------------------------------------------------------- the whole bench


def run_bench(*, quick: bool = False, max_n: int | None = None, sizes=None, repeats: int | None = None,
              kinds=None, strategies=None, throughput_n: int | None = None, throughput_ticks: int | None = None,
              baseline_sizes=None, baseline_ticks: int | None = None, progress=None) -> dict:
    """Run every measurement and return them with the machine's description (no IO beyond /proc).

    ``quick`` picks sizes up to 10^5 and fewer repeats; every other argument
    overrides one choice (tests use tiny sizes). ``progress(line)`` gets a line
    per finished measurement.
    """
    from vpp.build import build_grid
    from vpp.dispatch import ALLOCATORS
    from vpp.scenario import ScenarioError

    say = progress or (lambda line: None)
    wall0 = time.perf_counter()
    if sizes is None:
        sizes = [10**3, 10**4, 10**5] if quick else [10**3, 10**4, 10**5, 10**6]
    if max_n is not None:
        sizes = [n for n in sizes if n <= max_n]
    kinds = list(KIND_SPECS) if kinds is None else list(kinds)
    strategies = list(ALLOCATORS) if strategies is None else list(strategies)
    grid = build_grid(_scenario(KIND_SPECS["basestation"](1), 4, calls=False))

    lat = []
    for n in sizes:
        reps = repeats if repeats is not None else (max(10, min(50, 10**6 // n)) if quick
                                                   else max(20, min(200, 10**7 // n)))
        for kind in kinds:
            try:
                r = latency(kind, n, strategies, reps, grid)
            except ScenarioError as exc:  # e.g. the session tables would not fit in memory here
                lat.append({"kind": kind, "n": n, "skipped": str(exc)})
                say(f"latency {kind} n={n:,}: skipped: {exc}")
                continue
            lat.append(r)
            say(f"latency {kind} n={r['n']:,}: " + ", ".join(
                f"{s} {v['median_ms']:.2f} ms" for s, v in r["strategies"].items()))

    tn = throughput_n if throughput_n is not None else (10**5 if quick else 10**6)
    if max_n is not None:
        tn = min(tn, max_n)
    tt = throughput_ticks if throughput_ticks is not None else (24 if quick else 48)
    thr = throughput(tn, tt)
    say(f"throughput n={tn:,}: no grid {thr['no_grid']['device_ticks_per_s']:,.0f}, "
        f"grid {thr['grid']['device_ticks_per_s']:,.0f} device-ticks/s")

    if baseline_sizes is None:
        baseline_sizes = [10**3, 10**4] if quick else [10**3, 10**4, 10**5]
    if max_n is not None:
        baseline_sizes = [n for n in baseline_sizes if n <= max_n] or [min(baseline_sizes)]
    bt = baseline_ticks if baseline_ticks is not None else (24 if quick else 48)
    base = simpy_baseline(baseline_sizes, bt, budget_s=60.0, grid=grid)
    for b in base:
        say(f"SimPy baseline n={b['n']:,}: {b['simpy_device_ticks_per_s']:,.0f} device-ticks/s; "
            f"vpp run {b['ratio_run']:.0f}x, fleet step {b['ratio_fleet']:.0f}x")

    try:
        import acnportal  # noqa: F401

        acn = "acnportal installed; its baseline is not implemented yet"
    except ImportError:
        acn = "acnportal not installed (pip install 'vpp[acn]'); its baseline is not implemented yet"

    from vpp.fleets import kernels

    # Which EV envelope ran: the numba kernel when numba is installed and VPP_NO_NUMBA is unset.
    ev_envelope = "numba" if getattr(kernels, "NUMBA_AVAILABLE", False) else "numpy"
    return {
        "machine": machine_info(),
        "settings": {"quick": quick, "ev_envelope": ev_envelope, "sizes": sizes, "kinds": kinds, "strategies": strategies, "dt_s": DT_S,
                     "latency_at_clock_h": CLOCK_START_H + T_EVENING_S / 3600.0, "network": NETWORK},
        "latency": lat,
        "throughput": thr,
        "baseline_simpy": base,
        "baseline_acn": acn,
        "wall_s": time.perf_counter() - wall0,
    }


def format_table(res: dict) -> str:
    """The results as text tables."""
    m = res["machine"]
    v = m["versions"]
    lines = [f"machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB; python {v['python']}, "
             f"numpy {v['numpy']}, numba {v['numba']}, pandapower {v['pandapower']}, "
             f"lightsim2grid {v['lightsim2grid']}; EV envelope: {res['settings'].get('ev_envelope', '?')}", "",
             "Aggregation latency at 19:00 (envelope + per-bus aggregation + split), ms"]
    strategies = res["settings"]["strategies"]
    head = f"{'kind':<12}{'n':>10}{'B/device':>10}"
    for s in strategies:
        head += f"{s + ' med':>16}{'p99':>9}"
    head += f"{'env':>8}{'agg':>7}{'split':>7}"
    lines.append(head)
    for r in res["latency"]:
        if "skipped" in r:
            lines.append(f"{r['kind']:<12}{r['n']:>10,}  skipped: {r['skipped'].splitlines()[0][:110]}")
            continue
        row = f"{r['kind']:<12}{r['n']:>10,}{r['state_bytes_per_device']:>10.0f}"
        for s in strategies:
            row += f"{r['strategies'][s]['median_ms']:>16.2f}{r['strategies'][s]['p99_ms']:>9.2f}"
        p = r["strategies"][strategies[0]]
        row += f"{p['envelope_ms']:>8.2f}{p['aggregate_ms']:>7.2f}{p['split_ms']:>7.2f}"
        lines.append(row)
    lines.append(f"(env/agg/split: medians of the parts under {strategies[0]})")
    t = res["throughput"]
    lines += ["", "Throughput, whole run of the mix (twin on, one call; build excluded)"]
    for label in ("no_grid", "grid"):
        r = t[label]
        lines.append(f"{label:<8} n={r['n']:,} x {r['ticks']} ticks: {r['device_ticks_per_s']:>14,.0f} device-ticks/s "
                     f"(run {r['run_s']:.2f} s, build {r['build_s']:.2f} s)")
    lines += ["", "SimPy baseline: EV AC piles uncontrolled, one process per charger (same sessions)",
              f"{'n':>9}{'ticks':>6}{'simpy dt/s':>14}{'vpp run dt/s':>15}{'ratio':>8}{'fleet dt/s':>14}{'ratio':>8}"
              f"{'E simpy kWh':>13}{'E vpp kWh':>12}"]
    for b in res["baseline_simpy"]:
        lines.append(f"{b['n']:>9,}{b['ticks']:>6}{b['simpy_device_ticks_per_s']:>14,.0f}"
                     f"{b['vpp_run_device_ticks_per_s']:>15,.0f}{b['ratio_run']:>7.0f}x"
                     f"{b['vpp_fleet_device_ticks_per_s']:>14,.0f}{b['ratio_fleet']:>7.0f}x"
                     f"{b['e_grid_simpy_kwh']:>13.1f}{b['e_grid_vpp_kwh']:>12.1f}")
    lines += [f"ACN-Sim: {res['baseline_acn']}", f"bench wall time {res['wall_s']:.1f} s"]
    return "\n".join(lines)


def write_json(res: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(res, indent=2))


def write_plot(res: dict, path: Path) -> None:
    """Latency and state memory against N, one line per kind (log-log), to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategy = res["settings"]["strategies"][0]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for kind in res["settings"]["kinds"]:
        rows = sorted((r for r in res["latency"] if r["kind"] == kind and "skipped" not in r), key=lambda r: r["n"])
        n = [r["n"] for r in rows]
        ax_t.plot(n, [r["strategies"][strategy]["median_ms"] for r in rows], "o-", label=kind)
        ax_m.plot(n, [r["state_bytes_per_device"] * r["n"] / 2**20 for r in rows], "o-", label=kind)
    ax_t.set(xscale="log", yscale="log", xlabel="devices N", ylabel=f"latency median [ms] ({strategy})",
             title="Call to setpoints")
    ax_m.set(xscale="log", yscale="log", xlabel="devices N", ylabel="state + parameters [MiB]",
             title="Memory of state and parameters")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"vpp bench on {res['machine']['cpu_model']}, {res['machine']['cores']} cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
