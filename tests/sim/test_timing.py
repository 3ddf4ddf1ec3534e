"""Time that agents can trust: instructions act from their true arrival, calls for the part of a tick they cover.

Every expectation here is derived by hand from the link structure and the
call's times, never read back from the engine: a call notice travels grid
operator -> platform (one link), the platform answers it the moment it
arrives by sending an instruction platform -> operator (another link), so with
one-way latency ``L`` an instruction is in force from ``notification_s + 2 L``.
The platform re-sends every known call's instruction at each tick start, but
with the same target, so that changes nothing in force once the first one has
arrived. Energies are kWh, powers kW (load convention: a reduce instruction is
negative).
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from vpp.dr import Direction, DRCall
from vpp.metrics.columns import GRID, PLANT, split
from vpp.run import run_scenario
from vpp.scenario import parse_scenario
from vpp.sim import Engine
from towers import full_towers  # tests/helpers

S_PER_H = 3600.0  # stated here, not imported: the expectations are computed independently


def _overlap_s(a0: float, a1: float, b0: float, b1: float) -> float:
    """Length of ``[a0, a1) ∩ [b0, b1)`` [s]."""
    return max(0.0, min(a1, b1) - max(a0, b0))




def _engine_run(calls, dt_s: float, n_ticks: int, latency_s: float = 0.0):
    engine = Engine(full_towers(), calls, 2, dt_s, n_ticks, latency_s=latency_s, rng=np.random.default_rng(0))
    out = []
    engine.run(out.append)
    return out


def _applied_kwh(o, j: int = 0) -> float:
    """Energy the operators applied for call ``j`` in one tick [kWh, signed]."""
    return float(o.instructed_bus_kw[j].sum()) * o.dt_s / S_PER_H


# --- 1. an instruction acts from its true arrival --------------------------------------------------------

DT_S = 300.0
P_KW = 20.0
START_S = 300.0  # a tick boundary; notified at its start
END_S = 1500.0  # four ticks


def _expected_applied_kwh(latency_s: float, t_s: float) -> float:
    """Energy [kWh, reduce: negative] the operators apply in the tick starting at ``t_s``.

    The notice leaves the grid operator at ``START_S`` and reaches the platform
    ``L`` later; the platform's instruction reaches the operator another ``L``
    later. (Added in the same order as the simulation clock adds them, so the
    arrival time is the same float.)
    """
    t_arrival_s = (START_S + latency_s) + latency_s
    return -P_KW * _overlap_s(t_s, t_s + DT_S, max(t_arrival_s, START_S), END_S) / S_PER_H


@pytest.mark.parametrize("latency_s", [0.001, 150.0, 299.0])
def test_instruction_acts_from_its_true_arrival(latency_s):
    call = DRCall("c", Direction.REDUCE, P_KW, START_S, END_S, START_S)
    out = _engine_run([call], DT_S, 6, latency_s)
    got = [_applied_kwh(o) for o in out]
    want = [_expected_applied_kwh(latency_s, o.t_s) for o in out]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    first = next(o for o in out if o.t_s == START_S)
    # The call's first tick: P (dt - 2L)/dt of the tick's energy when 2L < dt, else nothing.
    assert _applied_kwh(first) == pytest.approx(-P_KW * max(DT_S - 2 * latency_s, 0.0) / S_PER_H, rel=1e-9, abs=1e-12)
    # Over the call, everything but the 2L it took the instruction to arrive.
    assert sum(got) == pytest.approx(-P_KW * (END_S - START_S - 2 * latency_s) / S_PER_H, rel=1e-12)
    # Plant and twin share their state up to the first tick of the call, so in that tick
    # the twin-measured delivery is exactly what was applied.
    assert (first.p_twin_fleet_kw.sum() - first.p_fleet_kw.sum()) * DT_S / S_PER_H == pytest.approx(
        -_applied_kwh(first), rel=1e-9, abs=1e-12
    )


def test_one_millisecond_and_299_seconds_differ_by_their_latency():
    call = DRCall("c", Direction.REDUCE, P_KW, START_S, END_S, START_S)
    fast = _engine_run([call], DT_S, 6, 0.001)
    slow = _engine_run([call], DT_S, 6, 299.0)
    first = [i for i, o in enumerate(fast) if o.t_s == START_S][0]
    # First tick: 1 ms latency costs 2 ms of the tick, 299 s latency the whole tick (598 s > 300 s).
    assert _applied_kwh(fast[first]) == pytest.approx(-P_KW * (DT_S - 0.002) / S_PER_H, rel=1e-12)
    assert _applied_kwh(slow[first]) == 0.0
    # Second tick: the slow instruction arrives at 300 + 598 = 898 s and acts for the last 2 s.
    assert _applied_kwh(slow[first + 1]) == pytest.approx(-P_KW * 2.0 / S_PER_H, rel=1e-9)
    assert _applied_kwh(fast[first + 1]) == pytest.approx(-P_KW * DT_S / S_PER_H, rel=1e-12)
    # Over the run the difference is the extra 2 x (299 - 0.001) s without the instruction.
    diff_kwh = sum(map(_applied_kwh, slow)) - sum(map(_applied_kwh, fast))
    assert diff_kwh == pytest.approx(P_KW * 2 * (299.0 - 0.001) / S_PER_H, rel=1e-9)


def test_zero_latency_notice_at_the_start_acts_for_the_whole_tick():
    call = DRCall("c", Direction.REDUCE, P_KW, START_S, END_S, START_S)
    out = _engine_run([call], DT_S, 6, 0.0)
    np.testing.assert_allclose([_applied_kwh(o) for o in out], [_expected_applied_kwh(0.0, o.t_s) for o in out],
                               rtol=1e-12, atol=0.0)


# --- 2. a call that starts and ends inside a tick --------------------------------------------------------


def test_mid_tick_call_acts_for_the_part_of_the_tick_it_covers():
    start_s, end_s = 450.0, 1950.0  # both halfway through a 300 s tick
    call = DRCall("c", Direction.REDUCE, P_KW, start_s, end_s, start_s)
    out = _engine_run([call], DT_S, 8, 0.0)
    frac = {o.t_s: float(o.active_fraction[0]) for o in out}
    assert frac == {0.0: 0.0, 300.0: 0.5, 600.0: 1.0, 900.0: 1.0, 1200.0: 1.0, 1500.0: 1.0, 1800.0: 0.5, 2100.0: 0.0}
    requested_kwh = sum(float(o.requested_kw[0]) * DT_S / S_PER_H for o in out)
    assert requested_kwh == pytest.approx(P_KW * (end_s - start_s) / S_PER_H, rel=1e-12)
    # Notified at its start with no latency: the instruction arrives at 450 s and the call
    # is applied for exactly its active period.
    applied_kwh = sum(map(_applied_kwh, out))
    assert applied_kwh == pytest.approx(-P_KW * (end_s - start_s) / S_PER_H, rel=1e-12)


def _short(d: dict, duration_s: float, power_flow: bool) -> dict:
    d = copy.deepcopy(d)
    d["time"]["duration_s"] = duration_s
    d["grid"]["power_flow"] = power_flow
    return d


def test_mid_tick_call_in_a_run(small_dict):
    d = _short(small_dict, 3600, power_flow=False)
    p_kw, start_s, end_s = 400.0, 450.0, 1950.0
    d["dr_calls"] = [{"id": "mid", "direction": "reduce", "p_kw": p_kw, "start_s": start_s, "end_s": end_s}]
    res = run_scenario(parse_scenario(d))
    ts = res.timeseries
    dt_s = d["time"]["dt_s"]
    t = ts["t_s"].to_numpy()
    want_frac = [_overlap_s(ti, ti + dt_s, start_s, end_s) / dt_s for ti in t]
    np.testing.assert_array_equal(ts["call.mid.active_fraction"], want_frac)
    assert ts.loc[ts["t_s"] == 300.0, "call.mid.active_fraction"].item() == 0.5
    np.testing.assert_allclose(ts["call.mid.requested_kw"], p_kw * np.array(want_frac), rtol=1e-12)
    want_kwh = p_kw * (end_s - start_s) / S_PER_H
    assert float(ts["call.mid.requested_kw"].sum()) * dt_s / S_PER_H == pytest.approx(want_kwh, rel=1e-12)
    call = res.summary["calls"][0]
    assert call["requested_kwh"] == pytest.approx(want_kwh, rel=1e-12)
    assert call["n_ticks_active"] == 6
    # In its first tick the plant starts from the twin's state: it delivers the half tick in full.
    assert ts.loc[ts["t_s"] == 300.0, "call.mid.delivered_kw"].item() == pytest.approx(p_kw * 0.5, rel=1e-9)


# --- 3. determinism; the twin only measures --------------------------------------------------------------


def _is_twin_column(col: str) -> bool:
    """Columns that exist only because of the twin (delivery, the no-call counterfactual)."""
    parts = split(col)
    if col in ("p_twin_kw", "p_change_kw", "p_delivered_kw") or "twin" in parts[-1]:
        return True
    return parts[0] == "call" and (parts[2] in ("delivered_kw", "target_change_kw", "delivered"))


@pytest.fixture(scope="module")
def twin_runs(make_small_dict):
    """The same scenario run twice with its twin and once without (read only: tests must not change them)."""
    d = _short(make_small_dict(), 3600, power_flow=True)
    d["dr_calls"][0].update(notification_s=600, start_s=1500, end_s=2700)
    d["communication"] = {"latency_s": 7.0}
    on = parse_scenario(d)
    off = parse_scenario({**d, "measurement": {"twin": False}})
    return run_scenario(on), run_scenario(on), run_scenario(off)


def test_same_scenario_same_seed_same_timeseries(twin_runs):
    a, b, _ = twin_runs
    pd.testing.assert_frame_equal(a.timeseries, b.timeseries, check_exact=True)
    pd.testing.assert_frame_equal(a.buses, b.buses, check_exact=True)
    pd.testing.assert_frame_equal(a.bus_timeseries, b.bus_timeseries, check_exact=True)
    assert a.summary == b.summary


def test_twin_off_same_plant_and_delivery_unknown(twin_runs):
    on, _, off = twin_runs
    ts_on, ts_off = on.timeseries, off.timeseries
    assert list(ts_on.columns) == list(ts_off.columns)
    twin_cols = [c for c in ts_on.columns if _is_twin_column(c)]
    plant_cols = [c for c in ts_on.columns if not _is_twin_column(c)]
    # The columns this test must see: every fleet's power and the plant-wide totals on the plant side.
    assert {"p_vpp_kw", "fleet.ac.p_kw", "fleet.towers.p_kw", "kind.ev.p_kw", "vm_min_pu"} <= set(plant_cols)
    assert {"p_twin_kw", "p_delivered_kw", "call.peak.delivered_kw", "call.peak.target_change_kw",
            "call.peak.delivered.ev_kw", "fleet.ac.p_twin_kw", "kind.ev.p_twin_kw", "vm_min_twin_pu"} <= set(twin_cols)
    # The plant (its power, its fleets, what was requested) is the same trajectory, bit for bit.
    exact = [c for c in plant_cols if c not in GRID]
    pd.testing.assert_frame_equal(ts_on[exact], ts_off[exact], check_exact=True)
    # Its grid too (and bit for bit in the test below: the twin solves on its own copy of the grid).
    grid = [c for c in plant_cols if c in GRID]
    pd.testing.assert_frame_equal(ts_on[grid], ts_off[grid], check_exact=False, rtol=1e-8, atol=1e-8)
    # With no twin, delivery is unknown everywhere; with it, it is known everywhere.
    assert ts_off[twin_cols].isna().all().all()
    assert ts_on[twin_cols].notna().all().all()
    assert on.summary["delivery_measured_against"] == "twin"
    assert off.summary["delivery_measured_against"] is None
    assert off.summary["plant"]["e_twin_kwh"] is None and off.summary["plant"]["call_cost_by_kind"] is None
    assert off.summary["plant"]["e_vpp_kwh"] == on.summary["plant"]["e_vpp_kwh"]
    c_on, c_off = on.summary["calls"][0], off.summary["calls"][0]
    assert c_off["requested_kwh"] == c_on["requested_kwh"]
    for key in ("delivered_kwh", "delivered_ratio", "tick_ratio_min", "tick_ratio_mean", "time_to_90pct_s",
                "tracking_rmse_kw", "rebound_peak_kw", "rebound_kwh", "delivered_by_kind_kwh"):
        assert c_off[key] is None, key
        assert c_on[key] is not None, key
    assert off.buses["e_twin_kwh"].isna().all()
    assert off.bus_timeseries["p_twin_kw"].isna().all()
    np.testing.assert_array_equal(on.bus_timeseries["p_vpp_kw"], off.bus_timeseries["p_vpp_kw"])


def test_twin_off_same_plant_grid_bit_for_bit(twin_runs):
    on, _, off = twin_runs
    grid = [c for c in on.timeseries.columns if c in GRID and not _is_twin_column(c)]
    pd.testing.assert_frame_equal(on.timeseries[grid], off.timeseries[grid], check_exact=True)


# --- 4. user names never collide with result columns -----------------------------------------------------


def _named(small_dict, names: list[str], operators: list[str], call_id: str) -> dict:
    d = _short(small_dict, 3600, power_flow=False)
    for f, name, op in zip(d["fleets"], names, operators):
        f["name"], f["operator"] = name, op
    d["dr_calls"] = [{"id": call_id, "direction": "reduce", "p_kw": 200, "start_s": 1200, "end_s": 2400}]
    return d


def test_fleet_names_never_collide_with_columns(small_dict):
    # kinds of the fixture's fleets: ev, ev, basestation, building
    names = ["vpp", "p_vpp_kw", "ev", "default"]
    res = run_scenario(parse_scenario(_named(small_dict, names, ["default", "vpp", "p_twin_kw", "t_s"], "p_kw")))
    ts = res.timeseries
    assert not ts.columns.duplicated().any()
    for col in ts.columns:
        assert col in PLANT or col in GRID or col == "grid_converged" or split(col)[0] in ("fleet", "kind", "call"), col
    for q in ("p_kw", "p_twin_kw"):
        total = ts["p_vpp_kw" if q == "p_kw" else "p_twin_kw"].to_numpy()
        np.testing.assert_allclose(sum(ts[f"fleet.{n}.{q}"].to_numpy() for n in names), total, rtol=1e-12)
        np.testing.assert_allclose(ts[f"kind.ev.{q}"], ts[f"fleet.vpp.{q}"] + ts[f"fleet.p_vpp_kw.{q}"], rtol=1e-12)
        np.testing.assert_array_equal(ts[f"kind.basestation.{q}"], ts[f"fleet.ev.{q}"])
        np.testing.assert_array_equal(ts[f"kind.building.{q}"], ts[f"fleet.default.{q}"])
    assert "fleet.ev.soc_mean" in ts and "fleet.default.t_in_mean_c" in ts
    assert {n: f["kind"] for n, f in res.summary["fleets"].items()} == {
        "vpp": "ev", "p_vpp_kw": "ev", "ev": "basestation", "default": "building"
    }
    assert [c["id"] for c in res.summary["calls"]] == ["p_kw"]
    assert "call.p_kw.delivered_kw" in ts
    # A name is only a label: the same plant under plain names runs the same trajectory.
    plain = run_scenario(parse_scenario(_named(small_dict, ["a", "b", "c", "d"], ["o1", "o2", "o3", "o4"], "x")))
    np.testing.assert_array_equal(plain.timeseries["p_vpp_kw"], ts["p_vpp_kw"])
    np.testing.assert_array_equal(plain.timeseries["p_delivered_kw"], ts["p_delivered_kw"])
