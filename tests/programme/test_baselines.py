"""Settlement baselines on a small synthetic calendar with hand-computed answers.

The calendar (hourly metering, Asia/Shanghai), 2025-06-27 (Fri) to the event
day 2025-07-15 (Tue) inclusive. Every day's load is ``shape[h] + level[day]``
with ``shape[h] = 50 + 2 h`` [kW]. Weekend days have level 500 and the earlier
event day 2025-07-09 (Wed) level 1000, so a baseline that wrongly includes one
is off by hundreds of kW. On 2025-07-01 a 200 kW spike at 03:00 makes that
day's *daily maximum* the largest without touching the evening. The event is
18:00-20:00 on 2025-07-15; that day's level is ``LEVEL_EVENT_DAY`` and the
plant delivers 20 kW during the event. The expected values below are written
out by hand from these levels, never computed by the code under test.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.programme import baselines as bl

TZ = "Asia/Shanghai"
D = dt.date
LEVELS = {  # weekday levels [kW]
    D(2025, 6, 27): 0.0, D(2025, 6, 30): 1.0, D(2025, 7, 1): 2.0, D(2025, 7, 2): 3.0, D(2025, 7, 3): 4.0,
    D(2025, 7, 4): 5.0, D(2025, 7, 7): 6.0, D(2025, 7, 8): 7.0, D(2025, 7, 9): 1000.0,
    D(2025, 7, 10): 9.0, D(2025, 7, 11): 10.0, D(2025, 7, 14): 11.0,
}
WEEKEND_LEVEL = 500.0
EVENT_DAY = D(2025, 7, 15)
LEVEL_EVENT_DAY = 10.0
DELIVERED_KW = 20.0
START = pd.Timestamp("2025-07-15T18:00+08:00")
END = pd.Timestamp("2025-07-15T20:00+08:00")
SHAPE_18, SHAPE_19 = 50 + 2 * 18, 50 + 2 * 19  # 86, 88 kW
SHAPE_ADJ_MEAN = (50 + 2 * 14 + 50 + 2 * 15 + 50 + 2 * 16) / 3  # hours 14-16: 78, 80, 82 -> 80 kW
EVENT_DAYS = [D(2025, 7, 9)]


def _shape(hour):
    return 50.0 + 2.0 * hour


def make_load(level_event_day: float = LEVEL_EVENT_DAY, first=D(2025, 6, 27), last=EVENT_DAY, step="1h"):
    idx = pd.date_range(pd.Timestamp(first), pd.Timestamp(last) + pd.Timedelta(days=1), freq=step,
                        inclusive="left", tz=TZ)
    hours = idx.hour + idx.minute / 60.0
    level = []
    for t in idx:
        d = t.date()
        if d == EVENT_DAY:
            level.append(level_event_day)
        elif t.weekday() >= 5:
            level.append(WEEKEND_LEVEL)
        else:
            level.append(LEVELS[d])
    p = _shape(np.asarray(hours)) + np.asarray(level)
    spike = (idx.date == D(2025, 7, 1)) & (idx.hour == 3)
    p[spike] += 200.0
    during = (idx >= START) & (idx < END)
    p[during] -= DELIVERED_KW
    return pd.Series(p, index=idx, name="load_kw")


# --- 10-in-10 ---------------------------------------------------------------------------------


def test_10_in_10_days_and_values_with_same_day_adjustment():
    res = bl.x_of_y(make_load(), START, END, x=10, y=10, exclude_days=EVENT_DAYS)
    # 10 most recent weekdays before 07-15, 07-09 excluded, weekends skipped
    assert res.ok and res.reason == ""
    assert res.days_used == (D(2025, 7, 14), D(2025, 7, 11), D(2025, 7, 10), D(2025, 7, 8), D(2025, 7, 7),
                             D(2025, 7, 4), D(2025, 7, 3), D(2025, 7, 2), D(2025, 7, 1), D(2025, 6, 30))
    mean_level = (11 + 10 + 9 + 7 + 6 + 5 + 4 + 3 + 2 + 1) / 10  # 5.8
    # adjustment window 14:00-17:00: actual 80 + 10, baseline 80 + 5.8
    ratio = (SHAPE_ADJ_MEAN + LEVEL_EVENT_DAY) / (SHAPE_ADJ_MEAN + mean_level)
    assert res.adjustment == pytest.approx(90.0 / 85.8, rel=1e-12)
    assert res.adjustment == pytest.approx(ratio, rel=1e-12)
    assert not res.adjustment_capped
    expected = [(SHAPE_18 + mean_level) * ratio, (SHAPE_19 + mean_level) * ratio]
    np.testing.assert_allclose(res.p_kw.to_numpy(), expected, rtol=1e-12)
    assert list(res.p_kw.index) == [START, START + pd.Timedelta(hours=1)]


def test_10_in_10_registry_matches_x_of_y_and_names_itself():
    res = bl.compute_baseline("10_in_10", make_load(), START, END, exclude_days=EVENT_DAYS)
    assert res.method == "10_in_10"
    assert res.p_kw.iloc[0] == pytest.approx((86 + 5.8) * 90 / 85.8, rel=1e-12)


def test_same_day_adjustment_is_capped_at_plus_20_percent():
    res = bl.x_of_y(make_load(level_event_day=100.0), START, END, exclude_days=EVENT_DAYS)
    assert res.adjustment_raw == pytest.approx(180.0 / 85.8, rel=1e-12)
    assert res.adjustment == 1.2 and res.adjustment_capped
    np.testing.assert_allclose(res.p_kw.to_numpy(), [(86 + 5.8) * 1.2, (88 + 5.8) * 1.2], rtol=1e-12)


def test_same_day_adjustment_is_capped_at_minus_20_percent():
    # event-day level -60: actual over 14-17 h is 20 kW against a baseline of 85.8 kW
    res = bl.x_of_y(make_load(level_event_day=-60.0), START, END, exclude_days=EVENT_DAYS)
    assert res.adjustment_raw == pytest.approx(20.0 / 85.8, rel=1e-12)
    assert res.adjustment == 0.8 and res.adjustment_capped
    np.testing.assert_allclose(res.p_kw.to_numpy(), [(86 + 5.8) * 0.8, (88 + 5.8) * 0.8], rtol=1e-12)


def test_adjustment_window_and_gap_are_parameters():
    # window 2 h ending at the event start (no gap): hours 16, 17 -> shape 82, 84, mean 83
    res = bl.x_of_y(make_load(), START, END, exclude_days=EVENT_DAYS, adjustment_window_h=2, adjustment_gap_h=0)
    assert res.adjustment == pytest.approx((83 + 10) / (83 + 5.8), rel=1e-12)


def test_without_exclude_days_the_event_day_pollutes_the_baseline():
    res = bl.x_of_y(make_load(), START, END, adjust=False)
    # 07-09 (level 1000) replaces 06-30 (level 1)
    assert D(2025, 7, 9) in res.days_used and D(2025, 6, 30) not in res.days_used
    mean_level = (11 + 10 + 1000 + 9 + 7 + 6 + 5 + 4 + 3 + 2) / 10
    assert res.p_kw.iloc[0] == pytest.approx(86 + mean_level, rel=1e-12)


# --- 5-in-10, high-5-of-10, last-5-days, 15-min-before ----------------------------------------


def test_5_in_10_keeps_the_five_highest_event_window_days():
    res = bl.compute_baseline("5_in_10", make_load(), START, END, exclude_days=EVENT_DAYS)
    assert res.ok
    # levels of the 10 days: 11, 10, 9, 7, 6, 5, 4, 3, 2, 1 -> top 5 in the evening: 11, 10, 9, 7, 6
    assert set(res.days_used) == {D(2025, 7, 14), D(2025, 7, 11), D(2025, 7, 10), D(2025, 7, 8), D(2025, 7, 7)}
    mean_level = (11 + 10 + 9 + 7 + 6) / 5  # 8.6
    ratio = 90.0 / (80.0 + mean_level)
    np.testing.assert_allclose(res.p_kw.to_numpy(), [(86 + 8.6) * ratio, (88 + 8.6) * ratio], rtol=1e-12)


def test_high_5_of_10_ranks_by_daily_maximum_from_two_days_before():
    res = bl.compute_baseline("high_5_of_10", make_load(), START, END, exclude_days=EVENT_DAYS)
    assert res.ok, res.reason
    # eligible from D-2 (07-11) back: 07-11, 10, 08, 07, 04, 03, 02, 01, 06-30, 06-27 (07-14 skipped as D-1)
    assert res.days_eligible == (D(2025, 7, 11), D(2025, 7, 10), D(2025, 7, 8), D(2025, 7, 7), D(2025, 7, 4),
                                 D(2025, 7, 3), D(2025, 7, 2), D(2025, 7, 1), D(2025, 6, 30), D(2025, 6, 27))
    # daily maxima: 96 + level, except 07-01 whose 03:00 spike gives 56 + 200 + 2 = 258
    assert set(res.days_used) == {D(2025, 7, 1), D(2025, 7, 11), D(2025, 7, 10), D(2025, 7, 8), D(2025, 7, 7)}
    mean_level = (2 + 10 + 9 + 7 + 6) / 5  # 6.8, no adjustment
    np.testing.assert_allclose(res.p_kw.to_numpy(), [86 + 6.8, 88 + 6.8], rtol=1e-12)
    assert math.isnan(res.adjustment)


def test_last_5_days_is_the_mean_of_five_working_days():
    res = bl.compute_baseline("last_5_days", make_load(), START, END, exclude_days=EVENT_DAYS)
    assert res.days_used == (D(2025, 7, 14), D(2025, 7, 11), D(2025, 7, 10), D(2025, 7, 8), D(2025, 7, 7))
    np.testing.assert_allclose(res.p_kw.to_numpy(), [86 + 8.6, 88 + 8.6], rtol=1e-12)
    # counting back from a day-ahead invitation (skip D-1)
    res = bl.last_n_days(make_load(), START, END, exclude_days=EVENT_DAYS, skip_days=1)
    assert res.days_used == (D(2025, 7, 11), D(2025, 7, 10), D(2025, 7, 8), D(2025, 7, 7), D(2025, 7, 4))
    np.testing.assert_allclose(res.p_kw.to_numpy(), [86 + 7.4, 88 + 7.4], rtol=1e-12)


def test_15_min_before_is_the_mean_of_the_quarter_hour_before_the_start():
    load = make_load(step="15min")
    res = bl.compute_baseline("15_min_before", load, START, END)
    # the 17:45 reading: shape(17.75) + 10 = 50 + 35.5 + 10
    assert res.ok
    np.testing.assert_allclose(res.p_kw.to_numpy(), np.full(8, 95.5), rtol=1e-12)
    res30 = bl.before_event(load, START, END, minutes=30)
    np.testing.assert_allclose(res30.p_kw.to_numpy(), np.full(8, (50 + 35.0 + 10 + 95.5) / 2), rtol=1e-12)
    assert res30.method == "30_min_before"


def test_event_crossing_midnight_takes_the_following_early_hours_of_each_day():
    load = make_load()
    start, end = pd.Timestamp("2025-07-10T23:00+08:00"), pd.Timestamp("2025-07-11T01:00+08:00")
    res = bl.last_n_days(load, start, end, exclude_days=EVENT_DAYS)
    # event day 07-10 (Thu); 07-09 excluded
    assert res.days_used == (D(2025, 7, 8), D(2025, 7, 7), D(2025, 7, 4), D(2025, 7, 3), D(2025, 7, 2))
    # 23:00 of each day d: 96 + level(d)
    first = 96 + (7 + 6 + 5 + 4 + 3) / 5
    # 00:00 of the day after d: 50 + level(d + 1), the days after being
    # 07-09 (1000), 07-08 (7), 07-05 (Sat, 500), 07-04 (5), 07-03 (4)
    second = 50 + (1000 + 7 + 500 + 5 + 4) / 5
    np.testing.assert_allclose(res.p_kw.to_numpy(), [first, second], rtol=1e-12)


# --- not enough history, weekends, missing data ------------------------------------------------


def test_too_little_history_gives_nan_and_a_reason_never_fewer_days():
    load = make_load(first=D(2025, 7, 7))
    res = bl.compute_baseline("10_in_10", load, START, END, exclude_days=EVENT_DAYS)
    assert not res.ok and res.p_kw.isna().all() and len(res.p_kw) == 2
    # 07-07 .. 07-14: weekdays 07, 08, 10, 11, 14 (09 excluded) -> 5 found
    assert "needs 10 eligible days" in res.reason and "found 5" in res.reason
    assert "1 excluded" in res.reason and "2 weekend" in res.reason
    assert not res.fewer_days


def test_allow_fewer_uses_what_there_is_and_flags_it():
    load = make_load(first=D(2025, 7, 7))
    res = bl.x_of_y(load, START, END, exclude_days=EVENT_DAYS, adjust=False, allow_fewer=True)
    assert res.ok and res.fewer_days and "used 5 of 10" in res.reason
    np.testing.assert_allclose(res.p_kw.to_numpy(), [86 + (11 + 10 + 9 + 7 + 6) / 5, 88 + 8.6], rtol=1e-12)


def test_a_day_with_missing_data_is_skipped():
    load = make_load()
    load[pd.Timestamp("2025-07-14T18:00+08:00")] = np.nan
    res = bl.last_n_days(load, START, END, exclude_days=EVENT_DAYS)
    assert D(2025, 7, 14) not in res.days_used
    assert res.days_used[0] == D(2025, 7, 11)


def test_weekday_baseline_for_a_weekend_event_is_unknown():
    start, end = pd.Timestamp("2025-07-12T18:00+08:00"), pd.Timestamp("2025-07-12T20:00+08:00")
    res = bl.compute_baseline("10_in_10", make_load(), start, end)
    assert not res.ok and "Saturday" in res.reason


def test_a_day_whose_adjustment_window_is_not_metered_is_not_eligible():
    load = make_load(first=D(2025, 6, 27))
    # an event at 02:00 on the data's 11th weekday needs 22:00-01:00 of the day before for its adjustment;
    # the first day's window (06-26 evening) is not metered, so that day is not eligible: too few days
    start, end = pd.Timestamp("2025-07-11T02:00+08:00"), pd.Timestamp("2025-07-11T03:00+08:00")
    res = bl.x_of_y(load, start, end, exclude_days=EVENT_DAYS)
    assert not res.ok and "found 8" in res.reason and "1 incomplete data" in res.reason


def test_15_min_before_at_the_start_of_the_data_is_unknown():
    load = make_load(first=D(2025, 7, 15), step="15min")
    start = pd.Timestamp("2025-07-15T00:00+08:00")
    res = bl.before_event(load, start, start + pd.Timedelta(hours=1))
    assert not res.ok and "not fully metered" in res.reason and res.p_kw.isna().all()


# --- bad input ---------------------------------------------------------------------------------


def test_non_regular_index_is_rejected():
    load = make_load().drop(pd.Timestamp("2025-07-03T05:00+08:00"))
    with pytest.raises(ValueError, match="not regular"):
        bl.compute_baseline("10_in_10", load, START, END)


def test_naive_index_is_rejected():
    load = make_load().tz_localize(None)
    with pytest.raises(ValueError, match="naive"):
        bl.compute_baseline("last_5_days", load, START.tz_localize(None), END.tz_localize(None))


def test_naive_event_time_is_rejected():
    with pytest.raises(ValueError, match="event_start.*naive"):
        bl.compute_baseline("last_5_days", make_load(), "2025-07-15 18:00", END)


def test_event_outside_the_data_is_rejected():
    with pytest.raises(ValueError, match="outside the data"):
        bl.compute_baseline("10_in_10", make_load(), "2025-07-16T18:00+08:00", "2025-07-16T20:00+08:00")


def test_event_off_the_metering_grid_is_rejected():
    with pytest.raises(ValueError, match="not on the metering grid"):
        bl.compute_baseline("10_in_10", make_load(), "2025-07-15T18:30+08:00", END)


def test_event_end_before_start_is_rejected():
    with pytest.raises(ValueError, match="must be after"):
        bl.compute_baseline("10_in_10", make_load(), END, START)


def test_event_times_in_another_zone_are_converted():
    res = bl.compute_baseline("last_5_days", make_load(), "2025-07-15T10:00Z", "2025-07-15T12:00Z",
                              exclude_days=EVENT_DAYS)
    np.testing.assert_allclose(res.p_kw.to_numpy(), [86 + 8.6, 88 + 8.6], rtol=1e-12)


def test_unknown_baseline_name_lists_the_valid_ones():
    with pytest.raises(KeyError, match="10_in_10.*15_min_before|15_min_before.*10_in_10"):
        bl.get_baseline("20_in_20")


def test_registry_names():
    assert set(bl.BASELINES) == {"10_in_10", "5_in_10", "high_5_of_10", "last_5_days", "15_min_before"}


@pytest.mark.parametrize("kwargs, match", [
    (dict(x=11, y=10), "must not exceed"),
    (dict(x=0), "integer >= 1"),
    (dict(rank_by="median"), "unknown rank_by"),
    (dict(adjustment_cap=1.5), "adjustment_cap must be < 1"),
    (dict(adjustment_window_h=0.5), "whole number of metering intervals"),
    (dict(adjustment_window_h=-1), "finite number >= 0"),
])
def test_bad_parameters_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bl.x_of_y(make_load(), START, END, **kwargs)


def test_non_series_and_non_numeric_input_are_rejected():
    with pytest.raises(TypeError, match="pandas Series"):
        bl.x_of_y(make_load().to_numpy(), START, END)
    with pytest.raises(TypeError, match="DatetimeIndex"):
        bl.x_of_y(make_load().reset_index(drop=True), START, END)


def test_event_longer_than_a_day_is_rejected():
    with pytest.raises(ValueError, match="at most 24 h"):
        bl.x_of_y(make_load(), "2025-07-13T18:00+08:00", "2025-07-15T20:00+08:00")


# --- error against the twin --------------------------------------------------------------------


def test_baseline_error_by_hand():
    idx = pd.date_range("2025-07-15T18:00+08:00", periods=2, freq="1h")
    err = bl.baseline_error(pd.Series([10.0, 20.0], index=idx), pd.Series([12.0, 16.0], index=idx))
    # differences -2, +4 kW over 1 h intervals
    assert err["bias_kwh"] == pytest.approx(2.0)
    assert err["mae_kw"] == pytest.approx(3.0)
    assert err["rmse_kw"] == pytest.approx(math.sqrt(10.0))
    assert err["twin_kwh"] == pytest.approx(28.0) and err["baseline_kwh"] == pytest.approx(30.0)
    assert err["rel_error"] == pytest.approx(2.0 / 28.0)
    idx30 = pd.date_range("2025-07-15T18:00+08:00", periods=2, freq="30min")
    err30 = bl.baseline_error(pd.Series([10.0, 20.0], index=idx30), pd.Series([12.0, 16.0], index=idx30))
    assert err30["bias_kwh"] == pytest.approx(1.0) and err30["mae_kw"] == pytest.approx(3.0)


def test_baseline_error_of_an_unknown_baseline_is_nan():
    idx = pd.date_range("2025-07-15T18:00+08:00", periods=2, freq="1h")
    err = bl.baseline_error(pd.Series([np.nan, np.nan], index=idx), pd.Series([12.0, 16.0], index=idx))
    assert math.isnan(err["bias_kwh"]) and math.isnan(err["rmse_kw"]) and err["twin_kwh"] == 28.0


def test_baseline_error_needs_one_index():
    idx = pd.date_range("2025-07-15T18:00+08:00", periods=2, freq="1h")
    with pytest.raises(ValueError, match="share one index"):
        bl.baseline_error(pd.Series([1.0, 2.0], index=idx), pd.Series([1.0, 2.0], index=idx + pd.Timedelta("1h")))


def test_compare_baselines_against_the_twin():
    load = make_load()
    # the twin: the event day without the 20 kW response
    twin = load.copy()
    during = (twin.index >= START) & (twin.index < END)
    twin[during] += DELIVERED_KW
    table = bl.compare_baselines(load, twin, START, END, exclude_days=EVENT_DAYS)
    assert list(table.index) == list(bl.BASELINES)
    # last_5_days: baseline 86+8.6, 88+8.6 against twin 86+10, 88+10: -1.4 kW each hour
    row = table.loc["last_5_days"]
    assert row["bias_kwh"] == pytest.approx(-2.8) and row["mae_kw"] == pytest.approx(1.4)
    assert row["rel_error"] == pytest.approx(-2.8 / (96 + 98))
    # high_5_of_10: 86+6.8 against 86+10
    assert table.loc["high_5_of_10", "bias_kwh"] == pytest.approx(-6.4)
    # 10-in-10 (adjusted): (shape + 5.8) x 90/85.8 - (shape + 10)
    r = 90 / 85.8
    expected = ((86 + 5.8) * r - 96) + ((88 + 5.8) * r - 98)
    assert table.loc["10_in_10", "bias_kwh"] == pytest.approx(expected, rel=1e-12)
    # hourly metering cannot give a 15-min baseline: unknown, with the reason
    assert table.drop(index="15_min_before")["ok"].all()
    assert not table.loc["15_min_before", "ok"] and "longer than" in table.loc["15_min_before", "reason"]
    assert math.isnan(table.loc["15_min_before", "bias_kwh"])


def test_compare_baselines_rejects_unknown_names():
    load = make_load()
    with pytest.raises(KeyError, match="valid baselines"):
        bl.compare_baselines(load, load, START, END, names=["10_in_10", "nope"])


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    c=st.floats(min_value=0.1, max_value=1e4, allow_nan=False, allow_infinity=False),
    step_min=st.sampled_from([15, 30, 60]),
    start_h=st.integers(min_value=5, max_value=21),
    duration_h=st.integers(min_value=1, max_value=3),
    name=st.sampled_from(sorted(bl.BASELINES)),
)
def test_a_flat_load_gives_a_baseline_equal_to_that_load(c, step_min, start_h, duration_h, name):
    idx = pd.date_range("2025-06-23", "2025-07-16", freq=f"{step_min}min", inclusive="left", tz=TZ)
    load = pd.Series(c, index=idx)
    start = pd.Timestamp("2025-07-15").tz_localize(TZ) + pd.Timedelta(hours=start_h)
    res = bl.compute_baseline(name, load, start, start + pd.Timedelta(hours=duration_h))
    if name == "15_min_before" and step_min > 15:
        assert not res.ok and "longer than" in res.reason
        return
    assert res.ok, res.reason
    np.testing.assert_allclose(res.p_kw.to_numpy(), c, rtol=1e-12)
    assert len(res.p_kw) == duration_h * 60 // step_min
    if not math.isnan(res.adjustment):
        assert res.adjustment == pytest.approx(1.0, rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    low=st.floats(min_value=0.1, max_value=100.0),
    spread=st.floats(min_value=0.0, max_value=1000.0),
    cap=st.sampled_from([0.2, 0.4]),
)
def test_the_adjustment_never_exceeds_its_cap(seed, low, spread, cap):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2025-06-30", "2025-07-16", freq="1h", inclusive="left", tz=TZ)
    load = pd.Series(low + spread * rng.random(len(idx)), index=idx)
    res = bl.x_of_y(load, START, END, adjustment_cap=cap)
    plain = bl.x_of_y(load, START, END, adjust=False)
    assert res.ok and plain.ok
    assert 1 - cap - 1e-12 <= res.adjustment <= 1 + cap + 1e-12
    assert res.adjustment == pytest.approx(min(max(res.adjustment_raw, 1 - cap), 1 + cap), rel=1e-12)
    ratio = res.p_kw / plain.p_kw
    assert ((ratio >= 1 - cap - 1e-9) & (ratio <= 1 + cap + 1e-9)).all()
