"""The control loop: SimPy decides *when*, the fleets' arrays decide *what*.

Time is float seconds since the scenario start (``t_s``). One SimPy process
runs the control tick every ``dt_s``; the grid operator is another process
that wakes at call notifications; links deliver messages at their true times
(send time plus latency) and the platform reacts to each on arrival. There is
no process per device.

Within the tick ``[t_s, t_s + dt_s)``:

1. at ``t_s`` every operator advances its fleets (arrivals, departures,
   profile values), computes their envelope and offers it; the platform
   dispatches every call that has not ended, from the offers it holds;
2. during the tick, messages arrive at their true times (a call notice is
   answered and dispatched at once);
3. at ``t_s + dt_s`` every operator steps its fleets; a call counts for the
   fraction of the tick in which it was both active and instructed, so energy
   is exact for calls and instructions that fall inside a tick;
4. the **twin** (a copy of every fleet's initial state, advanced with the same
   kernels and the same exogenous events but always at default power) steps
   the same tick. No agent reads it: it exists only to measure delivery;
5. the power flow of the tick runs (``grid_step``), for the plant and the twin;
6. the grid operator looks at the plant's power flow (never the twin's) and may
   raise or reinforce a congestion call, announced at ``t_s + dt_s``; it acts
   from the next tick on.

Two ways to run: :meth:`Engine.run` runs every tick in one go; :meth:`Engine.start`
then :meth:`Engine.advance` run one tick per call, so that an asyncio loop can
pace the simulation at a wall clock and, between ticks, :meth:`Engine.inject`
calls that arrived from outside (an OpenADR VTN): such a call is announced by
the grid operator at the tick boundary where it is injected, exactly as a
scheduled call is announced at its notification time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import simpy

from vpp.dispatch.aggregate import sum_by_bus
from vpp.dispatch.portfolio import Portfolio
from vpp.dr import DRCall
from vpp.fleets.base import Fleet, FleetState
from vpp.fleets.kernels import NUMBA_AVAILABLE
from vpp.sim.agents import GridOperatorAgent, OperatorAgent, PlatformAgent
from vpp.sim.link import Link
from vpp.sim.messages import CallNotice

__all__ = ["TickOutcome", "Engine", "Twin"]


@dataclass(frozen=True, slots=True)
class TickOutcome:
    """What the plant (and its twin) did in the tick ``[t_s, t_s + dt_s)``; powers [kW], load convention.

    Fleet order is the engine's ``fleets`` order; ``p_fleet_bus_kw[i]`` is fleet
    ``i``'s power per bus position.
    """

    index: int
    t_s: float
    dt_s: float
    p_fleet_kw: np.ndarray  # (n_fleet,) plant power per fleet
    p_fleet_bus_kw: np.ndarray  # (n_fleet, n_bus) plant power per fleet and bus
    p_twin_fleet_kw: np.ndarray | None  # (n_fleet,) twin power per fleet (None: no twin)
    p_twin_fleet_bus_kw: np.ndarray | None  # (n_fleet, n_bus)
    flex_down_kw: float  # room below default over the whole VPP, offered at the tick start
    flex_up_kw: float  # room above default over the whole VPP
    requested_kw: np.ndarray  # (n_call,) requested change magnitude averaged over the tick (0 when inactive)
    active_fraction: np.ndarray  # (n_call,) fraction of the tick in the call's active period [-]
    instructed_bus_kw: np.ndarray  # (n_call, n_bus) instructed change per bus, signed, averaged over the tick
    calls: tuple[DRCall, ...] = ()  # the calls known at the tick end (scenario calls, then grid-operator calls)
    grid: object | None = None  # the plant's power flow at the tick (vpp.grid GridState), if solved
    grid_twin: object | None = None  # the twin's power flow, if solved

    @property
    def p_bus_kw(self) -> np.ndarray:
        """Plant power per bus [kW]."""
        return self.p_fleet_bus_kw.sum(axis=0)

    @property
    def p_twin_bus_kw(self) -> np.ndarray | None:
        """Twin power per bus [kW] (None without a twin)."""
        return None if self.p_twin_fleet_bus_kw is None else self.p_twin_fleet_bus_kw.sum(axis=0)


class Twin:
    """The plant with no call: every fleet's state stepped at default power, with its own work buffers."""

    def __init__(self, fleets: Sequence[Fleet]):
        self.fleets = list(fleets)
        self.states: list[FleetState] = [f.initial_state() for f in self.fleets]
        self.work = [f.new_workspace() for f in self.fleets]

    def step(self, t_s: float, dt_s: float, n_bus: int | None = None) -> tuple[list[np.ndarray], list | None]:
        """Run the tick at default power; return each fleet's power per device [kW].

        With ``n_bus``, also the room the twin offers at the tick start, summed
        per bus: ``[down_kw, up_kw]`` arrays [kW] (else ``None``).
        """
        out = []
        room = [np.zeros(n_bus), np.zeros(n_bus)] if n_bus is not None else None
        for f, s, ws in zip(self.fleets, self.states, self.work):
            f.advance(s, t_s, dt_s)
            if room is None:
                # Nobody dispatches the twin: its bounds are needed only where a call starts.
                out.append(f.run_default(s, t_s, dt_s, ws))
                continue
            env = f.flexibility(s, t_s, dt_s, ws)
            room[0] += np.bincount(f.bus_idx, weights=env.down_kw, minlength=n_bus)
            room[1] += np.bincount(f.bus_idx, weights=env.up_kw, minlength=n_bus)
            out.append(f.step(s, env.p_default_kw, t_s, dt_s, env))
        return out, room


