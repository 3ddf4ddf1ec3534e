"""OCPP 2.0.1 southbound: an operator's setpoints as ``SetChargingProfile`` to simulated charging stations.

The operator side is a CSMS (a websocket server on loopback, subprotocol
``ocpp2.0.1``); each sampled charger of one EV fleet is a simulated charging
station (a websocket client, one EVSE) that connects (``BootNotification``,
``StatusNotification``), accepts charging profiles and reports
``MeterValues``. Both ends are the ``ocpp`` library's ``v201.ChargePoint``
over ``websockets``; they import only with the optional extra
``vpp[protocols]`` (nothing in ``vpp`` imports this module except the
``vpp ocpp`` command and its tests).

**Each tick** (through the operator's southbound hook,
:class:`vpp.sim.agents.OperatorAgent`): the CSMS sends every sampled station
a ``ChargingStationMaxProfile`` (EVSE 0, ``chargingRateUnit`` W, one
``chargingSchedulePeriod`` from 0 s, no duration: it holds until replaced;
same profile id, so each replaces the last) whose limit is the operator's
setpoint, rounded to 0.1 W (the spec's "at most one digit fraction"). The
station holds the limit it accepted; the power the device draws that tick is
that limit, bounded by the vehicle's envelope (the fleet's step clips into
it). A profile that is rejected, answered with a CallError, not answered
within ``tick_timeout_s`` or not sent (station not connected) leaves the
station's previous limit in force and is logged (:attr:`OcppSouthbound.log`);
a late profile the station applies after the deadline is in force from then
on. Before any profile a station holds its rating. After the step each
station's meter integrates the power drawn and the station sends
``MeterValues`` (``Power.Active.Import`` [W], the tick's mean, and
``Energy.Active.Import.Register`` [Wh], stamped at the tick end); readings it
cannot deliver stay queued and go with the next message or after a
reconnection, so no accepted reading is lost. The CSMS keeps them as the
operator's telemetry of the sample (:attr:`Csms.telemetry`).

**Why a background thread.** The engine is synchronous (SimPy decides when,
numpy what) and must stay so for every other run. The websocket side runs on
its own asyncio loop in one daemon thread (:class:`OcppSouthbound`); each tick
the engine hands one coroutine to that loop and blocks on its result, so the
CSMS and all stations talk concurrently while the simulation stays a plain
loop. ``asyncio.run`` stays at the CLI boundary of other commands; here the
loop lives as long as the southbound object (a context manager).

**V2G is refused.** An OCPP 2.0.1 charging profile sets a limit on charging;
a discharge setpoint cannot be expressed. :meth:`OcppSouthbound.for_fleet`
raises :class:`V2GRefused` for a V2G charger in the sample, and
:func:`select_chargers` draws samples from the fleet's charge-only chargers.
A negative setpoint of a charge-only charger (impossible: its envelope is
never below 0) would be sent as 0 W.

Timestamps are ``epoch + t_s`` (UTC); ``t_s`` is seconds since the scenario start.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import websockets
from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

__all__ = [
    "SUBPROTOCOL",
    "EPOCH",
    "V2GRefused",
    "Csms",
    "SimStation",
    "OcppSouthbound",
    "Tap",
    "station_ids",
    "parse_station",
    "select_chargers",
    "compare",
    "OcppRun",
    "run_over_ocpp",
]

SUBPROTOCOL = "ocpp2.0.1"
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)  # t_s = 0 on the wire (UTC)
PROFILE_ID = 1  # one profile per station, replaced every tick
PURPOSES = ("ChargingStationMaxProfile", "TxProfile")  # what a station accepts
LOG = logging.getLogger("vpp.ocpp")
_WIRE_LOG = logging.getLogger("vpp.ocpp.wire")  # the ocpp library logs every frame at INFO here


class V2GRefused(ValueError):
    """A V2G charger was put in an OCPP sample: 2.0.1 charging profiles cannot express discharge."""


def _iso(epoch: datetime, t_s: float) -> str:
    return (epoch + timedelta(seconds=float(t_s))).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _t_s(epoch: datetime, stamp: str) -> float:
    return (datetime.fromisoformat(stamp) - epoch).total_seconds()


def limit_w(p_kw: float) -> float:
    """A setpoint [kW] as an OCPP limit [W]: at least 0, one digit after the decimal point."""
    return round(max(float(p_kw), 0.0) * 1000.0, 1)


def station_ids(fleet: str, devices: Sequence[int]) -> list[str]:
    """The station id of each charger: ``<fleet>-<position in the fleet>``."""
    return [f"{fleet}-{int(i)}" for i in devices]


def parse_station(fleet: str, text: str, n: int) -> int:
    """A charger's position in ``fleet`` from ``<fleet>-<i>`` or ``<i>``; ValueError naming the valid ones."""
    raw = text[len(fleet) + 1:] if text.startswith(f"{fleet}-") else text
    try:
        i = int(raw)
    except ValueError:
        i = -1
    if not 0 <= i < n:
        raise ValueError(f"--station: unknown {text!r}; allowed: {fleet}-0 .. {fleet}-{n - 1} (or 0 .. {n - 1})")
    return i


