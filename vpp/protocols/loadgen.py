"""``vpp loadgen``: N simulated OpenADR 2.0b VENs (simple HTTP, pull) against a VTN under test.

Each VEN is a small aggregated plant: a base load drawn once from the run's
seeded generator (``p_base_kw``) and the share of it that it sheds while it is
opted into an active event (``shed_frac``). Its life on the wire:

1. ``oadrQueryRegistration`` then ``oadrCreatePartyRegistration`` (service
   EiRegisterParty): registered once the VTN returns a venID and a
   registrationID;
2. ``oadrRegisterReport`` of one METADATA_TELEMETRY_USAGE report with one
   real-power point in kW (rID ``p_kw``); if the VTN requests it, an
   ``oadrCreatedReport``;
3. ``oadrPoll`` once right away, as openleadr's own client does after
   registering, then every ``poll_s`` from a seeded phase within the interval
   (so that N VENs do not poll in step); an ``oadrDistributeEvent`` is
   answered at once with ``oadrCreatedEvent`` (optIn) for every event that
   asks for a response;
4. once opted in and if the VTN requested the report, ``oadrUpdateReport``
   at once and then every ``report_s`` with the plant's power [kW]: reduced by
   ``shed_frac`` while an opted-in event is active, the base load otherwise.

Why not one ``openleadr.OpenADRClient`` per VEN: each owns an aiohttp session
(its own connection pool) and an APScheduler, takes its poll and report
periods from the VTN and reports on a cron tick shared by every client, and
exposes no timing of its exchanges. Here the VENs are coroutines on openleadr's
message layer (:func:`openleadr.messaging.create_message`,
:func:`~openleadr.messaging.parse_message`, the OpenADR 2.0b XML Schema) that
share one :class:`aiohttp.ClientSession` whose concurrent requests are capped
at ``concurrency``. The README gives the measured cost of both.

What is measured (all times in seconds; wall-clock ``time.time()`` where a
time is compared with the VTN's timestamps, which assumes the two clocks agree,
as on one machine; ``perf_counter`` for durations):

- registration: the round trips of the two registration messages per VEN
  (``latency``), the time from the start of the run to each VEN's registration
  (``wall``, which includes waiting for one of the ``concurrency`` request
  slots), the total time until the last VEN registered, and failures;
- event to opt-in, per VEN and event: from the event's ``createdDateTime`` to
  the VTN's acknowledgement of the ``oadrCreatedEvent``. A pull VEN learns of
  an event only at its next poll, so this includes up to one poll interval;
  also from sending the poll that brought the event (the VTN's first offer of
  it lies inside that round trip) and from receipt of the event to the
  acknowledgement. The ``oadrCreatedEvent`` may wait for a request slot like
  any request (``requests.slot_wait``): a wait well above zero means that
  ``concurrency``, not only the VTN, shaped these figures;
- reports acknowledged (``oadrUpdatedReport`` with response code 200) per
  second over the reporting window, and the sum of the acknowledged values [kW];
- errors by kind: ``http_<status>``, ``schema_rejected_by_vtn`` (HTTP 400 "XML
  failed validation"), ``timeout``, ``connection``, ``schema_invalid_response``
  (the VTN's answer fails the OpenADR 2.0b XML Schema or is not XML),
  ``unparseable_response``, ``oadr_<code>`` (an OpenADR response code other
  than 200), ``registration_refused``, ``unexpected_message``,
  ``cancelled_at_end`` (a request still open when the run stopped).

Errors never stop the generator: a failed VEN is counted and the others go
on. Only a VTN that cannot be reached at all (no HTTP answer to one
``oadrQueryRegistration``) is refused, before any VEN starts
(:class:`VTNUnreachable`).
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import numpy as np

__all__ = ["LoadgenConfig", "LoadgenError", "VTNUnreachable", "Plants", "draw_plants", "p_report_kw",
           "validate_config", "run", "format_table"]

R_ID = "p_kw"  # the report's one data point: the plant's real power [kW]
REPORT_SPECIFIER_ID = "vpp-loadgen-telemetry"
P_BASE_MEDIAN_KW = 50.0  # a small aggregated plant (a few buildings or a charging site)
P_BASE_SIGMA = 0.5  # lognormal spread of the base load
SHED_FRAC_RANGE = (0.1, 0.4)  # share of the base load shed while opted into an active event
PROGRESS_EVERY_S = 5.0
_OADR_NS = "http://openadr.org/oadr-2.0b/2012/07"
_EI_NS = "http://docs.oasis-open.org/ns/energyinterop/201110"
_BARE_ANSWERS = ("oadrResponse", "oadrUpdatedReport")  # answers whose response code is all a VEN needs here
NOT_SENT = None, None, None, None  # a request still queued for a slot when the run ended: dropped unsent, not an error


class LoadgenError(ValueError):
    """Bad input: one line per problem, each naming the field and its allowed values."""


class VTNUnreachable(RuntimeError):
    """The VTN gave no HTTP answer at all to the start-up probe."""


@dataclass(frozen=True)
class LoadgenConfig:
    """What to run. ``vtn_url`` is the VTN's base URL (``.../OpenADR2/Simple/2.0b``); times in seconds."""

    vtn_url: str
    n_vens: int
    duration_s: float = 60.0
    concurrency: int = 100
    poll_s: float = 10.0
    report_s: float = 10.0
    seed: int = 1
    timeout_s: float = 10.0


