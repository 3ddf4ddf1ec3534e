"""OpenADR 2.0b over openleadr: the scenario's DR events from a VTN, the simulated plant as a VEN.

:class:`VTN` issues a scenario's DR events (:class:`vpp.dr.DRCall`, every
version: modifications and cancellations) to whichever VENs register, each
version at its announce time on the VTN's simulated clock. :class:`VEN` runs
the scenario's plant and twin as ``vpp run`` does (:func:`vpp.run.prepare_run`
with ``local_calls=False``: the scenario's own events are not scheduled),
paced at its simulated clock, and injects every event it receives into the
engine (:meth:`vpp.sim.engine.Engine.inject`) at the first tick boundary at or
after its arrival; it opts in or out as the platform decides and reports the
plant's metered power per tick. Both record a protocol timeline (wall and
simulated time of every event sent, received, opted and reported on).

Clocks (:mod:`vpp.protocols.clock`)
    ``speed`` simulated seconds per wall second. The VTN starts its clock when
    the first VEN registers; a VEN starts its own when its registration
    completes, so the two agree to the registration's round trip. Instants on
    the wire are the scenario's calendar datetimes.

The event on the wire (what :func:`call_to_event` writes and :func:`event_to_call` reads)
    * ``eventID`` = the call id, ``modificationNumber`` = its version,
      ``eventStatus`` ``cancelled`` for a cancelled version;
    * active period = ``[start_s, end_s)``; ``x-eiNotification`` = start -
      notification; ``x-eiRampUp`` = ``ramp_up_s`` (in vpp the ramp lies inside
      the active period, see :mod:`vpp.dr`); ``x-eiRecovery`` = ``recovery_s``;
    * a power event is one ``LOAD_DISPATCH`` signal of type ``delta``, one
      interval per interval of the call, the change in kW signed by the load
      convention (negative: reduce); a price-only event an
      ``ELECTRICITY_PRICE`` ``price`` signal [CNY/kWh]; a power event's
      ``price_intervals`` ride along as a second ``ELECTRICITY_PRICE`` signal;
      the ``signalID`` (``vpp:<signal>:<direction>``) keeps what OpenADR cannot
      say (``level`` already converted to kW; a price event's direction);
    * targets: the VEN, plus ``resourceID`` ``bus:<label>`` per target bus,
      ``groupID`` ``operator:<name>`` and ``resourceID`` ``fleet:<name>``; as
      in the scenario a device is targeted when it matches every kind given;
    * ``marketContext`` ``oadr://vpp/tier/<tier>`` (``oadr://vpp/programme``
      without a tier); ``responseRequired`` as the call says.

    An event a VEN cannot take (a bus, operator or fleet its plant lacks, a
    signal it does not know, a payload out of schema) is a logged rejection:
    the VEN opts out (when a response is required) and the run goes on.

Reports
    A VEN registers a ``TELEMETRY_USAGE`` report (real power, kW); the VTN
    requests every telemetry point a VEN offers at the VEN's fastest sampling
    rate (the request rides in its ``oadrRegisteredReport``), the VEN confirms
    with ``oadrCreatedReport`` and sends ``oadrUpdateReport`` messages under
    the request's id with the metered power of every completed tick (interval
    start = the tick's calendar instant), in batches; a batch the VTN did not
    acknowledge is sent again, and the VTN keeps each tick once.

Faults
    A VTN that cannot be reached when a VEN starts: the VEN retries for
    ``connect_timeout_s`` wall seconds and then gives up with
    :class:`VTNUnreachable` (the CLI exits 2, nothing written). Once
    registered, a lost connection is logged and polled again every poll
    interval until the VTN answers; unsent reports are kept and sent then.
"""

from __future__ import annotations

import asyncio
from functools import partial
import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from vpp.dr import Direction, DRCall
from vpp.protocols.clock import SimClock
from vpp.protocols.tls import TLSFiles

__all__ = [
    "ProtocolsMissing", "VTNUnreachable", "EventRejected", "Timeline", "VTN", "VEN", "call_to_event",
    "event_to_call", "require_openleadr", "probe_vtn", "RATED_KW", "operator_capacity_kw", "split_by_operator",
    "run_vens", "operator_call_id",
]

log = logging.getLogger("vpp.protocols.openadr")

EXTRA_HINT = "install vpp[protocols] (pip install 'vpp[protocols]') to use the OpenADR commands"
MARKET_PREFIX = "oadr://vpp/tier/"
MARKET_NO_TIER = "oadr://vpp/programme"
REPORT_NAME = "TELEMETRY_USAGE"
_TOL_S = 1e-6


class ProtocolsMissing(ImportError):
    """The optional protocol libraries are not installed."""


class VTNUnreachable(RuntimeError):
    """A VEN could not register with its VTN within its connect timeout."""


class EventRejected(ValueError):
    """An event a VEN cannot take; the message says why."""


def require_openleadr():
    """Import openleadr, or raise :class:`ProtocolsMissing` naming the extra."""
    try:
        import openleadr  # noqa: F401
    except ImportError:
        raise ProtocolsMissing(EXTRA_HINT) from None
    logging.getLogger("openleadr").setLevel(logging.ERROR)  # it warns about every optional handler left out
    return openleadr


# --- the protocol timeline -----------------------------------------------------------------------------


class Timeline:
    """What happened on the wire, in wall time (s since the process's timeline started) and simulated time."""

    def __init__(self, clock: SimClock):
        self.clock = clock
        self.wall0 = time.monotonic()
        self.rows: list[dict] = []

    def add(self, what: str, **fields) -> dict:
        t_s = self.clock.now_s() if self.clock.started else None
        row = {
            "wall_s": round(time.monotonic() - self.wall0, 4),
            "wall_iso": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "t_s": None if t_s is None else round(t_s, 3),
            "sim_iso": None if t_s is None else self.clock.to_datetime(t_s).isoformat(),
            "what": what,
            **fields,
        }
        self.rows.append(row)
        return row

    def find(self, what: str, **match) -> list[dict]:
        return [r for r in self.rows if r["what"] == what and all(r.get(k) == v for k, v in match.items())]

    def opt_latencies(self, sent: str, opted: str) -> list[dict]:
        """Per (event, modification, VEN): wall seconds from the first ``sent`` row to the first ``opted`` row.

        One pass over the rows each way (10^4 VENs make ~10^5 rows: a search per row would take minutes).
        """
        def key(row):
            return row.get("event_id"), row.get("modification"), row.get("ven_id")

        first_opt: dict = {}
        for row in self.rows:
            if row["what"] == opted:
                first_opt.setdefault(key(row), row)
        out: dict = {}
        for row in self.rows:
            k = key(row)
            if row["what"] == sent and k in first_opt and k not in out:
                got = first_opt[k]
                out[k] = {"event_id": k[0], "modification": k[1], "ven_id": k[2], "opt": got.get("opt"),
                          "latency_wall_s": round(got["wall_s"] - row["wall_s"], 4)}
        return list(out.values())

    def write(self, path: Path, meta: dict) -> None:
        path.write_text(json.dumps({**meta, "timeline": self.rows}, indent=1, default=str) + "\n")