def select_chargers(v2g: np.ndarray, n_sample: int, rng: np.random.Generator) -> np.ndarray:
    """``n_sample`` chargers drawn without replacement from the charge-only ones (V2G: see the module), sorted."""
    ok = np.flatnonzero(~np.asarray(v2g, dtype=bool))
    if not 1 <= n_sample <= ok.size:
        raise ValueError(f"--sample: {n_sample} is not in 1 .. {ok.size} (the fleet's charge-only chargers; "
                         "V2G chargers cannot be sampled over OCPP 2.0.1)")
    return np.sort(rng.choice(ok, size=n_sample, replace=False))


# --- the operator's side --------------------------------------------------------------------------


class _CsmsPoint(ChargePoint):
    """The CSMS's end of one station's connection."""

    def __init__(self, sid: str, connection, csms: Csms):
        super().__init__(sid, connection, response_timeout=csms.timeout_s, logger=_WIRE_LOG)
        self.csms = csms
        self.booted = False

    @on(Action.boot_notification)
    def on_boot(self, charging_station, reason, **_):
        self.booted = True
        self.csms.count("boot_notification")
        return call_result.BootNotification(current_time=_iso(self.csms.epoch, 0.0), interval=300,
                                            status="Accepted")

    @on(Action.status_notification)
    def on_status(self, timestamp, connector_status, evse_id, connector_id, **_):
        self.csms.count("status_notification")
        self.csms.status[self.id] = connector_status
        return call_result.StatusNotification()

    @on(Action.heartbeat)
    def on_heartbeat(self, **_):
        return call_result.Heartbeat(current_time=_iso(self.csms.epoch, 0.0))

    @on(Action.meter_values)
    def on_meter_values(self, evse_id, meter_value, **_):
        self.csms.count("meter_values")
        for mv in meter_value:
            self.csms.reading(self.id, mv)
        return call_result.MeterValues()


