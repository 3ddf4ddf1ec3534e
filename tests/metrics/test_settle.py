"""Settlement of a run's events (vpp.metrics.settle): hand-computed figures on synthetic runs, unknown
baselines with their reasons, exact interval aggregation, and one real run whose delivered energy must
match the KPIs' (an independent path: plant and twin totals here, per-call columns there).

Synthetic runs start on Monday 2025-07-07 00:00 in Asia/Shanghai (day 0), so days 5-6 and 12-13 are a
weekend and day 15 is a Tuesday. Unless a test says otherwise, money is under the ``day_ahead`` tier
(1.5 CNY/kWh; full price for 0.8 <= r <= 1.2, pro-rated by r/0.8 from r = 0.5; penalty below 0.5 of the
request, hourly) and CO2 uses the default factor, China Southern Grid 2022, 0.3869 kgCO2/kWh
(vpp/programme/carbon.py).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vpp.metrics.report import format_settlement
from vpp.metrics.settle import (
    DAY_MATCHING,
    DEFAULT_BASELINES,
    PER_INTERVAL_COLUMNS,
    TIER_SETTLEMENT_BASELINE,
    aggregate_to_intervals,
    settle_run,
    settlement_summary,
)
from vpp.programme import TIERS

START = pd.Timestamp("2025-07-07 00:00", tz="Asia/Shanghai")  # a Monday
DAY = 86_400.0
FACTOR = 0.3869  # kgCO2/kWh, China Southern Grid 2022 (the default)


def synthetic(n_days, events, *, dt_s=300.0, twin=lambda t: np.full(t.shape, 1000.0)):
    """A run's timeseries and its calls (as summary["calls"] entries).

    ``events``: (id, day, start h, end h, requested kW, delivered kW); the metered plant is the twin
    less the delivered power over the active period, the request flat over it.
    """
    t = np.arange(0.0, n_days * DAY, dt_s)
    p_twin = twin(t)
    p_vpp = p_twin.copy()
    cols, calls = {}, []
    for cid, day, h0, h1, req_kw, dlv_kw in events:
        s0, s1 = day * DAY + h0 * 3600.0, day * DAY + h1 * 3600.0
        active = (t >= s0) & (t < s1)
        p_vpp[active] -= dlv_kw
        cols[f"call.{cid}.requested_kw"] = np.where(active, req_kw, 0.0)
        calls.append({"id": cid, "direction": "reduce", "start_s": s0, "end_s": s1, "requested_kw": req_kw,
                      "target_buses": None, "rebound_kwh": 10.0, "rebound_peak_kw": 5.0,
                      "rebound_peak_t_s": s1, "recovery_window_s": [s1, s1 + 3600.0]})
    ts = pd.DataFrame({"t_s": t, "p_vpp_kw": p_vpp, "p_twin_kw": p_twin, **cols})
    return ts, calls


def test_hand_computed_delivery_revenue_and_co2():
    # 16 days (12 weekdays), flat twin 1000 kW, event on day 15 (Tue) 18:00-20:00: 300 kW asked, 200 delivered.
    ts, calls = synthetic(16, [("peak", 15, 18, 20, 300.0, 200.0)])
    per_interval, (ev,) = settle_run(ts, calls, start=START, dt_s=300.0)
    assert ev["ok"] and ev["tier"] == "day_ahead" and ev["settlement_baseline"] == "last_5_days"
    assert ev["start"] == "2025-07-22T18:00:00+08:00" and ev["window_s"] == [15 * DAY + 64800, 15 * DAY + 72000]
    assert ev["n_intervals"] == 8 and not ev["window_widened"]
    assert ev["requested_kwh"] == pytest.approx(300.0 * 2)  # 600 kWh
    assert ev["delivered_kwh_twin"] == pytest.approx(200.0 * 2)  # 400 kWh
    # r = 400 / 600 = 2/3: pro-rated band, price factor (2/3) / 0.8; paid 400 kWh at 1.5 CNY/kWh -> 500 CNY
    twin = ev["references"]["twin"]
    assert twin["performance_ratio"] == pytest.approx(2 / 3)
    assert twin["price_factor"] == pytest.approx((2 / 3) / 0.8)
    assert twin["energy_payment_cny"] == pytest.approx(1.5 * (2 / 3) / 0.8 * 400.0)  # 500
    # each hour delivered 200 kW >= 0.5 x 300 kW: no penalty
    assert twin["penalty_cny"] == 0.0 and twin["net_cny"] == pytest.approx(500.0)
    # a flat history: every baseline is the twin, so the settlement equals the twin's
    for name in DEFAULT_BASELINES:
        ref = ev["references"][name]
        assert ref["ok"], ref["reason"]
        assert ref["delivered_kwh"] == pytest.approx(400.0) and ref["net_cny"] == pytest.approx(500.0)
    assert ev["settled"]["reference"] == "last_5_days" and ev["settled"]["net_cny"] == pytest.approx(500.0)
    # CO2: 400 kWh x 0.3869 = 154.76 kg; net of the KPIs' 10 kWh rebound: 390 x 0.3869
    assert ev["emission_factor_kg_per_kwh"] == FACTOR
    assert ev["avoided_co2_kg"] == pytest.approx(400.0 * FACTOR)
    assert ev["avoided_co2_net_of_rebound_kg"] == pytest.approx(390.0 * FACTOR)
    assert ev["rebound_kwh"] == 10.0 and ev["rebound_peak_kw"] == 5.0  # copied, not recomputed
    # credits on last_5_days: 400 kWh x 0.3869 / 1000 tCO2e, no rebound netted
    cc = ev["carbon_credits"]
    assert cc["counted"] and cc["reference"] == "last_5_days"
    assert cc["credits_tco2e"] == pytest.approx(400.0 * FACTOR / 1000.0)
    # per interval: 8 rows per reference; 50 kWh delivered each; money and CO2 sum to the event's
    assert list(per_interval.columns) == list(PER_INTERVAL_COLUMNS)
    rows = per_interval[per_interval.reference == "twin"]
    assert len(rows) == 8 and len(per_interval) == 8 * (1 + len(DEFAULT_BASELINES))
    np.testing.assert_allclose(rows.delivered_kwh, 50.0)
    np.testing.assert_allclose(rows.requested_kw, 300.0)
    assert rows.net_cny.sum() == pytest.approx(500.0)
    assert rows.avoided_co2_kg.sum() == pytest.approx(400.0 * FACTOR)
    assert rows.t_s.iloc[0] == 15 * DAY + 18 * 3600
    assert rows.timestamp.iloc[0] == START + pd.Timedelta(days=15, hours=18)
    assert per_interval[per_interval.settles].reference.unique().tolist() == ["last_5_days"]


def test_price_override_tier_choice_and_emission_factor():
    ts, calls = synthetic(16, [("peak", 15, 18, 20, 300.0, 200.0)])
    _, (ev,) = settle_run(ts, calls, start=START, dt_s=300.0, tiers={"peak": "minute_level"},
                          prices={"minute_level": {"energy_price_cny_per_kwh": 2.0}}, emission_factor=0.5)
    assert ev["tier"] == "minute_level" and ev["settlement_baseline"] == "15_min_before"
    assert ev["references"]["twin"]["energy_payment_cny"] == pytest.approx(2.0 * (2 / 3) / 0.8 * 400.0)
    assert ev["avoided_co2_kg"] == pytest.approx(200.0)
    # a call's own tier (once calls carry one) is used when the mapping names none
    calls[0]["tier"] = "hour_ahead"
    _, (ev,) = settle_run(ts, calls, start=START, dt_s=300.0)
    assert ev["tier"] == "hour_ahead"


def test_every_tier_names_its_settlement_baseline():
    assert set(TIER_SETTLEMENT_BASELINE) == set(TIERS)
    assert set(TIER_SETTLEMENT_BASELINE.values()) <= set(DEFAULT_BASELINES)


def test_baseline_equal_to_twin_has_zero_error():
    # Every weekday repeats the same daily shape, so the day-matching baselines are the twin exactly
    # (the same-day adjustment is 1); 15-min-before is flat at the load before the event and is not.
    shape = lambda t: 1000.0 + 400.0 * np.sin(2 * np.pi * (t % DAY) / DAY)  # noqa: E731
    ts, calls = synthetic(16, [("peak", 15, 18, 20, 300.0, 200.0)], dt_s=900.0, twin=shape)
    _, (ev,) = settle_run(ts, calls, start=START, dt_s=900.0)
    for name in DAY_MATCHING:
        b = ev["baselines"][name]
        assert b["ok"], b["reason"]
        for key in ("bias_kwh", "mae_kw", "rmse_kw", "rel_error"):
            assert b[key] == pytest.approx(0.0, abs=1e-9), (name, key)
        assert ev["references"][name]["delivered_kwh"] == pytest.approx(400.0)
    assert ev["baselines"]["10_in_10"]["adjustment"] == pytest.approx(1.0)
    before = ev["baselines"]["15_min_before"]
    assert before["ok"] and abs(before["bias_kwh"]) > 1.0


def test_other_event_days_are_excluded():
    # events on day 8 (Tue) and day 15 (Tue): day 8 is not a history day of the later event
    ts, calls = synthetic(16, [("first", 8, 18, 20, 300.0, 200.0), ("second", 15, 18, 20, 300.0, 200.0)])
    _, (first, second) = settle_run(ts, calls, start=START, dt_s=300.0)
    assert "2025-07-15" not in second["baselines"]["last_5_days"]["days_used"]
    assert second["baselines"]["last_5_days"]["days_used"] == ["2025-07-21", "2025-07-18", "2025-07-17",
                                                                "2025-07-16", "2025-07-14"]
    # the later event has 11 weekdays before it less day 8: 10-in-10 just known; the earlier one has 6
    assert second["baselines"]["10_in_10"]["ok"]
    assert not first["baselines"]["10_in_10"]["ok"] and "found 6" in first["baselines"]["10_in_10"]["reason"]
    assert first["references"]["10_in_10"]["delivered_kwh"] is None
    assert first["references"]["10_in_10"]["reason"] == first["baselines"]["10_in_10"]["reason"]


def test_one_day_run_gives_unknown_day_matching_baselines_with_reasons():
    ts, calls = synthetic(1, [("peak", 0, 18, 20, 300.0, 200.0)])
    per_interval, (ev,) = settle_run(ts, calls, start=START, dt_s=300.0)
    assert ev["ok"]
    for name in DAY_MATCHING:
        b = ev["baselines"][name]
        assert not b["ok"] and b["bias_kwh"] is None and "eligible days" in b["reason"], b["reason"]
        assert ev["references"][name]["delivered_kwh"] is None
        assert per_interval[per_interval.reference == name].delivered_kwh.isna().all()
    assert "needs 10 eligible days" in ev["baselines"]["10_in_10"]["reason"]
    # 15 min before works on the same day, and the twin is always known
    assert ev["baselines"]["15_min_before"]["ok"] and ev["baselines"]["15_min_before"]["bias_kwh"] == 0.0
    assert ev["delivered_kwh_twin"] == pytest.approx(400.0)
    # day-ahead settles on last_5_days, unknown here: no money, no credits, and the reason says why
    assert ev["settled"]["ok"] is False and ev["settled"]["net_cny"] is None
    assert ev["carbon_credits"]["credits_tco2e"] is None and "last_5_days" in ev["carbon_credits"]["reason"]
    lines = format_settlement([ev])
    assert any("unknown 10_in_10" in line for line in lines) and any(line.startswith("peak") for line in lines)


def test_run_without_a_date():
    ts, calls = synthetic(16, [("peak", 15, 18, 20, 300.0, 200.0)])
    per_interval, (ev,) = settle_run(ts, calls, start=None, dt_s=300.0)
    assert ev["start"] is None and ev["window_s"] == [15 * DAY + 64800, 15 * DAY + 72000]
    for name in DAY_MATCHING:
        assert not ev["baselines"][name]["ok"] and "no date" in ev["baselines"][name]["reason"]
    assert ev["baselines"]["15_min_before"]["ok"] and ev["delivered_kwh_twin"] == pytest.approx(400.0)
    assert per_interval.timestamp.isna().all() and per_interval.t_s.iloc[0] == 15 * DAY + 64800


def test_unaligned_call_is_settled_on_the_intervals_it_overlaps():
    # active 18:05-18:50 at 5-min ticks: settled over 18:00-19:00; the request's energy is the call's own
    ts, calls = synthetic(1, [("short", 0, 18 + 5 / 60, 18 + 50 / 60, 400.0, 400.0)])
    per_interval, (ev,) = settle_run(ts, calls, start=START, dt_s=300.0)
    assert ev["window_widened"] and ev["window_s"] == [64800.0, 68400.0] and ev["n_intervals"] == 4
    assert ev["requested_kwh"] == pytest.approx(400.0 * 45 / 60)
    assert ev["delivered_kwh_twin"] == pytest.approx(400.0 * 45 / 60)


def test_increase_call_delivers_above_the_twin_and_earns_no_credits():
    ts, calls = synthetic(1, [("valley", 0, 12, 13, 100.0, -100.0)])  # plant 100 kW above its twin
    calls[0]["direction"] = "increase"
    _, (ev,) = settle_run(ts, calls, start=START, dt_s=300.0, tiers={"valley": "minute_level"})
    assert ev["delivered_kwh_twin"] == pytest.approx(100.0)
    assert not ev["carbon_credits"]["counted"] and "increase" in ev["carbon_credits"]["reason"]


@pytest.mark.parametrize("dt_s", [60.0, 300.0, 600.0, 700.0, 1800.0, 3600.0])
def test_aggregation_is_exact_and_energy_preserving(dt_s):
    rng = np.random.default_rng(1)
    n = int(6 * 3600 // dt_s)
    t = np.arange(n) * dt_s
    p = rng.uniform(0, 1000, n)
    t_int, mean = aggregate_to_intervals(t, p, dt_s, 900.0)
    assert t_int[0] == 0.0 and np.all(np.diff(t_int) == 900.0)
    full = np.isfinite(mean)
    span = t_int[full][-1] + 900.0  # the end of the last complete interval
    # the energy of the complete intervals is the ticks' energy up to that time, each tick flat at its mean
    covered = np.clip(span - t, 0.0, dt_s)
    assert (mean[full] * 900.0).sum() == pytest.approx((p * covered).sum(), rel=1e-12)
    assert not np.isfinite(mean[~full]).any() and (~full).sum() <= 1  # only a partial last interval


def test_aggregation_by_hand_and_nan_ticks():
    # 600 s ticks a, b, c over 0-1800 s: [0, 900) = (600 a + 300 b)/900, [900, 1800) = (300 b + 600 c)/900
    t_int, mean = aggregate_to_intervals(np.array([0.0, 600.0, 1200.0]), np.array([90.0, 180.0, 360.0]), 600.0, 900.0)
    np.testing.assert_allclose(mean, [(600 * 90 + 300 * 180) / 900, (300 * 180 + 600 * 360) / 900])
    # intervals on the clock: origin -300 s (t_s = 0 is 00:05) gives a partial first interval
    t_int, mean = aggregate_to_intervals(np.arange(6) * 300.0, np.ones(6), 300.0, 900.0, origin_s=-300.0)
    np.testing.assert_array_equal(t_int, [-300.0, 600.0, 1500.0])
    assert np.isnan(mean[0]) and mean[1] == 1.0 and np.isnan(mean[2])
    # a NaN tick makes its interval unknown, not smaller
    _, mean = aggregate_to_intervals(np.arange(6) * 300.0, np.array([1.0, np.nan, 1, 1, 1, 1]), 300.0, 900.0)
    assert np.isnan(mean[0]) and mean[1] == 1.0


def test_bad_input_names_the_problem():
    ts, calls = synthetic(1, [("peak", 0, 18, 20, 300.0, 200.0)])
    with pytest.raises(ValueError, match="must divide a day"):
        settle_run(ts, calls, start=START, dt_s=300.0, interval_s=7 * 60 * 60.0)
    with pytest.raises(ValueError, match="tiers name calls that do not exist"):
        settle_run(ts, calls, start=START, dt_s=300.0, tiers={"nope": "day_ahead"})
    with pytest.raises(KeyError, match="valid tiers"):
        settle_run(ts, calls, start=START, dt_s=300.0, tiers={"peak": "weekly"})
    with pytest.raises(KeyError, match="valid baselines"):
        settle_run(ts, calls, start=START, dt_s=300.0, baselines=("10_in_10", "yesterday"))
    with pytest.raises(ValueError, match="tz-aware"):
        settle_run(ts, calls, start=pd.Timestamp("2025-07-07"), dt_s=300.0)
    with pytest.raises(ValueError, match="not regular"):
        settle_run(ts, calls, start=START, dt_s=900.0)


def test_no_calls_gives_empty_tables():
    ts, _ = synthetic(1, [])
    per_interval, per_event = settle_run(ts, [], start=START, dt_s=300.0)
    assert per_event == [] and per_interval.empty and list(per_interval.columns) == list(PER_INTERVAL_COLUMNS)
    assert format_settlement([]) == []


def test_real_run_matches_the_kpis(small_dict):
    """Delivered energy against the twin: plant and twin totals here, per-call columns in the KPIs."""
    from vpp.run import run_scenario
    from vpp.scenario import parse_scenario

    small_dict["time"] = {"clock_start_h": 0.0, "duration_s": 2 * DAY, "dt_s": 300}
    small_dict["grid"]["power_flow"] = False
    small_dict["output"] = {"bus_timeseries": False}
    small_dict["dr_calls"] = [
        {"id": "peak", "direction": "reduce", "p_kw": 400, "notification_s": 0, "start_s": DAY + 18 * 3600,
         "end_s": DAY + 20 * 3600, "recovery_s": 7200},
    ]
    t0 = time.perf_counter()
    results = run_scenario(parse_scenario(small_dict))
    per_interval, (ev,) = settlement_summary(results, start=START)
    elapsed = time.perf_counter() - t0
    kpi = results.summary["calls"][0]
    assert ev["ok"] and kpi["delivered_kwh"] > 0
    assert ev["delivered_kwh_twin"] == pytest.approx(kpi["delivered_kwh"], rel=1e-6)
    assert ev["requested_kwh"] == pytest.approx(kpi["requested_kwh"], rel=1e-12)
    assert ev["rebound_kwh"] == kpi["rebound_kwh"]
    # two days: no day-matching baseline has its history; 15 min before is known
    assert not any(ev["baselines"][name]["ok"] for name in DAY_MATCHING)
    assert ev["baselines"]["15_min_before"]["ok"]
    assert math.isfinite(ev["baselines"]["15_min_before"]["bias_kwh"])
    assert elapsed < 30.0


WEEK_START = pd.Timestamp("2025-07-07 00:00", tz="Asia/Shanghai")  # day 0 of scenarios/week-baselines.yaml
WEEK_TIERS = {"evening_mon": "day_ahead", "reserve_tue": "minute_level", "evening_wed": "day_ahead"}


def test_week_scenario_knows_every_baseline():
    """The shipped baselines scenario: two working weeks of history, so every baseline is known for every event."""
    from vpp.run import run_scenario
    from vpp.scenario import load_scenario

    results = run_scenario(load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "week-baselines.yaml"))
    _, per_event = settlement_summary(results, start=WEEK_START, tiers=WEEK_TIERS)
    assert [e["id"] for e in per_event] == list(WEEK_TIERS)
    for ev, kpi in zip(per_event, results.summary["calls"]):
        assert ev["ok"] and not ev["window_widened"] and not ev["notes"]
        for name in DEFAULT_BASELINES:
            b = ev["baselines"][name]
            assert b["ok"] and math.isfinite(b["bias_kwh"]), (ev["id"], name, b["reason"])
        assert ev["delivered_kwh_twin"] == pytest.approx(kpi["delivered_kwh"], rel=1e-6)
        assert ev["settled"]["ok"] and ev["carbon_credits"]["credits_tco2e"] is not None
    # no event day is a history day of another event
    event_days = {e["start"][:10] for e in per_event}
    for ev in per_event:
        for name in DAY_MATCHING:
            assert not event_days & set(ev["baselines"][name]["days_used"])
