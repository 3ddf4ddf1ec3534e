"""Demand-response programmes as the field settles them: tiers, baselines, settlement, carbon.

Pure functions over numpy and pandas (no IO, no SimPy, no pandapower):

* :mod:`vpp.programme.tiers`: programme tiers (``day_ahead``, ``hour_ahead``,
  ``minute_level``, ``real_time``) with notice, response time and payment
  terms, every figure with its source;
* :mod:`vpp.programme.baselines`: settlement baselines from metered load
  (``10_in_10``, ``5_in_10``, ``high_5_of_10``, ``last_5_days``,
  ``15_min_before``) and their error against the no-call twin;
* :mod:`vpp.programme.settlement`: delivered energy, performance ratio,
  revenue and penalties per event and per interval;
* :mod:`vpp.programme.carbon`: avoided CO2 and carbon-inclusive credits.

Time series are ``pandas.Series`` of power [kW] on a tz-aware, regular
``DatetimeIndex``; each value is the mean power over the interval starting at
its timestamp.
"""

from __future__ import annotations

from vpp.programme.baselines import (
    BASELINES,
    BaselineResult,
    baseline_error,
    before_event,
    compare_baselines,
    compute_baseline,
    get_baseline,
    high_x_of_y,
    last_n_days,
    x_of_y,
)
from vpp.programme.carbon import (
    DEFAULT_EMISSION_FACTOR,
    EMISSION_FACTORS,
    CarbonCredit,
    EmissionFactor,
    avoided_co2_kg,
    carbon_inclusive_credits,
    get_emission_factor,
)
from vpp.programme.settlement import SETTLEMENT_COLUMNS, TWIN, settle_event
from vpp.programme.tiers import TIERS, PenaltyRule, PerformanceBand, Tier, get_tier, tier_with_overrides

__all__ = [
    "BASELINES",
    "BaselineResult",
    "baseline_error",
    "before_event",
    "compare_baselines",
    "compute_baseline",
    "get_baseline",
    "high_x_of_y",
    "last_n_days",
    "x_of_y",
    "DEFAULT_EMISSION_FACTOR",
    "EMISSION_FACTORS",
    "CarbonCredit",
    "EmissionFactor",
    "avoided_co2_kg",
    "carbon_inclusive_credits",
    "get_emission_factor",
    "SETTLEMENT_COLUMNS",
    "TWIN",
    "settle_event",
    "TIERS",
    "PenaltyRule",
    "PerformanceBand",
    "Tier",
    "get_tier",
    "tier_with_overrides",
]
