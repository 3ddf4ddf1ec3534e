"""Programme tiers: the registry, every number sourced, overrides validated.

Reference figures are those of ../shared/DOMAIN.md: Shenzhen real-time precision
response 5 CNY/kWh (2023 rules, secondary); Guangdong >= 5 MW per VPP and >= 1 h
continuous response; aFRR 5 min, mFRR 15 min; day-ahead events of 1-6 h (SCE CBP);
the Guangdong penalty threshold 50 % with factor 0.5.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from vpp.programme import tiers as tr

NUMERIC = ("min_notice_s", "max_response_s", "min_duration_s", "typical_duration_s", "max_duration_s",
           "min_capacity_kw", "energy_price_cny_per_kwh", "capacity_price_cny_per_kw")


def test_the_four_tiers_exist():
    assert set(tr.TIERS) == {"day_ahead", "hour_ahead", "minute_level", "real_time"}
    for name, tier in tr.TIERS.items():
        assert tier.name == name and tr.get_tier(name) is tier


@pytest.mark.parametrize("name", sorted(tr.TIERS))
def test_every_number_has_a_source(name):
    tier = tr.get_tier(name)
    for field in NUMERIC:
        assert tier.sources[field].strip(), field
    assert "Guangdong" in tier.penalty.source and tier.band.source


@pytest.mark.parametrize("name", sorted(tr.TIERS))
def test_assumptions_say_so(name):
    # a figure that no cited text gives must be labelled as an assumption
    tier = tr.get_tier(name)
    for field in NUMERIC:
        src = tier.sources[field]
        cited = any(k in src for k in ("DOMAIN.md", "Hainan", "no limit stated"))
        assert cited or "assumption" in src, (field, src)


def test_figures_from_domain_notes():
    assert tr.get_tier("real_time").energy_price_cny_per_kwh == 5.0
    assert "2023" in tr.get_tier("real_time").sources["energy_price_cny_per_kwh"]
    assert tr.get_tier("day_ahead").min_capacity_kw == 5000.0  # Guangdong >= 5 MW
    assert tr.get_tier("day_ahead").min_duration_s == 3600.0  # Guangdong >= 1 h
    assert tr.get_tier("hour_ahead").min_duration_s == 3600.0
    assert tr.get_tier("day_ahead").max_duration_s == 6 * 3600.0  # 1-6 h events
    assert tr.get_tier("hour_ahead").max_response_s == 15 * 60.0  # mFRR
    assert tr.get_tier("minute_level").max_response_s == 5 * 60.0  # aFRR
    for tier in tr.TIERS.values():
        assert (tier.penalty.threshold, tier.penalty.factor) == (0.5, 0.5)
        assert (tier.band.floor, tier.band.low, tier.band.high) == (0.5, 0.8, 1.2)


def test_tiers_are_ordered_by_speed():
    order = ["day_ahead", "hour_ahead", "minute_level", "real_time"]
    notice = [tr.get_tier(n).min_notice_s for n in order]
    response = [tr.get_tier(n).max_response_s for n in order]
    assert notice == sorted(notice, reverse=True)
    assert response == sorted(response, reverse=True)


def test_unknown_tier_lists_the_valid_ones():
    with pytest.raises(KeyError, match="day_ahead.*hour_ahead.*minute_level.*real_time"):
        tr.get_tier("weekly")


def test_tiers_are_frozen_and_the_registry_read_only():
    tier = tr.get_tier("day_ahead")
    with pytest.raises(dataclasses.FrozenInstanceError):
        tier.energy_price_cny_per_kwh = 9.0
    with pytest.raises(TypeError):
        tr.TIERS["mine"] = tier
    with pytest.raises(TypeError):
        tier.sources["min_notice_s"] = "mine"


def test_overrides_return_a_validated_copy():
    base = tr.get_tier("day_ahead")
    tier = tr.tier_with_overrides("day_ahead", energy_price_cny_per_kwh=3.0, capacity_price_cny_per_kw=1.0)
    assert tier.energy_price_cny_per_kwh == 3.0 and tier.capacity_price_cny_per_kw == 1.0
    assert tier.sources["energy_price_cny_per_kwh"] == "scenario override"
    assert tier.min_notice_s == base.min_notice_s and tier.penalty == base.penalty
    assert base.energy_price_cny_per_kwh == 1.5  # the registry is unchanged
    assert "Hainan" in base.sources["energy_price_cny_per_kwh"]
    assert tr.tier_with_overrides("real_time") == tr.get_tier("real_time")


@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan, "2", True, None])
def test_bad_energy_price_overrides_are_rejected(value):
    with pytest.raises(ValueError, match="energy_price_cny_per_kwh"):
        tr.tier_with_overrides("day_ahead", energy_price_cny_per_kwh=value)


@pytest.mark.parametrize("value", [-0.1, math.inf, math.nan])
def test_bad_capacity_price_overrides_are_rejected(value):
    with pytest.raises(ValueError, match="capacity_price_cny_per_kw"):
        tr.tier_with_overrides("day_ahead", capacity_price_cny_per_kw=value)


def test_only_prices_may_be_overridden():
    with pytest.raises(ValueError, match="cannot override.*min_notice_s"):
        tr.tier_with_overrides("day_ahead", min_notice_s=10.0)
    with pytest.raises(KeyError, match="valid tiers"):
        tr.tier_with_overrides("weekly", energy_price_cny_per_kwh=1.0)


def test_band_price_factor_by_hand():
    band = tr.PerformanceBand()
    assert band.price_factor(0.49) == 0.0
    assert band.price_factor(0.5) == pytest.approx(0.625)
    assert band.price_factor(0.6) == pytest.approx(0.75)
    assert band.price_factor(0.8) == 1.0 and band.price_factor(1.5) == 1.0
    assert band.price_factor(math.nan) == 0.0
    assert band.paid_kwh(150.0, 100.0) == 120.0 and band.paid_kwh(90.0, 100.0) == 90.0
    assert band.paid_kwh(-5.0, 100.0) == 0.0


def test_bad_band_and_penalty_rules_are_rejected():
    with pytest.raises(ValueError, match="floor <= low <= high"):
        tr.PerformanceBand(floor=0.9, low=0.8, high=1.2)
    with pytest.raises(ValueError, match="threshold"):
        tr.PenaltyRule(threshold=0.0)
    with pytest.raises(ValueError, match="assessment_period_s"):
        tr.PenaltyRule(assessment_period_s=math.nan)


def test_a_tier_without_sources_is_rejected():
    base = tr.get_tier("day_ahead")
    sources = dict(base.sources)
    del sources["min_notice_s"]
    with pytest.raises(ValueError, match="no source given"):
        dataclasses.replace(base, sources=sources)
