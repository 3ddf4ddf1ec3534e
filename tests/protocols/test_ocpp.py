"""OCPP 2.0.1 southbound on loopback: profiles reach simulated stations and set their power.

The reference is an in-memory run of the same scenario (no websocket, no
rounding): what the stations report over MeterValues must match its energy.
Faults (rejection, late answer, dropped connection, malformed payloads) are
logged and leave the previous limit in force; the run goes on.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

pytest.importorskip("ocpp")
pytest.importorskip("websockets")

from typer.testing import CliRunner  # noqa: E402

from vpp.build import build_plant  # noqa: E402
from vpp.cli import app  # noqa: E402
from vpp.protocols.ocpp import (  # noqa: E402
    OcppSouthbound,
    Tap,
    V2GRefused,
    compare,
    limit_w,
    select_chargers,
)
from vpp.run import run_scenario  # noqa: E402
from vpp.scenario import parse_scenario  # noqa: E402


def _scenario_dict(small_dict: dict) -> dict:
    """The small scenario cut to its EV chargers, 2 h of 5-min ticks, no power flow (fast), call at 1 h."""
    d = small_dict
    d["fleets"] = [f for f in d["fleets"] if f["kind"] == "ev"]
    d["time"]["duration_s"] = 7200
    d["grid"]["power_flow"] = False
    d["dr_calls"] = [{"id": "peak", "direction": "reduce", "p_kw": 300, "notification_s": 1800, "start_s": 2400,
                      "end_s": 6000}]
    return d


def _plugged_chargers(sc, fleet: str, n: int) -> tuple[object, np.ndarray]:
    """The fleet and ``n`` charge-only chargers that draw power during the call in memory (so profiles matter)."""
    plant = build_plant(sc)
    f = next(x for x in plant.fleets if x.name == fleet)
    tap = Tap(fleet, np.flatnonzero(~f.v2g))
    run_scenario(sc, southbound={f.operator: tap})
    during = np.array([t["p_kw"] for t in tap.ticks if 2400 <= t["t_s"] < 6000])  # (ticks, devices)
    busy = tap.devices[np.argsort(-during.sum(axis=0), kind="stable")[:n]]
    return f, np.sort(busy)


def test_profiles_reach_the_stations_and_set_their_power_as_in_memory(small_dict):
    sc = parse_scenario(_scenario_dict(small_dict))
    f, devices = _plugged_chargers(sc, "ac", 12)
    plain = run_scenario(sc)
    tap = Tap("ac", devices)
    memory = run_scenario(sc, southbound={f.operator: tap})
    # The tap is transparent: the in-memory reference is the plain run.
    assert plain.timeseries.equals(memory.timeseries)
    with OcppSouthbound.for_fleet(f, devices, tick_timeout_s=5.0) as sb:
        run_scenario(sc, southbound={f.operator: sb})
        held_w = {sid: st.limit_w for sid, st in sb.stations.items()}
    df, summary = compare(tap, sb)
    st = sb.stats()
    n_ticks = sc.time.n_ticks
    assert st["set_charging_profile"]["accepted"] == n_ticks * devices.size == st["set_charging_profile"]["sent"]
    assert st["boot_notification"] == st["status_notification"] == devices.size
    assert st["meter_values"]["readings_received"] == n_ticks * devices.size and summary["n_readings_missing"] == 0
    assert sb.log == []
    # The call reduced these chargers below their rating, and those limits went over the wire.
    assert (df["limit_wire_kw"] < f.p_rated_kw[df["device"]] - 0.5).sum() >= 6
    assert summary["e_memory_kwh"] > 10.0 and summary["n_setpoints_partial"] >= 6
    # Same delivery: the only difference is the spec's 0.1 W resolution of a limit.
    assert summary["e_wire_kwh"] == pytest.approx(summary["e_memory_kwh"], abs=1e-3)
    assert summary["max_abs_diff_kw"] < 2e-3
    np.testing.assert_allclose(df["p_wire_kw"], df["p_memory_kw"], atol=2e-3)
    # Each station holds the last setpoint it was sent, as an OCPP limit.
    last = sb.ticks[-1]["p_set_kw"]
    assert [held_w[sid] for sid in sb.ids] == [limit_w(p) for p in last]


@pytest.fixture
def southbound():
    """Three stations of a made-up fleet, rated 7 kW, with a short per-tick deadline."""
    sb = OcppSouthbound("f", [0, 1, 2], [7.0, 7.0, 7.0], tick_timeout_s=1.0, reconnect_s=0.05)
    with sb:
        yield sb


def test_rejected_or_late_profile_keeps_the_previous_limit_and_is_logged(southbound):
    sb = southbound
    np.testing.assert_allclose(sb.exchange(0.0, 300.0, np.array([7.0, 5.0, 3.0])), [7.0, 5.0, 3.0])
    sb.stations["f-1"].reject = True
    sb.stations["f-2"].delay_s = 2.0  # answers after the 1 s deadline
    held = sb.exchange(300.0, 300.0, np.array([2.0, 2.0, 2.0]))
    np.testing.assert_allclose(held, [2.0, 5.0, 3.0])
    what = {(r["station"], r["t_s"]): r["reason"] for r in sb.log}
    assert "Rejected" in what[("f-1", 300.0)] and "late" in what[("f-2", 300.0)]
    assert sb.outcomes == {"accepted": 4, "rejected": 1, "timed_out": 1}
    sb.stations["f-2"].delay_s = 0.0
    # The late profile is applied when it arrives, and held from then on.
    async def landed():
        while sb.stations["f-2"].limit_w != 2000.0:
            await asyncio.sleep(0.01)

    sb.call_soon(landed, 5.0)
    np.testing.assert_allclose(sb.exchange(600.0, 300.0, np.array([1.23456, 4.0, 4.0])), [1.2346, 5.0, 4.0])
    # A limit with more than one digit after the point is out of the spec: the station rejects it.
    from ocpp.v201 import call

    async def bad_decimal():
        profile = {"id": 1, "stack_level": 0, "charging_profile_purpose": "ChargingStationMaxProfile",
                   "charging_profile_kind": "Absolute",
                   "charging_schedule": [{"id": 1, "charging_rate_unit": "W",
                                          "charging_schedule_period": [{"start_period": 0, "limit": 1234.56}]}]}
        return await sb.csms.points["f-0"].call(call.SetChargingProfile(evse_id=0, charging_profile=profile))

    res = sb.call_soon(bad_decimal)
    assert res.status == "Rejected" and res.status_info["reason_code"] == "InvalidValue"
    assert sb.stations["f-0"].limit_w == 1234.6


def test_dropped_station_reconnects_and_the_run_goes_on(small_dict):
    sc = parse_scenario(_scenario_dict(small_dict))
    f, devices = _plugged_chargers(sc, "ac", 4)
    victim = f"ac-{devices[0]}"

    class Dropping(OcppSouthbound):
        def exchange(self, t_s, dt_s, p_set_kw):
            if t_s == 1200.0:
                self.drop(victim)

                async def gone():  # the CSMS has seen the connection close
                    while victim in self.csms.points:
                        await asyncio.sleep(0.005)
                self.call_soon(gone)
            elif t_s == 1800.0:
                self.wait_connected(victim)
            return super().exchange(t_s, dt_s, p_set_kw)

    tap = Tap("ac", devices)
    run_scenario(sc, southbound={f.operator: tap})
    sb = Dropping.for_fleet(f, devices, tick_timeout_s=5.0, reconnect_s=0.3)
    with sb:
        res = run_scenario(sc, southbound={f.operator: sb})
        accepted_after = sb.stations[victim].n_accepted
    assert res.meta["n_ticks_done"] == sc.time.n_ticks
    st = sb.stats()
    assert st["reconnections"] == 1 and st["boot_notification"] == devices.size + 1
    assert st["set_charging_profile"]["not_connected"] >= 1
    assert any(r["station"] == victim and "not connected" in r["reason"] for r in sb.log)
    assert accepted_after >= sc.time.n_ticks - 5  # profiles reached it again after the reconnection
    # No reading is lost: those metered while disconnected were queued and sent after reconnecting.
    df, summary = compare(tap, sb)
    assert summary["n_readings_missing"] == 0 and st["meter_values"]["readings_pending"] == 0
    others = df[df["station"] != victim]
    np.testing.assert_allclose(others["e_wire_kwh"], others["e_memory_kwh"], atol=1e-4)


def test_malformed_payloads_get_a_call_error_and_nothing_crashes(southbound):
    from ocpp.exceptions import OCPPError
    from ocpp.v201 import call
    from websockets.sync.client import connect

    sb = southbound
    sb.exchange(0.0, 300.0, np.array([6.0, 6.0, 6.0]))
    # A station sending the CSMS an out-of-schema MeterValues, then a frame that is not OCPP at all.
    with connect(f"{sb.csms.url}/rogue", subprotocols=["ocpp2.0.1"], open_timeout=5) as ws:
        ws.send(json.dumps([2, "m1", "MeterValues", {"evseId": "one", "meterValue": []}]))
        reply = json.loads(ws.recv(timeout=5))
        assert reply[0] == 4 and reply[1] == "m1" and reply[2] in ("FormatViolation", "TypeConstraintViolation")
        ws.send("not json at all")
        ws.send(json.dumps([2, "m2", "Heartbeat", {}]))
        assert json.loads(ws.recv(timeout=5))[:2] == [3, "m2"]  # the connection still serves

    # The CSMS sending a station a SetChargingProfile without its schedule (schema check skipped to send it).
    async def no_schedule():
        bad = call.SetChargingProfile(evse_id=0, charging_profile={
            "id": 1, "stack_level": 0, "charging_profile_purpose": "ChargingStationMaxProfile",
            "charging_profile_kind": "Absolute"})
        return await sb.csms.points["f-1"].call(bad, suppress=False, skip_schema_validation=True)

    with pytest.raises(OCPPError):
        sb.call_soon(no_schedule)
    assert sb.stations["f-1"].limit_w == 6000.0  # unchanged
    np.testing.assert_allclose(sb.exchange(300.0, 300.0, np.array([1.0, 2.0, 3.0])), [1.0, 2.0, 3.0])
    sb.metered(300.0, 300.0, np.array([1.0, 2.0, 3.0]))
    assert sb.csms.telemetry["f-2"][600.0] == (3000.0, 250.0)


def test_v2g_chargers_are_refused(small_dict):
    sc = parse_scenario(_scenario_dict(small_dict))
    f = next(x for x in build_plant(sc).fleets if x.name == "ac")
    v2g = np.flatnonzero(f.v2g)
    with pytest.raises(V2GRefused, match="cannot express discharge"):
        OcppSouthbound.for_fleet(f, v2g[:2])
    drawn = select_chargers(f.v2g, 50, np.random.default_rng(0))
    assert not f.v2g[drawn].any() and np.unique(drawn).size == 50


def _cli(args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(("args", "expected"), [
    (["--fleet", "nope"], "allowed (EV fleets): ac, dc"),
    (["--fleet", "towers"], "'towers' is a 'basestation' fleet"),
    (["--fleet", "ac", "--operator", "nobody"], "allowed: evnet, towerco, bldg"),
    (["--fleet", "ac", "--operator", "towerco"], "belongs to operator 'evnet'"),
    (["--fleet", "ac", "--station", "ac-300"], "allowed: ac-0 .. ac-299"),
    (["--fleet", "ac", "--sample", "5000"], "--sample: 5000 is not in 1 .."),
    (["--fleet", "ac", "--sample", "3", "--station", "1"], "exclude each other"),
])
def test_bad_names_exit_2_and_write_nothing(tmp_path, small_dict, args, expected):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_dict))
    out = tmp_path / "out"
    res = _cli(["ocpp", path, *args, "--out", out])
    assert res.exit_code == 2, res.output
    assert expected in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_v2g_station_exits_2(tmp_path, small_dict):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_dict))
    f = next(x for x in build_plant(parse_scenario(small_dict)).fleets if x.name == "ac")
    res = _cli(["ocpp", path, "--fleet", "ac", "--station", f"ac-{np.flatnonzero(f.v2g)[0]}"])
    assert res.exit_code == 2 and "cannot be steered over OCPP 2.0.1" in res.output


def test_without_the_extra_exits_2(tmp_path, small_dict, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_dict))
    monkeypatch.setitem(sys.modules, "ocpp", None)  # import ocpp now raises ImportError
    res = _cli(["ocpp", path, "--fleet", "ac"])
    assert res.exit_code == 2 and "install vpp[protocols]" in res.output


def test_vpp_run_does_not_import_the_protocol_libraries():
    code = ("import sys, vpp, vpp.run, vpp.cli; "
            "print(sorted(m for m in ('ocpp', 'websockets', 'vpp.protocols.ocpp') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_cli_writes_the_comparison(tmp_path, small_dict):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_scenario_dict(small_dict)))
    out = tmp_path / "out"
    res = _cli(["ocpp", path, "--fleet", "dc", "--sample", "5", "--out", out, "-q"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "ocpp.json").read_text())
    assert len(doc["stations"]) == 5 and doc["summary"]["n_readings_missing"] == 0
    assert doc["messages"]["set_charging_profile"]["accepted"] == 5 * 24
    assert doc["summary"]["e_wire_kwh"] == pytest.approx(doc["summary"]["e_memory_kwh"], abs=1e-3)
    assert "SetChargingProfile: 120 sent, 120 accepted" in res.output
    assert (out / "ocpp_ticks.csv").read_text().startswith("t_s,station,device")