class Csms:
    """The operator's charging station management system: a websocket server on ``host``.

    Keeps, per station id, its connection (:attr:`points`), last connector
    status and its meter readings (:attr:`telemetry`: tick end ``t_s`` ->
    ``(p_w, e_wh)``); a repeated reading (a resend) overwrites the same entry.
    """

    def __init__(self, timeout_s: float, epoch: datetime = EPOCH, host: str = "127.0.0.1", port: int = 0):
        self.timeout_s = float(timeout_s)
        self.epoch = epoch
        self.host, self.port = host, port
        self.points: dict[str, _CsmsPoint] = {}
        self.status: dict[str, str] = {}
        self.telemetry: dict[str, dict[float, tuple[float, float]]] = {}
        self.counts: dict[str, int] = {}
        self.log: list[dict] = []
        self._server = None

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await serve(self._connection, self.host, self.port, subprotocols=[SUBPROTOCOL],
                                   ping_interval=None)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _connection(self, ws) -> None:
        sid = ws.request.path.strip("/")
        if ws.subprotocol != SUBPROTOCOL:
            self.rejected(None, sid, "connection", f"no {SUBPROTOCOL} subprotocol")
            await ws.close(1002, f"subprotocol {SUBPROTOCOL} required")
            return
        point = _CsmsPoint(sid, ws, self)
        self.points[sid] = point
        try:
            await point.start()
        except ConnectionClosed:
            pass
        except Exception as exc:  # never let one station's fault stop the server
            self.rejected(None, sid, "connection", f"{type(exc).__name__}: {exc}")
        finally:
            if self.points.get(sid) is point:
                del self.points[sid]

    def rejected(self, t_s: float | None, sid: str, what: str, reason: str) -> None:
        """Log a rejection or fault (kept in :attr:`log`, and on the ``vpp.ocpp`` logger)."""
        self.log.append({"t_s": t_s, "station": sid, "what": what, "reason": reason})
        LOG.warning("%s at t_s=%s: %s: %s", sid, t_s, what, reason)

    def reading(self, sid: str, mv: dict) -> None:
        try:
            t_end_s = round(_t_s(self.epoch, mv["timestamp"]), 3)  # the wire carries milliseconds
            by = {sv.get("measurand", "Energy.Active.Import.Register"): float(sv["value"])
                  for sv in mv["sampled_value"]}
            self.telemetry.setdefault(sid, {})[t_end_s] = (by["Power.Active.Import"],
                                                           by["Energy.Active.Import.Register"])
            self.count("readings")
        except (KeyError, TypeError, ValueError) as exc:
            self.rejected(None, sid, "meter_values", f"unreadable sampled value ({type(exc).__name__}: {exc})")

    async def set_limit(self, t_s: float, sid: str, lim_w: float, latency_s: list[float]) -> str:
        """Send ``sid`` a ChargingStationMaxProfile of ``lim_w`` starting at ``t_s``; return the outcome."""
        point = self.points.get(sid)
        if point is None or not point.booted:
            self.rejected(t_s, sid, "set_charging_profile", "station not connected; it keeps its previous limit")
            return "not_connected"
        profile = {
            "id": PROFILE_ID, "stack_level": 0, "charging_profile_purpose": "ChargingStationMaxProfile",
            "charging_profile_kind": "Absolute",
            "charging_schedule": [{"id": PROFILE_ID, "start_schedule": _iso(self.epoch, t_s),
                                   "charging_rate_unit": "W",
                                   "charging_schedule_period": [{"start_period": 0, "limit": lim_w}]}],
        }
        t0 = time.perf_counter()
        try:
            res = await point.call(call.SetChargingProfile(evse_id=0, charging_profile=profile), suppress=False)
        except asyncio.TimeoutError:
            self.rejected(t_s, sid, "set_charging_profile", f"no answer within {self.timeout_s:g} s (late); "
                                                            "previous limit in force")
            return "timed_out"
        except OCPPError as exc:
            self.rejected(t_s, sid, "set_charging_profile", f"CallError {type(exc).__name__}: {exc}")
            return "call_error"
        except ConnectionClosed:
            self.rejected(t_s, sid, "set_charging_profile", "connection closed; previous limit in force")
            return "not_connected"
        latency_s.append(time.perf_counter() - t0)
        if res.status != "Accepted":
            self.rejected(t_s, sid, "set_charging_profile", f"Rejected ({res.status_info}); previous limit in force")
            return "rejected"
        return "accepted"


# --- the simulated charging stations --------------------------------------------------------------


class _StationPoint(ChargePoint):
    """A station's end of its current connection (a new one after each reconnection)."""

    def __init__(self, station: SimStation, connection):
        super().__init__(station.id, connection, response_timeout=station.timeout_s, logger=_WIRE_LOG)
        self.station = station

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(self, evse_id, charging_profile, **_):
        st = self.station
        if st.delay_s > 0.0:  # fault injection: a slow station answers (and applies) late
            await asyncio.sleep(st.delay_s)
        status, reason = st.apply_profile(evse_id, charging_profile)
        info = None if reason is None else {"reason_code": reason}
        return call_result.SetChargingProfile(status=status, status_info=info)


