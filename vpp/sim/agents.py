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
from typing import Protocol

import numpy as np
import simpy

from vpp.dispatch.aggregate import BusFlexibility, sum_by_bus
from vpp.dispatch.allocation import get_platform_allocator, pro_rata
from vpp.dispatch.portfolio import Portfolio
from vpp.dr import Direction, DRCall
from vpp.fleets.base import Envelope
from vpp.fleets.kernels import NUMBA_AVAILABLE
from vpp.sim.link import Link, Mailbox
from vpp.sim.messages import (
    CallNotice,
    CallResponse,
    EnergyOffer,
    EnergyQuery,
    FlexibilityOffer,
    Instruction,
    Telemetry,
)

__all__ = ["CongestionPolicy", "GridOperatorAgent", "PlatformAgent", "PlatformPolicy", "OperatorAgent", "Southbound"]

PRE_EVENT_S = 900.0  # the pre-event reference of tracking: metered power over the 15 min before a call [s]


@dataclass(frozen=True)
class PlatformPolicy:
    """How the platform answers calls (scenario ``platform``; see :class:`vpp.scenario.schema.PlatformConfig`)."""

    acceptance: str = "always"  # "always": opt in to every call in full; "energy": by the event window's energy
    min_acceptance: float = 0.5  # "energy": opt out when less than this share of the call's energy is available
    tracking: bool = False  # closed loop on late telemetry
    tracking_reference: str = "offers"  # "offers" or "pre_event"
    tracking_gain: float = 0.5  # integral gain per telemetry tick [-]
    recovery: str = "none"  # "release": hand devices back gradually over each call's recovery_s


