"""An independent VTN under test for the load generator: openleadr's own ``OpenADRServer``.

It accepts every VEN, issues one event to each VEN when it registers
(``add_event`` with an opt callback) or, with ``event_at_s``, to every VEN
registered by then at that time after the server started (one fleet-wide DR
event; VENs that register later get theirs at registration), requests its TELEMETRY_USAGE report and
counts, in its own handlers, what it accepted: registrations, opt-ins and
opt-outs, and report values (count and sum [kW]). The load generator's counts
of acknowledged messages are checked against these, so nothing in here shares
code with :mod:`vpp.protocols.loadgen`.

Used in-process by ``tests/protocols/test_loadgen.py`` and, as a separate
process, by ``benchmarks/bench_loadgen.py``::

    python tests/helpers/counting_vtn.py --poll-s 10 --report-s 10

prints ``port <n>`` once it listens on 127.0.0.1 (port 0: an ephemeral port),
and on SIGTERM or SIGINT prints one JSON line with its counts and its own CPU
time [s], then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import resource
import signal
import time
from datetime import datetime, timedelta, timezone
from functools import partial

EVENT_DURATION_S = 3600.0  # the event is active for an hour from its registration: reports during it are reduced


class CountingVTN:
    """openleadr's OpenADRServer, configured to accept any VEN and to give each one event."""

    def __init__(self, poll_s: float = 10.0, report_s: float = 10.0, vtn_id: str = "COUNTING-VTN",
                 event_at_s: float | None = None):
        from openleadr import OpenADRServer

        logging.getLogger("openleadr").setLevel(logging.ERROR)  # its per-message warnings are for humans
        self.report_s = report_s
        self.event_at_s = event_at_s
        self.fleet_event_issued = event_at_s is None
        self.server = OpenADRServer(vtn_id=vtn_id, http_host="127.0.0.1", http_port=0,
                                    requested_poll_freq=timedelta(seconds=poll_s))
        self.server.add_handler("on_create_party_registration", self._on_create_party_registration)
        self.server.add_handler("on_register_report", self._on_register_report)
        self.registrations = 0
        self.events_issued = 0
        self.events_delivered = 0
        self.opt = {"optIn": 0, "optOut": 0}
        self.report_values = 0
        self.report_sum_kw = 0.0
        self.ven_names: dict[str, str] = {}  # ven_id -> the venName it registered with
        self.issued_at: dict[str, float] = {}  # event_id -> when it was issued [s, time.time()]
        self.opt_latency_s: list[float] = []  # from issuing an event to the VEN's opt arriving here [s]
        self.values_kw: dict[str, list[float]] = {}  # venName -> report values received [kW]
        self.port: int | None = None

    async def start(self) -> int:
        # OpenADRServer.run prints a banner; keep it out of the caller's stdout (the separate-process
        # mode prints its port on stdout for the parent to read).
        with contextlib.redirect_stdout(io.StringIO()):
            await self.server.run()
        self.port = self.server.app_runner.addresses[0][1]
        if self.event_at_s is not None:
            asyncio.get_running_loop().call_later(self.event_at_s, self._issue_to_all)
        return self.port

    async def stop(self) -> None:
        await self.server.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/OpenADR2/Simple/2.0b"

    def _on_create_party_registration(self, info):
        self.registrations += 1
        ven_id = f"ven-{self.registrations}"
        self.ven_names[ven_id] = info.get("ven_name")
        if self.fleet_event_issued:
            self._issue(ven_id)
        return ven_id, f"reg-{self.registrations}"

    def _issue_to_all(self):
        self.fleet_event_issued = True
        for ven_id in self.ven_names:
            self._issue(ven_id)

    def _issue(self, ven_id):
        now = datetime.now(timezone.utc)
        event_id = self.server.add_event(
            ven_id=ven_id, signal_name="simple", signal_type="level",
            intervals=[{"dtstart": now, "duration": timedelta(seconds=EVENT_DURATION_S), "signal_payload": 1.0}],
            callback=self._on_opt, delivery_callback=self._on_delivered)
        self.events_issued += 1
        self.issued_at[event_id] = now.timestamp()

    def _on_delivered(self):
        self.events_delivered += 1

    def _on_opt(self, ven_id, event_id, opt_type):
        self.opt[opt_type] = self.opt.get(opt_type, 0) + 1
        self.opt_latency_s.append(time.time() - self.issued_at[event_id])

    def _on_register_report(self, ven_id, resource_id, measurement, unit, scale, min_sampling_interval,
                            max_sampling_interval):
        return partial(self._on_report, ven_id), timedelta(seconds=self.report_s)

    def _on_report(self, ven_id, values):
        for _dt, value in values:
            self.report_values += 1
            self.report_sum_kw += float(value)
            self.values_kw.setdefault(self.ven_names.get(ven_id), []).append(float(value))

    def counts(self) -> dict:
        return {"registrations": self.registrations, "events_issued": self.events_issued,
                "events_delivered": self.events_delivered, "opt_in": self.opt.get("optIn", 0),
                "opt_out": self.opt.get("optOut", 0), "report_values": self.report_values,
                "report_sum_kw": self.report_sum_kw}


async def _serve(poll_s: float, report_s: float, event_at_s: float | None) -> None:
    vtn = CountingVTN(poll_s=poll_s, report_s=report_s, event_at_s=event_at_s)
    port = await vtn.start()
    print(f"port {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await vtn.stop()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = vtn.counts() | {"cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mib": ru.ru_maxrss / 1024.0}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--poll-s", type=float, default=10.0)
    ap.add_argument("--report-s", type=float, default=10.0)
    ap.add_argument("--event-at-s", type=float, default=None,
                    help="issue the event to every VEN registered by this time after start (default: at registration)")
    a = ap.parse_args()
    asyncio.run(_serve(a.poll_s, a.report_s, a.event_at_s))