@dataclass
class _Reading:
    t_end_s: float
    p_w: float
    e_wh: float


class SimStation:
    """A simulated charging station with one EVSE: the limit it holds, its meter, its connection.

    Its state survives reconnections. ``reject`` and ``delay_s`` are fault
    injection for tests: reject every profile, or answer each only after
    ``delay_s``.
    """

    def __init__(self, sid: str, p_rated_kw: float, url: str, timeout_s: float, epoch: datetime = EPOCH,
                 reconnect_s: float = 0.05):
        self.id = sid
        self.p_rated_kw = float(p_rated_kw)
        self.url = f"{url}/{sid}"
        self.timeout_s = float(timeout_s)
        self.epoch = epoch
        self.reconnect_s = float(reconnect_s)
        self.limit_w: float | None = None  # the accepted limit; None: no profile yet (the rating holds)
        self.e_wh = 0.0  # meter register [Wh]
        self.pending: list[_Reading] = []  # readings not yet acknowledged by the CSMS
        self.point: _StationPoint | None = None
        self.connected = asyncio.Event()
        self.n_connects = 0
        self.n_accepted = 0
        self.reject = False
        self.delay_s = 0.0
        self.meter_latency_s: list[float] = []
        self.n_meter_messages = 0
        self.closing = False
        self._flush_lock = asyncio.Lock()

    @property
    def limit_kw(self) -> float:
        """The limit the station holds [kW]."""
        return self.p_rated_kw if self.limit_w is None else self.limit_w / 1000.0

    def apply_profile(self, evse_id: int, profile: dict) -> tuple[str, str | None]:
        """Check a profile and hold its limit; ``("Accepted", None)`` or ``("Rejected", reason)``."""
        if self.reject:
            return "Rejected", "InjectedFault"
        purpose = profile.get("charging_profile_purpose")
        if purpose not in PURPOSES:
            return "Rejected", "UnsupportedPurpose"
        if purpose == "ChargingStationMaxProfile" and evse_id != 0:
            return "Rejected", "InvalidEvse"  # the spec: a station maximum is set on EVSE 0
        if purpose == "TxProfile" and (evse_id != 1 or profile.get("transaction_id") is None):
            return "Rejected", "TxNotFound"  # sessions live in the fleet: any transaction id on EVSE 1 is taken
        schedules = profile.get("charging_schedule") or []
        if len(schedules) != 1 or schedules[0].get("charging_rate_unit") != "W":
            return "Rejected", "UnsupportedRateUnit"
        periods = schedules[0].get("charging_schedule_period") or []
        if len(periods) != 1 or periods[0].get("start_period") != 0:
            return "Rejected", "InvalidSchedule"
        lim = float(periods[0]["limit"])
        if not lim >= 0.0 or abs(lim * 10.0 - round(lim * 10.0)) > 1e-6:
            return "Rejected", "InvalidValue"  # negative, NaN, or more than one digit after the point
        self.limit_w = lim
        self.n_accepted += 1
        return "Accepted", None

    async def run(self) -> None:
        """Connect, boot and serve; on a dropped connection reconnect after ``reconnect_s``, until closed."""
        while not self.closing:
            try:
                async with connect(self.url, subprotocols=[SUBPROTOCOL], open_timeout=self.timeout_s + 5.0,
                                   ping_interval=None) as ws:
                    point = _StationPoint(self, ws)
                    reader = asyncio.create_task(point.start())
                    try:
                        boot = await point.call(call.BootNotification(
                            charging_station={"model": "vpp-sim", "vendor_name": "vpp"}, reason="PowerUp"))
                        if boot is None or boot.status != "Accepted":
                            raise RuntimeError(f"BootNotification answered {boot}")
                        await point.call(call.StatusNotification(
                            timestamp=_iso(self.epoch, 0.0), connector_status="Available", evse_id=1,
                            connector_id=1))
                        self.point = point
                        self.n_connects += 1
                        self.connected.set()
                        await self.flush()  # readings queued while disconnected
                        await reader  # until the connection closes
                    finally:
                        self.point = None
                        self.connected.clear()
                        reader.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dropped or refused connection: log, wait, reconnect
                if not self.closing:
                    LOG.warning("%s: connection lost (%s: %s); reconnecting", self.id, type(exc).__name__, exc)
            if not self.closing:
                await asyncio.sleep(self.reconnect_s)

    async def meter(self, t_s: float, dt_s: float, p_kw: float) -> None:
        """Integrate the tick's power into the register, queue the reading and send what is queued."""
        self.e_wh += float(p_kw) * 1000.0 * float(dt_s) / 3600.0
        self.pending.append(_Reading(t_s + dt_s, float(p_kw) * 1000.0, self.e_wh))
        await self.flush()

    async def flush(self) -> None:
        """Send every queued reading in one MeterValues; they stay queued unless it is acknowledged."""
        async with self._flush_lock:
            point = self.point
            if point is None or not self.pending:
                return
            batch = list(self.pending)
            values = [{"timestamp": _iso(self.epoch, r.t_end_s), "sampled_value": [
                {"value": r.p_w, "measurand": "Power.Active.Import", "context": "Sample.Periodic",
                 "unit_of_measure": {"unit": "W"}},
                {"value": r.e_wh, "measurand": "Energy.Active.Import.Register", "context": "Sample.Periodic",
                 "unit_of_measure": {"unit": "Wh"}},
            ]} for r in batch]
            t0 = time.perf_counter()
            try:
                await point.call(call.MeterValues(evse_id=1, meter_value=values), suppress=False)
            except (asyncio.TimeoutError, OCPPError, ConnectionClosed) as exc:
                LOG.warning("%s: MeterValues not acknowledged (%s); %d readings stay queued", self.id,
                            type(exc).__name__, len(batch))
                return
            self.meter_latency_s.append(time.perf_counter() - t0)
            self.n_meter_messages += 1
            del self.pending[:len(batch)]