def validate_config(cfg: LoadgenConfig) -> list[str]:
    """Problems with ``cfg``, one line each (empty if it is good)."""
    problems = []
    u = urlsplit(cfg.vtn_url)
    if u.scheme not in ("http", "https") or not u.hostname:
        problems.append(f"--vtn: expected an http:// or https:// URL with a host, got {cfg.vtn_url!r}")
    else:
        try:
            u.port  # noqa: B018 - raises on a port that is not a number in 0..65535
        except ValueError as exc:
            problems.append(f"--vtn: {exc} in {cfg.vtn_url!r}")
    for name, value, lo in (("--vens", cfg.n_vens, 1), ("--concurrency", cfg.concurrency, 1)):
        if not isinstance(value, int) or value < lo:
            problems.append(f"{name}: expected an integer >= {lo}, got {value!r}")
    for name, value in (("--duration-s", cfg.duration_s), ("--poll-s", cfg.poll_s), ("--report-s", cfg.report_s),
                        ("--timeout-s", cfg.timeout_s)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            problems.append(f"{name}: expected a finite number of seconds > 0, got {value!r}")
    return problems


@dataclass(frozen=True)
class Plants:
    """The VENs' plants, one entry per VEN; drawn once per run from the seed."""

    p_base_kw: np.ndarray  # base load [kW]
    shed_frac: np.ndarray  # share of the base load shed during an opted-in active event [-]
    poll_phase: np.ndarray  # periodic polls on a grid this share of poll_s after the first poll [-]


def draw_plants(n: int, seed: int) -> Plants:
    rng = np.random.default_rng(seed)
    # Rounded to watts so that a value survives the XML round trip exactly and sums can be compared.
    p_base_kw = np.round(rng.lognormal(math.log(P_BASE_MEDIAN_KW), P_BASE_SIGMA, n), 3)
    shed_frac = rng.uniform(*SHED_FRAC_RANGE, n)
    return Plants(p_base_kw, shed_frac, rng.random(n))


def p_report_kw(plants: Plants, i: int, event_active: bool) -> float:
    """VEN ``i``'s power [kW] as reported: reduced while an event it opted into is active."""
    p = plants.p_base_kw[i] * (1.0 - plants.shed_frac[i]) if event_active else plants.p_base_kw[i]
    return round(float(p), 3)


def _quantiles(xs: list[float], prefix: str) -> dict:
    if not xs:
        return {f"{prefix}_median_s": None, f"{prefix}_p99_s": None, f"{prefix}_max_s": None}
    a = np.asarray(xs)
    return {f"{prefix}_median_s": float(np.median(a)), f"{prefix}_p99_s": float(np.percentile(a, 99)),
            f"{prefix}_max_s": float(a.max())}


@dataclass
class _Tally:
    """Everything the run counts; times from ``perf_counter`` unless named ``*_wall``."""

    t0: float
    reg_latency_s: list = field(default_factory=list)
    reg_wall_s: list = field(default_factory=list)
    reg_failures: int = 0
    reregistrations: int = 0
    events_received: int = 0
    created_to_ack_s: list = field(default_factory=list)
    poll_sent_to_ack_s: list = field(default_factory=list)
    receipt_to_ack_s: list = field(default_factory=list)
    opt_in_failed: int = 0
    report_requested: int = 0
    reports_sent: int = 0
    reports_acked: int = 0
    report_sum_kw: float = 0.0
    report_first_send: float | None = None
    report_last_ack: float | None = None
    sent: Counter = field(default_factory=Counter)
    rtt_s: dict = field(default_factory=dict)
    slot_wait_s: list = field(default_factory=list)
    not_sent_at_end: int = 0
    errors: Counter = field(default_factory=Counter)
    errors_by_message: dict = field(default_factory=dict)

    def error(self, kind: str, msg_type: str) -> None:
        self.errors[kind] += 1
        self.errors_by_message.setdefault(msg_type, Counter())[kind] += 1


class _Wire:
    """One shared HTTP session; every request takes one of ``concurrency`` slots."""

    def __init__(self, cfg: LoadgenConfig, tally: _Tally, over=lambda: False):
        import aiohttp

        self.aiohttp = aiohttp
        self.over = over
        self.base = cfg.vtn_url.rstrip("/")
        self.tally = tally
        self.slots = asyncio.Semaphore(cfg.concurrency)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=cfg.concurrency),
            headers={"content-type": "application/xml"},
            timeout=aiohttp.ClientTimeout(total=cfg.timeout_s))

    async def close(self) -> None:
        await self.session.close()

    async def post(self, service: str, msg_type: str, body: str | bytes):
        """(response type, payload, round trip [s], sent at [perf_counter s]).

        None on any failure (counted by kind); NOT_SENT if the run ended while it waited for a slot.
        """
        from lxml.etree import XMLSyntaxError
        from openleadr.messaging import parse_message, validate_xml_schema

        t = self.tally
        aiohttp = self.aiohttp
        t_queued = time.perf_counter()
        async with self.slots:
            if self.over():  # queued past the end of the run: never sent, so nothing to count at the VTN
                t.not_sent_at_end += 1
                return NOT_SENT
            t_send = time.perf_counter()
            t.slot_wait_s.append(t_send - t_queued)
            t.sent[msg_type] += 1
            try:
                async with self.session.post(f"{self.base}/{service}", data=body) as resp:
                    content = await resp.read()
                    status = resp.status
            except asyncio.TimeoutError:
                t.error("timeout", msg_type)
                return None
            except aiohttp.ClientConnectionError:
                t.error("connection", msg_type)
                return None
            except aiohttp.ClientError as exc:
                t.error(f"client_{type(exc).__name__}", msg_type)
                return None
            except asyncio.CancelledError:
                t.error("cancelled_at_end", msg_type)
                raise
        rtt = time.perf_counter() - t_send
        if status != 200:
            rejected = status == 400 and b"XML failed validation" in content  # openleadr's words for an XSD failure
            kind = "schema_rejected_by_vtn" if rejected else f"http_{status}"
            t.error(kind, msg_type)
            return None
        if not content:  # openleadr answers an oadrResponse with an empty 200
            t.rtt_s.setdefault(msg_type, []).append(rtt)
            return "", {}, rtt, t_send
        try:
            tree = validate_xml_schema(content)
        except (XMLSyntaxError, ValueError):
            t.error("schema_invalid_response", msg_type)
            return None
        try:
            body = tree.find(f"{{{_OADR_NS}}}oadrSignedObject")[0]
            r_type = body.tag.rsplit("}", 1)[-1]
            if r_type in _BARE_ANSWERS:
                # Most answers (to every poll, every report) carry nothing but a response code: read it from
                # the tree already validated. parse_message (xmltodict, then openleadr's key normalisation)
                # was the largest item in a profile of the client, ~60 us a message against ~8 us to validate.
                payload = {"response": {"response_code": body.findtext(f".//{{{_EI_NS}}}responseCode")}}
            else:
                r_type, payload = parse_message(content)
        except Exception:  # a schema-valid message openleadr cannot distil: the VTN's fault, counted
            t.error("unparseable_response", msg_type)
            return None
        code = (payload.get("response") or {}).get("response_code")
        if code is not None and str(code) != "200":
            t.error(f"oadr_{code}", msg_type)
            return None
        t.rtt_s.setdefault(msg_type, []).append(rtt)
        return r_type, payload, rtt, t_send


