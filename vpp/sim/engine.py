"""The control loop: SimPy decides *when*, the fleets' arrays decide *what*.

Time is float seconds since the scenario start (``t_s``). One SimPy process
runs the control tick every ``dt_s``; the grid operator is another process
that wakes at call notifications; links deliver messages after their latency.
There is no process per device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import simpy

from vpp.dispatch.portfolio import Portfolio
from vpp.dr import DRCall
from vpp.sim.agents import GridOperatorAgent, OperatorAgent, PlatformAgent
from vpp.sim.link import Link

__all__ = ["TickOutcome", "Engine"]


@dataclass(frozen=True, slots=True)
class TickOutcome:
    """What the plant did in the tick ``[t_s, t_s + dt_s)``; powers [kW]."""

    index: int
    t_s: float
    dt_s: float
    p_bus_kw: np.ndarray  # VPP power per bus position
    p_default_bus_kw: np.ndarray  # what the same devices would have drawn with no call
    flex_down_kw: float  # room below default over the whole VPP
    flex_up_kw: float  # room above default over the whole VPP
    requested_kw: np.ndarray  # per call (scenario order): requested change magnitude, 0 when inactive
    delivered_kw: np.ndarray  # per call: change against default in the call's direction


class Engine:
    """Wires agents and links and runs the control tick for ``n_ticks`` ticks."""

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
    ):
        self.portfolios = dict(portfolios)
        self.calls = list(calls)
        self.n_bus = n_bus
        self.dt_s = float(dt_s)
        self.n_ticks = int(n_ticks)
        self.env = simpy.Environment()
        env = self.env
        self.grid_operator = GridOperatorAgent(env, self.calls)
        self.platform = PlatformAgent(env, list(self.portfolios), n_bus)
        self.operators = [OperatorAgent(env, name, pf) for name, pf in self.portfolios.items()]

        def link(mailbox) -> Link:
            return Link(env, mailbox, latency_s, loss_probability, rng)

        self.grid_operator.to_platform = link(self.platform.inbox)
        self.platform.to_grid_operator = link(self.grid_operator.inbox)
        for op in self.operators:
            op.to_platform = link(self.platform.inbox)
            self.platform.to_operator[op.name] = link(op.inbox)
        self.ticks_done = 0

    def run(self, on_tick: Callable[[TickOutcome], None]) -> None:
        """Run every tick, handing each outcome to ``on_tick`` (which may raise to stop the run)."""
        env = self.env
        env.process(self.grid_operator.process())
        control = env.process(self._control(on_tick))
        env.run(until=control)

    def _control(self, on_tick: Callable[[TickOutcome], None]):
        dt_s = self.dt_s
        n_call = len(self.calls)
        for i in range(self.n_ticks):
            t_s = i * dt_s
            envelopes = [op.report(t_s, dt_s) for op in self.operators]
            self.platform.dispatch(t_s, lookahead_s=dt_s)
            powers = [op.apply(t_s, dt_s) for op in self.operators]

            p_bus_kw = np.zeros(self.n_bus)
            p_def_bus_kw = np.zeros(self.n_bus)
            down_kw = up_kw = 0.0
            requested = np.zeros(n_call)
            delivered = np.zeros(n_call)
            active = [(j, c) for j, c in enumerate(self.calls) if c.is_active(t_s)]
            for op, env_, p_kw in zip(self.operators, envelopes, powers):
                bus_idx = op.portfolio.bus_idx
                p_bus_kw += np.bincount(bus_idx, weights=p_kw, minlength=self.n_bus)
                p_def_bus_kw += op.flex.p_default_kw
                down_kw += float(op.flex.down_kw.sum())
                up_kw += float(op.flex.up_kw.sum())
                for j, call in active:
                    delivered[j] += op.portfolio.delivered_kw(call, env_, p_kw)
            for j, call in active:
                requested[j] = call.p_kw
            on_tick(TickOutcome(i, t_s, dt_s, p_bus_kw, p_def_bus_kw, down_kw, up_kw, requested, delivered))
            self.ticks_done = i + 1
            yield self.env.timeout((i + 1) * dt_s - self.env.now)