# --- DRCall <-> OpenADR event -------------------------------------------------------------------------


def call_to_event(version: DRCall, clock: SimClock, bus_labels, ven_id: str):
    """The openleadr ``Event`` of one version of a call for ``ven_id`` (see the module docstring)."""
    from openleadr import objects

    dt = clock.to_datetime
    if version.signal == "price_cny_per_kwh":
        power = None
        price = version.intervals or ((version.start_s, version.end_s, 0.0),)
    else:
        power = version.schedule
        price = version.price_intervals or None
    sign = version.direction.sign

    def intervals(rows, scale):
        return [objects.Interval(dtstart=dt(a), duration=timedelta(seconds=b - a), signal_payload=scale * v, uid=k)
                for k, (a, b, v) in enumerate(rows)]

    tag = f"vpp:{version.signal}:{version.direction.value}"
    signals = []
    if power is not None:
        setpoint = version.signal == "setpoint_kw"  # an absolute target [kW], not a signed change
        signals.append(objects.EventSignal(intervals=intervals(power, 1.0 if setpoint else sign),
                                           signal_name="LOAD_DISPATCH", signal_type="setpoint" if setpoint else "delta",
                                           signal_id=tag))
    if price is not None:
        signals.append(objects.EventSignal(intervals=intervals(price, 1.0), signal_name="ELECTRICITY_PRICE",
                                           signal_type="price", signal_id=tag if power is None else "vpp:price"))
    targets = [objects.Target(ven_id=ven_id)]
    if version.bus_idx is not None:
        targets += [objects.Target(resource_id=f"bus:{bus_labels[b]}") for b in version.bus_idx]
    targets += [objects.Target(group_id=f"operator:{op}") for op in version.operators or ()]
    targets += [objects.Target(resource_id=f"fleet:{f}") for f in version.fleets or ()]
    period = objects.ActivePeriod(
        dtstart=dt(version.start_s), duration=timedelta(seconds=version.end_s - version.start_s),
        notification_period=timedelta(seconds=version.start_s - version.notification_s),
        ramp_up_period=timedelta(seconds=version.ramp_up_s) if version.ramp_up_s > 0.0 else None,
        recovery_period=None if version.recovery_s is None else timedelta(seconds=version.recovery_s),
    )
    descriptor = objects.EventDescriptor(
        event_id=version.call_id, modification_number=int(version.modification),
        market_context=MARKET_PREFIX + version.tier if version.tier else MARKET_NO_TIER,
        event_status="cancelled" if version.cancelled else "far",
    )
    event = objects.Event(event_descriptor=descriptor, event_signals=signals, targets=targets, active_period=period,
                          response_required=version.response_required)
    # openleadr sets the status from the wall clock; ours is the simulated one (the VTN sets far/near/active)
    event.event_descriptor.event_status = "cancelled" if version.cancelled else "far"
    return event


@dataclass
class PlantIndex:
    """What a VEN's plant has, to resolve an event's targets: bus label -> position, operators, fleets."""

    bus_pos: dict[str, int]
    operators: tuple[str, ...]
    fleets: tuple[str, ...]


