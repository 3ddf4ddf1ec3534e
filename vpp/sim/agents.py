"""The agents of the plant, organised as in the field.

* :class:`GridOperatorAgent` (DSO/TSO) announces DR calls and hears the answers;
  it is a SimPy process that wakes at each call's notification time.
* :class:`PlatformAgent` (the VPP platform) opts in to calls, keeps the latest
  flexibility offer of every operator, and splits each active call over the
  operators in proportion to the room they offered in the call's target.
* :class:`OperatorAgent` (a charging network, the tower company, a building
  manager) owns a :class:`~vpp.dispatch.Portfolio` of fleets, reports its
  flexibility, and splits its instructed share over its devices.

Agents talk only through :class:`~vpp.sim.link.Link` messages. Within a control
tick they act in a fixed order (operators report, platform dispatches,
operators apply); latency delays what each agent *knows*, never that order,
so a zero-latency run is exact and every run is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import simpy

from vpp.dispatch.aggregate import BusFlexibility
from vpp.dispatch.allocation import pro_rata
from vpp.dispatch.portfolio import Portfolio
from vpp.dr import DRCall
from vpp.fleets.base import Envelope
from vpp.sim.link import Link, Mailbox
from vpp.sim.messages import CallNotice, CallResponse, FlexibilityOffer, Instruction, Telemetry

__all__ = ["GridOperatorAgent", "PlatformAgent", "OperatorAgent"]


def _call_order(call: DRCall) -> tuple[float, str]:
    return (call.start_s, call.call_id)


class GridOperatorAgent:
    """Announces scheduled DR calls to the platform and collects its responses."""

    def __init__(self, env: simpy.Environment, calls: Sequence[DRCall]):
        self.env = env
        self.calls = sorted(calls, key=lambda c: (c.notification_s, c.call_id))
        self.inbox = Mailbox(env)
        self.to_platform: Link | None = None
        self.responses: dict[str, CallResponse] = {}

    def process(self):
        """SimPy process: wake at each notification time and send the call."""
        for call in self.calls:
            wait_s = call.notification_s - self.env.now
            if wait_s > 0.0:
                yield self.env.timeout(wait_s)
            self.to_platform.send(CallNotice(self.env.now, call))

    def collect(self) -> dict[str, CallResponse]:
        """Responses received so far, by call id."""
        for msg in self.inbox.drain():
            self.responses[msg.call_id] = msg
        return self.responses


class PlatformAgent:
    """Holds the aggregate flexibility book and splits calls over operators."""

    def __init__(self, env: simpy.Environment, operators: Sequence[str], n_bus: int):
        self.env = env
        self.operators = list(operators)
        self.n_bus = n_bus
        self.inbox = Mailbox(env)
        self.to_operator: dict[str, Link] = {}
        self.to_grid_operator: Link | None = None
        self.calls: dict[str, DRCall] = {}
        self.offers: dict[str, FlexibilityOffer] = {}
        self.telemetry: dict[str, Telemetry] = {}
        self._masks: dict[str, np.ndarray] = {}

    def _room_kw(self, call: DRCall) -> np.ndarray:
        mask = self._masks.get(call.call_id)
        if mask is None:
            mask = self._masks[call.call_id] = call.bus_mask(self.n_bus)
        sign = call.direction.sign
        return np.array(
            [self.offers[op].flex.room_kw(sign, mask) if op in self.offers else 0.0 for op in self.operators]
        )

    def dispatch(self, t_s: float, lookahead_s: float = 0.0) -> None:
        """Read the inbox, answer new calls, and send every operator its share of each call.

        Calls active now or starting within ``lookahead_s`` are dispatched, so
        that with message latency the first instruction is already with the
        operators when the call starts; operators act on an instruction only
        while its call is active.
        """
        for msg in self.inbox.drain():
            if isinstance(msg, CallNotice):
                call = msg.call
                self.calls[call.call_id] = call
                room_kw = float(self._room_kw(call).sum())
                # Opt-in policy: the platform accepts every call and delivers what it can;
                # the response tells the grid operator how much room it saw.
                self.to_grid_operator.send(CallResponse(t_s, call.call_id, True, room_kw))
            elif isinstance(msg, FlexibilityOffer):
                old = self.offers.get(msg.operator)
                if old is None or msg.t_s >= old.t_s:
                    self.offers[msg.operator] = msg
            elif isinstance(msg, Telemetry):
                self.telemetry[msg.operator] = msg
        for call in sorted(self.calls.values(), key=_call_order):
            if not (call.is_active(t_s) or call.start_s <= t_s + lookahead_s < call.end_s):
                continue
            rooms_kw = self._room_kw(call)
            shares_kw = pro_rata(call.delta_kw, rooms_kw, np.zeros_like(rooms_kw))
            for op, share_kw in zip(self.operators, shares_kw):
                self.to_operator[op].send(Instruction(t_s, op, call, float(share_kw)))


class OperatorAgent:
    """Owns fleets; reports their flexibility and dispatches its share down to devices."""

    def __init__(self, env: simpy.Environment, name: str, portfolio: Portfolio):
        self.env = env
        self.name = name
        self.portfolio = portfolio
        self.inbox = Mailbox(env)
        self.to_platform: Link | None = None
        self.instructions: dict[str, Instruction] = {}
        self.envelope: Envelope | None = None
        self.flex: BusFlexibility | None = None
        self.p_kw = np.zeros(portfolio.n)

    def report(self, t_s: float, dt_s: float) -> Envelope:
        """Compute this tick's envelope and offer it, per bus, to the platform."""
        self.envelope = self.portfolio.flexibility(t_s, dt_s)
        self.flex = self.portfolio.by_bus(self.envelope)
        self.to_platform.send(FlexibilityOffer(t_s, self.name, self.flex))
        return self.envelope

    def apply(self, t_s: float, dt_s: float) -> np.ndarray:
        """Follow the latest instruction for every active call; step the fleets; send telemetry."""
        for msg in self.inbox.drain():
            old = self.instructions.get(msg.call.call_id)
            if old is None or msg.t_s >= old.t_s:
                self.instructions[msg.call.call_id] = msg
        active = sorted(
            (i for i in self.instructions.values() if i.call.is_active(t_s)), key=lambda i: _call_order(i.call)
        )
        env = self.envelope
        p_set_kw = self.portfolio.setpoints(env, [(i.call, i.delta_kw) for i in active])
        self.p_kw = self.portfolio.step(p_set_kw, t_s, dt_s)
        delivered = {i.call.call_id: self.portfolio.delivered_kw(i.call, env, self.p_kw) for i in active}
        self.to_platform.send(Telemetry(t_s, self.name, float(self.p_kw.sum()), delivered))
        return self.p_kw
