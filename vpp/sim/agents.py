"""The agents of the plant, organised as in the field.

* :class:`GridOperatorAgent` (DSO/TSO) announces DR calls and hears the answers;
  it is a SimPy process that wakes at each call's notification time.
* :class:`PlatformAgent` (the VPP platform) opts in to calls, keeps the latest
  flexibility offer of every operator, and splits each active call over the
  operators by its strategy (``pro_rata``: in proportion to the room they
  offered in the call's target; ``merit_order``: cheapest offered cost first).
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
from dataclasses import dataclass, replace

import numpy as np
import simpy

from vpp.dispatch.aggregate import BusFlexibility
from vpp.dispatch.allocation import get_platform_allocator
from vpp.dispatch.portfolio import Portfolio
from vpp.dr import Direction, DRCall
from vpp.fleets.base import Envelope
from vpp.sim.link import Link, Mailbox
from vpp.sim.messages import CallNotice, CallResponse, FlexibilityOffer, Instruction, Telemetry

__all__ = ["CongestionPolicy", "GridOperatorAgent", "PlatformAgent", "OperatorAgent"]


def _call_order(call: DRCall) -> tuple[float, str]:
    return (call.start_s, call.call_id)


@dataclass(frozen=True)
class CongestionPolicy:
    """How the grid operator turns a congestion it sees into a DR call."""

    notice_s: float = 0.0  # from detection to the call's start [s]
    duration_s: float = 3600.0  # length of a congestion call [s]
    margin: float = 0.1  # extra share requested above the computed need [-]
    cooldown_s: float = 0.0  # after a call on an element ends, wait this long before the next one [s]
    min_kw: float = 1.0  # needs below this are ignored [kW]
    reinforce_interval_s: float = 300.0  # at most one reinforcement of a call per this interval [s]
    release_margin: float = 0.05  # release a call once its element is this far below the limit [fraction of limit]
    release_fraction: float = 0.1  # share of a call's request released per observation below that [-]


class GridOperatorAgent:
    """Announces DR calls to the platform and collects its responses.

    Scheduled calls go out at their notification times (a SimPy process). With
    a grid ``watch`` (see :class:`vpp.grid.congestion.GridWatch`), the agent also
    looks at the plant's power flow after every tick: an overloaded line or
    transformer, or a bus below its voltage limit, now or within the watch's
    forecast horizon, raises a reduce call on the buses behind the element,
    sized to the power that clears it plus a margin. While such a call is
    active and the element is still congested, the call is modified
    (modification number + 1) to ask for the remaining need on top and to run
    until ``duration_s`` after this observation. Once the element is back
    below its limit by ``release_margin``, the call is released step by step
    (``release_fraction`` of its request per tick) and ends when nothing is
    left, so the load it deferred returns without a new overload.
    """

    def __init__(self, env: simpy.Environment, calls: Sequence[DRCall], watch=None,
                 policy: CongestionPolicy | None = None):
        self.env = env
        self.calls = sorted(calls, key=lambda c: (c.notification_s, c.call_id))
        self.inbox = Mailbox(env)
        self.to_platform: Link | None = None
        self.responses: dict[str, CallResponse] = {}
        self.watch = watch
        self.policy = policy or CongestionPolicy()
        self.raised: dict[str, DRCall] = {}  # latest call per congested element key
        self.log: list[dict] = []  # what was seen and what was done, for the summary
        self._n_raised = 0
        self._reinforced: dict[str, float] = {}  # element key -> time of its call's last reinforcement

    def process(self):
        """SimPy process: send every version of every scheduled call at its announce time.

        A call's first version goes out at its notification time, each later
        version (a modification or cancellation, :attr:`vpp.dr.DRCall.versions`)
        at the time it is announced; ties in time go in call-id, then
        modification order.
        """
        schedule = sorted(
            ((t_s, call.call_id, v.modification, v) for call in self.calls for t_s, v in call.versions),
            key=lambda r: r[:3],
        )
        for t_s, _, _, version in schedule:
            wait_s = t_s - self.env.now
            if wait_s > 0.0:
                yield self.env.timeout(wait_s)
            self.to_platform.send(CallNotice(self.env.now, version))

    def observe(self, t_s: float, grid_state, p_bus_kw: np.ndarray) -> list[DRCall]:
        """Look at the plant's power flow at ``t_s``; raise or reinforce congestion calls; return them."""
        if self.watch is None:
            return []
        pol = self.policy
        out = []
        congested = self.watch.check(t_s, grid_state, p_bus_kw)
        seen = {c.key for c in congested}
        # Release: an element back well below its limit has its running call stepped down, so that the
        # load the call deferred returns gradually instead of all at once when the call ends.
        for key, last in list(self.raised.items()):
            if key in seen or not last.start_s <= t_s < last.end_s:
                continue
            value, limit = self.watch.value(key, grid_state)
            if not value < limit * (1.0 - pol.release_margin):
                # Holding: below the trigger but not clear of it. A call must not run out now, or the load
                # it deferred would all return at once; keep it going.
                if last.end_s - t_s > 0.5 * pol.duration_s:
                    continue
                call = replace(last, end_s=t_s + pol.duration_s, modification=last.modification + 1)
                action = "held"
            elif (p_kw := last.p_kw * (1.0 - pol.release_fraction)) < pol.min_kw:
                call = replace(last, end_s=t_s, modification=last.modification + 1)
                action = "ended"
            else:
                call = replace(last, p_kw=p_kw, end_s=max(last.end_s, t_s + pol.duration_s),
                               modification=last.modification + 1)
                action = "released"
            out.append(self._announce(t_s, key, call, action, value, limit, False))
        for c in congested:
            need_kw = c.need_mw * 1000.0 * (1.0 + pol.margin)
            if not c.bus_pos or not need_kw >= pol.min_kw:
                self.log.append({"t_s": t_s, "element": c.key, "value": c.value, "action": "cannot target"
                                 if not c.bus_pos else "below min_kw"})
                continue
            last = self.raised.get(c.key)
            if last is not None and t_s < last.end_s:
                if t_s < last.start_s or t_s < self._reinforced.get(c.key, -np.inf) + pol.reinforce_interval_s:
                    continue  # announced and not started yet, or reinforced too recently to have taken effect
                # Still congested while the call runs: ask for the remaining need on top, and keep the call
                # going for another duration_s so that deferred load does not return into the congestion.
                # Never ask for more on top than the VPP draws behind the element now (anti-windup).
                vpp_kw = float(np.maximum(p_bus_kw[list(c.bus_pos)], 0.0).sum())
                call = replace(last, p_kw=last.p_kw + min(need_kw, vpp_kw), end_s=max(last.end_s, t_s + pol.duration_s),
                               modification=last.modification + 1)
                self._reinforced[c.key] = t_s
                action = "reinforced"
            elif last is not None and t_s < last.end_s + pol.cooldown_s:
                continue
            else:
                self._n_raised += 1
                call = DRCall(
                    call_id=f"grid_{c.key}_{self._n_raised}", direction=Direction.REDUCE, p_kw=need_kw,
                    start_s=t_s + pol.notice_s, end_s=t_s + pol.notice_s + pol.duration_s, notification_s=t_s,
                    bus_idx=tuple(int(b) for b in c.bus_pos), origin=f"grid_operator:{c.key}",
                )
                action = "raised"
            out.append(self._announce(t_s, c.key, call, action, c.value, c.limit, bool(getattr(c, "forecast", False))))
        return out

    def _announce(self, t_s: float, key: str, call: DRCall, action: str, value: float, limit: float,
                  forecast: bool) -> DRCall:
        """Keep ``call`` as the element's latest, log what was done, and send it to the platform."""
        self.raised[key] = call
        self.log.append({"t_s": t_s, "element": key, "value": value, "limit": limit, "forecast": forecast,
                         "action": action, "call": call.call_id, "p_kw": call.p_kw})
        self.to_platform.send(CallNotice(t_s, call))
        return call

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

    def __init__(self, env: simpy.Environment, operators: Sequence[str], n_bus: int, strategy: str = "pro_rata"):
        self.env = env
        self.operators = list(operators)
        self.n_bus = n_bus
        self.strategy = strategy
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

    @property
    def strategy(self) -> str:
        """How calls are split over operators (:data:`vpp.dispatch.allocation.PLATFORM_ALLOCATORS`).

        ``pro_rata`` by the room offered in the call's target; ``merit_order``
        by each operator's offered cost in the call's direction (the
        room-weighted mean of its devices' cost, over all its buses), cheapest first.
        """
        return self._strategy

    @strategy.setter
    def strategy(self, name: str) -> None:
        self._allocator = get_platform_allocator(name)  # unknown names list the valid ones
        self._strategy = name

    def _instruct(self, t_s: float, call: DRCall) -> None:
        rooms_kw = self._room_kw(call)
        if self._strategy == "pro_rata":
            costs = np.zeros_like(rooms_kw)
        else:
            sign = call.direction.sign
            costs = np.array([self.offers[op].cost_cny_per_kwh(sign) if op in self.offers else 0.0
                              for op in self.operators])
        shares_kw = self._allocator(call.delta_kw, rooms_kw, costs)
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
    exactly the fraction of the tick it covers (energy-correct). An
    instruction's share is a fixed fraction of its call version's largest
    request (``delta_kw``); it follows that version's profile (intervals,
    ramp-up, cancellation) exactly over the time it is in force.
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
        cost = self.portfolio.offered_cost(self.envelope) if self.portfolio.offer_cost else (0.0, 0.0)
        self.to_platform.send(FlexibilityOffer(t_s, self.name, self.flex, *cost))
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
                    # The share is a fraction (msg.delta_kw / call.delta_kw) of the call version the instruction
                    # carries; integrated over its profile (intervals, ramp) that is msg.delta_kw * weight_s.
                    total += msg.delta_kw * msg.call.weight_s(a, b)
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
