"""``run_scenario(scenario) -> Results``: the Python API everything else calls.

It builds the plant (grid, fleets, calls), wires the agents, runs the control
loop with a power flow every tick, and returns tables and KPIs. It never
prints, never writes files and never mutates the scenario.

A run that stops early raises a :class:`RunError` carrying every tick computed
before it, marked incomplete (see :class:`~vpp.metrics.results.Results`):

- :class:`RunInterrupted` when the caller's ``stop`` callback asks it to stop
  (the CLI does on SIGINT and SIGTERM); it stops at the next tick boundary;
- :class:`GridNotConverged` under ``strict=True``, after the first tick whose
  power flow did not converge (that tick is recorded, with NaN grid values);
- :class:`RunError` itself for any other failure inside a tick.

Without ``strict``, a tick whose power flow does not converge (after the grid
model's retry) is recorded with NaN grid values and counted in
``summary["grid"]["convergence"]``; the run goes on.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

import numpy as np
import pandas as pd

from vpp.build import build_plant, call_room_warnings, plant_warnings
from vpp.dispatch import Portfolio, get_allocator
from vpp.dispatch.optimal import OptimalConfig
from vpp.fleets.registry import KINDS
from vpp.metrics.columns import PRICE
from vpp.metrics.kpis import grid_kpis, summarize
from vpp.metrics.recorder import Recorder
from vpp.metrics.results import Results
from vpp.metrics.settle import settle_run
from vpp.scenario import Scenario, ScenarioError, scenario_hash
from vpp.sim import Engine
from vpp.sim.agents import CongestionPolicy, PlatformPolicy
from vpp.units import S_PER_H

__all__ = ["run_scenario", "prepare_run", "RunSession", "Results", "RunError", "RunInterrupted", "GridNotConverged",
           "ScenarioError"]

_PACKAGES = ("vpp", "numpy", "pandas", "simpy", "pandapower", "pydantic", "pyarrow", "scipy")


class RunError(RuntimeError):
    """A run that stopped before its last tick; ``results`` holds every tick computed."""

    def __init__(self, message: str, results: Results):
        super().__init__(message)
        self.results = results


class RunInterrupted(RunError):
    """A run stopped at a tick boundary because ``stop()`` asked it to; ``results.stopped_by`` says why."""


class GridNotConverged(RunError):
    """A run under ``strict=True`` stopped after the first tick whose power flow did not converge."""


class _Stop(Exception):
    # Raised from the tick callback to end the run at a tick boundary. SimPy re-raises a failed
    # process's exception as type(exc)(*exc.args), so everything lives in args.
    def __init__(self, reason: str, message: str):
        super().__init__(reason, message)
        self.reason = reason
        self.message = message


@dataclass
class _Convergence:
    """Counts of power flows that did not converge (after the grid model's retry), plant and twin."""

    n_solved: int = 0
    n_failed: int = 0
    first_failed_t_s: float | None = None
    n_retried: int = 0  # converged only on the retry
    n_twin_solved: int = 0
    n_twin_failed: int = 0
    first_twin_failed_t_s: float | None = None

    def add(self, state, t_s: float, twin: bool = False) -> None:
        if twin:
            self.n_twin_solved += 1
            if not state.converged:
                self.n_twin_failed += 1
                if self.first_twin_failed_t_s is None:
                    self.first_twin_failed_t_s = t_s
            return
        self.n_solved += 1
        if not state.converged:
            self.n_failed += 1
            if self.first_failed_t_s is None:
                self.first_failed_t_s = t_s
        elif state.attempts > 1:
            self.n_retried += 1

    def summary(self) -> dict:
        note = "all converged" if not self.n_failed else (
            f"{self.n_failed} of {self.n_solved} ticks did not converge, first at t_s={self.first_failed_t_s:g}"
        )
        if self.n_twin_failed:
            note += (f"; no-call twin: {self.n_twin_failed} of {self.n_twin_solved} did not converge, "
                     f"first at t_s={self.first_twin_failed_t_s:g}")
        return {
            "n_ticks": self.n_solved,
            "n_not_converged": self.n_failed,
            "first_not_converged_t_s": self.first_failed_t_s,
            "n_converged_on_retry": self.n_retried,
            "twin_n_power_flows": self.n_twin_solved,
            "twin_n_not_converged": self.n_twin_failed,
            "twin_first_not_converged_t_s": self.first_twin_failed_t_s,
            "note": note,
        }


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_scenario(
    scenario: Scenario,
    progress: Callable[[int, int], None] | None = None,
    *,
    stop: Callable[[], str | None] | None = None,
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
    grid=None,
    southbound=None,
) -> Results:
    """Simulate ``scenario`` and return its :class:`~vpp.metrics.results.Results`.

    ``progress(done, total)`` is called after every tick, if given.
    ``stop()`` is called before the first tick and after every tick; a
    non-empty string (the reason, e.g. ``"SIGINT"``) ends the run there with
    :class:`RunInterrupted`. ``strict`` makes the first tick whose power flow
    does not converge fatal (:class:`GridNotConverged`). ``warn(line)`` gets
    each warning about valid but suspicious input (see
    :func:`vpp.build.plant_warnings`) before the first tick, except that a
    call larger than the room at its start is found by the no-call twin when
    the run reaches it (the same path :func:`vpp.build.estimate_call_room`
    would simulate beforehand) and reported after the run; all are also in
    ``summary["warnings"]``. ``grid``: a prebuilt :class:`~vpp.grid.model.GridModel` for this scenario
    (:func:`vpp.build.build_grid`), its VPP loads not yet attached; the run
    attaches them, so give each run its own copy (``GridModel.clone()``). A
    sweep uses it to load a network once per worker. ``southbound``: operator name ->
    a :class:`~vpp.sim.agents.Southbound` through which some of its devices' setpoints pass
    before each step (e.g. :class:`vpp.protocols.ocpp.OcppSouthbound`); ``None``: none.

    Raises :class:`ScenarioError` before any work when the scenario cannot run
    on its grid, and :class:`RunError` (with partial results) when a run
    stops early.
    """
    session = prepare_run(scenario, progress, stop=stop, strict=strict, warn=warn, grid=grid,
                          southbound=southbound)
    error = stopped_by = None
    try:
        session.check_stop("before the first tick")
        session.engine.run(session.on_tick)
    except _Stop as exc:
        stopped_by, error = exc.reason, exc.message
    except KeyboardInterrupt:
        # Only when the caller lets a second signal through (or has no stop callback): stops mid-tick.
        stopped_by = (stop() if stop is not None else None) or "SIGINT"
        error = f"interrupted by {stopped_by} during the tick at t_s={session.recorder.n_done * scenario.time.dt_s:g}"
    except Exception as exc:  # keep what was computed; re-raised as RunError below
        stopped_by = "error"
        t_fail = session.recorder.n_done * scenario.time.dt_s
        error = f"{type(exc).__name__} in the tick at t_s={t_fail:g}: {exc}"
    return session.finish(error, stopped_by)


@dataclass
class RunSession:
    """A run wired and ready: its engine, the recorder fed by :meth:`on_tick`, and :meth:`finish`.

    :func:`run_scenario` runs ``engine.run(on_tick)`` then ``finish``; a caller
    that paces the run itself (the OpenADR VEN, :mod:`vpp.protocols.openadr`)
    calls ``engine.start(on_tick)`` and ``engine.advance()`` tick by tick.
    """

    scenario: Scenario
    plant: object  # vpp.build.Plant
    engine: Engine
    recorder: Recorder
    kinds: list
    convergence: _Convergence
    warnings: list
    build_s: float
    wall_start: float
    on_tick: Callable
    check_stop: Callable[[str], None]
    warn: Callable[[str], None] | None = None
    local_calls: bool = True

    def finish(self, error: str | None = None, stopped_by: str | None = None) -> Results:
        """Collect the results; raise :class:`RunError` (with them) when ``error`` says the run stopped early."""
        plant, engine = self.plant, self.engine
        warnings = self.warnings
        if not self.local_calls:
            plant.calls = list(engine.calls)  # the calls that came from outside (Engine.inject)
        if engine.twin is not None:
            late = call_room_warnings(plant, [engine.call_room.get(c.call_id) for c in plant.calls])
            warnings = warnings + late
            if self.warn is not None:
                for line in late:
                    self.warn(line)
        wall_s = time.perf_counter() - self.wall_start
        results = _collect(self.scenario, plant, self.recorder, engine, self.kinds, wall_s, self.build_s, error,
                           stopped_by, warnings, self.convergence)
        if error is not None:
            cls = {"grid_not_converged": GridNotConverged, "error": RunError}.get(stopped_by, RunInterrupted)
            raise cls(error, results)
        return results


def prepare_run(
    scenario: Scenario,
    progress: Callable[[int, int], None] | None = None,
    *,
    stop: Callable[[], str | None] | None = None,
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
    grid=None,
    local_calls: bool = True,
    southbound=None,
) -> RunSession:
    """Build the plant and wire the engine and recorder of a run (arguments as :func:`run_scenario`).

    ``local_calls=False`` leaves the scenario's DR calls out: none is
    scheduled; calls come from outside through :meth:`Engine.inject`.
    """
    wall_start = time.perf_counter()
    plant = build_plant(scenario, grid=grid)
    if not local_calls:
        plant.calls = []
    # With a twin, the run itself measures each call's room at its start: no pre-run simulation.
    warnings = plant_warnings(plant, None if scenario.measurement.twin else scenario.time)
    if warn is not None:
        for line in warnings:
            warn(line)
    grid, fleets, calls = plant.grid, plant.fleets, plant.calls
    d = scenario.dispatch
    o = d.optimal
    optimal = OptimalConfig(o.resolve_every_ticks, o.bucket_s, o.max_horizon_ticks, reference=o.reference,
                            default_recovery_s=o.default_recovery_s, return_s=o.return_s,
                            rebound_penalty_cny_per_kwh=o.rebound_penalty_cny_per_kwh)
    operator_names = list(dict.fromkeys(f.operator for f in fleets))
    portfolios = {
        op: Portfolio([f for f in fleets if f.operator == op], grid.n_bus, get_allocator(d.strategy_for(op)),
                      optimal_config=optimal, offer_cost=d.platform_strategy == "merit_order")
        for op in operator_names
    }
    all_bus_idx = np.concatenate([f.bus_idx for f in fleets])
    grid.attach_vpp(all_bus_idx)
    grid_twin = grid.clone() if scenario.measurement.twin and scenario.grid.power_flow else None

    t = scenario.time
    pc = scenario.platform
    ignore = None
    if pc.non_compliance_share > 0.0:
        # Drawn per device, fleet by fleet in scenario order, whatever the operators' order.
        drawn = {f.name: plant.compliance_rng.random(f.n) < pc.non_compliance_share for f in fleets}
        ignore = {op: np.concatenate([drawn[f.name] for f in pf.fleets]) for op, pf in portfolios.items()}
    engine = Engine(
        portfolios, calls, grid.n_bus, t.dt_s, t.n_ticks,
        latency_s=scenario.communication.latency_s,
        loss_probability=scenario.communication.loss_probability,
        rng=plant.link_rng,
        twin=scenario.measurement.twin,
        platform_policy=PlatformPolicy(pc.acceptance, pc.min_acceptance, pc.tracking, pc.tracking_reference,
                                       pc.tracking_gain, pc.recovery),
        ignore=ignore,
        southbound=southbound,
    )
    engine.platform.strategy = d.platform_strategy
    fleets = engine.fleets  # operator order: the order of every per-fleet array below
    k = scenario.output.sample_devices
    samples = {
        f.name: np.sort(plant.sample_rng.choice(f.n, size=min(k, f.n), replace=False))
        for f in sorted(fleets, key=lambda f: plant.fleets.index(f))
        if k and f.n
    }
    kinds = [kind for kind in KINDS if any(f.kind == kind for f in fleets)]
    recorder = Recorder(t.n_ticks, grid.n_bus, fleets, calls, scenario.output.bus_timeseries, samples, kinds,
                        calendar=t.calendar)
    g = scenario.grid
    background = plant.background
    convergence = _Convergence()
    build_s = time.perf_counter() - wall_start

    def check_stop(after: str) -> None:
        reason = stop() if stop is not None else None
        if reason:
            raise _Stop(str(reason), f"interrupted by {reason} {after}")

    def factors(t_s: float) -> tuple:
        # (load_factor, sgen_factor[, load_p_mw, load_q_mvar, sgen_p_mw]): GridModel.solve's arguments after
        # the VPP's power (vpp.scenario.series.Background).
        return background(t_s)

    def grid_step(t_s: float, p_bus_kw: np.ndarray, p_twin_bus_kw: np.ndarray | None):
        bg = factors(t_s)
        state = grid.solve(p_bus_kw, *bg)
        convergence.add(state, t_s)
        state_twin = None
        if p_twin_bus_kw is not None:
            # The no-call counterfactual grid; the same injections give the same power flow.
            same = np.array_equal(p_twin_bus_kw, p_bus_kw)
            state_twin = state if same else grid_twin.solve(p_twin_bus_kw, *bg)
            if not same:
                convergence.add(state_twin, t_s, twin=True)
        return state, state_twin

    engine.grid_step = grid_step if g.power_flow else None
    go = scenario.grid_operator
    if g.power_flow and go.congestion_calls:
        from vpp.grid.congestion import GridWatch

        engine.grid_operator.watch = GridWatch(
            grid.clone(), go.loading_max_percent or g.loading_max_percent, go.vm_min_pu or g.vm_min_pu,
            go.horizon_s, factors,
        )
        engine.grid_operator.policy = CongestionPolicy(
            go.notice_s, go.duration_s, go.margin, go.cooldown_s, go.min_kw, go.reinforce_interval_s,
            go.release_margin, go.release_fraction,
        )

    def on_tick(outcome) -> None:
        state, state_twin = outcome.grid, outcome.grid_twin
        recorder.record(outcome, engine.plant_states, state, state_twin, (g.vm_min_pu, g.vm_max_pu))
        if progress is not None:
            progress(outcome.index + 1, t.n_ticks)
        if strict:
            for st, whose in ((state, "the plant's"), (state_twin, "the no-call twin's")):
                if st is not None and not st.converged:
                    raise _Stop(
                        "grid_not_converged",
                        f"{whose} power flow did not converge at t_s={outcome.t_s:g} (tick {outcome.index}), "
                        "also after a retry (--strict)",
                    )
        check_stop(f"after the tick at t_s={outcome.t_s:g} (tick {outcome.index})")

    return RunSession(scenario, plant, engine, recorder, kinds, convergence, warnings, build_s, wall_start, on_tick,
                      check_stop, warn, local_calls)


def _collect(scenario, plant, recorder: Recorder, engine: Engine, kinds, wall_s: float, build_s: float, error,
             stopped_by, warnings, convergence: _Convergence) -> Results:
    grid, fleets, calls = plant.grid, engine.fleets, engine.calls
    ts = recorder.timeseries()
    g = scenario.grid
    n = recorder.n_done
    n_dev = np.bincount(np.concatenate([f.bus_idx for f in fleets]), minlength=grid.n_bus)
    bus_names = grid.net.bus.name.reindex(grid.bus_index).astype(str).to_numpy()
    buses = pd.DataFrame(
        {
            "bus": grid.bus_index.astype(np.int64),
            "name": bus_names,
            "vn_kv": grid.net.bus.vn_kv.reindex(grid.bus_index).to_numpy(dtype=float),
            "n_devices": n_dev.astype(np.int64),
            "e_vpp_kwh": recorder.bus_e_kwh,
            "e_twin_kwh": recorder.bus_e_twin_kwh if engine.twin is not None else np.nan,
            "p_vpp_max_kw": np.where(np.isfinite(recorder.bus_p_max_kw), recorder.bus_p_max_kw, np.nan),
            "vm_min_pu": np.where(np.isfinite(recorder.bus_vm_min_pu), recorder.bus_vm_min_pu, np.nan),
            "vm_max_pu": np.where(np.isfinite(recorder.bus_vm_max_pu), recorder.bus_vm_max_pu, np.nan),
        }
    )
    bus_ts = None
    if recorder.bus_p_kw is not None:
        n_bus = grid.n_bus
        bus_ts = pd.DataFrame(
            {
                "t_s": np.repeat(ts["t_s"].to_numpy(), n_bus),
                "bus": np.tile(grid.bus_index.astype(np.int64), n),
                "p_vpp_kw": recorder.bus_p_kw[:n].ravel(),
                "p_twin_kw": recorder.bus_p_twin_kw[:n].ravel(),
                "vm_pu": recorder.bus_vm_pu[:n].ravel(),
            }
        )
    devices = None
    if recorder.samples:
        parts = []
        for f in fleets:
            idx = recorder.samples.get(f.name)
            if idx is None or idx.size == 0:
                continue
            parts.append(
                pd.DataFrame(
                    {
                        "t_s": np.repeat(ts["t_s"].to_numpy(), idx.size),
                        "fleet": f.name,
                        "device": np.tile(idx, n),
                        "bus": np.tile(grid.bus_index[f.bus_idx[idx]].astype(np.int64), n),
                        "p_kw": recorder.sample_p_kw[f.name][:n].ravel(),
                    }
                )
            )
        devices = pd.concat(parts, ignore_index=True) if parts else None
    links = [engine.grid_operator.to_platform, engine.platform.to_grid_operator]
    links += [op.to_platform for op in engine.operators] + list(engine.platform.to_operator.values())
    messages = {"sent": sum(link.n_sent for link in links), "lost": sum(link.n_lost for link in links)}
    grid_summary = None
    if g.power_flow:
        grid_summary = grid_kpis(ts, g.vm_min_pu, g.vm_max_pu, g.loading_max_percent, dt_s=scenario.time.dt_s) \
            if n else {}
        grid_summary["convergence"] = convergence.summary()
        # Which power-flow solver ran, and why not the one asked for (a fallback to runpp), if so.
        grid_summary["solver"] = {"name": grid.solver_name, "requested": grid.solver_requested,
                                  "note": grid.solver_note or None}
    fleet_summaries = [f.summary(s) for f, s in zip(fleets, engine.plant_states)]
    twin_summaries = None if engine.twin is None else [f.summary(s) for f, s in zip(fleets, engine.twin.states)]
    summary = summarize(
        ts, fleets, fleet_summaries, twin_summaries, kinds, calls, engine.grid_operator.collect(),
        scenario.time.dt_s, grid_summary, messages, calendar=scenario.time.calendar,
    )
    summary["warnings"] = list(warnings)
    pc = scenario.platform
    summary["platform"] = {
        "acceptance": pc.acceptance, "min_acceptance": pc.min_acceptance, "tracking": pc.tracking,
        "tracking_reference": pc.tracking_reference if pc.tracking else None,
        "tracking_gain": pc.tracking_gain if pc.tracking else None,
        "non_compliance_share": pc.non_compliance_share,
        "recovery": pc.recovery,
        "declined": {cid: sorted(ops) for cid, ops in engine.platform.declined.items()},
        # Per call: what the platform measured from its telemetry and how it corrected (never the twin).
        "tracking_log": {cid: log[:2000] for cid, log in engine.platform.tracking_log.items()},
    }
    settlement = None
    if summary["calls"] and n:
        # Settlement as the field does it (against baselines, under each call's tier) beside the twin's truth.
        cal = scenario.time.calendar
        start = pd.Timestamp(cal.start) if cal.start is not None else None
        try:
            settlement, summary["settlement"] = settle_run(ts, summary["calls"], start=start, dt_s=scenario.time.dt_s)
        except Exception as exc:  # a report on the run: it must never cost the run's own results
            summary["settlement"] = []
            summary["warnings"].append(f"settlement failed and is missing: {type(exc).__name__}: {exc}")
    if plant.prices is not None:
        price = plant.prices.values[:n]
        ts[PRICE] = price
        dt_h = scenario.time.dt_s / S_PER_H
        cost = float(np.dot(ts["p_vpp_kw"].to_numpy(dtype=float), price) * dt_h)
        twin = float(np.dot(ts["p_twin_kw"].to_numpy(dtype=float), price) * dt_h) if engine.twin is not None else None
        summary["prices"] = {
            "source": plant.prices.source,
            "price_mean_cny_per_kwh": float(price.mean()) if n else None,
            "cost_cny": cost,  # the plant's energy at the tick's price [CNY]
            "cost_twin_cny": twin,  # the no-call twin's [CNY]
            "cost_change_cny": None if twin is None else cost - twin,
        }
    if engine.grid_operator.watch is not None:
        log = engine.grid_operator.log
        summary["grid_operator"] = {
            "congestion_calls": True,
            "n_calls_raised": sum(1 for e in log if e["action"] == "raised"),
            "n_calls_reinforced": sum(1 for e in log if e["action"] == "reinforced"),
            "log": log[:500],
            "log_truncated": len(log) > 500,
        }
    last_tick = {"index": n - 1, "t_s": float(ts["t_s"].iloc[-1])} if n else None
    meta = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "scenario_sha256": scenario_hash(scenario),
        "grid": {"network": scenario.grid.network, "source": scenario.grid.source},  # for `vpp report`'s map
        "versions": _versions(),
        "complete": error is None,
        "stopped_by": stopped_by,
        "error": error,
        "n_ticks_done": n,
        "n_ticks": scenario.time.n_ticks,
        "last_tick": last_tick,
        "build_s": round(build_s, 3),
        "wall_time_s": round(wall_s, 3),
    }
    branches = None
    if g.power_flow:
        branches = recorder.branch_table({
            e: (grid.net[e].index.to_numpy(), grid.net[e].name.fillna("").astype(str).to_numpy())
            for e in ("line", "trafo")
        })
    results = Results(scenario.name, ts, buses, summary, meta, bus_ts, devices, completed=error is None, error=error,
                      stopped_by=stopped_by, branches=branches, net=grid.net if g.power_flow else None,
                      settlement=settlement)
    # The partial marking leads summary.json: complete, stopped_by, error, ticks done, last tick.
    results.summary = {**results.status(), **summary}
    return results
