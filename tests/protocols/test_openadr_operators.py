"""OpenADR 2.0b with one VEN per operator (scenario ``openadr: {vens: operator}``) over loopback.

References, independent of the VENs' own bookkeeping: the recorder's per-fleet power summed per
operator (what each operator's VEN must have reported), the scenario's own events (what the VTN's
split must add up to), and the in-memory run of the same split events (delivered energy per
operator call).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, replace
from pathlib import Path

import pytest

pytest.importorskip("openleadr")

from vpp.build import build_plant  # noqa: E402
from vpp.metrics.columns import fleet_col  # noqa: E402
from vpp.protocols.clock import SimClock  # noqa: E402
from vpp.protocols.openadr import (  # noqa: E402
    VEN, VTN, call_to_event, operator_call_id, operator_capacity_kw, run_vens, split_by_operator,
)
from vpp.run import prepare_run  # noqa: E402
from vpp.scenario import load_scenario  # noqa: E402

HERE = Path(__file__).parent
OPS = HERE / "adr-small-operators.yaml"
SPEED = 10000.0  # simulated s per wall s (as tests/protocols/test_openadr.py)
POLL_S = 0.05


async def _exchange(scenario):
    vtn = VTN(scenario, port=0, speed=SPEED, poll_s=POLL_S)
    await vtn.start()
    session = prepare_run(scenario, local_calls=False)
    clock = SimClock(scenario.time.calendar, SPEED)
    vens = [VEN(session, vtn.url, speed=SPEED, poll_s=POLL_S, report_s=0.2, connect_timeout_s=10, operator=op,
                clock=clock) for op in session.engine.portfolios]
    serving = asyncio.create_task(vtn.run(wait_s=20, grace_s=0.5))
    results = await run_vens(vens)
    await serving
    await vtn.stop()
    return vtn, vens, results


@pytest.fixture(scope="module")
def wire():
    """One exchange of the small day with a VEN per operator (read-only for the tests)."""
    sc = load_scenario(OPS)
    vtn, vens, results = asyncio.run(_exchange(sc))
    return sc, vtn, vens, results


def _operators(sc) -> list[str]:
    return list(dict.fromkeys(f.operator for f in sc.fleets))


def test_every_operator_ven_registers_and_reports_its_operators_power(wire):
    sc, vtn, vens, results = wire
    assert results.completed
    ops = _operators(sc)
    assert sorted(v["ven_name"] for v in vtn.vens.values()) == sorted(ops)
    ts = results.timeseries
    ids = {v["ven_name"]: v["ven_id"] for v in vtn.vens.values()}
    for op in ops:
        # the recorder's per-fleet power, summed over the operator's fleets
        want = sum(ts[fleet_col(f.name, "p_kw")].to_numpy() for f in sc.fleets if f.operator == op)
        got = sorted((r["t_s"], r["p_kw"]) for r in vtn.reports if r["ven_id"] == ids[op])
        assert [t for t, _ in got] == pytest.approx(ts["t_s"].tolist()), op
        assert [p for _, p in got] == pytest.approx(want.tolist(), rel=1e-12, abs=1e-9), op
    # the operators' reports differ from each other and add up to the plant
    total = sum(sorted((r["t_s"], r["p_kw"]) for r in vtn.reports if r["ven_id"] == ids[op])[5][1] for op in ops)
    assert total == pytest.approx(ts["p_vpp_kw"].iloc[5], rel=1e-9)


def test_each_event_is_split_by_rated_capacity_and_the_parts_add_up(wire):
    sc, vtn, vens, results = wire
    plant = build_plant(sc)
    calls = {c["id"]: c for c in results.summary["calls"]}
    ops = _operators(sc)
    for event in ("shave", "extended"):
        src = next(c for c in plant.calls if c.call_id == event)
        parts = [calls[operator_call_id(event, op)] for op in ops]
        # what the engines requested, operator by operator, adds up to the scenario's event
        assert sum(p["requested_kwh"] for p in parts) == pytest.approx(src.energy_kwh(), rel=1e-9), event
        assert sum(p["requested_kw"] for p in parts) == pytest.approx(src.latest.p_kw, rel=1e-9), event
        assert all(p["target_operators"] == [op] for p, op in zip(parts, ops))
    # in proportion to each operator's rated capacity on the event's buses
    cap = operator_capacity_kw(plant.fleets, plant.calls[0], len(plant.grid.bus_index))
    shares = {op: calls[operator_call_id("shave", op)]["requested_kw"] / 300.0 for op in ops}
    assert shares == pytest.approx({op: c / sum(cap.values()) for op, c in cap.items()}, rel=1e-9)
    assert len(set(round(s, 6) for s in shares.values())) == len(ops)  # a real split, not equal parts


def test_an_operator_targeted_event_reaches_only_that_operators_ven(wire):
    sc, vtn, vens, results = wire
    sent = {r["ven_id"] for r in vtn.timeline.rows if r["what"] == "sent" and r["event_id"] == "towers_only"}
    assert sent == {"ven_tower_co"}
    got = {v.operator for v in vens if v.timeline.find("received", event_id="towers_only")}
    assert got == {"tower_co"}
    ids = {c["id"] for c in results.summary["calls"]}
    assert operator_call_id("towers_only", "tower_co") in ids
    assert not [i for i in ids if i.startswith("towers_only@") and i != "towers_only@tower_co"]
    # its whole power goes to that operator
    call = next(c for c in results.summary["calls"] if c["id"] == "towers_only@tower_co")
    assert call["requested_kw"] == pytest.approx(50.0)


def test_opt_answers_are_the_platforms_decision_per_operator_call(wire):
    sc, vtn, vens, results = wire
    calls = {c["id"]: c for c in results.summary["calls"]}
    for v in vens:
        answered = {r["event_id"]: r["opt"] for r in vtn.timeline.rows
                    if r["what"] == "opt" and r["ven_id"] == f"ven_{v.operator}" and r["modification"] == 0}
        assert "shave" in answered
        for eid, opt in answered.items():
            assert opt == calls[operator_call_id(eid, v.operator)]["opt"], (v.operator, eid)


def test_delivered_energy_per_operator_call_matches_the_in_memory_run_of_the_split(wire):
    """The in-memory run of the same split events (no wire) is the reference for each operator call."""
    sc, vtn, vens, results = wire
    session = prepare_run(sc, local_calls=False)
    n_bus = len(session.plant.grid.bus_index)
    plant = build_plant(sc)
    injected = []
    for call in plant.calls:
        cap = operator_capacity_kw(plant.fleets, call, n_bus)
        for t_s, version in call.versions:
            for op, part in split_by_operator(version, cap).items():
                injected.append((t_s, replace(part, call_id=operator_call_id(call.call_id, op))))
    injected.sort(key=lambda r: r[0])
    engine = session.engine
    known: dict[str, object] = {}
    dt_s = sc.time.dt_s
    engine.start(session.on_tick)

    def inject_due(now_s):
        while injected and injected[0][0] <= now_s + 1e-6:
            _, v = injected.pop(0)
            first = known.get(v.call_id)
            call = v if first is None else replace(first, updates=first.updates + ((now_s, v),))
            known[v.call_id] = call
            engine.inject(call)

    # the VENs' events arrived within a poll (500 simulated s) of their announcement, all before their start;
    # here each is taken at the first tick boundary at or after its announcement
    while True:
        inject_due(engine.now_s + dt_s - 1e-6)
        if not engine.advance():
            break
    ref = {c["id"]: c for c in session.finish().summary["calls"]}
    got = {c["id"]: c for c in results.summary["calls"]}
    assert set(got) == set(ref)
    for cid in ref:
        assert got[cid]["delivered_kwh"] is not None
        assert got[cid]["delivered_kwh"] == pytest.approx(ref[cid]["delivered_kwh"], rel=1e-6, abs=1e-6), cid
    assert sum(got[operator_call_id("shave", op)]["delivered_kwh"] for op in _operators(sc)) > 10.0


def test_a_ven_rejects_an_event_for_another_operators_group():
    async def go():
        sc = load_scenario(OPS)
        vtn = VTN(sc, port=0, speed=SPEED, poll_s=POLL_S)
        await vtn.start()
        session = prepare_run(sc, local_calls=False)
        ven = VEN(session, vtn.url, speed=SPEED, poll_s=POLL_S, connect_timeout_s=5, operator="tower_co")
        await ven.register()
        other = replace(vtn.calls[0], operators=("evnet_north",))
        event = asdict(call_to_event(other, vtn.clock, vtn.bus_labels, ven.client.ven_id))
        ven._on_distribute({"request_id": "r1", "events": [event]})
        await asyncio.sleep(0.3)  # the opt-out goes out
        await ven.client.client_session.close()
        await vtn.stop()
        return vtn, ven

    vtn, ven = asyncio.run(go())
    (row,) = [r for r in ven.timeline.rows if r["what"] == "rejected"]
    assert "operator 'evnet_north'" in row["reason"] and "valid: tower_co" in row["reason"]
    assert [(r["event_id"], r["opt"]) for r in ven.timeline.rows if r["what"] == "opt_sent"] == [("shave", "optOut")]
    assert not ven.pending
    # and the VTN refuses a VEN whose name is no operator
    assert vtn._on_register({"ven_name": "stranger"}) is False
    assert "valid: evnet_north, tower_co, building_mgr" in vtn.timeline.find("registration_rejected")[0]["reason"]


def test_an_unknown_vens_value_exits_2_naming_the_field_and_the_valid_values(tmp_path):
    from typer.testing import CliRunner

    from vpp.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text(OPS.read_text().replace("openadr: {vens: operator}", "openadr: {vens: per_fleet}"))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["ven", str(bad), "--vtn", "http://127.0.0.1:9/x", "--out", str(out)])
    assert r.exit_code == 2
    assert "openadr.vens" in r.output and "'platform'" in r.output and "'operator'" in r.output
    assert not out.exists()


def test_per_operator_mode_refuses_a_setpoint_event_and_a_ven_name_before_any_work(tmp_path):
    """A setpoint (an absolute cap on buses) cannot be split among operators: vpp vtn exits 2 at its start; and
    with one VEN per operator, --ven-name (each VEN takes its operator's name) exits 2; nothing written."""
    from typer.testing import CliRunner

    from vpp.cli import app

    cap = tmp_path / "cap.yaml"
    cap.write_text(OPS.read_text().replace(
        "    signals:\n      - type: delta_kw\n        intervals: [{duration: PT30M, value: 200}, {duration: PT30M, value: 300}]",
        "    signals:\n      - type: setpoint_kw\n        intervals: [{duration: PT1H, value: 500}]"))
    assert "setpoint_kw" in cap.read_text()
    out = tmp_path / "vtn"
    r = CliRunner().invoke(app, ["vtn", str(cap), "--port", "0", "--out", str(out), "--wait-s", "1"])
    assert r.exit_code == 2, r.output
    assert "setpoint_kw" in r.output and "openadr.vens: platform" in r.output
    assert not out.exists()
    out = tmp_path / "ven"
    r = CliRunner().invoke(app, ["ven", str(OPS), "--vtn", "http://127.0.0.1:9/x", "--ven-name", "mine",
                                 "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert "--ven-name mine" in r.output
    assert not out.exists()