# --- the hook the operator calls ------------------------------------------------------------------


def _quantiles(x: list[float]) -> dict:
    if not x:
        return {"n": 0, "median_s": None, "p99_s": None, "max_s": None}
    a = np.asarray(x)
    return {"n": int(a.size), "median_s": float(np.median(a)), "p99_s": float(np.quantile(a, 0.99)),
            "max_s": float(a.max())}


class OcppSouthbound:
    """An operator's southbound link over OCPP 2.0.1 for some chargers of one fleet (see the module).

    ``devices`` are positions in ``fleet``; ``p_rated_kw`` their ratings (what
    a station holds before its first profile). Use as a context manager (or
    :meth:`start` / :meth:`close`); pass it to
    :func:`vpp.run.run_scenario` as ``southbound={operator: this}``.
    """

    def __init__(self, fleet: str, devices: Sequence[int], p_rated_kw: Sequence[float], *,
                 tick_timeout_s: float = 2.0, host: str = "127.0.0.1", epoch: datetime = EPOCH,
                 reconnect_s: float = 0.05, start_timeout_s: float = 30.0):
        self.fleet = fleet
        self.devices = np.asarray(devices, dtype=np.int64)
        self.ids = station_ids(fleet, self.devices)
        self.p_rated_kw = np.asarray(p_rated_kw, dtype=float)
        if self.p_rated_kw.shape != self.devices.shape:
            raise ValueError("p_rated_kw must have one rating per device")
        self.tick_timeout_s = float(tick_timeout_s)
        self.host, self.epoch, self.reconnect_s = host, epoch, float(reconnect_s)
        self.start_timeout_s = float(start_timeout_s)
        self.csms: Csms | None = None
        self.stations: dict[str, SimStation] = {}
        self.outcomes: dict[str, int] = {}  # SetChargingProfile outcome -> count
        self.profile_latency_s: list[float] = []
        self.ticks: list[dict] = []  # per tick: t_s, dt_s, setpoints and held limits [kW]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task] = []

    @classmethod
    def for_fleet(cls, fleet, devices: Sequence[int], **kw) -> OcppSouthbound:
        """A southbound for ``devices`` of an EV fleet object; :class:`V2GRefused` for a V2G charger."""
        devices = np.asarray(devices, dtype=np.int64)
        if getattr(fleet, "kind", None) != "ev":
            raise ValueError(f"fleet {fleet.name!r} is a {fleet.kind!r} fleet; OCPP steers EV chargers only")
        v2g = devices[fleet.v2g[devices]]
        if v2g.size:
            raise V2GRefused(f"fleet {fleet.name!r}: V2G chargers {', '.join(station_ids(fleet.name, v2g[:5]))}"
                             f"{' ...' if v2g.size > 5 else ''} cannot be steered over OCPP 2.0.1 (a charging "
                             "profile cannot express discharge); choose charge-only chargers")
        return cls(fleet.name, devices, fleet.p_rated_kw[devices], **kw)

    # lifecycle (called from the engine's thread) ---------------------------------------------

    def _run(self, coro, timeout_s: float):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def start(self) -> OcppSouthbound:
        """Start the loop thread, the CSMS and every station; return once all have booted."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vpp-ocpp", daemon=True)
        self._thread.start()
        try:
            self._run(self._start(), self.start_timeout_s + 5.0)
        except BaseException:
            self.close()
            raise
        return self

    async def _start(self) -> None:
        self.csms = Csms(self.tick_timeout_s, self.epoch, self.host)
        await self.csms.start()
        for sid, p_kw in zip(self.ids, self.p_rated_kw):
            st = SimStation(sid, p_kw, self.csms.url, self.tick_timeout_s, self.epoch, self.reconnect_s)
            self.stations[sid] = st
            self._tasks.append(asyncio.create_task(st.run()))
        await asyncio.wait_for(asyncio.gather(*(st.connected.wait() for st in self.stations.values())),
                               self.start_timeout_s)

    def close(self) -> None:
        """Send what is still queued, close every connection and stop the loop thread."""
        if self._loop is None:
            return
        if self._loop.is_running():
            try:
                self._run(self._close(), self.tick_timeout_s + 10.0)
            except Exception as exc:  # closing must not mask the run's own outcome
                LOG.warning("closing the OCPP loop: %s: %s", type(exc).__name__, exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
        self._loop.close()
        self._loop = None

    async def _close(self) -> None:
        await asyncio.gather(*(st.flush() for st in self.stations.values()), return_exceptions=True)
        for st in self.stations.values():
            st.closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.csms is not None:
            await self.csms.stop()

    def __enter__(self) -> OcppSouthbound:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # the hook (vpp.sim.agents.Southbound) -----------------------------------------------------

    def exchange(self, t_s: float, dt_s: float, p_set_kw: np.ndarray) -> np.ndarray:
        """Send each station its setpoint; return the limits the stations hold once answered or timed out [kW]."""
        p_set_kw = np.asarray(p_set_kw, dtype=float)
        held = self._run(self._exchange(float(t_s), p_set_kw), self.tick_timeout_s + 10.0)
        self.ticks.append({"t_s": float(t_s), "dt_s": float(dt_s), "p_set_kw": p_set_kw.copy(), "limit_kw": held})
        return held.copy()

    async def _exchange(self, t_s: float, p_set_kw: np.ndarray) -> np.ndarray:
        outcomes = await asyncio.gather(*(self.csms.set_limit(t_s, sid, limit_w(p), self.profile_latency_s)
                                          for sid, p in zip(self.ids, p_set_kw)))
        for o in outcomes:
            self.outcomes[o] = self.outcomes.get(o, 0) + 1
        return np.array([self.stations[sid].limit_kw for sid in self.ids])

    def metered(self, t_s: float, dt_s: float, p_kw: np.ndarray) -> None:
        """Each station meters the power its device drew and reports MeterValues."""
        p_kw = np.asarray(p_kw, dtype=float).copy()
        self._run(self._metered(float(t_s), float(dt_s), p_kw), self.tick_timeout_s + 10.0)

    async def _metered(self, t_s: float, dt_s: float, p_kw: np.ndarray) -> None:
        await asyncio.gather(*(self.stations[sid].meter(t_s, dt_s, p) for sid, p in zip(self.ids, p_kw)))

    # tests and fault injection ---------------------------------------------------------------

    def call_soon(self, coro_fn, timeout_s: float = 10.0):
        """Run ``coro_fn()`` on the loop and return its result (tests: raw frames, faults)."""
        async def wrapped():
            return await coro_fn()
        return self._run(wrapped(), timeout_s)

    def drop(self, sid: str) -> None:
        """Cut ``sid``'s connection abruptly (its transport is aborted, as a network failure would)."""
        async def cut():
            point = self.stations[sid].point
            if point is not None:
                point._connection.transport.abort()
        self.call_soon(cut)

    def wait_connected(self, sid: str, timeout_s: float = 10.0) -> None:
        """Block until ``sid`` is connected and booted again."""
        async def wait():
            await asyncio.sleep(0)
            await asyncio.wait_for(self.stations[sid].connected.wait(), timeout_s)
            while self.csms.points.get(sid) is None or not self.csms.points[sid].booted:
                await asyncio.sleep(0.005)
        self.call_soon(wait, timeout_s + 1.0)

    # results ---------------------------------------------------------------------------------

    @property
    def log(self) -> list[dict]:
        """Every logged rejection and fault, in order (CSMS side)."""
        return [] if self.csms is None else list(self.csms.log)

    def stats(self) -> dict:
        """Message counts and round-trip latencies."""
        csms = self.csms
        counts = dict(csms.counts) if csms else {}
        n_meter = sum(st.n_meter_messages for st in self.stations.values())
        return {
            "n_stations": len(self.ids),
            "set_charging_profile": {"sent": sum(v for k, v in self.outcomes.items() if k != "not_connected"),
                                     **{k: self.outcomes.get(k, 0) for k in
                                        ("accepted", "rejected", "call_error", "timed_out", "not_connected")}},
            "boot_notification": counts.get("boot_notification", 0),
            "status_notification": counts.get("status_notification", 0),
            "meter_values": {"messages": n_meter, "received": counts.get("meter_values", 0),
                             "readings_received": counts.get("readings", 0),
                             "readings_pending": sum(len(st.pending) for st in self.stations.values())},
            "connections": sum(st.n_connects for st in self.stations.values()),
            "reconnections": sum(max(st.n_connects - 1, 0) for st in self.stations.values()),
            "latency_set_charging_profile": _quantiles(self.profile_latency_s),
            "latency_meter_values": _quantiles([x for st in self.stations.values() for x in st.meter_latency_s]),
            "n_logged": len(csms.log) if csms else 0,
        }


