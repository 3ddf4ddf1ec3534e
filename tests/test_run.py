"""End to end through the Python API: delivery, invariants over a run, determinism, partial results."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from vpp.metrics.report import write_results
from vpp.run import RunError, run_scenario
from vpp.scenario import ScenarioError, load_scenario, parse_scenario


def test_small_run_delivers_and_records(small_dict):
    sc = parse_scenario(small_dict)
    before = sc.model_dump()
    res = run_scenario(sc)
    assert sc.model_dump() == before  # never mutates its input
    ts = res.timeseries
    dt_h = sc.time.dt_s / 3600.0
    assert len(ts) == 36 and res.completed
    active = ts["call.peak.active_fraction"] > 0
    assert active.sum() == 12
    assert (ts.loc[active, "call.peak.active_fraction"] == 1.0).all()
    assert (ts.loc[active, "call.peak.requested_kw"] == 400.0).all()
    assert (ts.loc[~active, "call.peak.delivered_kw"] == 0.0).all()
    # Delivery is measured against the no-call twin. Until the call starts the plant is its twin;
    # while it is active, this one whole-VPP call is credited with the plant's whole change.
    assert (ts.loc[ts["t_s"] < 3600.0, "p_change_kw"] == 0.0).all()
    np.testing.assert_allclose(ts["p_change_kw"], ts["p_vpp_kw"] - ts["p_twin_kw"], rtol=1e-12)
    np.testing.assert_allclose(ts.loc[active, "call.peak.delivered_kw"], -ts.loc[active, "p_change_kw"],
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(ts["p_delivered_kw"], ts["call.peak.delivered_kw"])
    # Per-kind and per-fleet columns add up to the total, for the plant and its twin.
    kinds = ("ev", "basestation", "building")
    for q, total in (("p_kw", "p_vpp_kw"), ("p_twin_kw", "p_twin_kw")):
        np.testing.assert_allclose(ts[[f"kind.{k}.{q}" for k in kinds]].sum(axis=1), ts[total], rtol=1e-12)
        np.testing.assert_allclose(ts[f"kind.ev.{q}"], ts[f"fleet.ac.{q}"] + ts[f"fleet.dc.{q}"], rtol=1e-12)
    np.testing.assert_allclose(ts[[f"call.peak.delivered.{k}_kw" for k in kinds]].sum(axis=1),
                               ts["call.peak.delivered_kw"], rtol=1e-9, atol=1e-9)
    call = res.summary["calls"][0]
    assert call["id"] == "peak" and call["direction"] == "reduce"
    assert call["requested_kwh"] == pytest.approx(400.0)
    e_twin_minus_plant_kwh = float((ts["p_twin_kw"] - ts["p_vpp_kw"])[active].sum()) * dt_h
    assert call["delivered_kwh"] == pytest.approx(e_twin_minus_plant_kwh, rel=1e-9)
    assert sum(call["delivered_by_kind_kwh"].values()) == pytest.approx(call["delivered_kwh"], rel=1e-9)
    assert call["delivered_ratio"] == pytest.approx(call["delivered_kwh"] / call["requested_kwh"])
    assert res.summary["grid"]["power_flows"] == 36
    assert res.summary["warnings"] == []
    # The call lowers load, so the lowest voltage during it is no lower than without it.
    g = call["grid_during"]
    assert g["vm_min_pu"] >= g["vm_min_twin_pu"] - 1e-12
    assert res.summary["fleets"]["towers"]["n_reserve_breaches"] == 0
    # Per-bus energy sums to the plant's energy (and the twin's to the twin's).
    assert res.buses["e_vpp_kwh"].sum() == pytest.approx(res.summary["plant"]["e_vpp_kwh"])
    assert res.buses["e_twin_kwh"].sum() == pytest.approx(res.summary["plant"]["e_twin_kwh"])
    assert res.buses["n_devices"].sum() == 375


def test_increase_call_and_merit_order(small_dict):
    small_dict["dispatch"] = {"strategy": "merit_order"}
    small_dict["dr_calls"] = [{"id": "soak", "direction": "increase", "p_kw": 50, "start_s": 0, "end_s": 1800}]
    res = run_scenario(parse_scenario(small_dict))
    ts = res.timeseries
    on = ts["call.soak.requested_kw"] > 0
    assert (ts.loc[on, "p_vpp_kw"] > ts.loc[on, "p_twin_kw"]).all()
    assert (ts.loc[on, "call.soak.delivered_kw"] > 0.0).all()
    assert res.summary["calls"][0]["delivered_ratio"] > 0.0


def test_same_seed_same_parquet_bytes(small_dict, tmp_path):
    small_dict["time"]["duration_s"] = 3600 * 2
    small_dict["output"] = {"sample_devices": 3}
    sc = parse_scenario(small_dict)
    digests = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        write_results(run_scenario(sc), out)
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("*.parquet")})
    assert digests[0] == digests[1]
    assert set(digests[0]) == {"timeseries.parquet", "buses.parquet", "bus_timeseries.parquet", "devices.parquet",
                               "branches.parquet", "settlement.parquet"}
    other = run_scenario(parse_scenario({**small_dict, "seed": 4}))
    write_results(other, tmp_path / "other")
    assert hashlib.sha256((tmp_path / "other" / "timeseries.parquet").read_bytes()).hexdigest() != (
        digests[0]["timeseries.parquet"]
    )


def test_missing_bus_fails_before_work(small_dict):
    small_dict["fleets"][0]["buses"] = [5, 99999]
    with pytest.raises(ScenarioError, match=r"fleets\[0\]\.buses: bus 99999 does not exist in grid 'mv_oberrhein'"):
        run_scenario(parse_scenario(small_dict))
    small_dict["fleets"][0]["buses"] = "load_buses"
    small_dict["dr_calls"][0]["buses"] = [424242]
    with pytest.raises(ScenarioError, match=r"dr_calls\[0\]\.buses: bus 424242"):
        run_scenario(parse_scenario(small_dict))


def test_failure_mid_run_keeps_computed_ticks(small_dict, monkeypatch):
    from vpp.grid import model

    calls = {"n": 0}
    real = model.GridModel.solve

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise RuntimeError("solver exploded")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(model.GridModel, "solve", flaky)
    small_dict["dr_calls"] = []
    with pytest.raises(RunError, match="solver exploded") as info:
        run_scenario(parse_scenario(small_dict))
    res = info.value.results
    assert not res.completed and len(res.timeseries) == 9
    assert res.meta["n_ticks_done"] == 9
    assert res.timeseries["t_s"].tolist() == [300.0 * i for i in range(9)]


@pytest.mark.parametrize("name", ["default", pytest.param("district", marks=pytest.mark.slow)])
def test_shipped_scenarios_run(root, name):
    sc = load_scenario(root / "scenarios" / f"{name}.yaml")
    res = run_scenario(sc)
    assert res.completed
    s = res.summary
    assert s["grid"]["power_flows_not_converged"] == 0
    assert s["warnings"] == []
    assert [c["id"] for c in s["calls"]] == [c.id for c in sc.dr_calls]
    for c, cfg in zip(s["calls"], sc.dr_calls):
        assert c["requested_kwh"] == pytest.approx(cfg.request_kw * (cfg.end_s - cfg.start_s) / 3600.0), c["id"]
        assert c["delivered_kwh"] > 0.0, c["id"]
    for f in s["fleets"].values():
        if f["kind"] == "basestation":
            assert f["n_reserve_breaches"] == 0
        if f["kind"] == "ev":
            assert f["e_grid_kwh"] == pytest.approx(f["e_to_vehicles_kwh"] + f["e_loss_kwh"], rel=1e-9)
