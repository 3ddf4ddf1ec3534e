"""The agents of the plant, organised as in the field.

* :class:`GridOperatorAgent` (DSO/TSO) announces DR calls and hears the answers;
  it is a SimPy process that wakes at each call's notification time.
* :class:`PlatformAgent` (the VPP platform) opts in to calls, keeps the latest
  flexibility offer of every operator, and splits each active call over the
  operators in proportion to the room they offered in the call's target.
* :class:`OperatorAgent` (a charging network, the tower company, a building
  manager) owns a :class:`~vpp.dispatch.Portfolio` of fleets, reports its
  flexibility, and splits its instructed share over its devices.

Agents talk only through :class:`~vpp.sim.link.Link` messages, each delivered
at its true time (send time plus latency). The platform reacts to a message
the moment it arrives; operators offer flexibility at each tick start and step
their fleets at the tick end, with each call weighted by the fraction of the
tick it was active and instructed (see :class:`OperatorAgent`). Latency delays
what each agent *knows*; a zero-latency run is exact and every run is
deterministic.
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
    """Holds the aggregate flexibility book and splits calls over operators.

    It reacts to each message at its true arrival time: a call notice is
    answered and dispatched at once, with the latest offers; at every tick
    start (:meth:`dispatch`) every call that has not ended is dispatched again
    with the offers received by then.
    """

    def __init__(self, env: simpy.Environment, operators: Sequence[str], n_bus: int):
        self.env = env
        self.operators = list(operators)
        self.n_bus = n_bus
        self.inbox = Mailbox(env)
        self.inbox.on_put = self._receive
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

    def _receive(self, t_s: float, msg) -> None:
        if isinstance(msg, CallNotice):
            call = msg.call
            self.calls[call.call_id] = call
            # Opt-in policy: the platform accepts every call and delivers what it can;
            # the response tells the grid operator how much room it saw.
            self.to_grid_operator.send(CallResponse(t_s, call.call_id, True, float(self._room_kw(call).sum())))
            self._instruct(t_s, call)
        elif isinstance(msg, FlexibilityOffer):
            old = self.offers.get(msg.operator)
            if old is None or msg.t_s >= old.t_s:
                self.offers[msg.operator] = msg
        elif isinstance(msg, Telemetry):
            self.telemetry[msg.operator] = msg

    def _instruct(self, t_s: float, call: DRCall) -> None:
        rooms_kw = self._room_kw(call)
        shares_kw = pro_rata(call.delta_kw, rooms_kw, np.zeros_like(rooms_kw))
        for op, share_kw in zip(self.operators, shares_kw):
            self.to_operator[op].send(Instruction(t_s, op, call, float(share_kw)))

    def dispatch(self, t_s: float) -> None:
        """Tick start: send every operator its share of every call that has not ended, from the latest offers."""
        self.inbox.drain()  # every message was handled on arrival
        for call in sorted(self.calls.values(), key=_call_order):
            if call.end_s > t_s:
                self._instruct(t_s, call)


class OperatorAgent:
    """Owns fleets and their state; reports flexibility and dispatches its share down to devices.

    Timing: the envelope is computed and offered at the tick start; the tick is
    stepped at its end, when every instruction that arrived during the tick is
    known. Each call's request for the tick is the time average, over the tick,
    of the instruction in force (from its arrival) while the call is active, so
    a call starting mid-tick or an instruction arriving after 1 ms acts for
    exactly the fraction of the tick it covers (energy-correct).
    """

    def __init__(self, env: simpy.Environment, name: str, portfolio: Portfolio):
        self.env = env
        self.name = name
        self.portfolio = portfolio
        self.states = portfolio.initial_states()
        self.inbox = Mailbox(env)
        self.to_platform: Link | None = None
        self.history: dict[str, list[tuple[float, Instruction]]] = {}
        self.envelope: Envelope | None = None
        self.flex: BusFlexibility | None = None
        self.p_kw = np.zeros(portfolio.n)

    def report(self, t_s: float, dt_s: float) -> Envelope:
        """Tick start: advance the fleets to ``t_s``, compute the envelope and offer it per bus."""
        self.portfolio.advance(self.states, t_s, dt_s)
        self.envelope = self.portfolio.flexibility(self.states, t_s, dt_s)
        self.flex = self.portfolio.by_bus(self.envelope)
        self.to_platform.send(FlexibilityOffer(t_s, self.name, self.flex))
        return self.envelope

    def requests(self, t_s: float, dt_s: float) -> list[tuple[DRCall, float]]:
        """Each call's time-averaged requested change over ``[t_s, t_s + dt_s)`` [kW, signed], in call order."""
        for t_arr, msg in self.inbox.drain_timed():
            self.history.setdefault(msg.call.call_id, []).append((t_arr, msg))
        t_end = t_s + dt_s
        out = []
        for cid, hist in self.history.items():
            # In force at an instant: the newest instruction (by send time) among those arrived.
            segments: list[tuple[float, Instruction]] = []
            current = None
            for t_arr, msg in hist:
                if current is None or msg.t_s >= current.t_s:
                    current = msg
                    segments.append((t_arr, msg))
            call = segments[-1][1].call
            total = 0.0
            for k, (t_arr, msg) in enumerate(segments):
                a = max(t_arr, t_s)
                b = min(segments[k + 1][0], t_end) if k + 1 < len(segments) else t_end
                if b > a:
                    total += msg.delta_kw * call.overlap_s(a, b)
            # Keep only what can still matter: the instruction in force at the tick end and later ones.
            keep = max((k for k, (t_arr, _) in enumerate(segments) if t_arr <= t_end), default=0)
            self.history[cid] = segments[keep:]
            if total != 0.0:
                out.append((call, total / dt_s))
        out.sort(key=lambda r: _call_order(r[0]))
        return out

    def apply(self, t_s: float, dt_s: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Tick end: step the fleets under this tick's requests; send telemetry.

        Returns the power per device [kW] and, per call, the instructed change per bus [kW].
        """
        p_set_kw, instructed = self.portfolio.setpoints(self.envelope, self.requests(t_s, dt_s))
        self.p_kw = self.portfolio.step(self.states, p_set_kw, t_s, dt_s)
        self.to_platform.send(Telemetry(t_s, self.name, float(self.p_kw.sum())))
        return self.p_kw, instructed