def _seconds(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise EventRejected(f"expected a duration, got {value!r}")


def _period_field(period: dict, name: str):
    """``x-ei<Name>`` of an active period: openleadr parses it as ``name``, builds it as ``name_period``."""
    value = period.get(name)
    return period.get(f"{name}_period") if value is None else value


def _targets(event: dict) -> list[dict]:
    out = []
    raw = event.get("targets") or []
    for t in raw if isinstance(raw, list) else [raw]:
        if isinstance(t, dict):
            out.append({k: v for k, v in t.items() if v is not None})
    if not out and isinstance(event.get("targets_by_type"), dict):
        for kind, values in event["targets_by_type"].items():
            for v in values if isinstance(values, list) else [values]:
                out.append({kind: v})
    return out


def event_to_call(event: dict, clock: SimClock, plant: PlantIndex, received_s: float,
                  previous: DRCall | None = None) -> DRCall:
    """The plain :class:`DRCall` version an OpenADR event (as openleadr parses it) describes.

    Raises :class:`EventRejected` naming what is wrong: an unknown target, a
    signal vpp does not dispatch, a malformed payload. ``previous`` is the
    version in force (for a modification whose intervals are all zero, the
    call keeps its scale ``p_kw``).
    """
    try:
        desc = event["event_descriptor"]
        call_id = str(desc["event_id"])
        modification = int(desc.get("modification_number") or 0)
        status = desc.get("event_status")
        period = event["active_period"]
        start_dt = period["dtstart"]
        duration_s = _seconds(period["duration"])
        signals = event["event_signals"]
    except (KeyError, TypeError, ValueError) as exc:
        raise EventRejected(f"malformed event: missing or bad {exc}") from None
    if not isinstance(start_dt, datetime) or duration_s is None or not duration_s > 0.0:
        raise EventRejected(f"event {call_id!r}: the active period needs a start and a duration > 0")
    start_s = clock.to_t_s(start_dt)
    end_s = start_s + duration_s
    if isinstance(signals, dict):
        signals = signals.get("event_signals", [signals])
    power = [s for s in signals if s.get("signal_name") == "LOAD_DISPATCH"]
    price = [s for s in signals if s.get("signal_name") == "ELECTRICITY_PRICE"]
    known = ("LOAD_DISPATCH", "ELECTRICITY_PRICE")
    others = [s.get("signal_name") for s in signals if s.get("signal_name") not in known]
    if others or not (power or price):
        raise EventRejected(f"event {call_id!r}: signal {others[0] if others else None!r} is not dispatched; vpp "
                            "takes LOAD_DISPATCH (delta, kW) and ELECTRICITY_PRICE (price, CNY/kWh)")
    if len(power) > 1 or len(price) > 1:
        raise EventRejected(f"event {call_id!r}: at most one LOAD_DISPATCH and one ELECTRICITY_PRICE signal")

    def rows(sig) -> tuple[tuple[float, float, float], ...]:
        out, t = [], start_s
        for iv in sorted(sig.get("intervals") or [], key=lambda i: int(i.get("uid") or 0)):
            d_s = _seconds(iv.get("duration"))
            v = iv.get("signal_payload")
            if d_s is None or not d_s > 0.0 or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise EventRejected(f"event {call_id!r}: an interval needs a duration > 0 and a finite payload")
            out.append((t, t + d_s, float(v)))
            t += d_s
        if not out:
            raise EventRejected(f"event {call_id!r}: signal {sig.get('signal_name')} has no intervals")
        if abs(t - end_s) > 1e-3:
            raise EventRejected(f"event {call_id!r}: intervals cover {t - start_s:g} s, the active period "
                                f"{duration_s:g} s")
        out[-1] = (out[-1][0], end_s, out[-1][2])
        return tuple(out)

    def tag(sig) -> tuple[str | None, str | None]:
        parts = str(sig.get("signal_id") or "").split(":")
        return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "vpp" else (None, None)

    fields: dict = {}
    if power:
        sig = power[0]
        if sig.get("signal_type") not in ("delta", "setpoint"):
            raise EventRejected(f"event {call_id!r}: LOAD_DISPATCH of type {sig.get('signal_type')!r} is not "
                                "dispatched; vpp takes type delta or setpoint [kW]")
        signed = rows(sig)
        kind, direction = tag(sig)
        if sig.get("signal_type") == "setpoint":
            # A setpoint on the targets' power: a cap (reduce) unless the event says it is a floor (increase).
            if any(v < 0.0 for _, _, v in signed):
                raise EventRejected(f"event {call_id!r}: a LOAD_DISPATCH setpoint is a power >= 0 [kW]")
            fields.update(signal="setpoint_kw", direction=Direction(direction or "reduce"), intervals=signed,
                          p_kw=max(max(v for _, _, v in signed), 1e-9),
                          price_intervals=rows(price[0]) if price else ())
            signed = None
    if power and signed is not None:
        if direction is None:
            total = sum(v * (b - a) for a, b, v in signed)
            direction = "increase" if total > 0.0 else "reduce"
        sign = Direction(direction).sign
        if any(v * sign < -1e-9 for _, _, v in signed):
            raise EventRejected(f"event {call_id!r}: a LOAD_DISPATCH delta must not change sign within an event")
        intervals = tuple((a, b, abs(v)) for a, b, v in signed)
        top = max(v for _, _, v in intervals)
        if not top > 0.0:
            if previous is None:
                raise EventRejected(f"event {call_id!r}: every LOAD_DISPATCH interval is 0: nothing requested")
            top = previous.p_kw
        fields.update(signal=kind if kind in ("delta_kw", "level") else "delta_kw", direction=Direction(direction),
                      intervals=intervals, p_kw=top, price_intervals=rows(price[0]) if price else ())
    elif not power:
        sig = price[0]
        kind, direction = tag(sig)
        fields.update(signal="price_cny_per_kwh", direction=Direction(direction or "reduce"), intervals=rows(sig),
                      p_kw=0.0, price_intervals=())

    bus_idx, operators, fleets = [], [], []
    for t in _targets(event):
        for key, value in t.items():
            value = str(value)
            if key == "resource_id" and value.startswith("bus:"):
                label = value[4:]
                if label not in plant.bus_pos:
                    raise EventRejected(f"event {call_id!r}: target bus {label!r} is not in this VEN's grid "
                                        f"({len(plant.bus_pos)} buses)")
                bus_idx.append(plant.bus_pos[label])
            elif key == "group_id" and value.startswith("operator:"):
                if value[9:] not in plant.operators:
                    raise EventRejected(f"event {call_id!r}: target operator {value[9:]!r} is not in this VEN's "
                                        f"plant; valid: {', '.join(plant.operators)}")
                operators.append(value[9:])
            elif key == "resource_id" and value.startswith("fleet:"):
                if value[6:] not in plant.fleets:
                    raise EventRejected(f"event {call_id!r}: target fleet {value[6:]!r} is not in this VEN's "
                                        f"plant; valid: {', '.join(plant.fleets)}")
                fleets.append(value[6:])
            # ven_id, party_id and other targets name this VEN as a whole: no narrowing
    market = str(event["event_descriptor"].get("market_context") or "")
    tier = market[len(MARKET_PREFIX):] if market.startswith(MARKET_PREFIX) else None
    notice = _seconds(_period_field(period, "notification"))
    notification_s = min(start_s, start_s - notice if notice is not None else received_s)
    response = event.get("response_required") or "always"
    try:
        return DRCall(
            call_id=call_id, start_s=start_s, end_s=end_s, notification_s=notification_s,
            bus_idx=tuple(bus_idx) if bus_idx else None, modification=modification,
            recovery_s=_seconds(_period_field(period, "recovery")),
            ramp_up_s=_seconds(_period_field(period, "ramp_up")) or 0.0,
            operators=tuple(operators) if operators else None, fleets=tuple(fleets) if fleets else None,
            response_required=response if response in ("always", "never") else "always", tier=tier or None,
            cancelled=status == "cancelled", origin="openadr", **fields,
        )
    except ValueError as exc:
        raise EventRejected(f"event {call_id!r}: {exc}") from None


# --- one VEN per operator: the VTN's split ---------------------------------------------------------------

RATED_KW = {
    "ev": lambda f: f.p_rated_kw,  # the charger's rating
    "basestation": lambda f: f.p_busy_kw + f.p_batt_max_kw,  # busy site load plus battery charging
    "building": lambda f: f.p_base_peak_kw + f.p_hvac_max_kw + f.p_batt_max_kw,  # peak base load, HVAC, battery
}
"""Per fleet kind: each device's rated power [kW], its largest grid draw (enrolled capacity, not a state)."""


def _rated_kw(fleet) -> np.ndarray:
    get = RATED_KW.get(fleet.kind)
    if get is None:
        raise ValueError(f"no rated power for fleet kind {fleet.kind!r}; known: {', '.join(RATED_KW)}")
    return np.broadcast_to(np.asarray(get(fleet), dtype=float), (fleet.n,))


def operator_capacity_kw(fleets, version: DRCall, n_bus: int) -> dict[str, float]:
    """Per operator: the rated power [kW] of its devices the event targets (its buses, operators, fleets)."""
    mask = version.bus_mask(n_bus)
    out: dict[str, float] = {}
    for f in fleets:
        if version.operators is not None and f.operator not in version.operators:
            continue
        if version.fleets is not None and f.name not in version.fleets:
            continue
        out.setdefault(f.operator, 0.0)
        out[f.operator] += float(_rated_kw(f)[mask[f.bus_idx]].sum())
    return out


def split_by_operator(version: DRCall, capacity_kw: dict[str, float]) -> dict[str, DRCall]:
    """Operator -> its version of the event: its group as target, the power scaled by its capacity share.

    Operators with no capacity get none. A price-only event is not split.
    """
    total = sum(capacity_kw.values())
    out = {}
    for op, cap in capacity_kw.items():
        if not cap > 0.0:
            continue
        if version.signal == "price_cny_per_kwh":
            out[op] = replace(version, operators=(op,))
            continue
        share = cap / total
        out[op] = replace(version, operators=(op,), p_kw=version.p_kw * share,
                          intervals=tuple((a, b, v * share) for a, b, v in version.intervals))
    return out


def operator_call_id(event_id: str, operator: str) -> str:
    """The engine's id of an event as operator ``operator``'s VEN takes it."""
    return f"{event_id}@{operator}"


# --- the VTN --------------------------------------------------------------------------------------------


class VTN:
    """An OpenADR 2.0b VTN (openleadr's ``OpenADRServer``) that issues a scenario's DR events.

    Build it in a running event loop. ``port`` 0 picks a free port
    (:attr:`port` after :meth:`start`). ``tls``: the server's certificate, key
    and CA (mutual TLS; the same certificate signs messages, and each VEN's
    messages must be signed by the certificate it registered with).
    """

    def __init__(self, scenario, *, host: str = "127.0.0.1", port: int = 8080, speed: float = 60.0,
                 poll_s: float = 1.0, tls: TLSFiles | None = None, calls=None, bus_labels=None,
                 vtn_id: str = "VPP_VTN"):
        require_openleadr()
        from openleadr import OpenADRServer

        self.scenario = scenario
        self.per_operator = scenario.openadr.vens == "operator"
        self.capacity_kw: dict[str, dict[str, float]] = {}  # call id -> operator -> rated capacity targeted [kW]
        if self.per_operator:
            # The split needs each operator's rated capacity per bus: the scenario's plant.
            from vpp.build import build_plant

            plant = build_plant(scenario)
            if calls is None or bus_labels is None:
                calls, bus_labels = plant.calls, [str(int(b)) for b in plant.grid.bus_index]
            self.operators = tuple(dict.fromkeys(f.operator for f in plant.fleets))
            n_bus = len(bus_labels)
            for call in calls:
                if call.has_setpoint:
                    from vpp.scenario import ScenarioError

                    raise ScenarioError(f"openadr.vens: operator: event {call.call_id!r} is a setpoint_kw event, an "
                                        "absolute cap on its buses that cannot be split among operators; use "
                                        "openadr.vens: platform")
                self.capacity_kw[call.call_id] = operator_capacity_kw(plant.fleets, call, n_bus)
        elif calls is None or bus_labels is None:
            from vpp.build import build_calls, build_grid

            grid = build_grid(scenario)
            calls = build_calls(scenario, grid)
            bus_labels = [str(int(b)) for b in grid.bus_index]
        self.calls = list(calls)
        self.bus_labels = list(bus_labels)
        self.clock = SimClock(scenario.time.calendar, speed)
        self.timeline = Timeline(self.clock)
        self.host, self.port, self.poll_s, self.tls = host, int(port), float(poll_s), tls
        kw = {}
        if tls is not None:
            kw = dict(cert=str(tls.cert), key=str(tls.key), http_cert=str(tls.cert), http_key=str(tls.key),
                      http_ca_file=str(tls.ca))
        self.server = OpenADRServer(vtn_id=vtn_id, http_host=host, http_port=self.port, show_fingerprint=False,
                                    requested_poll_freq=timedelta(seconds=self.poll_s), ven_lookup=self._ven_lookup,
                                    **kw)
        self.server.add_handler("on_create_party_registration", self._on_register)
        self.server.add_handler("on_register_report", self._on_register_report)
        self.server.add_handler("on_update_report", self._on_update_report)
        self.server.add_handler("on_cancel_party_registration", self._on_cancel_registration)
        # Events are delivered from our own queue (on_poll), with their status on the simulated clock:
        # openleadr's own queue judges far/active/completed on the wall clock and drops "completed" ones.
        self.server.add_handler("on_poll", self._on_poll)
        self.server.add_handler("on_request_event", self._on_request_event)
        events = self.server.services["event_service"]
        events.handlers["oadrCreatedEvent"] = self._on_created_event  # the whole answer, modification included
        self.vens: dict[str, dict] = {}
        self.announced: dict[str, DRCall] = {}  # call id -> the version last announced
        self.queues: dict[str, dict[str, DRCall]] = {}  # VEN id -> call id -> the version it is to have
        self.dirty: set[str] = set()  # VENs whose events changed since their last poll
        self.reports: list[dict] = []  # {"ven_id", "t_s", "p_kw"} per tick reported
        self._reported: set[tuple[str, float]] = set()  # (ven_id, t_s) already kept
        self._created: dict[tuple, datetime] = {}  # (ven_id, event id, modification) -> when queued for the VEN
        self.n_duplicate_reports = 0  # intervals received again (a resend after a lost acknowledgement)
        self.registered = asyncio.Event()
        self.server.app.middlewares.append(self._guard)
        self._runner = None
        self._site = None

    # openleadr handlers
    def _ven_lookup(self, ven_id: str) -> dict | None:
        return self.vens.get(ven_id)

    def _on_register(self, payload: dict):
        name = str(payload.get("ven_name") or "ven")
        fp = payload.get("fingerprint")
        if self.tls is not None and not fp:
            self.timeline.add("registration_rejected", ven_name=name, reason="no client certificate")
            log.warning("VTN: registration of %r rejected: no client certificate", name)
            return False
        if self.per_operator and name not in self.operators:
            reason = f"VEN name {name!r} is not an operator of the scenario; valid: {', '.join(self.operators)}"
            self.timeline.add("registration_rejected", ven_name=name, reason=reason)
            log.warning("VTN: registration rejected: %s (openadr.vens: operator)", reason)
            return False
        ven_id = next((v["ven_id"] for v in self.vens.values() if v["ven_name"] == name), None) or f"ven_{name}"
        info = {"ven_id": ven_id, "ven_name": name, "registration_id": f"reg_{ven_id}", "fingerprint": fp}
        new = ven_id not in self.vens
        self.vens[ven_id] = info
        self.timeline.add("registered", ven_id=ven_id, ven_name=name, fingerprint=fp)
        if not self.clock.started:
            self.clock.start()  # the simulated day begins with the first VEN
        if new:
            for version in self.announced.values():  # what the others already have
                self._offer(ven_id, version)
        self.registered.set()
        return ven_id, info["registration_id"]

    def _on_register_report(self, ven_id, resource_id, measurement, unit, scale, min_sampling_interval,
                            max_sampling_interval):
        """A VEN offers a telemetry point (oadrRegisterReport): request it at the VEN's fastest sampling rate.

        openleadr sends the request back in the oadrRegisteredReport; the VEN
        answers oadrCreatedReport and sends its oadrUpdateReports under the
        request's id, whose values reach :meth:`_on_report_values`.
        """
        self.timeline.add("report_registered", ven_id=ven_id, resource_id=resource_id, measurement=measurement)
        if ven_id not in self.vens:
            return None
        interval = min_sampling_interval or max_sampling_interval
        if not isinstance(interval, timedelta):
            interval = timedelta(seconds=float(self.scenario.time.dt_s))
        return partial(self._on_report_values, str(ven_id)), interval

    def _keep(self, ven_id: str, dt, value) -> bool:
        """Keep one reported interval of ``ven_id`` [kW], once per instant; False when rejected or already kept."""
        if ven_id not in self.vens or not isinstance(dt, datetime) or not isinstance(value, (int, float)):
            log.warning("VTN: report interval rejected (unknown VEN %r or malformed)", ven_id)
            return False
        key = (ven_id, round(self.clock.to_t_s(dt), 6))
        if key in self._reported:  # a report sent again after a lost acknowledgement: kept once
            self.n_duplicate_reports += 1
            return False
        self._reported.add(key)
        self.reports.append({"ven_id": ven_id, "t_s": self.clock.to_t_s(dt), "p_kw": float(value)})
        return True

    def _on_report_values(self, ven_id: str, values) -> None:
        """The ``(dtstart, value)`` pairs of one requested report of ``ven_id`` [kW]."""
        rows = sum(self._keep(ven_id, dt, value) for dt, value in values)
        self.timeline.add("report", ven_id=ven_id, n_ticks=rows)

    def _on_update_report(self, report: dict):
        """A report no request asked for (openleadr calls this only while no VEN has a requested report);
        each interval's ``rID`` names the VEN, as ours do."""
        intervals = report.get("intervals") or []
        rows = 0
        for iv in intervals:
            p = iv.get("report_payload") or {}
            rows += self._keep(str(p.get("r_id")), iv.get("dtstart"), p.get("value"))
        self.timeline.add("report", report_request_id=report.get("report_request_id"),
                          ven_id=(intervals or [{}])[0].get("report_payload", {}).get("r_id"), n_ticks=rows)

    def _on_cancel_registration(self, payload):
        ven_id = payload.get("ven_id") if isinstance(payload, dict) else payload
        self.vens.pop(ven_id, None)
        self.timeline.add("unregistered", ven_id=ven_id)
        return True

    def _status(self, version: DRCall) -> str:
        if version.cancelled:
            return "cancelled"
        now_s = self.clock.now_s()
        if now_s >= version.end_s:
            return "completed"
        if now_s >= version.start_s:
            return "active"
        return "near" if now_s >= version.start_s - version.ramp_up_s else "far"

    def _events_for(self, ven_id: str) -> list:
        out = []
        for version in self.queues.get(ven_id, {}).values():
            event = call_to_event(version, self.clock, self.bus_labels, ven_id)
            event.event_descriptor.event_status = self._status(version)
            # Created when this version was queued for the VEN (not at the poll that carries it), so a VEN can
            # measure its latency from the event's creation, the poll interval included.
            created = self._created.get((ven_id, version.call_id, version.modification))
            if created is not None:
                event.event_descriptor.created_date_time = created
            out.append(event)
        return out

    def _on_poll(self, ven_id: str):
        if ven_id not in self.dirty:
            return None
        self.dirty.discard(ven_id)
        events = self._events_for(ven_id)
        for event in events:
            d = event.event_descriptor
            self.timeline.add("delivered", ven_id=ven_id, event_id=d.event_id, modification=d.modification_number)
        return "oadrDistributeEvent", {"events": events}

    def _on_request_event(self, ven_id: str):
        return self._events_for(ven_id) or None

    async def _on_created_event(self, payload: dict):
        ven_id = payload.get("ven_id")
        for r in payload.get("event_responses") or []:
            eid, mod, opt = r.get("event_id"), r.get("modification_number"), r.get("opt_type")
            known = self.queues.get(ven_id, {}).get(eid)
            if known is None or known.modification != mod:
                self.timeline.add("opt_ignored", ven_id=ven_id, event_id=eid, modification=mod, opt=opt,
                                  reason="not the version in force for this VEN")
                continue
            self.timeline.add("opt", ven_id=ven_id, event_id=eid, modification=mod, opt=opt)
        return "oadrResponse", {}

    def _send(self, ven_id: str, version: DRCall) -> None:
        self._created.setdefault((ven_id, version.call_id, version.modification), datetime.now(timezone.utc))
        self.queues.setdefault(ven_id, {})[version.call_id] = version
        self.dirty.add(ven_id)
        self.timeline.add("sent", ven_id=ven_id, event_id=version.call_id, modification=version.modification,
                          cancelled=version.cancelled, start_iso=self.clock.to_datetime(version.start_s).isoformat(),
                          p_kw=version.p_kw, energy_kwh=None if version.has_setpoint else version.energy_kwh())

    def _offer(self, ven_id: str, version: DRCall) -> None:
        """Send ``version`` to ``ven_id``: as it is, or (one VEN per operator) its operator's part, if any."""
        if not self.per_operator:
            self._send(ven_id, version)
            return
        name = self.vens[ven_id]["ven_name"]
        cap = self.capacity_kw.get(version.call_id)
        if cap is None:  # a version of a call the VTN was not built with
            cap = self.capacity_kw[version.call_id] = {}
        part = split_by_operator(version, cap).get(name)
        if part is not None:
            self._send(ven_id, part)

    def announce(self, version: DRCall) -> None:
        """Send ``version`` (a new event, a modification or a cancellation) to every registered VEN it concerns."""
        self.announced[version.call_id] = version
        for ven_id in list(self.vens):
            self._offer(ven_id, version)

    def schedule(self) -> list[tuple[float, DRCall]]:
        """``(announce_s, version)`` of every version of every call, in the order the grid operator sends them."""
        rows = sorted(((t_s, c.call_id, v.modification, v) for c in self.calls for t_s, v in c.versions),
                      key=lambda r: r[:3])
        return [(t_s, v) for t_s, _, _, v in rows]

    # HTTP endpoint
    @property
    def _guard(self):
        from aiohttp import web

        @web.middleware
        async def guard(request, handler):
            """Log every message the VTN refuses; refuse unsigned messages under TLS with a clear reason."""
            service = request.path.rsplit("/", 1)[-1]
            if request.secure:
                reason = _signature_problem(request, await request.read())
                if reason is not None:
                    self.timeline.add("rejected", service=service, status=403, reason=reason)
                    log.warning("VTN: %s message rejected: %s", service, reason)
                    return web.Response(text=reason, status=403)
            response = await handler(request)
            if response.status >= 400:
                reason = (response.text or "")[:300]
                self.timeline.add("rejected", service=service, status=response.status, reason=reason)
                log.warning("VTN: %s message rejected (HTTP %s): %s", service, response.status, reason)
            return response

        return guard

    async def start(self) -> None:
        """Bind and serve (a bound ``port`` 0 is replaced by the port chosen)."""
        from aiohttp import web

        self._runner = web.AppRunner(self.server.app)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host=self.host, port=self.port, ssl_context=self.server.ssl_context)
        await self._site.start()
        sockets = self._site._server.sockets if self._site._server is not None else []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self.timeline.add("listening", url=self.url)

    async def stop(self) -> None:
        """Stop serving (the state is kept: :meth:`start` serves it again)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.timeline.add("stopped")

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{self.server.http_path_prefix}"

    async def run(self, wait_s: float = 300.0, grace_s: float = 3.0) -> None:
        """Serve until the scenario's end on the simulated clock (plus ``grace_s`` wall s for last reports).

        Waits up to ``wait_s`` wall seconds for a first VEN (``TimeoutError`` otherwise).
        """
        if self._runner is None:
            await self.start()
        try:
            await asyncio.wait_for(self.registered.wait(), wait_s)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no VEN registered at {self.url} within {wait_s:g} s") from None
        for t_s, version in self.schedule():
            await self.clock.sleep_until(t_s)
            self.announce(version)
        await self.clock.sleep_until(self.scenario.time.duration_s)
        await asyncio.sleep(grace_s)

    def summary(self) -> dict:
        """Per event version and VEN: sent, answered, the answer and the wall latency; reports received."""
        by_ven: dict[str, int] = {}
        for r in self.reports:
            by_ven[r["ven_id"]] = by_ven.get(r["ven_id"], 0) + 1
        return {"role": "vtn", "speed": self.clock.speed, "url": self.url,
                "vens": sorted(self.vens), "opt_latency": self.timeline.opt_latencies("sent", "opt"),
                "n_ticks_reported": by_ven, "n_duplicate_reports": self.n_duplicate_reports}

    def write(self, out: Path) -> None:
        """Write ``protocol.json`` (summary and timeline) and ``reports.csv`` into ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        self.timeline.write(out / "protocol.json", self.summary())
        lines = ["ven_id,t_s,time,p_kw"] + [
            f"{r['ven_id']},{r['t_s']:g},{self.clock.to_datetime(r['t_s']).isoformat()},{r['p_kw']!r}"
            for r in sorted(self.reports, key=lambda r: (r["ven_id"], r["t_s"]))]
        (out / "reports.csv").write_text("\n".join(lines) + "\n")