class Engine:
    """Wires agents, links and the twin, and runs the control tick for ``n_ticks`` ticks."""

    def __init__(
        self,
        portfolios: Mapping[str, Portfolio],
        calls: Sequence[DRCall],
        n_bus: int,
        dt_s: float,
        n_ticks: int,
        latency_s: float = 0.0,
        loss_probability: float = 0.0,
        rng: np.random.Generator | None = None,
        twin: bool = True,
        grid_step: Callable | None = None,
        grid_watch=None,
        congestion_policy=None,
        platform_policy=None,
        ignore: Mapping[str, np.ndarray] | None = None,
        southbound: Mapping[str, object] | None = None,
    ):
        self.portfolios = dict(portfolios)
        self.calls = list(calls)
        self.n_bus = n_bus
        self.dt_s = float(dt_s)
        self.n_ticks = int(n_ticks)
        self.env = simpy.Environment()
        env = self.env
        self.grid_operator = GridOperatorAgent(env, self.calls, grid_watch, congestion_policy)
        self.grid_step = grid_step
        self.platform = PlatformAgent(env, list(self.portfolios), n_bus, policy=platform_policy, dt_s=self.dt_s)
        self.platform.fleets_of = {name: {f.name for f in pf.fleets} for name, pf in self.portfolios.items()}
        track = self.platform.policy.tracking
        ignore = ignore or {}
        southbound = dict(southbound or {})
        unknown = sorted(set(southbound) - set(self.portfolios))
        if unknown:
            raise ValueError(f"southbound: unknown operator {', '.join(map(repr, unknown))}; allowed: "
                             f"{', '.join(self.portfolios)}")
        self.operators = [OperatorAgent(env, name, pf, ignore=ignore.get(name), bus_telemetry=track,
                                        southbound=southbound.get(name))
                          for name, pf in self.portfolios.items()]
        self.fleets: list[Fleet] = [f for pf in self.portfolios.values() for f in pf.fleets]
        self.twin = Twin(self.fleets) if twin else None

        def link(mailbox) -> Link:
            return Link(env, mailbox, latency_s, loss_probability, rng)

        self.grid_operator.to_platform = link(self.platform.inbox)
        self.platform.to_grid_operator = link(self.grid_operator.inbox)
        for op in self.operators:
            op.to_platform = link(self.platform.inbox)
            self.platform.to_operator[op.name] = link(op.inbox)
        self._call_pos = {c.call_id: j for j, c in enumerate(self.calls)}
        self.ticks_done = 0
        # The room each scheduled call's targets offer at its start tick, read from the twin (the
        # no-call path, so it is the room before any call draws on it): (room_kw, down_kw, up_kw) [kW].
        self.call_room: dict[str, tuple[float, float, float]] = {}
        self._room_ticks: dict[int, list[DRCall]] = {}
        for c in self.calls:
            self._room_ticks.setdefault(int(np.floor(c.start_s / self.dt_s + 1e-9)), []).append(c)

    def _register(self, call: DRCall) -> None:
        """A call raised during the run: a new one, or a modification of one already known (same id)."""
        j = self._call_pos.get(call.call_id)
        if j is None:
            self._call_pos[call.call_id] = len(self.calls)
            self.calls.append(call)
        else:
            self.calls[j] = call

    @property
    def plant_states(self) -> list[FleetState]:
        """The plant's fleet states, in :attr:`fleets` order."""
        return [s for op in self.operators for s in op.states]

    def inject(self, call: DRCall) -> None:
        """Announce ``call`` now (at :attr:`now_s`), as the grid operator announces a scheduled call.

        For calls that come from outside the engine (an OpenADR VTN). ``call``
        is the whole event so far (its first version with the later ones in
        ``updates``, see :class:`vpp.dr.DRCall`); its latest version goes to the
        platform through the grid operator's link (latency and loss apply). A
        call already known (same id) is replaced, as a modification. Call it
        between ticks (before :meth:`start` or after :meth:`advance`): the
        engine is then at a tick boundary.
        """
        new = call.call_id not in self._call_pos
        self._register(call)
        if new and self.twin is not None:
            # Its room at its start is measured by the twin, as for a scheduled call (if the start is ahead).
            i = int(np.floor(call.start_s / self.dt_s + 1e-9))
            if i >= self.ticks_done:
                self._room_ticks.setdefault(i, []).append(call)
        self.grid_operator.to_platform.send(CallNotice(self.env.now, call.latest))

    @property
    def now_s(self) -> float:
        """The engine's simulated time [s]: the boundary of the last tick run (0 before any)."""
        return float(self.env.now)

    def run(self, on_tick: Callable[[TickOutcome], None]) -> None:
        """Run every tick, handing each outcome to ``on_tick`` (which may raise to stop the run)."""
        env = self.env
        env.process(self.grid_operator.process())
        control = env.process(self._control(on_tick))
        env.run(until=control)

    def start(self, on_tick: Callable[[TickOutcome], None]) -> None:
        """Prepare a tick-by-tick run (:meth:`advance`); ``on_tick`` as in :meth:`run`."""
        env = self.env
        env.process(self.grid_operator.process())
        self._control_proc = env.process(self._control(on_tick))

    def advance(self) -> bool:
        """Run the next tick (to its end at ``(ticks_done + 1) * dt_s``); False once every tick is done.

        Steps the SimPy environment event by event until the tick's outcome has
        been handed to ``on_tick``, so the results are those of :meth:`run`
        (the next tick's start, offers and dispatch at the same instant, runs
        too, as in :meth:`run`). An exception raised by ``on_tick`` propagates.
        """
        proc = self._control_proc
        target = self.ticks_done + 1
        env = self.env
        while self.ticks_done < target and proc.is_alive:
            env.step()
        if not proc.is_alive and not proc.ok:
            raise proc.value
        return self.ticks_done < self.n_ticks

    def _per_bus(self, p_kw_per_fleet: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        n_fleet = len(self.fleets)
        p_fleet = np.zeros(n_fleet)
        p_bus = np.zeros((n_fleet, self.n_bus))
        for i, (f, p_kw) in enumerate(zip(self.fleets, p_kw_per_fleet)):
            p_fleet[i] = p_kw.sum()
            sum_by_bus(f.bus_idx, p_kw, p_bus[i], use_numba=NUMBA_AVAILABLE)
        return p_fleet, p_bus

    def _control(self, on_tick: Callable[[TickOutcome], None]):
        dt_s = self.dt_s
        n_call = len(self.calls)
        for i in range(self.n_ticks):
            t_s = i * dt_s
            t_end = t_s + dt_s
            for op in self.operators:
                op.report(t_s, dt_s)
            self.platform.dispatch(t_s)
            yield self.env.timeout(t_end - self.env.now)

            n_call = len(self.calls)  # with calls injected during the tick (Engine.inject)
            instructed = np.zeros((n_call, self.n_bus))
            plant_p_kw = []
            for op in self.operators:
                p_kw, by_call = op.apply(t_s, dt_s)
                for cid, bus_kw in by_call.items():
                    instructed[self._call_pos[cid]] += bus_kw
                plant_p_kw += [p_kw[lo:hi] for _, lo, hi in op.portfolio.slices()]
            p_fleet, p_fleet_bus = self._per_bus(plant_p_kw)
            p_twin = p_twin_bus = None
            if self.twin is not None:
                starting = self._room_ticks.get(i)
                p_twin_kw, room = self.twin.step(t_s, dt_s, self.n_bus if starting else None)
                p_twin, p_twin_bus = self._per_bus(p_twin_kw)
                for c in starting or ():
                    room_bus = room[0] if c.delta_kw < 0.0 else room[1]
                    self.call_room[c.call_id] = (float(room_bus[c.bus_mask(self.n_bus)].sum()),
                                                 float(room[0].sum()), float(room[1].sum()))
            # Each call's profile (intervals, ramp-up, the version in force: vpp.dr.DRCall) averaged over the tick.
            frac = np.array([c.active_s(t_s, t_end) / dt_s for c in self.calls])
            p_twin_by_bus = None if p_twin_bus is None else p_twin_bus.sum(axis=0)  # the twin's power per bus
            # A setpoint call's request is the change from the twin's power on its buses to the setpoint (the
            # twin: what the targets would have drawn without any call).
            requested = np.array([
                c.requested_kw(t_s, t_end, float(p_twin_by_bus[c.bus_mask(self.n_bus)].sum()))
                if c.has_setpoint and p_twin_by_bus is not None else c.requested_kw(t_s, t_end)
                for c in self.calls]) if n_call else np.zeros(0)
            down_kw = sum(float(op.flex.down_kw.sum()) for op in self.operators)
            up_kw = sum(float(op.flex.up_kw.sum()) for op in self.operators)
            grid = grid_twin = None
            if self.grid_step is not None:
                p_bus = p_fleet_bus.sum(axis=0)
                grid, grid_twin = self.grid_step(t_s, p_bus, p_twin_by_bus)
                if grid is not None:
                    for call in self.grid_operator.observe(t_end, grid, p_bus):
                        self._register(call)
            on_tick(
                TickOutcome(i, t_s, dt_s, p_fleet, p_fleet_bus, p_twin, p_twin_bus, down_kw, up_kw, requested, frac,
                            instructed, tuple(self.calls[:n_call]), grid, grid_twin)
            )
            self.ticks_done = i + 1
            n_call = len(self.calls)