def _metadata_report():
    from openleadr import objects

    point = objects.Measurement(name="powerReal", description="RealPower", unit="W", scale="k",
                                power_attributes=objects.PowerAttributes(hertz=50, voltage=230, ac=True))
    plant = objects.Target(resource_id="plant")
    desc = objects.ReportDescription(
        r_id=R_ID, market_context=None, reading_type="Direct Read", report_subject=plant, report_data_source=plant,
        report_type="reading", measurement=point,
        sampling_rate=objects.SamplingRate(min_period=timedelta(seconds=1), max_period=timedelta(hours=1)))
    return objects.Report(report_specifier_id=REPORT_SPECIFIER_ID, report_name="TELEMETRY_USAGE",
                          report_descriptions=[desc], duration=timedelta(hours=1))


class _Ven:
    """One simulated VEN: a coroutine, its plant's index and what it learnt from the VTN."""

    def __init__(self, i: int, gen: "_Generator"):
        self.i = i
        self.g = gen
        self.name = f"vpp-loadgen-{i:05d}"
        self.ven_id: str | None = None
        self.report_request_id: str | None = None
        self.answered: set = set()  # (event_id, modification_number) already answered
        self.active: dict = {}  # event_id -> (start, end) [wall s] of events opted into
        self.next_report = math.inf

    async def register(self, again: bool = False) -> bool:
        """Query and create the registration; ``again`` when the VTN asked for it (not counted twice)."""
        from openleadr.messaging import create_message

        g, t = self.g, self.g.tally
        t_start = time.perf_counter()
        q = await g.wire.post("EiRegisterParty", "oadrQueryRegistration",
                              create_message("oadrQueryRegistration", request_id=f"q-{self.name}"))
        if q is NOT_SENT or g.over():
            return False
        if q is None:
            t.reg_failures += 1
            return False
        r = await g.wire.post("EiRegisterParty", "oadrCreatePartyRegistration", create_message(
            "oadrCreatePartyRegistration", request_id=f"r-{self.name}", ven_name=self.name, ven_id=self.ven_id,
            http_pull_model=True, xml_signature=False, report_only=False, profile_name="2.0b",
            transport_name="simpleHttp", transport_address=None, registration_id=None))
        if r is NOT_SENT:
            return False
        if r is None:
            t.reg_failures += 1
            return False
        payload = r[1]
        if not payload.get("ven_id") or not payload.get("registration_id"):
            t.error("registration_refused", "oadrCreatePartyRegistration")
            t.reg_failures += 1
            return False
        self.ven_id = payload["ven_id"]
        if not again:
            t.reg_latency_s.append(q[2] + r[2])
            t.reg_wall_s.append(time.perf_counter() - t.t0)
        return True

    async def register_report(self) -> None:
        from openleadr.messaging import create_message

        g = self.g
        r = await g.wire.post("EiReport", "oadrRegisterReport", create_message(
            "oadrRegisterReport", request_id=f"rr-{self.name}", ven_id=self.ven_id, reports=[_metadata_report()],
            report_request_id=0))
        if r is not None and r[1] and r[1].get("report_requests"):
            await self.create_report(r[1])

    async def create_report(self, payload: dict) -> None:
        """Answer the VTN's report requests; ours is the one naming our specifier and rID."""
        from openleadr.messaging import create_message

        g = self.g
        mine = [rr for rr in payload["report_requests"]
                if rr.get("report_specifier", {}).get("report_specifier_id") == REPORT_SPECIFIER_ID]
        request_id = payload.get("request_id") or (payload.get("response") or {}).get("request_id")
        r = await g.wire.post("EiReport", "oadrCreatedReport", create_message(
            "oadrCreatedReport", ven_id=self.ven_id,
            response={"response_code": 200, "response_description": "OK", "request_id": request_id},
            pending_reports=[{"report_request_id": rr["report_request_id"]} for rr in payload["report_requests"]]))
        if r is not None and r[0] is not None and mine:
            if self.report_request_id is None:
                g.tally.report_requested += 1
            self.report_request_id = mine[0]["report_request_id"]

    async def on_events(self, payload: dict, t_poll_sent: float, t_receipt: float) -> None:
        from openleadr.messaging import create_message

        g, t = self.g, self.g.tally
        responses, new = [], []
        for ev in payload.get("events") or []:
            desc = ev.get("event_descriptor") or {}
            key = (desc.get("event_id"), desc.get("modification_number"))
            if desc.get("event_status") == "cancelled":
                self.active.pop(key[0], None)
            if ev.get("response_required") != "always" or key in self.answered:
                continue
            ap = ev.get("active_period") or {}
            start, dur = ap.get("dtstart"), ap.get("duration")
            if isinstance(start, datetime) and isinstance(dur, timedelta) and desc.get("event_status") != "cancelled":
                self.active[key[0]] = (start.timestamp(), (start + dur).timestamp())
            responses.append({"response_code": 200, "response_description": "OK",
                              "request_id": payload.get("request_id"), "event_id": key[0],
                              "modification_number": key[1], "opt_type": "optIn"})
            created = desc.get("created_date_time")
            new.append((key, created.timestamp() if isinstance(created, datetime) else None))
        if not responses:
            return
        t.events_received += len(new)
        r = await g.wire.post("EiEvent", "oadrCreatedEvent", create_message(
            "oadrCreatedEvent", ven_id=self.ven_id, event_responses=responses,
            response={"response_code": 200, "response_description": "OK", "request_id": payload.get("request_id")}))
        if r is NOT_SENT:
            return
        if r is None:
            t.opt_in_failed += len(new)
            return
        t_ack, t_ack_wall = time.perf_counter(), time.time()
        for key, created_wall in new:
            self.answered.add(key)
            if created_wall is not None:
                t.created_to_ack_s.append(t_ack_wall - created_wall)
            t.poll_sent_to_ack_s.append(t_ack - t_poll_sent)
            t.receipt_to_ack_s.append(t_ack - t_receipt)
        if self.report_request_id is not None and self.next_report == math.inf:
            self.next_report = t_ack

    async def poll(self) -> None:
        g, t = self.g, self.g.tally
        r = await g.wire.post("OadrPoll", "oadrPoll", self.poll_body)
        if r is None or r is NOT_SENT:
            return
        r_type, payload, rtt, t_sent = r
        t_receipt = t_sent + rtt
        if r_type in ("", "oadrResponse"):
            return
        if r_type == "oadrDistributeEvent":
            await self.on_events(payload, t_sent, t_receipt)
        elif r_type == "oadrCreateReport":
            await self.create_report(payload)
        elif r_type == "oadrRequestReregistration":
            t.reregistrations += 1
            if await self.register(again=True):
                await self.register_report()
                self._make_poll_body()
        else:
            t.error("unexpected_message", r_type)

    async def report(self) -> None:
        from openleadr import objects
        from openleadr.messaging import create_message

        g, t = self.g, self.g.tally
        now_wall = time.time()
        active = any(a <= now_wall < b for a, b in self.active.values())
        p_kw = p_report_kw(g.plants, self.i, active)
        now = datetime.fromtimestamp(now_wall, timezone.utc)
        body = create_message("oadrUpdateReport", request_id=f"u-{self.name}-{t.reports_sent}", ven_id=self.ven_id,
                              reports=[objects.Report(
                                  report_request_id=self.report_request_id, report_specifier_id=REPORT_SPECIFIER_ID,
                                  report_name="TELEMETRY_USAGE", dtstart=now, intervals=[objects.ReportInterval(
                                      dtstart=now, report_payload=objects.ReportPayload(r_id=R_ID, value=p_kw))])])
        t_send = time.perf_counter()
        r = await g.wire.post("EiReport", "oadrUpdateReport", body)
        if r is NOT_SENT:
            return
        if t.report_first_send is None:
            t.report_first_send = t_send
        t.reports_sent += 1
        if r is None:
            return
        t.reports_acked += 1
        t.report_sum_kw += p_kw
        t.report_last_ack = time.perf_counter()

    def _make_poll_body(self) -> None:
        from openleadr.messaging import create_message

        self.poll_body = create_message("oadrPoll", ven_id=self.ven_id)  # the same bytes at every poll

    async def live(self) -> None:
        g = self.g
        if not await self.register() or g.over():
            return
        await self.register_report()
        self._make_poll_body()
        cfg = g.cfg
        next_poll = time.perf_counter() + g.plants.poll_phase[self.i] * cfg.poll_s
        await self.poll()
        while next_poll <= time.perf_counter():
            next_poll += cfg.poll_s
        while True:
            wake = min(next_poll, self.next_report)
            if wake >= g.t_end:
                return
            await asyncio.sleep(max(0.0, wake - time.perf_counter()))
            now = time.perf_counter()
            if now >= self.next_report:
                await self.report()
                while self.next_report <= time.perf_counter():  # a late report is not sent twice
                    self.next_report += cfg.report_s
            if g.over():
                return
            if time.perf_counter() >= next_poll:
                await self.poll()
                while next_poll <= time.perf_counter():
                    next_poll += cfg.poll_s


