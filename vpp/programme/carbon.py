"""Avoided CO2 and carbon-inclusive (碳普惠) credits from delivered DR energy.

Emission factors
----------------
:data:`EMISSION_FACTORS` holds grid emission factors [kgCO2/kWh] by name, each
with its year and source. The default, ``china_southern_grid_2022``, is the
2022 average CO2 emission factor of the Southern regional grid, 0.3869
kgCO2/kWh, from the Ministry of Ecology and Environment and the National
Bureau of Statistics' announcement of the 2022 electricity CO2 emission
factors (dated 2024-12-20), as reported by Xinjingbao (via daydaynews.cc,
2024-12-27) and the Sichuan United Environment Exchange (ets.sceex.com.cn,
2024-12-31) (secondary: read in reprints, not in the announcement's annex).

An *average* factor says how much CO2 an average kWh of the grid carries. A
peak-shaving kWh probably displaces a marginal, mostly fossil kWh, so the
average factor is conservative; ``china_fossil_power_2022`` (0.8325) is the
other end. For scale: Shenzhen's VPP platform reported ~5.6 GWh shifted and
~4,681 t CO2 avoided since 2023 (petromineralscorp.com citing CNR News,
secondary), an implied ~0.84 kgCO2/kWh, i.e. a fossil-power factor, not the
regional average (derived).

Avoided CO2
-----------
avoided CO2 [kg] = energy [kWh] x factor [kgCO2/kWh]. Whether the energy is
*shifted* (recovered after the call, the rebound) or *avoided* is the caller's
choice: pass the net energy (delivered - rebound) for avoided energy. With one
time-invariant factor, energy shifted to another hour avoids no CO2 at all.

Carbon-inclusive credits (methodology implemented, with its assumptions)
------------------------------------------------------------------------
Shenzhen's carbon-inclusive methodologies (e.g. the residential low-carbon
electricity methodology, Shenzhen Ecology and Environment Bureau, 2022-06-21,
reported by Shenzhen Special Zone Daily, secondary; the efficient chiller
plant methodology, 2024-05) count a reduction as baseline emissions minus
project emissions, with emissions = electricity x grid emission factor, in
tCO2e. We found no published Shenzhen methodology for VPP demand response, so
the following is an *assumption* modelled on them:

1. per event, reduction energy [kWh] = delivered energy against the
   *settlement baseline* (what a verifier can check; not the twin, which no
   verifier sees) minus any rebound energy the caller nets out;
2. only load-reduction (peak-shaving) events earn credits; increase
   (valley-filling) events earn none (assumption: more consumption is not an
   emission reduction under these methodologies);
3. a negative reduction earns zero, never negative credits (assumption);
4. credits [tCO2e] = reduction [kWh] x factor [kgCO2/kWh] / 1000 x (1 - discount),
   where ``discount`` (default 0, assumption) is a conservativeness deduction
   a methodology may apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Mapping

import numpy as np

__all__ = [
    "EmissionFactor",
    "EMISSION_FACTORS",
    "DEFAULT_EMISSION_FACTOR",
    "get_emission_factor",
    "avoided_co2_kg",
    "CarbonCredit",
    "carbon_inclusive_credits",
]

_SRC_MEE_2022 = (
    "MEE & NBS, announcement of the 2022 electricity CO2 emission factors (2024-12-20); values as reported "
    "by Xinjingbao via daydaynews.cc (2024-12-27) and ets.sceex.com.cn (2024-12-31) (secondary)"
)


def _check_factor(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"emission factor must be a finite number >= 0 [kgCO2/kWh], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class EmissionFactor:
    """A grid emission factor [kgCO2/kWh] with its year and source."""

    name: str
    kg_per_kwh: float
    year: int
    source: str

    def __post_init__(self) -> None:
        _check_factor(self.kg_per_kwh)


EMISSION_FACTORS: Mapping[str, EmissionFactor] = MappingProxyType({
    "china_southern_grid_2022": EmissionFactor(
        "china_southern_grid_2022", 0.3869, 2022,
        "Southern regional grid average CO2 emission factor 2022; " + _SRC_MEE_2022),
    "china_national_2022": EmissionFactor(
        "china_national_2022", 0.5366, 2022,
        "national grid average CO2 emission factor 2022; " + _SRC_MEE_2022),
    "china_fossil_power_2022": EmissionFactor(
        "china_fossil_power_2022", 0.8325, 2022,
        "national fossil-fuel power CO2 emission factor 2022; " + _SRC_MEE_2022),
})
"""Grid emission factors by name."""

DEFAULT_EMISSION_FACTOR: str = "china_southern_grid_2022"
"""Name of the default factor (Shenzhen is on China Southern Grid)."""


def get_emission_factor(name: str) -> EmissionFactor:
    """The emission factor called ``name``; an unknown name raises ``KeyError`` listing the valid ones."""
    try:
        return EMISSION_FACTORS[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown emission factor {name!r}; valid: {sorted(EMISSION_FACTORS)}") from None


def _factor(factor_kg_per_kwh: float | str | None) -> float:
    if factor_kg_per_kwh is None:
        return EMISSION_FACTORS[DEFAULT_EMISSION_FACTOR].kg_per_kwh
    if isinstance(factor_kg_per_kwh, str):
        return get_emission_factor(factor_kg_per_kwh).kg_per_kwh
    return _check_factor(factor_kg_per_kwh)


def avoided_co2_kg(energy_kwh, factor_kg_per_kwh: float | str | None = None):
    """Avoided CO2 [kg] = ``energy_kwh`` [kWh] x factor [kgCO2/kWh].

    ``energy_kwh`` may be a scalar, an array or a pandas object (returned in
    kind). ``factor_kg_per_kwh`` is a number, a name in
    :data:`EMISSION_FACTORS`, or None for the default (Southern grid 2022).
    """
    return energy_kwh * _factor(factor_kg_per_kwh)


@dataclass(frozen=True)
class CarbonCredit:
    """Carbon-inclusive credits for one event.

    ``reduction_kwh`` is the energy counted [kWh] (0 when not counted),
    ``credits_tco2e`` the credits [tCO2e], ``reason`` why nothing or less was
    counted (empty when the full delivered energy counted).
    """

    reduction_kwh: float
    credits_tco2e: float
    factor_kg_per_kwh: float
    discount: float
    counted: bool
    reason: str = ""


def carbon_inclusive_credits(
    delivered_kwh: float,
    *,
    direction="reduce",
    rebound_kwh: float = 0.0,
    factor_kg_per_kwh: float | str | None = None,
    discount: float = 0.0,
) -> CarbonCredit:
    """Carbon-inclusive credits [tCO2e] for one event, by the methodology in the module docstring.

    ``delivered_kwh`` is the event's delivered energy against the settlement
    baseline [kWh]; ``rebound_kwh`` (>= 0) the recovery energy to net out.
    NaN delivered energy (an unknown baseline) gives NaN credits.
    """
    factor = _factor(factor_kg_per_kwh)
    if isinstance(discount, bool) or not isinstance(discount, (int, float)) or not 0.0 <= discount <= 1.0:
        raise ValueError(f"discount must be in [0, 1], got {discount!r}")
    if isinstance(rebound_kwh, bool) or not isinstance(rebound_kwh, (int, float)) \
            or not math.isfinite(rebound_kwh) or rebound_kwh < 0:
        raise ValueError(f"rebound_kwh must be a finite number >= 0, got {rebound_kwh!r}")
    value = direction.value if isinstance(direction, Enum) else direction
    if value not in ("reduce", "increase"):
        raise ValueError(f"unknown direction {direction!r}; valid: ['increase', 'reduce']")
    common = dict(factor_kg_per_kwh=factor, discount=float(discount))
    if isinstance(delivered_kwh, bool) or not isinstance(delivered_kwh, (int, float, np.floating)):
        raise TypeError(f"delivered_kwh must be a number [kWh], got {type(delivered_kwh).__name__}")
    if math.isnan(delivered_kwh):
        return CarbonCredit(math.nan, math.nan, counted=False, reason="delivered energy unknown (NaN)", **common)
    if value == "increase":
        return CarbonCredit(0.0, 0.0, counted=False,
                            reason="increase (valley-filling) events earn no credits (assumption)", **common)
    net = float(delivered_kwh) - float(rebound_kwh)
    if net <= 0.0:
        return CarbonCredit(0.0, 0.0, counted=False,
                            reason=f"no net reduction ({net:g} kWh after rebound); no negative credits", **common)
    credits = net * factor / 1000.0 * (1.0 - discount)
    reason = f"{rebound_kwh:g} kWh rebound netted" if rebound_kwh > 0 else ""
    return CarbonCredit(net, credits, counted=True, reason=reason, **common)
