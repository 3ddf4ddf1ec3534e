"""Demand-response programme tiers: notice, response time, duration and payment terms.

A tier is a frozen preset chosen by name from :data:`TIERS` (``day_ahead``,
``hour_ahead``, ``minute_level``, ``real_time``). Every number carries its
source in :attr:`Tier.sources` (a field name -> source text mapping, with the
penalty rule and performance band citing theirs in their own ``source``).
A source that says "assumption" is ours, not a published figure; "(secondary)"
means read in a reprint or third-party text, not in the rule itself.

Payment terms (used by :mod:`vpp.programme.settlement`)
-------------------------------------------------------
* Energy payment [CNY] = ``energy_price_cny_per_kwh`` x paid energy [kWh],
  where the paid energy and price factor follow the :class:`PerformanceBand`
  on the event's performance ratio r = delivered / requested energy:
  r < ``floor``: nothing is paid; ``floor`` <= r < ``low``: delivered energy at
  the price pro-rated by r / ``low``; ``low`` <= r <= ``high``: delivered
  energy at full price; r > ``high``: only ``high`` x requested energy is paid.
* Capacity payment [CNY] = ``capacity_price_cny_per_kw`` x cleared capacity
  [kW] per event, paid when r >= ``floor`` (0 in every shipped tier: the rules
  cited below pay for energy only).
* Penalty [CNY], per assessment period (one hour in the Guangdong rule) whose
  mean delivered power falls below ``threshold`` x cleared capacity:
  (cleared x threshold - actual) [kW] x price [CNY/kWh] x ``factor`` x period [h].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

__all__ = [
    "PenaltyRule",
    "PerformanceBand",
    "Tier",
    "TIERS",
    "get_tier",
    "tier_with_overrides",
    "PRICE_FIELDS",
]

# Sources, written once and quoted by several tiers.
_SRC_DOMAIN_GD_CAPACITY = "Guangdong: >= 5 MW per VPP (shared/DOMAIN.md, 'Demand-response calls')"
_SRC_DOMAIN_GD_DURATION = "Guangdong: >= 1 h continuous response (shared/DOMAIN.md, 'Demand-response calls')"
_SRC_NO_MIN_CAPACITY = ("assumption: no minimum (Shenzhen's platform admits >60,000 small resources, "
                        "shared/DOMAIN.md)")
_SRC_NO_MAX_DURATION = "no limit stated (None)"
_SRC_DOMAIN_CBP = "SCE CBP day-ahead/day-of programmes, 1-6 h events (shared/DOMAIN.md, 'Demand-response calls')"
_SRC_SZ_PRICE = (
    "Shenzhen real-time precision response, fixed 5 CNY/kWh under the 2023 rules "
    "(secondary; shared/DOMAIN.md, 'The reference plant')"
)
_SRC_HAINAN = (
    "Hainan DRC, draft 'Hainan power demand response implementation rules' (published for comment "
    "2025-06-16), reported by news.bjx.com.cn 2025-06-17 (secondary)"
)
_SRC_ENERGY_ONLY = (
    "assumption: energy-only payment, as in the Hainan day-ahead/intraday rules and the Shenzhen "
    "real-time rule cited for the energy price (no per-event capacity payment)"
)
_SRC_PENALTY = (
    "Guangdong market-based DR rule: when actual response < R1 (50 %) of the cleared capacity, "
    "hourly assessment fee = (cleared x R1 - actual) x clearing price x M (0.5) "
    "(illustrative, secondary; shared/DOMAIN.md 'Settlement'; the hourly assessment is from a reprint "
    "of the rule). The clearing price is taken as the tier's energy price (assumption)"
)
_SRC_BAND = (
    "floor 0.5: the Guangdong R1 threshold (secondary, shared/DOMAIN.md); full-price band 0.8-1.2, "
    "pro-rating below 0.8 and no pay above 1.2 x requested: assumption (a common shape of provincial "
    "rules, not checked against one)"
)


@dataclass(frozen=True)
class PenaltyRule:
    """Under-delivery penalty per assessment period.

    Penalty [CNY] = max(cleared_kw x threshold - actual_kw, 0) x price [CNY/kWh]
    x factor x period [h], for each assessment period of the event, where
    ``actual_kw`` is the mean delivered power over the period [kW].
    """

    threshold: float = 0.5  # fraction of the cleared capacity below which a penalty applies [-]
    factor: float = 0.5  # penalty factor M [-]
    assessment_period_s: float = 3600.0  # length of one assessment period [s]
    source: str = _SRC_PENALTY

    def __post_init__(self) -> None:
        _check_finite_positive("PenaltyRule.threshold", self.threshold)
        _check_finite_nonnegative("PenaltyRule.factor", self.factor)
        _check_finite_positive("PenaltyRule.assessment_period_s", self.assessment_period_s)


@dataclass(frozen=True)
class PerformanceBand:
    """How the event's performance ratio r = delivered / requested energy is paid.

    r < ``floor``: no energy payment. ``floor`` <= r < ``low``: delivered energy
    paid at the price x r / ``low`` (pro-rated). ``low`` <= r <= ``high``:
    delivered energy at full price. r > ``high``: ``high`` x requested energy at
    full price (over-delivery is not paid).
    """

    floor: float = 0.5  # [-]
    low: float = 0.8  # [-]
    high: float = 1.2  # [-]
    source: str = _SRC_BAND

    def __post_init__(self) -> None:
        for name in ("floor", "low", "high"):
            _check_finite_nonnegative(f"PerformanceBand.{name}", getattr(self, name))
        if not self.floor <= self.low <= self.high:
            raise ValueError(
                f"PerformanceBand: need floor <= low <= high, got {self.floor}, {self.low}, {self.high}"
            )
        if self.low <= 0.0:
            raise ValueError("PerformanceBand.low must be > 0 (it divides the pro-rated price)")

    def price_factor(self, ratio: float) -> float:
        """Multiplier on the energy price at event performance ratio ``ratio`` [-]."""
        if not math.isfinite(ratio) or ratio < self.floor:
            return 0.0
        if ratio < self.low:
            return ratio / self.low
        return 1.0

    def paid_kwh(self, delivered_kwh: float, requested_kwh: float) -> float:
        """Energy paid [kWh] (before the price factor): delivered energy, capped at ``high`` x requested."""
        return max(0.0, min(delivered_kwh, self.high * requested_kwh))


@dataclass(frozen=True)
class Tier:
    """A programme tier: timing, size and payment terms. Units are in the field names."""

    name: str
    min_notice_s: float  # shortest notice between notification and event start [s]
    max_response_s: float  # longest time allowed to reach the requested change (ramp) [s]
    min_duration_s: float  # shortest event [s]
    typical_duration_s: float  # a representative event length for scenarios [s]
    max_duration_s: float | None  # longest event, None when the rule states none [s]
    min_capacity_kw: float  # smallest participating capacity [kW]
    energy_price_cny_per_kwh: float  # price of delivered energy [CNY/kWh]
    capacity_price_cny_per_kw: float  # capacity payment per event [CNY/kW]; 0: none
    penalty: PenaltyRule
    band: PerformanceBand
    sources: Mapping[str, str] = field(compare=False, repr=False)  # field name -> source text

    def __post_init__(self) -> None:
        for name in ("min_notice_s", "min_duration_s", "typical_duration_s", "min_capacity_kw",
                     "capacity_price_cny_per_kw"):
            _check_finite_nonnegative(f"Tier {self.name!r}: {name}", getattr(self, name))
        for name in ("max_response_s", "energy_price_cny_per_kwh"):
            _check_finite_positive(f"Tier {self.name!r}: {name}", getattr(self, name))
        if self.max_duration_s is not None:
            _check_finite_positive(f"Tier {self.name!r}: max_duration_s", self.max_duration_s)
            if self.max_duration_s < self.min_duration_s:
                raise ValueError(f"Tier {self.name!r}: max_duration_s < min_duration_s")
        missing = [f for f in _NUMERIC_FIELDS if f not in self.sources]
        if missing:
            raise ValueError(f"Tier {self.name!r}: no source given for {missing}")
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))


_NUMERIC_FIELDS = (
    "min_notice_s",
    "max_response_s",
    "min_duration_s",
    "typical_duration_s",
    "max_duration_s",
    "min_capacity_kw",
    "energy_price_cny_per_kwh",
    "capacity_price_cny_per_kw",
)

PRICE_FIELDS: tuple[str, ...] = ("energy_price_cny_per_kwh", "capacity_price_cny_per_kw")
"""The fields a scenario may override through :func:`tier_with_overrides`."""


def _check_finite_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool)) or not math.isfinite(value) \
            or value <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_finite_nonnegative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool)) or not math.isfinite(value) \
            or value < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


_H = 3600.0

TIERS: Mapping[str, Tier] = MappingProxyType({
    "day_ahead": Tier(
        name="day_ahead",
        min_notice_s=12 * _H,
        max_response_s=1800.0,
        min_duration_s=1 * _H,
        typical_duration_s=2 * _H,
        max_duration_s=6 * _H,
        min_capacity_kw=5000.0,
        energy_price_cny_per_kwh=1.5,
        capacity_price_cny_per_kw=0.0,
        penalty=PenaltyRule(),
        band=PerformanceBand(),
        sources={
            "min_notice_s": "assumption: notified on the day before (D-1), at least 12 h ahead",
            "max_response_s": "assumption: 30 min, the slowest reserve response in shared/DOMAIN.md (PJM 10/30 min)",
            "min_duration_s": _SRC_DOMAIN_GD_DURATION,
            "typical_duration_s": "assumption: 2 h, inside the 1-6 h range of " + _SRC_DOMAIN_CBP,
            "max_duration_s": _SRC_DOMAIN_CBP,
            "min_capacity_kw": _SRC_DOMAIN_GD_CAPACITY,
            "energy_price_cny_per_kwh": "1.5 CNY/kWh: cap for day-ahead invitation peak shaving, " + _SRC_HAINAN,
            "capacity_price_cny_per_kw": _SRC_ENERGY_ONLY,
        },
    ),
    "hour_ahead": Tier(
        name="hour_ahead",
        min_notice_s=1 * _H,
        max_response_s=900.0,
        min_duration_s=1 * _H,
        typical_duration_s=1 * _H,
        max_duration_s=None,
        min_capacity_kw=5000.0,
        energy_price_cny_per_kwh=2.0,
        capacity_price_cny_per_kw=0.0,
        penalty=PenaltyRule(),
        band=PerformanceBand(),
        sources={
            "min_notice_s": "assumption: 1 h by the tier's name (NYISO EDRP gives 2 h notice, shared/DOMAIN.md)",
            "max_response_s": "mFRR full activation 15 min (shared/DOMAIN.md, 'Demand-response calls')",
            "min_duration_s": _SRC_DOMAIN_GD_DURATION,
            "typical_duration_s": "assumption: the 1 h minimum",
            "max_duration_s": _SRC_NO_MAX_DURATION,
            "min_capacity_kw": _SRC_DOMAIN_GD_CAPACITY,
            "energy_price_cny_per_kwh": "2.0 CNY/kWh: cap for intraday emergency peak shaving, " + _SRC_HAINAN,
            "capacity_price_cny_per_kw": _SRC_ENERGY_ONLY,
        },
    ),
    "minute_level": Tier(
        name="minute_level",
        min_notice_s=0.0,
        max_response_s=300.0,
        min_duration_s=900.0,
        typical_duration_s=1800.0,
        max_duration_s=None,
        min_capacity_kw=0.0,
        energy_price_cny_per_kwh=5.0,
        capacity_price_cny_per_kw=0.0,
        penalty=PenaltyRule(),
        band=PerformanceBand(),
        sources={
            "min_notice_s": "assumption: activated without advance notice; the response time bounds it",
            "max_response_s": "aFRR full activation 5 min (shared/DOMAIN.md, 'Demand-response calls')",
            "min_duration_s": "assumption: 15 min, one settlement interval of 15-min metering",
            "typical_duration_s": "assumption: 30 min",
            "max_duration_s": _SRC_NO_MAX_DURATION,
            "min_capacity_kw": _SRC_NO_MIN_CAPACITY,
            "energy_price_cny_per_kwh": _SRC_SZ_PRICE + "; applying it to the minute class is an assumption",
            "capacity_price_cny_per_kw": _SRC_ENERGY_ONLY,
        },
    ),
    "real_time": Tier(
        name="real_time",
        min_notice_s=0.0,
        max_response_s=60.0,
        min_duration_s=300.0,
        typical_duration_s=900.0,
        max_duration_s=None,
        min_capacity_kw=0.0,
        energy_price_cny_per_kwh=5.0,
        capacity_price_cny_per_kw=0.0,
        penalty=PenaltyRule(),
        band=PerformanceBand(),
        sources={
            "min_notice_s": "assumption: activated without advance notice",
            "max_response_s": "assumption: 60 s bound for Shenzhen's seconds class (shared/DOMAIN.md; a base-station "
                              "pilot responded in 1.1 s on average, secondary)",
            "min_duration_s": "assumption: 5 min",
            "typical_duration_s": "assumption: 15 min",
            "max_duration_s": _SRC_NO_MAX_DURATION,
            "min_capacity_kw": _SRC_NO_MIN_CAPACITY,
            "energy_price_cny_per_kwh": _SRC_SZ_PRICE,
            "capacity_price_cny_per_kw": _SRC_ENERGY_ONLY,
        },
    ),
})
"""Programme tiers by name."""


def get_tier(name: str) -> Tier:
    """The tier called ``name``; an unknown name raises ``KeyError`` listing the valid ones."""
    try:
        return TIERS[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown programme tier {name!r}; valid tiers: {sorted(TIERS)}") from None


def tier_with_overrides(name: str, **prices: float) -> Tier:
    """A copy of tier ``name`` with scenario price overrides.

    Only the fields in :data:`PRICE_FIELDS` may be overridden.
    ``energy_price_cny_per_kwh`` must be finite and > 0;
    ``capacity_price_cny_per_kw`` finite and >= 0 (0 means no capacity payment).
    The overridden fields' sources read "scenario override".
    """
    tier = get_tier(name)
    unknown = sorted(set(prices) - set(PRICE_FIELDS))
    if unknown:
        raise ValueError(f"tier {name!r}: cannot override {unknown}; overridable fields: {list(PRICE_FIELDS)}")
    for key, value in prices.items():
        if key == "capacity_price_cny_per_kw":
            _check_finite_nonnegative(f"tier {name!r}: {key}", value)
        else:
            _check_finite_positive(f"tier {name!r}: {key}", value)
    sources = dict(tier.sources)
    sources.update({key: "scenario override" for key in prices})
    return replace(tier, **{key: float(v) for key, v in prices.items()}, sources=sources)