def _signature_problem(request, body: bytes) -> str | None:
    """Why a message that came over TLS fails OpenADR's signature rules, or None when it passes.

    It must carry an XML signature that verifies, made with the certificate
    the client presented in the TLS handshake (openleadr then checks the
    signer against the certificate the VEN registered with, and replays).
    A payload that is not XML is left to openleadr (HTTP 400).
    """
    from lxml.etree import XMLSyntaxError
    from openleadr.messaging import VERIFIER, validate_xml_schema
    from openleadr.utils import (
        certificate_fingerprint, ensure_bytes, extract_pem_cert, get_cert_fingerprint_from_request,
    )

    try:
        tree = validate_xml_schema(body)
    except XMLSyntaxError:
        return None
    if tree.find(".//{http://www.w3.org/2000/09/xmldsig#}X509Certificate") is None:
        return "unsigned message: this VTN requires OpenADR XML signatures"
    try:
        # The signature alone: openleadr checks it again with its replay protection (nonces are single-use,
        # so that check must run once) for every message that names a VEN.
        cert = extract_pem_cert(tree)
        VERIFIER.verify(tree, x509_cert=ensure_bytes(cert), expect_references=2)
        signer = certificate_fingerprint(cert)
    except Exception as exc:
        return f"the XML signature does not verify ({type(exc).__name__}: {exc})"
    peer = get_cert_fingerprint_from_request(request)
    if signer != peer:
        return f"signed with certificate {signer}, not the TLS client certificate {peer}"
    return None