class Southbound(Protocol):
    """What an operator's optional southbound link offers (see :class:`OperatorAgent`)."""

    fleet: str  # the fleet whose devices it serves
    devices: np.ndarray  # their positions in that fleet [-]

    def exchange(self, t_s: float, dt_s: float, p_set_kw: np.ndarray) -> np.ndarray:
        """The devices' setpoints for the tick [kW] -> the limits they hold for it [kW]."""

    def metered(self, t_s: float, dt_s: float, p_kw: np.ndarray) -> None:
        """The power the devices drew over the tick [kW]."""


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
    """Holds the aggregate flexibility book, decides on calls and splits them over operators by its strategy.

    It reacts to each message at its true arrival time: a call notice is
    answered and dispatched at once, with the latest offers; at every tick
    start (:meth:`dispatch`) every call that has not ended is dispatched again
    with the offers received by then.

    **Acceptance** (``policy.acceptance``): ``always`` opts in to every call in
    full. ``energy`` first asks every operator how much of the call's energy
    its targeted devices can deliver over the whole event window
    (:class:`EnergyQuery`; each operator answers from a lookahead of its own
    fleets) and opts in to ``min(1, available / requested)`` of the call, or
    out below ``min_acceptance``; it decides when every operator has answered,
    or at the call's start with the answers it has (a lost answer counts as
    nothing available). Modifications keep the decision. The response goes
    to the grid operator unless the call says ``response_required: never``.

    **Tracking** (``policy.tracking``): at each tick start, for every active
    call, the platform takes the newest tick whose telemetry has arrived from
    every operator (latency delays it, loss drops it), measures the change it
    achieved on the call's buses (by its target operators' telemetry only,
    when it names operators; telemetry is per operator, so fleet targets are
    not narrowed further) against a reference it can see, never the twin: ``offers``, the default power its operators offered for that tick,
    or ``pre_event``, the metered power over the 15 minutes before the call.
    The error against the accepted request then feeds an integral correction
    (``tracking_gain`` per telemetry tick) of what it asks from operators,
    bounded by the room they offer and never reversing the call's direction.
    Overlapping calls on the same buses each see the other's change (the
    platform meters buses, not calls).
    """

    def __init__(self, env: simpy.Environment, operators: Sequence[str], n_bus: int, strategy: str = "pro_rata",
                 policy: PlatformPolicy | None = None, dt_s: float = 60.0):
        self.env = env
        self.operators = list(operators)
        self.n_bus = n_bus
        self.strategy = strategy
        self.policy = policy or PlatformPolicy()
        self.dt_s = float(dt_s)
        self.inbox = Mailbox(env)
        self.inbox.on_put = self._receive
        self.to_operator: dict[str, Link] = {}
        self.to_grid_operator: Link | None = None
        self.calls: dict[str, DRCall] = {}
        self.offers: dict[str, FlexibilityOffer] = {}
        self.telemetry: dict[str, Telemetry] = {}
        self._masks: dict[str, np.ndarray] = {}
        self.accepted: dict[str, float] = {}  # call id -> share of the call the platform committed to [-]
        self.e_available_kwh: dict[str, float] = {}  # call id -> energy its operators offered over the window
        self._asked: dict[str, dict[str, float]] = {}  # call id -> operator -> energy answered [kWh] (pending)
        self._metered: dict[float, dict[str, Telemetry]] = {}  # tick start -> operator -> telemetry
        self._corr_kw: dict[str, float] = {}  # call id -> integral correction of the request [kW, signed]
        self._scale: dict[str, float] = {}  # call id -> factor on the call's request for this tick [-]
        self._last_tick: dict[str, float] = {}  # call id -> telemetry tick last used
        self._pre_ref: dict[str, float] = {}  # call id -> pre-event reference [kW]
        self.declined: dict[str, set[str]] = {}  # call id -> operators that declined their share
        self.fleets_of: dict[str, set[str]] = {}  # operator -> names of its fleets (set by the engine)
        self._released_calls: dict[tuple[str, int], DRCall] = {}  # (call id, modification) -> its release version
        self.tracking_log: dict[str, list[dict]] = {}

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

    def _mask(self, call: DRCall) -> np.ndarray:
        mask = self._masks.get(call.call_id)
        if mask is None:
            mask = self._masks[call.call_id] = call.bus_mask(self.n_bus)
        return mask

    def _offer_for(self, call: DRCall, op: str):
        """``op``'s newest offer if ``call`` can draw on it (offered, not declined, targeted), else None."""
        if op not in self.offers or op in self.declined.get(call.call_id, ()) or not self._targets_operator(call, op):
            return None
        return self.offers[op]

    def _room_kw(self, call: DRCall) -> np.ndarray:
        mask = self._mask(call)
        sign = call.direction.sign
        offers = [self._offer_for(call, op) for op in self.operators]
        return np.array([0.0 if o is None else o.flex.room_kw(sign, mask) for o in offers])

    def _targets_operator(self, call: DRCall, op: str) -> bool:
        """Whether ``call``'s operator and fleet targets leave ``op`` any device (the platform's resource
        registry knows which fleets each operator runs)."""
        if call.operators is not None and op not in call.operators:
            return False
        if call.fleets is not None and op in self.fleets_of and not (self.fleets_of[op] & set(call.fleets)):
            return False
        return True

    def _receive(self, t_s: float, msg) -> None:
        if isinstance(msg, CallNotice):
            call = msg.call
            known = call.call_id in self.calls
            self.calls[call.call_id] = call
            if known and call.call_id in self.accepted:
                self._instruct(t_s, call)  # a modification keeps the decision
            elif self.policy.acceptance == "energy" and not call.has_setpoint:  # a setpoint has no energy yet
                if not known:
                    # Each operator is asked for its pro-rata share of the call (by the room it offers now),
                    # so that operators who could each cover the whole call are not counted twice.
                    self._asked[call.call_id] = {}
                    rooms_kw = self._room_kw(call)
                    total_kw = float(rooms_kw.sum())
                    n_op = len(self.operators)
                    for op, room_kw in zip(self.operators, rooms_kw):
                        share = room_kw / total_kw if total_kw > 0.0 else 1.0 / n_op
                        self.to_operator[op].send(EnergyQuery(t_s, call, float(share), self.policy.min_acceptance))
            else:
                self._decide(t_s, call, None)
        elif isinstance(msg, EnergyOffer):
            answers = self._asked.get(msg.call_id)
            if not msg.accepted:
                self.declined.setdefault(msg.call_id, set()).add(msg.operator)
            if answers is not None:
                answers[msg.operator] = msg.e_kwh
                if len(answers) == len(self.operators):
                    self._decide(t_s, self.calls[msg.call_id], sum(answers.values()))
        elif isinstance(msg, FlexibilityOffer):
            old = self.offers.get(msg.operator)
            if old is None or msg.t_s >= old.t_s:
                self.offers[msg.operator] = msg
        elif isinstance(msg, Telemetry):
            self.telemetry[msg.operator] = msg
            if self.policy.tracking:
                self._metered.setdefault(msg.t_s, {})[msg.operator] = msg

    def _decide(self, t_s: float, call: DRCall, e_available_kwh: float | None) -> None:
        """Opt in (to a share) or out of ``call``, answer the grid operator, and dispatch it."""
        self._asked.pop(call.call_id, None)
        share = 1.0
        if e_available_kwh is not None:
            self.e_available_kwh[call.call_id] = e_available_kwh
            e_req = call.energy_kwh()
            share = min(1.0, e_available_kwh / e_req) if e_req > 0.0 else 1.0
            if share < self.policy.min_acceptance:
                share = 0.0
        self.accepted[call.call_id] = share
        if call.response_required != "never":
            self.to_grid_operator.send(CallResponse(t_s, call.call_id, share > 0.0, float(self._room_kw(call).sum()),
                                                    share, e_available_kwh))
        self._instruct(t_s, call)

    def _setpoint_baseline_kw(self, call: DRCall) -> float:
        """What the targets of a ``setpoint_kw`` call would draw this tick without it: the operators' offered
        default power on its buses (sent at the tick start; never the twin) [kW]."""
        mask = self._mask(call)
        offers = [self._offer_for(call, op) for op in self.operators]
        return sum(float(o.flex.p_default_kw[mask].sum()) for o in offers if o is not None)

    def _instruct(self, t_s: float, call: DRCall, rooms_kw: np.ndarray | None = None) -> None:
        share = self.accepted.get(call.call_id)
        if share is None:
            return  # not decided yet: nothing is dispatched before the platform opts in
        release = self.policy.recovery == "release"
        if call.has_setpoint:
            # A setpoint becomes, each tick, the change from the targets' offered default power to it (held
            # until the next tick's; no release: after the event there is no setpoint to step down from).
            call = call.as_delta(t_s, self.dt_s, self._setpoint_baseline_kw(call))
            release = False
        if rooms_kw is None:
            rooms_kw = self._room_kw(call)
        if self._strategy == "pro_rata":
            costs = np.zeros_like(rooms_kw)
        else:
            sign = call.direction.sign
            costs = np.array([self.offers[op].cost_cny_per_kwh(sign) if op in self.offers else 0.0
                              for op in self.operators])
        delta_kw = call.delta_kw * share * self._scale.get(call.call_id, 1.0)
        shares_kw = self._allocator(delta_kw, rooms_kw, costs)
        sent = self._released(call) if release else call
        for op, share_kw in zip(self.operators, shares_kw):
            self.to_operator[op].send(Instruction(t_s, op, sent, float(share_kw)))

    def _released(self, call: DRCall) -> DRCall:
        """:meth:`_release` of ``call``, built once per version (it is sent every tick of the call)."""
        key = (call.call_id, call.modification)
        out = self._released_calls.get(key)
        if out is None:
            out = self._released_calls[key] = self._release(call)
        return out

    def _release(self, call: DRCall) -> DRCall:
        """``call`` with its request handed back gradually over its recovery window (``recovery: release``).

        After ``end_s`` the last interval's value steps down linearly to 0 over
        ``recovery_s`` (one step per tick), so operators release the devices
        they held back a few at a time instead of all at once; the grid's
        request (and what delivery is measured against) still ends at
        ``end_s``. A cancelled version, a price-only event or one without a
        recovery window is sent as it is.
        """
        rec_s = call.recovery_s
        if call.cancelled or call.signal in ("price_cny_per_kwh", "setpoint_kw") or not rec_s or rec_s <= 0.0:
            return call
        base = call.intervals or ((call.start_s, call.end_s, call.p_kw),)
        v_last = base[-1][2]
        k_n = max(1, int(np.ceil(rec_s / self.dt_s - 1e-9)))
        step_s = rec_s / k_n
        steps = tuple((call.end_s + k * step_s, call.end_s + (k + 1) * step_s, v_last * (1.0 - (k + 0.5) / k_n))
                      for k in range(k_n))
        return replace(call, end_s=call.end_s + rec_s, intervals=tuple(base) + steps)

    def _track(self, t_s: float, call: DRCall, rooms_kw: np.ndarray) -> None:
        """Integral correction of ``call``'s request from the newest complete telemetry tick (see the class)."""
        cid, dt_s = call.call_id, self.dt_s
        share = self.accepted.get(cid, 0.0)
        sign = call.direction.sign
        d_now_kw = sign * call.requested_kw(t_s, t_s + dt_s) * share
        complete = [tau for tau, tel in self._metered.items()
                    if len(tel) == len(self.operators) and tau + dt_s <= t_s + 1e-9
                    and tau > self._last_tick.get(cid, -np.inf)]
        if complete and share > 0.0:
            tau = max(complete)
            self._last_tick[cid] = tau
            d_req_kw = sign * call.requested_kw(tau, tau + dt_s) * share
            if d_req_kw != 0.0:
                mask = self._mask(call)
                tel = self._metered[tau]
                ops = call.operators or self.operators
                metered_kw = sum(float(tel[op].p_bus_kw[mask].sum()) for op in ops)
                if self.policy.tracking_reference == "offers":
                    ref_kw = sum(float(tel[op].p_default_bus_kw[mask].sum()) for op in ops)
                else:
                    ref_kw = self._pre_event_kw(call, mask)
                if ref_kw is not None:
                    achieved_kw = metered_kw - ref_kw
                    err_kw = d_req_kw - achieved_kw  # same sign as the request when short of it
                    corr = self._corr_kw.get(cid, 0.0) + self.policy.tracking_gain * err_kw
                    room_kw = float(rooms_kw.sum())
                    # Anti-windup: never ask past the offered room, never reverse the call.
                    cmd = sign * min(max(sign * (d_now_kw + corr), 0.0), max(room_kw, abs(d_now_kw)))
                    self._corr_kw[cid] = cmd - d_now_kw if d_now_kw != 0.0 else corr
                    self.tracking_log.setdefault(cid, []).append({
                        "t_s": t_s, "telemetry_t_s": tau, "requested_kw": d_req_kw, "achieved_kw": achieved_kw,
                        "error_kw": err_kw, "correction_kw": self._corr_kw[cid]})
        corr = self._corr_kw.get(cid, 0.0)
        self._scale[cid] = (d_now_kw + corr) / d_now_kw if d_now_kw != 0.0 else 1.0

    def _pre_event_kw(self, call: DRCall, mask: np.ndarray) -> float | None:
        """Mean metered power on ``mask`` over the complete telemetry ticks of the 15 min before the call [kW].

        Computed once, at the first telemetry tick inside the call (all pre-event ticks have arrived by then
        unless lost), and kept.
        """
        ref = self._pre_ref.get(call.call_id)
        if ref is not None:
            return ref
        ticks = [tau for tau, tel in self._metered.items()
                 if call.start_s - PRE_EVENT_S <= tau and tau + self.dt_s <= call.start_s + 1e-9
                 and len(tel) == len(self.operators)]
        if not ticks:
            return None
        ops = call.operators or self.operators
        ref = float(np.mean([sum(float(self._metered[tau][op].p_bus_kw[mask].sum()) for op in ops)
                             for tau in ticks]))
        self._pre_ref[call.call_id] = ref
        return ref

    def dispatch(self, t_s: float) -> None:
        """Tick start: send every operator its share of every call that has not ended, from the latest offers."""
        self.inbox.drain()  # every message was handled on arrival
        for cid in [cid for cid in self._asked if self.calls[cid].start_s <= t_s]:
            # Answers missing at the call's start (lost, or still on their way): decide with what arrived.
            self._decide(t_s, self.calls[cid], sum(self._asked[cid].values()))
        for call in sorted(self.calls.values(), key=_call_order):
            if call.end_s > t_s:
                rooms_kw = self._room_kw(call)  # once per call and tick, for the loop and the split
                if self.policy.tracking and not call.has_setpoint:  # a setpoint is re-read every tick instead
                    self._track(t_s, call, rooms_kw)
                self._instruct(t_s, call, rooms_kw)
        if self.policy.tracking:
            # Older telemetry is never needed again: a pre-event reference is kept once computed.
            horizon = t_s - PRE_EVENT_S - 2.0 * self.dt_s
            for tau in [tau for tau in self._metered if tau < horizon]:
                del self._metered[tau]


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

    **Southbound** (optional, ``None`` by default): an object that carries the
    setpoints of some of the operator's devices to them over a real protocol
    (:class:`vpp.protocols.ocpp.OcppSouthbound`). It names one of the
    operator's fleets (``fleet``) and devices in it (``devices``, positions in
    that fleet). At the tick end, after the split, :meth:`Southbound.exchange`
    gets those devices' setpoints and returns the limits the devices hold
    (what arrived and was accepted); those are the setpoints stepped, still
    bounded by each device's envelope. After the step :meth:`Southbound.metered`
    gets the power they drew. Without one, nothing of this runs.
    """

    def __init__(self, env: simpy.Environment, name: str, portfolio: Portfolio, *,
                 ignore: np.ndarray | None = None, bus_telemetry: bool = False, southbound=None):
        self.env = env
        self.name = name
        self.portfolio = portfolio
        self.states = portfolio.initial_states()
        self.inbox = Mailbox(env)
        self.inbox.on_put = self._receive
        self.to_platform: Link | None = None
        self.history: dict[str, list[tuple[float, Instruction]]] = {}
        self.envelope: Envelope | None = None
        self.flex: BusFlexibility | None = None
        self.p_kw = np.zeros(portfolio.n)
        # Devices that ignore setpoints and run at their default power (non-compliance; the platform does
        # not know which): a boolean per device, or None.
        self.ignore = None if ignore is None or not np.any(ignore) else np.asarray(ignore, dtype=bool)
        self.bus_telemetry = bus_telemetry  # send metered and offered default power per bus (tracking)
        self.declined: set[str] = set()  # calls whose share this operator declined
        self._tick = (0.0, 60.0)  # (t_s, dt_s) of the tick in progress
        self.southbound = southbound
        self._sb_pos: np.ndarray | None = None  # the southbound devices' positions in the portfolio
        if southbound is not None:
            lo = {f.name: lo for f, lo, _ in portfolio.slices()}
            if southbound.fleet not in lo:
                raise ValueError(f"southbound of operator {name!r}: fleet {southbound.fleet!r} is not one of its "
                                 f"fleets; allowed: {', '.join(sorted(lo))}")
            self._sb_pos = lo[southbound.fleet] + np.asarray(southbound.devices, dtype=np.int64)

    def _receive(self, t_s: float, msg) -> None:
        if isinstance(msg, EnergyQuery):
            e_kwh = self.available_kwh(msg.call, msg.share)
            asked_kwh = msg.share * msg.call.energy_kwh()
            accepted = not (asked_kwh > 0.0 and e_kwh < msg.min_share * asked_kwh)
            if not accepted:
                self.declined.add(msg.call.call_id)  # its instructions for this call are ignored
            self.to_platform.send(EnergyOffer(t_s, self.name, msg.call.call_id, e_kwh if accepted else 0.0,
                                              accepted))

    def available_kwh(self, call: DRCall, share: float = 1.0) -> float:
        """Energy of ``share`` of ``call`` this operator's targeted devices can deliver over its window [kWh].

        A lookahead on copies of the fleets' states from the tick in progress:
        one copy runs at default power (what the devices would do), the other
        from the call's start answers the call alone, pro rata to room within
        each tick's envelope; per tick the achieved change, capped at the
        request, counts. Future arrivals come from the session table, a
        perfect forecast that a real operator only approximates.
        """
        t0, dt_s = self._tick
        pf = self.portfolio
        idx = pf.targets(call)
        sign = call.direction.sign
        base = [s.copy() for s in self.states]
        work = [f.new_workspace() for f in pf.fleets]
        bounds = list(pf.slices())
        other = None
        e_kwh = 0.0
        t_s = t0
        while t_s < call.end_s:  # the version announced (versions carry no later ones: no peeking ahead)
            req_kw = share * call.requested_kw(t_s, t_s + dt_s)
            if other is None and req_kw > 0.0:
                other = ([s.copy() for s in base], [f.new_workspace() for f in pf.fleets])
            p_base = np.empty(pf.n)
            for (f, lo, hi), s, w in zip(bounds, base, work):
                f.advance(s, t_s, dt_s)
                p_base[lo:hi] = f.run_default(s, t_s, dt_s, w)
            if other is not None:
                states, ws = other
                envs = []
                for (f, lo, hi), s, w in zip(bounds, states, ws):
                    f.advance(s, t_s, dt_s)
                    envs.append(f.flexibility(s, t_s, dt_s, w))
                p_def = np.concatenate([e.p_default_kw for e in envs])
                p_lo = np.concatenate([e.p_min_kw for e in envs])
                p_hi = np.concatenate([e.p_max_kw for e in envs])
                room = (p_def - p_lo if sign < 0 else p_hi - p_def)[idx]
                p_set = p_def.copy()
                p_set[idx] += pro_rata(sign * req_kw, np.maximum(room, 0.0), np.zeros(room.shape[0]))
                p_other = np.empty(pf.n)
                for (f, lo, hi), s, e in zip(bounds, states, envs):
                    p_other[lo:hi] = f.step(s, p_set[lo:hi], t_s, dt_s, e)
                achieved_kw = sign * float((p_other[idx] - p_base[idx]).sum())
                e_kwh += min(max(achieved_kw, 0.0), req_kw) * dt_s / 3600.0
            t_s += dt_s
        return e_kwh

    def report(self, t_s: float, dt_s: float) -> Envelope:
        """Tick start: advance the fleets to ``t_s``, compute the envelope and offer it per bus."""
        self._tick = (t_s, dt_s)
        self.portfolio.advance(self.states, t_s, dt_s)
        self.envelope = self.portfolio.flexibility(self.states, t_s, dt_s)
        self.flex = self.portfolio.by_bus(self.envelope)
        cost = self.portfolio.offered_cost(self.envelope) if self.portfolio.offer_cost else (0.0, 0.0)
        self.to_platform.send(FlexibilityOffer(t_s, self.name, self.flex, *cost))
        return self.envelope

    def requests(self, t_s: float, dt_s: float) -> list[tuple[DRCall, float]]:
        """Each call's time-averaged requested change over ``[t_s, t_s + dt_s)`` [kW, signed], in call order."""
        for t_arr, msg in self.inbox.drain_timed():
            if isinstance(msg, Instruction) and msg.call.call_id not in self.declined:  # queries: answered on arrival
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
        if self.ignore is not None:
            np.copyto(p_set_kw, self.envelope.p_default_kw, where=self.ignore)
        sb = self.southbound
        if sb is not None:
            p_set_kw[self._sb_pos] = sb.exchange(t_s, dt_s, p_set_kw[self._sb_pos])
        self.p_kw = self.portfolio.step(self.states, p_set_kw, t_s, dt_s)
        if sb is not None:
            sb.metered(t_s, dt_s, self.p_kw[self._sb_pos])
        if self.bus_telemetry:
            p_bus_kw = np.zeros(self.portfolio.n_bus)
            sum_by_bus(self.portfolio.bus_idx, self.p_kw, p_bus_kw, use_numba=NUMBA_AVAILABLE)
            self.to_platform.send(Telemetry(t_s, self.name, float(self.p_kw.sum()), p_bus_kw,
                                            self.flex.p_default_kw.copy()))
        else:
            self.to_platform.send(Telemetry(t_s, self.name, float(self.p_kw.sum())))
        return self.p_kw, instructed
