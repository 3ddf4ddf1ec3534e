"""Avoided CO2 and carbon-inclusive credits, by hand.

Default factor: 2022 Southern regional grid average, 0.3869 kgCO2/kWh
(MEE & NBS announcement of 2024-12-20, secondary).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vpp.programme import carbon as co


def test_default_factor_is_the_southern_grid_2022_average():
    f = co.get_emission_factor(co.DEFAULT_EMISSION_FACTOR)
    assert (f.name, f.kg_per_kwh, f.year) == ("china_southern_grid_2022", 0.3869, 2022)
    assert "secondary" in f.source and "2022" in f.source
    for factor in co.EMISSION_FACTORS.values():
        assert factor.source and 0.0 < factor.kg_per_kwh < 1.5


def test_avoided_co2_by_hand():
    assert co.avoided_co2_kg(1000.0) == pytest.approx(386.9)
    assert co.avoided_co2_kg(1000.0, 0.5) == pytest.approx(500.0)
    assert co.avoided_co2_kg(1000.0, "china_fossil_power_2022") == pytest.approx(832.5)
    np.testing.assert_allclose(co.avoided_co2_kg(np.array([0.0, 10.0])), [0.0, 3.869])
    s = co.avoided_co2_kg(pd.Series([10.0, 20.0], index=["a", "b"]), 1.0)
    assert isinstance(s, pd.Series) and list(s) == [10.0, 20.0]


def test_bad_factors_are_rejected():
    with pytest.raises(KeyError, match="china_southern_grid_2022"):
        co.avoided_co2_kg(1.0, "mars_grid")
    for bad in (-0.1, math.nan, math.inf, True):
        with pytest.raises(ValueError, match="emission factor"):
            co.avoided_co2_kg(1.0, bad)


def test_credits_by_hand():
    c = co.carbon_inclusive_credits(1000.0)
    assert c.counted and c.reduction_kwh == 1000.0
    assert c.credits_tco2e == pytest.approx(1000.0 * 0.3869 / 1000.0)
    # rebound netted, then a 10 % conservativeness discount
    c = co.carbon_inclusive_credits(1000.0, rebound_kwh=200.0, discount=0.1)
    assert c.reduction_kwh == 800.0
    assert c.credits_tco2e == pytest.approx(800.0 * 0.3869 / 1000.0 * 0.9)
    assert "rebound" in c.reason


def test_no_credits_for_increase_events_negative_or_unknown_delivery():
    c = co.carbon_inclusive_credits(500.0, direction="increase")
    assert not c.counted and c.credits_tco2e == 0.0 and "assumption" in c.reason
    c = co.carbon_inclusive_credits(100.0, rebound_kwh=150.0)
    assert not c.counted and c.credits_tco2e == 0.0 and "no negative" in c.reason
    c = co.carbon_inclusive_credits(-50.0)
    assert c.credits_tco2e == 0.0
    c = co.carbon_inclusive_credits(math.nan)
    assert math.isnan(c.credits_tco2e) and not c.counted


def test_bad_credit_inputs_are_rejected():
    with pytest.raises(ValueError, match="discount"):
        co.carbon_inclusive_credits(1.0, discount=1.5)
    with pytest.raises(ValueError, match="rebound_kwh"):
        co.carbon_inclusive_credits(1.0, rebound_kwh=-1.0)
    with pytest.raises(ValueError, match="unknown direction"):
        co.carbon_inclusive_credits(1.0, direction="up")
    with pytest.raises(TypeError, match="delivered_kwh"):
        co.carbon_inclusive_credits("1.0")