# --- the VEN --------------------------------------------------------------------------------------------


class _LastError(logging.Handler):
    """Keeps the last error openleadr logged (why a request failed), for a clear message."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record):
        self.last = record.getMessage()


@dataclass
class _Known:
    """One event as this VEN knows it: its versions taken into the engine, and what it answered."""

    first: DRCall | None = None
    updates: list = field(default_factory=list)  # (announce_s, version)
    rejected: str | None = None
    answered: dict = field(default_factory=dict)  # modification -> opt type sent


class VEN:
    """The scenario's plant as one OpenADR 2.0b VEN (openleadr's client transport, messages and signing).

    ``session``: a :class:`vpp.run.RunSession` built with ``local_calls=False``
    (:func:`vpp.run.prepare_run`). ``tls``: the VEN's certificate, key and the
    CA the VTN's certificate must chain to; ``vtn_fingerprint`` makes it check
    the VTN's message signatures.

    ``operator``: this VEN is that operator's (one VEN per operator, see the
    module docstring): it registers under the operator's name, takes only
    events for its operator (injected as ``<event id>@<operator>``,
    restricted to it) and reports its operator's metered power. Several such
    VENs share the session and a ``clock``; :func:`run_vens` runs them.
    """

    def __init__(self, session, vtn_url: str, *, speed: float = 60.0, ven_name: str = "vpp", poll_s: float = 1.0,
                 report_s: float = 1.0, tls: TLSFiles | None = None, vtn_fingerprint: str | None = None,
                 connect_timeout_s: float = 30.0, operator: str | None = None, clock: SimClock | None = None):
        require_openleadr()
        from openleadr import OpenADRClient

        self.session = session
        sc = session.scenario
        self.clock = SimClock(sc.time.calendar, speed) if clock is None else clock
        self.timeline = Timeline(self.clock)
        self.operator = operator
        if operator is not None:
            ven_name = operator
        self.vtn_url = vtn_url
        self.poll_s, self.report_s, self.connect_timeout_s = float(poll_s), float(report_s), float(connect_timeout_s)
        kw = {}
        if tls is not None:
            kw = dict(cert=str(tls.cert), key=str(tls.key), ca_file=str(tls.ca), vtn_fingerprint=vtn_fingerprint,
                      check_hostname=False)
        self.client = OpenADRClient(ven_name=ven_name, vtn_url=vtn_url, show_fingerprint=False, **kw)
        engine = session.engine
        grid = session.plant.grid
        buses = {str(int(b)): i for i, b in enumerate(grid.bus_index)}
        if operator is None:
            self.plant = PlantIndex(buses, tuple(engine.portfolios), tuple(f.name for f in engine.fleets))
            self._agent = None
        else:
            if operator not in engine.portfolios:
                raise ValueError(f"operator {operator!r} is not in the plant; valid: {', '.join(engine.portfolios)}")
            self.plant = PlantIndex(buses, (operator,), tuple(f.name for f in engine.portfolios[operator].fleets))
            self._agent = next(a for a in engine.operators if a.name == operator)
        self.known: dict[str, _Known] = {}
        self.pending: list[tuple[float, dict, DRCall]] = []  # (received_s, event, version) to inject
        self.awaiting: list[tuple] = []  # (call id, event id, modification, request id, required): answer when decided
        self.unsent: list[tuple[float, float]] = []  # (t_s, p_kw) of ticks not yet acknowledged by the VTN
        self.n_reported = 0
        self._report_lock = asyncio.Lock()
        self.report_request_id = None  # the VTN's request for our telemetry report, once it has asked
        self._online = True
        self._stop = False

    # --- registration and polling
    async def register(self) -> None:
        """Register with the VTN, retrying for ``connect_timeout_s``; :class:`VTNUnreachable` then."""
        c = self.client

        async def ask():
            await c.create_party_registration(ven_id=c.ven_id)
            return bool(c.registration_id)

        await _retry(ask, c, self.vtn_url, self.connect_timeout_s, min(1.0, self.poll_s), "register")
        if not self.clock.started:
            self.clock.start()
        self.timeline.add("registered", ven_id=c.ven_id, url=self.vtn_url)
        await self._register_report()

    async def _register_report(self) -> None:
        c = self.client
        dt = timedelta(seconds=self.session.scenario.time.dt_s)
        spec = f"vpp_telemetry_{c.ven_id}"
        if not any(r.report_specifier_id == spec for r in c.reports):
            c.add_report(callback=lambda: None, resource_id=c.ven_id, measurement="real_power", r_id=c.ven_id,
                         report_specifier_id=spec, sampling_rate=dt, unit="W", scale="k",
                         report_duration=timedelta(seconds=self.session.scenario.time.duration_s))
        report = next(r for r in c.reports if r.report_specifier_id == spec)
        report.created_date_time = datetime.now(timezone.utc)
        msg = c._create_message("oadrRegisterReport", request_id=_new_id(), ven_id=c.ven_id, reports=[report],
                                report_request_id=0)
        got = await self._request("EiReport", msg)
        self.timeline.add("report_registered", ok=got is not None)
        # The VTN's request for the report (in its oadrRegisteredReport): confirm it with oadrCreatedReport
        # and send the report under its id from now on.
        kind, payload = got if got is not None else (None, {})
        for rr in (payload or {}).get("report_requests") or []:
            if (rr.get("report_specifier") or {}).get("report_specifier_id") != spec:
                continue
            self.report_request_id = rr.get("report_request_id")
            request_id = payload.get("request_id") or (payload.get("response") or {}).get("request_id")
            created = c._create_message(
                "oadrCreatedReport", ven_id=c.ven_id,
                response={"response_code": 200, "response_description": "OK", "request_id": request_id},
                pending_reports=[{"report_request_id": self.report_request_id}])
            await self._request("EiReport", created)
            self.timeline.add("report_requested", report_request_id=self.report_request_id)

    async def _request(self, service: str, message):
        """POST a message; ``(type, payload)`` or None when the VTN did not answer (logged)."""
        try:
            got = await self.client._perform_request(service, message)
        except Exception as exc:
            log.warning("VEN: %s request failed: %s: %s", service, type(exc).__name__, exc)
            got = None
        if not got or got[0] is None:
            if self._online:
                self._online = False
                self.timeline.add("connection_lost", service=service)
                log.warning("VEN: the VTN at %s does not answer; retrying every %g s", self.vtn_url, self.poll_s)
            return None
        if not self._online:
            self._online = True
            self.timeline.add("connection_restored", service=service)
            log.warning("VEN: the VTN at %s answers again", self.vtn_url)
        return got

    async def poll_once(self) -> None:
        c = self.client
        got = await self._request("OadrPoll", c._create_message("oadrPoll", ven_id=c.ven_id))
        if got is None:
            return
        kind, payload = got
        try:
            if kind == "oadrDistributeEvent":
                self._on_distribute(payload)
            elif kind == "oadrRequestReregistration":
                self.timeline.add("reregistration_requested")
                await c.send_response(service="EiRegisterParty")
                c.registration_id = None
                await c.create_party_registration(ven_id=c.ven_id)
                await self._register_report()
            elif kind not in ("oadrResponse", None):
                log.info("VEN: ignored a %s from the VTN", kind)
        except Exception as exc:  # a payload we cannot use must not stop the plant
            self.timeline.add("rejected", reason=f"{kind}: {type(exc).__name__}: {exc}")
            log.warning("VEN: %s rejected: %s: %s", kind, type(exc).__name__, exc)

    def _on_distribute(self, payload: dict) -> None:
        now_s = self.clock.now_s()
        request_id = payload.get("request_id") or (payload.get("response") or {}).get("request_id")
        for event in payload.get("events") or []:
            desc = event.get("event_descriptor") or {}
            eid = str(desc.get("event_id"))
            mod = int(desc.get("modification_number") or 0)
            k = self.known.setdefault(eid, _Known())
            if mod in k.answered or any(a[1] == eid and a[2] == mod for a in self.awaiting) \
                    or any(m["event_id"] == eid and v.modification == mod for _, m, v in self.pending):
                continue  # a version already taken (openleadr re-sends every event on each update)
            required = event.get("response_required", "always") == "always"
            if k.rejected is not None:
                self._answer_later(eid, mod, request_id, "optOut", required)
                continue
            previous = k.updates[-1][1] if k.updates else k.first
            try:
                version = event_to_call(event, self.clock, self.plant, now_s, previous)
            except EventRejected as exc:
                if k.first is None:
                    k.rejected = str(exc)
                self.timeline.add("rejected", event_id=eid, modification=mod, reason=str(exc))
                log.warning("VEN: event rejected: %s", exc)
                self._answer_later(eid, mod, request_id, "optOut", required)
                continue
            if self.operator is not None:  # the operator's own call (a group or fleet of another is rejected above)
                version = replace(version, call_id=operator_call_id(eid, self.operator), operators=(self.operator,))
            self.timeline.add("received", event_id=eid, modification=mod, cancelled=version.cancelled,
                              start_s=version.start_s, late=now_s > version.start_s, p_kw=version.p_kw)
            self.pending.append((now_s, {"request_id": request_id, "required": required, "event_id": eid}, version))

    def _answer_later(self, eid: str, mod: int, request_id, opt: str, required: bool) -> None:
        self.known.setdefault(eid, _Known()).answered[mod] = opt
        if required:
            asyncio.get_running_loop().create_task(self._send_opt(eid, mod, request_id, opt))

    async def _send_opt(self, eid: str, mod: int, request_id, opt: str) -> None:
        c = self.client
        responses = [{"response_code": 200, "response_description": "OK", "opt_type": opt, "request_id": request_id,
                      "modification_number": mod, "event_id": eid}]
        msg = c._create_message("oadrCreatedEvent", response={"response_code": 200, "response_description": "OK",
                                                              "request_id": request_id},
                                event_responses=responses, ven_id=c.ven_id)
        got = await self._request("EiEvent", msg)
        self.timeline.add("opt_sent", event_id=eid, modification=mod, opt=opt, acknowledged=got is not None)

    # --- the engine side
    def _inject_due(self) -> None:
        """Inject the versions received up to the engine's time; note decisions the platform has taken."""
        engine = self.session.engine
        now_s = engine.now_s
        due = [p for p in self.pending if p[0] <= now_s + _TOL_S]
        self.pending = [p for p in self.pending if p[0] > now_s + _TOL_S]
        for received_s, meta, version in due:
            eid = meta["event_id"]
            k = self.known.setdefault(eid, _Known())
            try:
                if k.first is None:
                    call = version
                    k.first = version
                else:
                    last = k.updates[-1][1] if k.updates else k.first
                    if version.modification <= last.modification:
                        continue
                    call = replace(k.first, updates=tuple(k.updates) + ((now_s, version),))
                    k.updates.append((now_s, version))
            except ValueError as exc:  # a modification that may not change start, direction or targets
                self.timeline.add("rejected", event_id=eid, modification=version.modification, reason=str(exc))
                self._answer_later(eid, version.modification, meta["request_id"], "optOut", meta["required"])
                continue
            engine.inject(call)
            self.timeline.add("injected", event_id=eid, call_id=version.call_id, modification=version.modification,
                              engine_t_s=now_s)
            self.awaiting.append((version.call_id, eid, version.modification, meta["request_id"], meta["required"]))
        still = []
        for cid, eid, mod, request_id, required in self.awaiting:
            share = engine.platform.accepted.get(cid)
            if share is None:
                still.append((cid, eid, mod, request_id, required))
                continue
            opt = "optIn" if share > 0.0 else "optOut"
            self.timeline.add("decided", event_id=eid, call_id=cid, modification=mod, opt=opt, share=share)
            self._answer_later(eid, mod, request_id, opt, required)
        self.awaiting = still

    def _record(self, outcome) -> None:
        """Keep the tick's metered power for the next report: the plant's, or this VEN's operator's."""
        p_kw = float(outcome.p_fleet_kw.sum()) if self._agent is None else float(self._agent.p_kw.sum())
        self.unsent.append((outcome.t_s, p_kw))

    async def _send_reports(self) -> bool:
        """Send every tick not yet acknowledged; True when the VTN took them."""
        # One batch at a time: the report loop and the final flush must not send (and then drop) the same ticks.
        async with self._report_lock:
            return await self._send_batch()

    async def _send_batch(self) -> bool:
        if not self.unsent:
            return True
        from openleadr import objects

        c = self.client
        batch = list(self.unsent)
        report = objects.Report(
            report_request_id=self.report_request_id or "vpp_telemetry", report_specifier_id=f"vpp_telemetry_{c.ven_id}",
            report_name=REPORT_NAME, created_date_time=datetime.now(timezone.utc),
            dtstart=self.clock.to_datetime(batch[0][0]),
            intervals=[objects.ReportInterval(dtstart=self.clock.to_datetime(t_s),
                                              report_payload=objects.ReportPayload(r_id=c.ven_id, value=p_kw))
                       for t_s, p_kw in batch],
        )
        msg = c._create_message("oadrUpdateReport", ven_id=c.ven_id, request_id=_new_id(), reports=[report])
        got = await self._request("EiReport", msg)
        if got is None:
            return False
        del self.unsent[:len(batch)]
        self.n_reported += len(batch)
        self.timeline.add("report_sent", n_ticks=len(batch), first_t_s=batch[0][0], last_t_s=batch[-1][0])
        return True

    async def _poll_loop(self) -> None:
        while not self._stop:
            await self.poll_once()
            await asyncio.sleep(self.poll_s)

    async def _report_loop(self) -> None:
        while not self._stop:
            await asyncio.sleep(self.report_s)
            await self._send_reports()

    async def run(self, stop=None):
        """Register, run the plant tick by tick at the simulated clock, and return its Results.

        ``stop()`` (a reason or None) is asked between ticks, as in
        :func:`vpp.run.run_scenario`; the results are then marked incomplete.
        """
        return await run_vens([self], stop)

    async def _close(self) -> None:
        if self.client.client_session is not None:
            await self.client.client_session.close()

    def summary(self) -> dict:
        return {"role": "ven", "speed": self.clock.speed, "vtn_url": self.vtn_url, "ven_id": self.client.ven_id,
                **({} if self.operator is None else {"operator": self.operator}),
                "opt_latency": self.timeline.opt_latencies("received", "opt_sent"),
                "n_ticks_reported": self.n_reported, "n_ticks_unsent": len(self.unsent),
                "rejected": [r for r in self.timeline.rows if r["what"] == "rejected"]}