class Tap:
    """The in-memory reference: records the devices' setpoints and power and changes nothing."""

    def __init__(self, fleet: str, devices: Sequence[int]):
        self.fleet = fleet
        self.devices = np.asarray(devices, dtype=np.int64)
        self.ticks: list[dict] = []

    def exchange(self, t_s: float, dt_s: float, p_set_kw: np.ndarray) -> np.ndarray:
        self.ticks.append({"t_s": float(t_s), "dt_s": float(dt_s), "p_set_kw": np.array(p_set_kw, dtype=float)})
        return p_set_kw

    def metered(self, t_s: float, dt_s: float, p_kw: np.ndarray) -> None:
        self.ticks[-1]["p_kw"] = np.array(p_kw, dtype=float)


def compare(memory: Tap, wire: OcppSouthbound):
    """Per tick and station: energy over the wire (MeterValues register) vs in memory; returns ``(frame, summary)``.

    ``e_wire_kwh`` is the difference of consecutive ``Energy.Active.Import.Register``
    readings the CSMS received (NaN where one is missing), ``p_wire_kw`` the
    reported ``Power.Active.Import``; ``e_memory_kwh`` the in-memory run's
    power times the tick. ``max_abs_diff_kw`` is the largest
    ``|e_wire - e_memory| / dt`` over ticks and stations.
    """
    import pandas as pd

    if not np.array_equal(memory.devices, wire.devices) or memory.fleet != wire.fleet:
        raise ValueError("compare: the in-memory tap and the wire run must cover the same devices")
    rows = []
    tel = wire.csms.telemetry if wire.csms else {}
    for k, tick in enumerate(memory.ticks):
        t_s, dt_s = tick["t_s"], tick["dt_s"]
        t_end = round(t_s + dt_s, 3)
        for j, sid in enumerate(wire.ids):
            mine = tel.get(sid, {})
            now = mine.get(t_end)
            before = (0.0, 0.0) if k == 0 else mine.get(round(t_s, 3))
            e_wire = np.nan if now is None or before is None else (now[1] - before[1]) / 1000.0
            wt = wire.ticks[k] if k < len(wire.ticks) else None
            rows.append({
                "t_s": t_s, "station": sid, "device": int(wire.devices[j]),
                "p_set_memory_kw": tick["p_set_kw"][j],
                "p_set_wire_kw": np.nan if wt is None else wt["p_set_kw"][j],
                "limit_wire_kw": np.nan if wt is None else wt["limit_kw"][j],
                "p_memory_kw": tick["p_kw"][j], "p_wire_kw": np.nan if now is None else now[0] / 1000.0,
                "e_memory_kwh": tick["p_kw"][j] * dt_s / 3600.0, "e_wire_kwh": e_wire, "dt_s": dt_s,
            })
    df = pd.DataFrame(rows)
    diff_kw = (df["e_wire_kwh"] - df["e_memory_kwh"]).abs() * 3600.0 / df["dt_s"]
    per_tick = df.groupby("t_s")[["e_memory_kwh", "e_wire_kwh"]].sum(min_count=1)
    summary = {
        "fleet": wire.fleet, "n_stations": len(wire.ids), "n_ticks": len(memory.ticks),
        "e_memory_kwh": float(df["e_memory_kwh"].sum()), "e_wire_kwh": float(df["e_wire_kwh"].sum()),
        "max_abs_diff_kw": float(diff_kw.max()) if diff_kw.notna().any() else None,
        "max_abs_diff_tick_kwh": float((per_tick["e_wire_kwh"] - per_tick["e_memory_kwh"]).abs().max()),
        "max_abs_power_diff_kw": float((df["p_wire_kw"] - df["p_memory_kw"]).abs().max()),
        "n_readings_missing": int(df["e_wire_kwh"].isna().sum()),
        # Setpoints strictly between off and the rating (a limit that shapes the draw, not just on or off) [-].
        "n_setpoints_partial": int(((df["p_set_memory_kw"] > 0.05) & (df["p_set_memory_kw"] < df["device"].map(
            dict(zip(wire.devices.tolist(), wire.p_rated_kw.tolist()))) - 0.05)).sum()),
        "n_setpoints": int(len(df)),
    }
    return df, summary