class _Generator:
    def __init__(self, cfg: LoadgenConfig):
        self.cfg = cfg
        self.plants = draw_plants(cfg.n_vens, cfg.seed)
        self.tally = _Tally(t0=time.perf_counter())
        self.t_end = math.inf
        self.wire: _Wire | None = None

    def over(self) -> bool:
        return time.perf_counter() >= self.t_end


async def _probe(wire: _Wire, cfg: LoadgenConfig) -> str:
    """One oadrQueryRegistration; raises :class:`VTNUnreachable` if no HTTP answer comes back."""
    from openleadr.messaging import create_message

    aiohttp = wire.aiohttp
    url = f"{wire.base}/EiRegisterParty"
    try:
        async with wire.session.post(url, data=create_message("oadrQueryRegistration", request_id="probe")) as resp:
            await resp.read()
            return f"HTTP {resp.status}"
    except asyncio.TimeoutError:
        raise VTNUnreachable(f"--vtn: no answer from {url} within --timeout-s {cfg.timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise VTNUnreachable(f"--vtn: cannot reach {url}: {exc}") from None


def _machine() -> dict:
    from importlib import metadata

    from vpp.bench import machine_info

    m = machine_info()
    for name in ("openleadr", "aiohttp", "lxml"):
        try:
            m["versions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            m["versions"][name] = "not installed"
    return m


async def run(cfg: LoadgenConfig, progress=None) -> dict:
    """Run ``cfg.n_vens`` VENs against ``cfg.vtn_url`` for ``cfg.duration_s`` and return the figures.

    ``progress``, if given, receives a one-line status about every 5 s.
    Raises :class:`LoadgenError` on bad input and :class:`VTNUnreachable`
    before any VEN starts if the VTN gives no HTTP answer.
    """
    problems = validate_config(cfg)
    if problems:
        raise LoadgenError("\n".join(problems))
    cpu0 = time.process_time()
    load0 = os.getloadavg()[0]  # other work on the machine, for the record: the figures are wall-clock
    g = _Generator(cfg)
    g.wire = _Wire(cfg, g.tally, g.over)
    try:
        probe = await _probe(g.wire, cfg)
        t = g.tally
        t.t0 = time.perf_counter()
        g.t_end = t.t0 + cfg.duration_s
        tasks = [asyncio.create_task(_Ven(i, g).live()) for i in range(cfg.n_vens)]
        ticker = asyncio.create_task(_ticker(g, progress)) if progress else None
        # Requests open at the end get their own timeout to finish, so that what the VTN accepted is counted.
        _, pending = await asyncio.wait(tasks, timeout=cfg.duration_s + cfg.timeout_s + 1.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        wall_s = time.perf_counter() - t.t0
        if ticker:
            ticker.cancel()
        crashed = [task.exception() for task in tasks if not task.cancelled() and task.exception() is not None]
        for exc in crashed:  # a bug in a VEN coroutine is reported as such, never hidden
            t.error(f"ven_crashed_{type(exc).__name__}", "-")
    finally:
        await g.wire.close()
    return _summary(g, probe, wall_s, time.process_time() - cpu0, load0)


async def _ticker(g: _Generator, progress) -> None:
    t = g.tally
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        progress(f"t={time.perf_counter() - t.t0:6.1f} s: registered {len(t.reg_latency_s):,}, opted in "
                 f"{len(t.receipt_to_ack_s):,}, reports acked {t.reports_acked:,}, errors {sum(t.errors.values()):,}")


def _summary(g: _Generator, probe: str, wall_s: float, cpu_s: float, load0: float) -> dict:
    cfg, t = g.cfg, g.tally
    window_s = (t.report_last_ack - t.report_first_send) if t.reports_acked and t.report_last_ack else None
    n_requests = sum(t.sent.values())
    return {
        "machine": _machine(),
        "settings": asdict(cfg) | {"probe": probe, "ven": "lean (openleadr.messaging on one shared aiohttp session)",
                                   "event_opt_in_includes_poll_interval": True,
                                   "load_avg_1m_start": load0, "load_avg_1m_end": os.getloadavg()[0]},
        "registration": {
            "n_vens": cfg.n_vens, "registered": len(t.reg_latency_s), "failures": t.reg_failures,
            "reregistrations": t.reregistrations,
            "total_s": max(t.reg_wall_s) if t.reg_wall_s else None,
            **_quantiles(t.reg_latency_s, "latency"), **_quantiles(t.reg_wall_s, "wall"),
        },
        "event_opt_in": {
            "events_received": t.events_received, "opt_in_acked": len(t.receipt_to_ack_s),
            "opt_in_failed": t.opt_in_failed,
            **_quantiles(t.created_to_ack_s, "created_to_ack"),
            **_quantiles(t.poll_sent_to_ack_s, "poll_sent_to_ack"),
            **_quantiles(t.receipt_to_ack_s, "receipt_to_ack"),
        },
        "reports": {
            "vens_with_report_requested": t.report_requested, "sent": t.reports_sent, "acked": t.reports_acked,
            "acked_sum_kw": round(t.report_sum_kw, 3), "window_s": window_s,
            "throughput_reports_per_s": t.reports_acked / window_s if window_s else None,
            "offered_reports_per_s": t.report_requested / cfg.report_s,
            **_quantiles(t.rtt_s.get("oadrUpdateReport", []), "rtt"),
        },
        "requests": {
            "total": n_requests, "per_s": n_requests / wall_s if wall_s > 0 else None,
            "not_sent_at_end": t.not_sent_at_end,
            **_quantiles(t.slot_wait_s, "slot_wait"),
            "by_message": {k: {"sent": t.sent[k], "answered": len(t.rtt_s.get(k, [])),
                               **_quantiles(t.rtt_s.get(k, []), "rtt")} for k in sorted(t.sent)},
        },
        "errors": {"total": sum(t.errors.values()), "by_kind": dict(sorted(t.errors.items())),
                   "by_message": {k: dict(sorted(v.items())) for k, v in sorted(t.errors_by_message.items())}},
        "process_cpu_s": cpu_s,
        # ru_maxrss is in KiB on Linux; the whole process's peak, the interpreter and libraries included.
        "process_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "wall_s": wall_s,
    }


def _f(x, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def format_table(res: dict) -> str:
    """The figures as text."""
    m, s = res["machine"], res["settings"]
    reg, ev, rep, req, err = res["registration"], res["event_opt_in"], res["reports"], res["requests"], res["errors"]
    lines = [
        f"machine: {m['cpu_model']}, {m['cores']} cores; python {m['versions']['python']}, openleadr "
        f"{m['versions']['openleadr']}, aiohttp {m['versions']['aiohttp']}",
        f"VTN {s['vtn_url']} ({s['probe']}); {s['n_vens']:,} VENs, {s['duration_s']:g} s, poll {s['poll_s']:g} s, "
        f"report {s['report_s']:g} s, concurrency {s['concurrency']}, seed {s['seed']}",
        "",
        f"registration: {reg['registered']:,} of {reg['n_vens']:,} in {_f(reg['total_s'], '.2f')} s "
        f"(failures {reg['failures']:,}); latency median {_f(reg['latency_median_s'])} s, p99 "
        f"{_f(reg['latency_p99_s'])} s (two round trips); from the start median {_f(reg['wall_median_s'], '.2f')} s",
        f"event to opt-in: {ev['opt_in_acked']:,} acked of {ev['events_received']:,} received "
        f"(failed {ev['opt_in_failed']:,}); createdDateTime -> ack median {_f(ev['created_to_ack_median_s'])} s, "
        f"p99 {_f(ev['created_to_ack_p99_s'])} s (includes up to one poll interval); poll sent -> ack median "
        f"{_f(ev['poll_sent_to_ack_median_s'])} s, p99 {_f(ev['poll_sent_to_ack_p99_s'])} s; receipt -> ack "
        f"median {_f(ev['receipt_to_ack_median_s'])} s, p99 {_f(ev['receipt_to_ack_p99_s'])} s",
        f"reports: {rep['acked']:,} acked of {rep['sent']:,} sent, {_f(rep['throughput_reports_per_s'], ',.1f')} "
        f"reports/s over {_f(rep['window_s'], '.1f')} s (offered {rep['offered_reports_per_s']:,.1f}/s by "
        f"{rep['vens_with_report_requested']:,} VENs); sum {rep['acked_sum_kw']:,.3f} kW; round trip median "
        f"{_f(rep['rtt_median_s'])} s, p99 {_f(rep['rtt_p99_s'])} s",
        f"requests: {req['total']:,} ({_f(req['per_s'], ',.0f')}/s); waiting for a slot median "
        f"{_f(req['slot_wait_median_s'])} s, p99 {_f(req['slot_wait_p99_s'])} s; queued at the end, not sent "
        f"{req['not_sent_at_end']:,}",
        f"errors: {err['total']:,}" + (" " + ", ".join(f"{k} {v:,}" for k, v in err["by_kind"].items())
                                       if err["by_kind"] else ""),
        f"loadgen process: CPU {res['process_cpu_s']:.1f} s, peak RSS {res['process_peak_rss_mib']:.0f} MiB; "
        f"wall {res['wall_s']:.1f} s; load average {s['load_avg_1m_start']:.1f} at the start, "
        f"{s['load_avg_1m_end']:.1f} at the end ({m['cores']} cores)",
    ]
    return "\n".join(lines)