async def run_vens(vens: list[VEN], stop=None):
    """Run the one plant of ``vens`` (VENs sharing a session and clock) and return its Results.

    Every VEN registers (a VTN that cannot be reached: :class:`VTNUnreachable`);
    then the engine runs tick by tick at the simulated clock: between ticks each
    VEN injects the events it received and answers the platform's decisions,
    after each tick each keeps its metered power for its reports. ``stop()``
    (a reason or None) is asked between ticks, as in :func:`vpp.run.run_scenario`;
    the results are then marked incomplete.
    """
    session = vens[0].session
    try:
        await asyncio.gather(*(v.register() for v in vens))
    except BaseException:
        for v in vens:
            await v._close()
        raise
    engine = session.engine

    def on_tick(outcome) -> None:
        session.on_tick(outcome)
        for v in vens:
            v._record(outcome)

    tasks = [asyncio.create_task(loop()) for v in vens for loop in (v._poll_loop, v._report_loop)]
    error = stopped_by = None
    try:
        engine.start(on_tick)
        dt_s = session.scenario.time.dt_s
        clock = vens[0].clock
        while True:
            for v in vens:
                v._inject_due()
            reason = stop() if stop is not None else None
            if reason:
                stopped_by, error = str(reason), f"interrupted by {reason} at t_s={engine.now_s:g}"
                break
            await clock.sleep_until((engine.ticks_done + 1) * dt_s)
            more = engine.advance()
            await asyncio.sleep(0)  # let polls and reports through when the engine runs behind the clock
            if not more:
                for v in vens:
                    v._inject_due()
                break
    except Exception as exc:  # keep what was computed
        stopped_by, error = "error", f"{type(exc).__name__} at t_s={engine.now_s:g}: {exc}"
    finally:
        for v in vens:
            v._stop = True

        async def flush(v):
            for _ in range(5):  # the last ticks' reports and answers
                if await v._send_reports():
                    break
                await asyncio.sleep(v.poll_s)

        await asyncio.gather(*(flush(v) for v in vens))
        await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for v in vens:
            await v._close()
    return session.finish(error, stopped_by)


