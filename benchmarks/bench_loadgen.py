"""``vpp loadgen`` against openleadr's OpenADRServer in a separate process, 10^3 and 10^4 VENs.

The VTN is tests/helpers/counting_vtn.py (openleadr's OpenADRServer that
accepts any VEN, issues one event to each and requests its report), started
as a child process so that it has a core of its own; on SIGTERM it prints its
own counts and CPU time. Each row holds the load generator's figures, the
server's counts and CPU, and whether they agree (registrations, opt-ins,
report values and their sum [kW]).

``--openleadr-clients N`` also runs N ``openleadr.OpenADRClient`` (one per
VEN, each with its own aiohttp session and APScheduler) against the same kind
of server for the same duration, and reports the time for all to register,
their opt-ins, CPU, memory and open sockets: the reason the load generator has
lean VENs instead.

    python benchmarks/bench_loadgen.py --vens 1000 10000 --poll-s 10 --report-s 10 --duration-s 90 \
        --openleadr-clients 1000 --out loadgen_bench.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VTN_SCRIPT = ROOT / "tests" / "helpers" / "counting_vtn.py"


class ServerProcess:
    def __init__(self, poll_s: float, report_s: float, event_at_s: float | None = None):
        extra = [] if event_at_s is None else ["--event-at-s", str(event_at_s)]
        self.proc = subprocess.Popen([sys.executable, str(VTN_SCRIPT), "--poll-s", str(poll_s),
                                      "--report-s", str(report_s), *extra], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if line[:1] != ["port"]:
            self.proc.kill()
            raise RuntimeError(f"the VTN did not start: {line}")
        self.url = f"http://127.0.0.1:{line[1]}/OpenADR2/Simple/2.0b"

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        return json.loads(out.strip().splitlines()[-1])


def lean_row(n: int, args) -> dict:
    from vpp.protocols import loadgen

    server = ServerProcess(args.poll_s, args.report_s, args.event_at_s)
    try:
        cfg = loadgen.LoadgenConfig(server.url, n, duration_s=args.duration_s, concurrency=args.concurrency,
                                    poll_s=args.poll_s, report_s=args.report_s, seed=args.seed)
        res = asyncio.run(loadgen.run(cfg, progress=lambda line: print(f"  {line}", file=sys.stderr)))
    finally:
        srv = server.stop()
    agree = {
        "registrations": res["registration"]["registered"] == srv["registrations"],
        "opt_in": res["event_opt_in"]["opt_in_acked"] == srv["opt_in"],
        "report_values": res["reports"]["acked"] == srv["report_values"],
        "report_sum_kw": abs(res["reports"]["acked_sum_kw"] - srv["report_sum_kw"])
        <= 1e-6 * max(1.0, srv["report_sum_kw"]),
    }
    return {"n_vens": n, "loadgen": res, "server": srv, "server_cpu_share": srv["cpu_s"] / res["wall_s"],
            "loadgen_cpu_share": res["process_cpu_s"] / res["wall_s"], "agree_with_server": agree}


def openleadr_client_row(n: int, args) -> dict:
    """N OpenADRClient against a fresh server for args.duration_s: registration time, opt-ins, cost."""
    from datetime import timedelta

    from openleadr import OpenADRClient

    logging.getLogger("openleadr").setLevel(logging.CRITICAL)
    logging.getLogger("apscheduler").setLevel(logging.CRITICAL)
    server = ServerProcess(args.poll_s, args.report_s)

    async def main():
        clients = []
        for i in range(n):
            c = OpenADRClient(ven_name=f"olc-{i:05d}", vtn_url=server.url)
            c.add_report(callback=lambda: 50.0, resource_id="plant", measurement="RealPower", unit="W",
                         report_duration=timedelta(seconds=args.report_s),
                         sampling_rate=timedelta(seconds=args.report_s))
            c.add_handler("on_event", _opt_in)
            clients.append(c)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        runs = [asyncio.create_task(c.run()) for c in clients]
        all_registered_s = None
        while time.perf_counter() - t0 < args.duration_s:
            await asyncio.sleep(0.5)
            if all_registered_s is None and all(c.registration_id for c in clients):
                all_registered_s = time.perf_counter() - t0
        fds = len(os.listdir("/proc/self/fd"))
        registered = sum(bool(c.registration_id) for c in clients)
        cpu_s = time.process_time() - cpu0
        for c in clients:
            try:
                await asyncio.wait_for(c.stop(), 5)
            except Exception:  # noqa: BLE001 - a client that fails to stop is not what is measured
                pass
        for r in runs:
            r.cancel()
        return {"registered": registered, "all_registered_s": all_registered_s, "open_fds": fds, "cpu_s": cpu_s,
                "wall_s": time.perf_counter() - t0}

    try:
        out = asyncio.run(main())
    finally:
        srv = server.stop()
    out |= {"n_vens": n, "server": srv, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    return out


def _opt_in(event):
    return "optIn"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vens", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--poll-s", type=float, default=10.0)
    ap.add_argument("--report-s", type=float, default=10.0)
    ap.add_argument("--duration-s", type=float, default=90.0)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--event-at-s", type=float, default=None,
                    help="the VTN issues one event to every VEN registered by this time after it started "
                         "(default: to each VEN at its registration)")
    ap.add_argument("--openleadr-clients", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("loadgen_bench.json"))
    args = ap.parse_args()

    from vpp.protocols.loadgen import _machine, format_table

    res = {"machine": _machine(), "settings": vars(args) | {"out": str(args.out)}, "rows": []}
    for n in args.vens:
        print(f"lean VENs n={n:,}", file=sys.stderr)
        row = lean_row(n, args)
        res["rows"].append(row)
        print(format_table(row["loadgen"]))
        srv = row["server"]
        print(f"server: CPU {srv['cpu_s']:.1f} s ({row['server_cpu_share']:.0%} of a core over the run), "
              f"peak RSS {srv['peak_rss_mib']:.0f} MiB; registrations {srv['registrations']:,}, opt-ins "
              f"{srv['opt_in']:,}, report values {srv['report_values']:,}; agrees: {row['agree_with_server']}\n")
    if args.openleadr_clients:
        n = args.openleadr_clients
        print(f"openleadr OpenADRClient x {n:,}", file=sys.stderr)
        olc = openleadr_client_row(n, args)
        res["openleadr_clients"] = olc
        print(f"OpenADRClient x {n:,}: registered {olc['registered']:,} (all by {olc['all_registered_s']} s), "
              f"opt-ins at the server {olc['server']['opt_in']:,}, report values {olc['server']['report_values']:,}; "
              f"CPU {olc['cpu_s']:.1f} s over {olc['wall_s']:.0f} s, open fds {olc['open_fds']:,}, "
              f"peak RSS {olc['peak_rss_mib']:.0f} MiB (process)")
    args.out.write_text(json.dumps(res, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
