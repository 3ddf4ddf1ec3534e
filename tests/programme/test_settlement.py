"""Settlement of one event: hand-computed delivery, performance, revenue and penalties.

Unless a test says otherwise: hourly metering, a 2 h reduce event from 18:00,
100 kW requested, the ``day_ahead`` tier (1.5 CNY/kWh, penalty threshold 0.5,
factor 0.5, hourly assessment; paid in full for 0.8 <= r <= 1.2, pro-rated by
r/0.8 from 0.5, nothing below 0.5, nothing beyond 1.2 x requested). The twin
draws a flat 500 kW.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.programme import settlement as se
from vpp.programme.baselines import BaselineResult
from vpp.programme.tiers import get_tier, tier_with_overrides

START = pd.Timestamp("2025-07-15T18:00+08:00")
END = pd.Timestamp("2025-07-15T20:00+08:00")
IDX = pd.date_range(START, END, freq="1h", inclusive="left")


def _s(values, idx=IDX):
    return pd.Series(np.asarray(values, dtype=float), index=idx)


def settle(metered, *, twin=(500.0, 500.0), requested=100.0, tier="day_ahead", **kw):
    return se.settle_event(_s(metered), START, END, requested, tier, twin_kw=_s(twin), **kw)


def test_full_band_pays_delivered_energy_at_full_price():
    table, summary = settle([450.0, 380.0])  # delivered 50 and 120 kW
    twin = summary["references"]["twin"]
    assert twin["delivered_kwh"] == pytest.approx(170.0)
    assert twin["performance_ratio"] == pytest.approx(0.85)
    assert twin["energy_payment_cny"] == pytest.approx(170.0 * 1.5)  # 255
    # hour 1: 50 kW is exactly half of 100 kW: no penalty
    assert twin["penalty_cny"] == 0.0 and twin["net_cny"] == pytest.approx(255.0)
    rows = table[table.reference == "twin"]
    np.testing.assert_allclose(rows.delivered_kw, [50.0, 120.0])
    np.testing.assert_allclose(rows.delivered_kwh, [50.0, 120.0])
    np.testing.assert_allclose(rows.performance_ratio, [0.5, 1.2])
    # the event's payment shared by delivered energy: 255 x 50/170, 255 x 120/170
    np.testing.assert_allclose(rows.energy_payment_cny, [75.0, 180.0])
    assert summary["requested_kwh"] == 200.0 and summary["duration_h"] == 2.0


def test_below_half_pays_nothing_and_is_penalised_per_hour():
    _, summary = settle([480.0, 470.0])  # delivered 20, 30 kW; r = 0.25
    twin = summary["references"]["twin"]
    assert twin["energy_payment_cny"] == 0.0 and twin["price_factor"] == 0.0
    # (100 x 0.5 - 20) x 1.5 x 0.5 x 1 h = 22.5 ; (50 - 30) x 0.75 = 15
    assert twin["penalty_by_period_cny"] == pytest.approx([22.5, 15.0])
    assert twin["penalty_cny"] == pytest.approx(37.5) and twin["net_cny"] == pytest.approx(-37.5)


def test_between_half_and_band_is_pro_rated():
    _, summary = settle([440.0, 440.0])  # 60 kW each hour, r = 0.6
    twin = summary["references"]["twin"]
    assert twin["price_factor"] == pytest.approx(0.6 / 0.8)
    assert twin["energy_payment_cny"] == pytest.approx(120.0 * 1.5 * 0.75)  # 135
    assert twin["penalty_cny"] == 0.0


def test_over_delivery_beyond_120_percent_is_not_paid():
    _, summary = settle([350.0, 350.0])  # 150 kW, r = 1.5
    twin = summary["references"]["twin"]
    assert twin["paid_kwh"] == pytest.approx(240.0)
    assert twin["energy_payment_cny"] == pytest.approx(360.0)


def test_each_baseline_is_its_own_reference():
    table, summary = settle([450.0, 380.0], baselines={"flat_490": _s([490.0, 490.0])})
    b = summary["references"]["flat_490"]
    # delivered 40 + 110 = 150 kWh, r = 0.75, factor 0.75/0.8
    assert b["delivered_kwh"] == pytest.approx(150.0)
    assert b["energy_payment_cny"] == pytest.approx(150.0 * 1.5 * 0.75 / 0.8)  # 210.9375
    # hour 1: 40 < 50: (50 - 40) x 1.5 x 0.5 = 7.5
    assert b["penalty_cny"] == pytest.approx(7.5)
    assert b["net_cny"] == pytest.approx(210.9375 - 7.5)
    assert list(table.reference.unique()) == ["twin", "flat_490"]
    assert tuple(table.columns) == se.SETTLEMENT_COLUMNS


def test_increase_event_delivers_metered_minus_reference():
    _, summary = settle([560.0, 600.0], direction="increase")
    assert summary["references"]["twin"]["delivered_kwh"] == pytest.approx(160.0)
    assert summary["direction"] == "increase"


def test_penalty_is_assessed_on_the_hourly_mean_not_each_interval():
    idx = pd.date_range(START, periods=4, freq="15min")
    twin = pd.Series(500.0, index=idx)
    metered = pd.Series([500.0, 500.0, 400.0, 400.0], index=idx)  # 0, 0, 100, 100 kW: hourly mean 50
    _, summary = se.settle_event(metered, START, START + pd.Timedelta("1h"), 100.0, "day_ahead", twin_kw=twin)
    assert summary["references"]["twin"]["penalty_cny"] == 0.0
    metered2 = pd.Series([500.0, 500.0, 420.0, 420.0], index=idx)  # hourly mean 40 kW
    table, summary2 = se.settle_event(metered2, START, START + pd.Timedelta("1h"), 100.0, "day_ahead",
                                      twin_kw=twin)
    # (50 - 40) x 1.5 x 0.5 x 1 h = 7.5, shared equally by the four intervals
    assert summary2["references"]["twin"]["penalty_cny"] == pytest.approx(7.5)
    np.testing.assert_allclose(table.penalty_cny, [7.5 / 4] * 4)


def test_a_shorter_last_assessment_period_is_weighted_by_its_length():
    idx = pd.date_range(START, periods=3, freq="30min")  # 90 min: one full hour and half an hour
    twin = pd.Series(500.0, index=idx)
    metered = pd.Series([400.0, 400.0, 490.0], index=idx)  # 100, 100, 10 kW
    _, summary = se.settle_event(metered, START, START + pd.Timedelta("90min"), 100.0, "day_ahead",
                                 twin_kw=twin)
    # last half hour: (50 - 10) x 1.5 x 0.5 x 0.5 h = 15
    assert summary["references"]["twin"]["penalty_by_period_cny"] == pytest.approx([0.0, 15.0])


def test_capacity_payment_from_an_override_and_cleared_kw():
    tier = tier_with_overrides("day_ahead", capacity_price_cny_per_kw=2.0)
    _, summary = settle([450.0, 380.0], tier=tier)
    assert summary["references"]["twin"]["capacity_payment_cny"] == pytest.approx(200.0)  # 2 x 100 kW
    _, summary = settle([450.0, 380.0], tier=tier, cleared_kw=80.0)
    assert summary["references"]["twin"]["capacity_payment_cny"] == pytest.approx(160.0)
    _, summary = settle([480.0, 470.0], tier=tier)  # r = 0.25 < 0.5: no capacity payment
    assert summary["references"]["twin"]["capacity_payment_cny"] == 0.0


def test_cleared_kw_sets_the_penalty_threshold():
    _, summary = settle([450.0, 450.0], cleared_kw=200.0)  # 50 kW against 0.5 x 200 = 100 kW
    # (100 - 50) x 1.5 x 0.5 x 1 h per hour
    assert summary["references"]["twin"]["penalty_cny"] == pytest.approx(75.0)


def test_requested_power_may_vary_per_interval():
    table, summary = settle([450.0, 400.0], requested=_s([50.0, 100.0]))
    assert summary["requested_kwh"] == pytest.approx(150.0)
    np.testing.assert_allclose(table.performance_ratio, [1.0, 1.0])
    assert summary["references"]["twin"]["energy_payment_cny"] == pytest.approx(150.0 * 1.5)


def test_real_time_tier_pays_five_yuan():
    _, summary = settle([400.0, 400.0], tier="real_time")
    assert summary["references"]["twin"]["energy_payment_cny"] == pytest.approx(200.0 * 5.0)


def test_an_unknown_baseline_settles_to_nan_with_its_reason():
    unknown = BaselineResult(method="10_in_10", p_kw=_s([np.nan, np.nan]), ok=False, reason="10_in_10: needs 10")
    table, summary = settle([450.0, 380.0], baselines={"10_in_10": unknown})
    b = summary["references"]["10_in_10"]
    assert not b["ok"] and b["reason"] == "10_in_10: needs 10"
    assert math.isnan(b["net_cny"]) and math.isnan(b["delivered_kwh"])
    assert table[table.reference == "10_in_10"].energy_payment_cny.isna().all()
    assert summary["references"]["twin"]["ok"]


def test_baseline_result_objects_are_accepted():
    ok = BaselineResult(method="x", p_kw=_s([490.0, 490.0]), ok=True)
    _, summary = settle([450.0, 380.0], baselines={"x": ok})
    assert summary["references"]["x"]["delivered_kwh"] == pytest.approx(150.0)


def test_settles_on_the_event_window_of_longer_series():
    idx = pd.date_range("2025-07-15T12:00+08:00", "2025-07-16T00:00+08:00", freq="1h", inclusive="left")
    metered = pd.Series(500.0, index=idx)
    metered[START] = 450.0
    metered[START + pd.Timedelta("1h")] = 380.0
    table, summary = se.settle_event(metered, START, END, 100.0, "day_ahead", twin_kw=pd.Series(500.0, index=idx))
    assert len(table) == 2 and summary["references"]["twin"]["delivered_kwh"] == pytest.approx(170.0)


# --- bad input ---------------------------------------------------------------------------------


def test_bad_inputs_are_rejected():
    with pytest.raises(KeyError, match="valid tiers"):
        settle([450.0, 380.0], tier="weekly")
    with pytest.raises(ValueError, match="unknown direction"):
        settle([450.0, 380.0], direction="sideways")
    with pytest.raises(ValueError, match="requested_kw"):
        settle([450.0, 380.0], requested=0.0)
    with pytest.raises(ValueError, match="cleared_kw"):
        settle([450.0, 380.0], cleared_kw=-5.0)
    with pytest.raises(ValueError, match="nothing to settle against"):
        se.settle_event(_s([450.0, 380.0]), START, END, 100.0, "day_ahead")
    with pytest.raises(ValueError, match="may not be called 'twin'"):
        settle([450.0, 380.0], baselines={"twin": _s([1.0, 1.0])})
    with pytest.raises(ValueError, match="does not cover the event window"):
        settle([450.0, 380.0], baselines={"short": _s([490.0], IDX[:1])})
    with pytest.raises(ValueError, match="outside the data"):
        se.settle_event(_s([450.0, 380.0]), START, END + pd.Timedelta("1h"), 100.0, "day_ahead",
                        twin_kw=_s([500.0, 500.0]))
    with pytest.raises(ValueError, match="naive"):
        se.settle_event(_s([450.0, 380.0], IDX.tz_localize(None)), START, END, 100.0, "day_ahead",
                        twin_kw=_s([500.0, 500.0]))
    with pytest.raises(ValueError, match="NaN"):
        settle([450.0, np.nan])


# --- properties ---------------------------------------------------------------------------------

_power = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=12),
    data=st.data(),
    requested=st.floats(min_value=1.0, max_value=500.0),
    tier=st.sampled_from(["day_ahead", "hour_ahead", "minute_level", "real_time"]),
    direction=st.sampled_from(["reduce", "increase"]),
)
def test_a_perfect_baseline_settles_like_the_twin(n, data, requested, tier, direction):
    idx = pd.date_range(START, periods=n, freq="15min")
    twin = pd.Series(data.draw(st.lists(_power, min_size=n, max_size=n)), index=idx)
    metered = pd.Series(data.draw(st.lists(_power, min_size=n, max_size=n)), index=idx)
    end = START + n * pd.Timedelta("15min")
    table, summary = se.settle_event(metered, START, end, requested, tier, twin_kw=twin,
                                     baselines={"perfect": twin.copy()}, direction=direction)
    t, b = summary["references"]["twin"], summary["references"]["perfect"]
    for key in ("delivered_kwh", "performance_ratio", "energy_payment_cny", "penalty_cny", "net_cny"):
        assert b[key] == t[key]
    cols = ["delivered_kwh", "performance_ratio", "energy_payment_cny", "penalty_cny", "net_cny"]
    np.testing.assert_array_equal(table[table.reference == "perfect"][cols].to_numpy(),
                                  table[table.reference == "twin"][cols].to_numpy())
    # the per-interval money adds up to the event's
    rows = table[table.reference == "twin"]
    assert rows.energy_payment_cny.sum() == pytest.approx(t["energy_payment_cny"], abs=1e-9)
    assert rows.penalty_cny.sum() == pytest.approx(t["penalty_cny"], abs=1e-9)
    assert rows.net_cny.sum() == pytest.approx(t["net_cny"], abs=1e-9)
    assert t["penalty_cny"] >= 0.0 and t["energy_payment_cny"] >= 0.0
    # delivered energy is the twin-minus-metered (reduce) energy, by hand
    sign = 1.0 if direction == "reduce" else -1.0
    assert t["delivered_kwh"] == pytest.approx(sign * (twin - metered).sum() * 0.25, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(delivered=st.floats(min_value=-200.0, max_value=400.0), requested=st.floats(min_value=1.0, max_value=300.0))
def test_payment_never_exceeds_120_percent_and_penalty_only_below_half(delivered, requested):
    tier = get_tier("hour_ahead")
    metered = _s([500.0 - delivered, 500.0 - delivered])
    _, summary = se.settle_event(metered, START, END, requested, tier, twin_kw=_s([500.0, 500.0]))
    t = summary["references"]["twin"]
    assert t["energy_payment_cny"] <= 1.2 * requested * 2 * tier.energy_price_cny_per_kwh + 1e-9
    if delivered >= 0.5 * requested:
        assert t["penalty_cny"] == 0.0
    else:
        expected = (0.5 * requested - delivered) * tier.energy_price_cny_per_kwh * 0.5 * 2
        assert t["penalty_cny"] == pytest.approx(expected, rel=1e-9)