@dataclass
class OcppRun:
    """The outcome of :func:`run_over_ocpp`: the comparison and what went over the wire."""

    fleet: str
    operator: str
    devices: np.ndarray
    frame: object  # pandas.DataFrame of :func:`compare`
    summary: dict
    stats: dict
    log: list[dict]
    wall_memory_s: float
    wall_wire_s: float


def run_over_ocpp(scenario, fleet, devices: Sequence[int], *, tick_timeout_s: float = 2.0) -> OcppRun:
    """Run ``scenario`` twice: in memory (the reference) and with ``devices`` of ``fleet`` over OCPP 2.0.1.

    ``fleet`` is the EV fleet object of this scenario's plant
    (:func:`vpp.build.build_plant`); the runs rebuild the plant from the same
    seed. Raises :class:`V2GRefused` (before any run) for a V2G charger.
    """
    from vpp.run import run_scenario

    sb = OcppSouthbound.for_fleet(fleet, devices, tick_timeout_s=tick_timeout_s)
    tap = Tap(fleet.name, sb.devices)
    t0 = time.perf_counter()
    run_scenario(scenario, southbound={fleet.operator: tap})
    t1 = time.perf_counter()
    with sb:
        run_scenario(scenario, southbound={fleet.operator: sb})
    t2 = time.perf_counter()
    frame, summary = compare(tap, sb)
    return OcppRun(fleet.name, fleet.operator, sb.devices, frame, summary, sb.stats(), sb.log, t1 - t0, t2 - t1)
