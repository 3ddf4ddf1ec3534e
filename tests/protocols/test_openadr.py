"""OpenADR 2.0b over loopback: a VTN and the plant as a VEN (vpp.protocols.openadr).

The reference is the in-memory run of the same scenario (vpp.run.run_scenario),
which never touches the wire: delivered energy must agree. Certificates are
made at run time (tests/helpers/certs.py). Ports are ephemeral (port 0).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import pytest

pytest.importorskip("openleadr")
pytest.importorskip("cryptography")

from certs import make_pki  # noqa: E402  (tests/helpers)

from vpp.protocols.clock import SimClock  # noqa: E402
from vpp.protocols.openadr import (  # noqa: E402
    VEN, VTN, EventRejected, PlantIndex, VTNUnreachable, call_to_event, event_to_call,
)
from vpp.protocols.tls import SecurityError, TLSFiles, check_security, fingerprint  # noqa: E402
from vpp.run import prepare_run, run_scenario  # noqa: E402
from vpp.scenario import load_scenario  # noqa: E402

HERE = Path(__file__).parent
SMALL = HERE / "adr-small.yaml"
ROOT = HERE.parents[1]
SPEED = 10000.0  # simulated s per wall s: the 8-hour day in about 3 s; a 0.05 s poll is 500 simulated s
POLL_S = 0.05


def _delivered(results) -> dict[str, float]:
    return {c["id"]: c["delivered_kwh"] for c in results.summary["calls"]}


async def _exchange(scenario, *, drop_s: float | None = None):
    """VTN and VEN on loopback in one loop; with ``drop_s``, the VTN goes away for that long after registration."""
    vtn = VTN(scenario, port=0, speed=SPEED, poll_s=POLL_S)
    await vtn.start()
    session = prepare_run(scenario, local_calls=False)
    ven = VEN(session, vtn.url, speed=SPEED, poll_s=POLL_S, report_s=0.2, connect_timeout_s=10)
    serving = asyncio.create_task(vtn.run(wait_s=20, grace_s=0.5))
    if drop_s is not None:
        async def drop():
            await vtn.registered.wait()
            await asyncio.sleep(0.1)
            await vtn.stop()
            await asyncio.sleep(drop_s)
            await vtn.start()
        dropper = asyncio.create_task(drop())
    results = await ven.run()
    await serving
    await vtn.stop()
    if drop_s is not None:
        await dropper
    return vtn, ven, results


@pytest.fixture(scope="module")
def wire():
    """One VTN-VEN exchange of the small day, and the in-memory run of it (read-only for the tests)."""
    sc = load_scenario(SMALL)
    vtn, ven, results = asyncio.run(_exchange(sc))
    return sc, vtn, ven, results, run_scenario(sc)


def test_a_vtn_and_a_ven_complete_an_event_with_the_in_memory_delivery(wire):
    sc, vtn, ven, results, ref = wire
    assert results.completed
    got, want = _delivered(results), _delivered(ref)
    assert set(got) == {"shave", "extended", "cancelled"}
    assert want["shave"] > 10.0  # the plain event moves the plant
    for cid in want:
        assert got[cid] == pytest.approx(want[cid], rel=1e-9, abs=1e-9), cid
    # every version was received before its call started, and answered
    assert not [r for r in ven.timeline.rows if r["what"] == "received" and r["late"]]
    opts = {(r["event_id"], r["modification"]): r["opt"] for r in vtn.timeline.rows if r["what"] == "opt"}
    assert opts[("shave", 0)] == "optIn"
    # telemetry: the VTN holds the plant's metered power of every tick, as the VEN measured it
    reported = sorted((r["t_s"], r["p_kw"]) for r in vtn.reports)
    ts = results.timeseries
    assert [t for t, _ in reported] == pytest.approx(ts["t_s"].tolist())
    assert [p for _, p in reported] == pytest.approx(ts["p_vpp_kw"].tolist(), rel=1e-12)


def test_a_modified_and_a_cancelled_event_are_honoured(wire):
    sc, vtn, ven, results, ref = wire
    calls = {c["id"]: c for c in results.summary["calls"]}
    t18 = sc.time.calendar.instant_s("18:00")
    assert calls["extended"]["modification"] == 1
    assert calls["extended"]["end_s"] == pytest.approx(t18 + 3600.0)  # extended from 18:30 to 19:00
    assert calls["extended"]["n_ticks_active"] == 12
    assert calls["cancelled"]["cancelled"] is True
    assert calls["cancelled"]["requested_kwh"] == 0.0 and calls["cancelled"]["n_ticks_active"] == 0
    sent = {(r["event_id"], r["modification"]) for r in vtn.timeline.rows if r["what"] == "sent"}
    assert {("extended", 1), ("cancelled", 1)} <= sent
    received = {(r["event_id"], r["modification"]) for r in ven.timeline.rows if r["what"] == "received"}
    assert {("extended", 0), ("extended", 1), ("cancelled", 0), ("cancelled", 1)} <= received


def test_the_protocol_timeline_has_wall_and_simulated_times(wire):
    sc, vtn, ven, results, ref = wire
    s = ven.summary()
    assert s["n_ticks_reported"] == sc.time.n_ticks and s["n_ticks_unsent"] == 0
    lat = {(r["event_id"], r["modification"]): r for r in vtn.summary()["opt_latency"]}
    assert 0.0 < lat[("shave", 0)]["latency_wall_s"] < 5.0
    row = next(r for r in ven.timeline.rows if r["what"] == "received" and r["event_id"] == "shave")
    assert row["wall_s"] > 0.0 and row["t_s"] >= sc.time.calendar.instant_s("13:00")
    assert row["sim_iso"].startswith("2025-07-15")


def test_a_dropped_connection_is_retried():
    sc = load_scenario(SMALL)
    vtn, ven, results = asyncio.run(_exchange(sc, drop_s=0.6))
    whats = [r["what"] for r in ven.timeline.rows]
    assert "connection_lost" in whats and "connection_restored" in whats
    assert whats.index("connection_lost") < whats.index("connection_restored")
    assert results.completed
    # the events announced while the VTN was down reach the VEN after it comes back, and are answered
    assert any(r["what"] == "opt" and r["event_id"] == "shave" and r["opt"] == "optIn" for r in vtn.timeline.rows)
    # no telemetry is lost: reports that failed are sent again
    assert sorted(r["t_s"] for r in vtn.reports) == pytest.approx(results.timeseries["t_s"].tolist())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def idle_session():
    """A plant for VENs that only register (their engine never runs)."""
    return prepare_run(load_scenario(SMALL), local_calls=False)


async def _register(session, pki, pair, *, signed=True, timeout_s=1.0):
    """A TLS VTN on loopback, and a VEN presenting ``pair`` that tries to register; returns (vtn, error)."""
    sc = session.scenario
    vtn = VTN(sc, port=0, speed=SPEED, poll_s=POLL_S, tls=TLSFiles(pki.server.cert, pki.server.key, pki.ca))
    await vtn.start()
    ven = VEN(session, vtn.url, speed=SPEED, poll_s=POLL_S, tls=TLSFiles(pair.cert, pair.key, pki.ca),
              vtn_fingerprint=fingerprint(pki.server.cert), connect_timeout_s=timeout_s)
    if not signed:
        from openleadr.messaging import create_message

        ven.client._create_message = partial(create_message, disable_signature=True)
    error = None
    try:
        await ven.register()
    except VTNUnreachable as exc:
        error = str(exc)
    finally:
        if ven.client.client_session is not None:
            await ven.client.client_session.close()
        await vtn.stop()
    return vtn, error


def test_a_signed_ven_registers_over_mutual_tls(pki, idle_session):
    vtn, error = asyncio.run(_register(idle_session, pki, pki.client))
    assert error is None
    (info,) = vtn.vens.values()
    assert info["fingerprint"] == fingerprint(pki.client.cert)  # later messages must be signed with it


def test_an_unsigned_message_is_rejected_when_signatures_are_required(pki, idle_session):
    vtn, error = asyncio.run(_register(idle_session, pki, pki.client, signed=False))
    assert error is not None and "could not register" in error
    assert not vtn.vens
    rejected = [r for r in vtn.timeline.rows if r["what"] == "rejected"]
    assert rejected and all(r["status"] == 403 and "unsigned" in r["reason"] for r in rejected)


def test_an_expired_certificate_is_rejected_with_a_clear_error(pki, idle_session, tmp_path):
    with pytest.raises(SecurityError, match="expired on"):
        check_security("127.0.0.1", pki.expired.cert, pki.expired.key, pki.ca)
    # the CLI says so before any work
    out = tmp_path / "out"
    r = _vpp("ven", str(SMALL), "--vtn", "https://127.0.0.1:9/x", "--cert", str(pki.expired.cert), "--key",
             str(pki.expired.key), "--ca", str(pki.ca), "--out", str(out))
    assert r.returncode == 2 and "--cert" in r.stderr and "expired on" in r.stderr
    assert not out.exists()
    # and a VTN refuses it in the TLS handshake, as it refuses a certificate from another CA
    for pair in (pki.expired, pki.stranger):
        vtn, error = asyncio.run(_register(idle_session, pki, pair, timeout_s=0.5))
        assert error is not None and "TLS handshake" in error and not vtn.vens


def test_an_unreachable_url_is_a_clear_error_at_start(idle_session, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b"

    async def attempt():
        ven = VEN(idle_session, url, connect_timeout_s=0.3, poll_s=0.1)
        try:
            await ven.run()
        finally:
            assert ven.client.client_session is None or ven.client.client_session.closed

    with pytest.raises(VTNUnreachable, match=r"could not register within 0.3 s \(.*Cannot connect to host"):
        asyncio.run(attempt())
    out = tmp_path / "out"
    r = _vpp("ven", str(SMALL), "--vtn", url, "--connect-timeout-s", "0.2", "--out", str(out), "-q")
    assert r.returncode == 2 and "could not reach the VTN" in r.stderr and "nothing written" in r.stderr
    assert not out.exists()


def test_a_malformed_or_out_of_schema_payload_is_a_logged_rejection(idle_session):
    async def go():
        import aiohttp

        sc = idle_session.scenario
        vtn = VTN(sc, port=0, speed=SPEED, poll_s=POLL_S)
        await vtn.start()
        async with aiohttp.ClientSession() as http:
            for body in (b"<not xml", b"<oadrPayload xmlns='urn:nothing'><x/></oadrPayload>"):
                async with http.post(f"{vtn.url}/OadrPoll", data=body,
                                     headers={"content-type": "application/xml"}) as resp:
                    assert resp.status >= 400
        ven = VEN(idle_session, vtn.url, speed=SPEED, poll_s=POLL_S, connect_timeout_s=5)
        await ven.register()  # the VTN still serves
        # the VEN side: an event without an active period, and one for an operator the plant lacks
        bad = {"event_descriptor": {"event_id": "broken", "modification_number": 0}, "event_signals": [],
               "response_required": "always"}
        good = call_to_event(vtn.calls[0], vtn.clock, vtn.bus_labels, ven.client.ven_id)
        from dataclasses import asdict

        alien = asdict(good)
        alien["event_descriptor"]["event_id"] = "alien"
        alien["targets"] = [{"group_id": "operator:nobody"}]
        ven._on_distribute({"request_id": "r1", "events": [bad, alien]})
        await asyncio.sleep(0.3)  # the opt-out answers go out
        await ven.client.client_session.close()
        await vtn.stop()
        return vtn, ven

    vtn, ven = asyncio.run(go())
    assert [r["status"] for r in vtn.timeline.rows if r["what"] == "rejected"] == [400, 400]
    reasons = {r["event_id"]: r["reason"] for r in ven.timeline.rows if r["what"] == "rejected"}
    assert "malformed" in reasons["broken"]
    assert "operator 'nobody'" in reasons["alien"] and "valid: evnet_north" in reasons["alien"]
    assert {r["event_id"]: r["opt"] for r in ven.timeline.rows if r["what"] == "opt_sent"} == \
        {"broken": "optOut", "alien": "optOut"}
    assert not ven.pending  # nothing rejected reaches the engine


def test_events_survive_the_wire_unchanged():
    """Every version of the shipped events scenario, written as OpenADR XML and read back, is the same call."""
    from openleadr.messaging import create_message, parse_message

    from vpp.build import build_plant

    sc = load_scenario(ROOT / "scenarios" / "events" / "demo.yaml")
    plant = build_plant(sc)
    clock = SimClock(sc.time.calendar, 60.0)
    labels = [str(int(b)) for b in plant.grid.bus_index]
    index = PlantIndex({lab: i for i, lab in enumerate(labels)}, ("evnet_north", "tower_co", "building_mgr"),
                       tuple(f.name for f in plant.fleets))
    n = 0
    for call in plant.calls:
        for _, version in call.versions:
            xml = create_message("oadrDistributeEvent", events=[call_to_event(version, clock, labels, "ven")],
                                 request_id="r", vtn_id="VTN",
                                 response={"response_code": 200, "response_description": "OK", "request_id": "r"})
            _, payload = parse_message(xml)
            back = event_to_call(payload["events"][0], clock, index, received_s=0.0)
            for name in ("call_id", "direction", "p_kw", "start_s", "end_s", "notification_s", "bus_idx",
                         "modification", "recovery_s", "ramp_up_s", "signal", "operators", "fleets",
                         "response_required", "tier", "cancelled"):
                assert getattr(back, name) == pytest.approx(getattr(version, name)), (call.call_id, name)
            for a, b in ((back.intervals, version.intervals), (back.price_intervals, version.price_intervals)):
                assert len(a) == len(b) and all(x == pytest.approx(y) for x, y in zip(a, b))
            n += 1
    assert n >= 4
    # A setpoint event (an absolute cap on its buses' power) travels as a LOAD_DISPATCH setpoint, unsigned.
    first = plant.calls[0].versions[0][1]
    cap = replace(first, signal="setpoint_kw", intervals=((first.start_s, first.end_s, 1234.5),), p_kw=1234.5,
                  operators=None, fleets=None, updates=(), price_intervals=())
    xml = create_message("oadrDistributeEvent", events=[call_to_event(cap, clock, labels, "ven")], request_id="r",
                         vtn_id="VTN", response={"response_code": 200, "response_description": "OK", "request_id": "r"})
    assert b"setpoint" in (xml if isinstance(xml, bytes) else xml.encode())
    _, payload = parse_message(xml)
    back = event_to_call(payload["events"][0], clock, index, received_s=0.0)
    assert back.signal == "setpoint_kw" and back.direction is cap.direction
    assert back.intervals[0] == pytest.approx(cap.intervals[0]) and back.setpoint_kw_at(first.start_s) == 1234.5


def test_an_event_for_an_unknown_bus_is_rejected_naming_it():
    from openleadr.messaging import create_message, parse_message

    from vpp.build import build_plant

    sc = load_scenario(SMALL)
    plant = build_plant(sc)
    clock = SimClock(sc.time.calendar, 60.0)
    labels = [str(int(b)) for b in plant.grid.bus_index]
    call = plant.calls[0]
    from dataclasses import replace

    xml = create_message("oadrDistributeEvent",
                         events=[call_to_event(replace(call, bus_idx=(0,)), clock, ["99999"] + labels[1:], "ven")],
                         request_id="r", vtn_id="VTN",
                         response={"response_code": 200, "response_description": "OK", "request_id": "r"})
    _, payload = parse_message(xml)
    index = PlantIndex({lab: i for i, lab in enumerate(labels)}, ("evnet_north",), ("ac_piles",))
    with pytest.raises(EventRejected, match="bus '99999' is not in this VEN's grid"):
        event_to_call(payload["events"][0], clock, index, received_s=0.0)


# --- the command line ----------------------------------------------------------------------------------


@dataclass
class _Ran:
    returncode: int
    stderr: str


def _vpp(*args):
    """The CLI in this process (a subprocess would pay vpp's import time per call)."""
    from typer.testing import CliRunner

    from vpp.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    return _Ran(r.exit_code, r.output)


def test_binding_off_loopback_needs_tls(tmp_path):
    out = tmp_path / "vtn"
    r = _vpp("vtn", str(SMALL), "--host", "0.0.0.0", "--out", str(out))
    assert r.returncode == 2
    assert "--host 0.0.0.0" in r.stderr and "--cert, --key and --ca" in r.stderr
    assert not out.exists()
    r = _vpp("vtn", str(SMALL), "--cert", str(tmp_path / "x.crt"))
    assert r.returncode == 2 and "missing --key, --ca" in r.stderr


def test_the_commands_without_the_extra_name_it(monkeypatch):
    from typer.testing import CliRunner

    import vpp.protocols.openadr as adr
    from vpp.cli import app

    def missing():
        raise adr.ProtocolsMissing(adr.EXTRA_HINT)

    monkeypatch.setattr(adr, "require_openleadr", missing)
    for args in (["vtn", str(SMALL)], ["ven", str(SMALL), "--vtn", "http://127.0.0.1:1/x"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and "install vpp[protocols]" in r.output


@pytest.mark.slow
def test_two_processes_match_the_in_memory_run(tmp_path):
    """`vpp vtn` and `vpp ven` as two processes over loopback: the in-memory run's delivered energy."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scenario = ROOT / "scenarios" / "default.yaml"
    vtn = subprocess.Popen([sys.executable, "-m", "vpp.cli", "vtn", str(scenario), "--port", str(port), "--speed",
                            "2000", "--poll-s", "0.2", "--out", str(tmp_path / "vtn"), "-q"])
    try:
        r = subprocess.run([sys.executable, "-m", "vpp.cli", "ven", str(scenario), "--vtn",
                            f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b", "--speed", "2000", "--poll-s", "0.2",
                            "--out", str(tmp_path / "ven"), "-q"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert vtn.wait(timeout=60) == 0
    finally:
        vtn.kill()
    summary = json.loads((tmp_path / "ven" / "summary.json").read_text())
    ref = run_scenario(load_scenario(scenario))
    assert {c["id"]: c["delivered_kwh"] for c in summary["calls"]} == pytest.approx(_delivered(ref), rel=1e-9)
    protocol = json.loads((tmp_path / "vtn" / "protocol.json").read_text())
    assert protocol["opt_latency"][0]["opt"] == "optIn"


def test_vpp_loadgen_vens_register_opt_in_and_report_to_vpp_vtn():
    """Interop of our two ends with standard VEN behaviour: lean VENs (vpp loadgen) that report only what a VTN
    requests. The VTN requests every VEN's telemetry report, and keeps exactly what the VENs say was acknowledged."""
    from vpp.protocols import loadgen

    sc = load_scenario(ROOT / "tests" / "protocols" / "adr-small.yaml")
    n_vens = 40

    async def go():
        vtn = VTN(sc, port=0, speed=SPEED, poll_s=0.2)
        await vtn.start()
        serving = asyncio.create_task(vtn.run(wait_s=20, grace_s=3.0))  # issues the day's events (~3 s)
        try:
            res = await loadgen.run(loadgen.LoadgenConfig(vtn.url, n_vens, duration_s=5.0, poll_s=0.2, report_s=0.2,
                                                          seed=3))
            await serving
        finally:
            await vtn.stop()
        return res, vtn

    res, vtn = asyncio.run(go())
    assert res["errors"]["total"] == 0, res["errors"]
    assert res["registration"]["registered"] == n_vens == len(vtn.vens)
    rep = res["reports"]
    assert rep["vens_with_report_requested"] == n_vens
    assert rep["acked"] > 0, (res["event_opt_in"], rep)
    # Every value the VENs had acknowledged is in the VTN's record, once per VEN and instant.
    assert len(vtn.reports) == rep["acked"] - vtn.n_duplicate_reports
    assert sum(r["p_kw"] for r in vtn.reports) == pytest.approx(rep["acked_sum_kw"], rel=1e-9)
    opts = vtn.timeline.find("opt")
    assert opts and all(o["opt"] == "optIn" for o in opts)