async def _retry(ask, client, url: str, timeout_s: float, every_s: float, what: str) -> None:
    """Call ``ask()`` until it returns True, for ``timeout_s`` wall seconds; :class:`VTNUnreachable` then."""
    errors = _LastError()
    lg = logging.getLogger("openleadr")
    lg.addHandler(errors)
    propagate, lg.propagate = lg.propagate, False  # one error at the end says why, not one per attempt
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                if await ask():
                    return
            except Exception as exc:  # a reply openleadr cannot unpack
                errors.last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                why = errors.last or "the VTN did not accept the request"
                if client.cert_path and "reset" in why.lower():
                    why += ("; the VTN closed the TLS handshake: is this VEN's certificate valid, unexpired and "
                            "signed by a CA the VTN trusts?")
                raise VTNUnreachable(f"--vtn {url}: could not {what} within {timeout_s:g} s ({why})")
            await asyncio.sleep(every_s)
    finally:
        lg.removeHandler(errors)
        lg.propagate = propagate


async def probe_vtn(url: str, *, tls: TLSFiles | None = None, vtn_fingerprint: str | None = None,
                    connect_timeout_s: float = 30.0) -> None:
    """Check that a VTN answers at ``url`` (oadrQueryRegistration, which registers nothing).

    Retries for ``connect_timeout_s`` wall seconds, then raises
    :class:`VTNUnreachable`. The CLI calls it before building the plant, so
    that a wrong URL is an error at start with nothing done.
    """
    require_openleadr()
    from openleadr import OpenADRClient

    kw = {}
    if tls is not None:
        kw = dict(cert=str(tls.cert), key=str(tls.key), ca_file=str(tls.ca), vtn_fingerprint=vtn_fingerprint,
                  check_hostname=False)
    client = OpenADRClient(ven_name="vpp-probe", vtn_url=url, show_fingerprint=False, **kw)

    async def ask():
        kind, _ = await client.query_registration()
        return kind is not None

    try:
        await _retry(ask, client, url, connect_timeout_s, 0.2, "reach the VTN")
    finally:
        if client.client_session is not None:
            await client.client_session.close()


def _new_id() -> str:
    from openleadr.utils import generate_id

    return generate_id()
