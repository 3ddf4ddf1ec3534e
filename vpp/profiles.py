"""Named daily profiles: 24 hourly points, interpolated linearly and periodically.

Every profile is a function of the clock hour of day ``hod_h`` [h] and works on
scalars and arrays. Shapes are illustrative defaults for a sub-tropical
megacity (Shenzhen); each entry names where its shape comes from. Scenario
files choose profiles by name; an unknown name lists the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """A periodic daily profile sampled at the top of each hour."""

    name: str
    unit: str
    hourly: tuple[float, ...]
    source: str

    def __post_init__(self) -> None:
        if len(self.hourly) != 24:
            raise ValueError(f"profile {self.name!r} needs 24 hourly values, got {len(self.hourly)}")

    def __call__(self, hod_h):
        """Value at hour of day ``hod_h`` [h] (scalar or array), linear between hours."""
        xp = np.arange(25, dtype=float)
        fp = np.append(np.asarray(self.hourly, dtype=float), self.hourly[0])
        return np.interp(np.mod(hod_h, 24.0), xp, fp)


# Shenzhen (22.55 N, 114.06 E, clocks on UTC+8 = 120 E) in mid-July: solar
# declination ~21 deg; solar noon ~12:30 local (4 min per degree west of
# 120 E = +24 min, plus ~6 min for the July equation of time).
_SZ_LAT_DEG = 22.55
_SZ_JULY_DECL_DEG = 21.0
_SZ_SOLAR_NOON_H = 12.5
# Effective exponent on cos(zenith): a pure cos(z) day would give ~8 kWh/kWp
# at a 0.8 peak. Hazy, humid summer air (long slant paths at low sun),
# angle-of-incidence and hot-module losses cut the shoulders; 2.2 gives the
# observed ~5 kWh/kWp on a clear summer day at a ~0.8 peak (fitted to DOMAIN.md).
_PV_ZENITH_EXPONENT = 2.2


def _pv_shape(daily_kwh_per_kwp: float) -> tuple[float, ...]:
    """Hourly PV AC output [kW/kWp] for a Shenzhen summer day yielding ``daily_kwh_per_kwp`` [kWh/kWp].

    Shape ``cos(zenith)**2.2`` from solar geometry. Profiles interpolate
    linearly and periodically between hourly points, so the day's integral is
    exactly the sum of the 24 hourly values [kWh/kWp]: scale to that.
    """
    h = np.arange(24, dtype=float)
    lat, decl = np.radians(_SZ_LAT_DEG), np.radians(_SZ_JULY_DECL_DEG)
    hour_angle = np.radians(15.0 * (h - _SZ_SOLAR_NOON_H))
    cos_zenith = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    shape = np.maximum(cos_zenith, 0.0) ** _PV_ZENITH_EXPONENT
    return tuple(float(v) for v in shape * (daily_kwh_per_kwp / shape.sum()))


# A clear summer day yields ~5 kWh/kWp with an AC peak ~75-85 % of kWp
# (performance ratio ~0.8); the annual-average day, cloudy days included,
# ~3 kWh/kWp (1,000-1,200 kWh/kWp a year) (DOMAIN.md).
PV_CLEAR_SUMMER_KWH_PER_KWP = 5.0
PV_ANNUAL_MEAN_KWH_PER_KWP = 3.0


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "bs_traffic_urban",
            "fraction of busy-hour traffic [-]",
            (0.35, 0.25, 0.18, 0.15, 0.14, 0.15, 0.22, 0.38, 0.55, 0.65, 0.70, 0.74,
             0.78, 0.74, 0.72, 0.74, 0.78, 0.82, 0.88, 0.94, 0.98, 1.00, 0.85, 0.55),
            "illustrative urban mobile-traffic day (night trough ~04:00, busy hour ~21:00), "
            "shape after published 5G/LTE traffic curves (secondary)",
        ),
        Profile(
            "office_occupancy",
            "fraction of peak occupancy [-]",
            (0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.15, 0.35, 0.75, 0.95, 1.00, 1.00,
             0.90, 0.95, 1.00, 1.00, 0.95, 0.85, 0.60, 0.40, 0.30, 0.20, 0.15, 0.10),
            "illustrative commercial-office occupancy (weekday), after ASHRAE 90.1 schedules (secondary)",
        ),
        Profile(
            "residential_mv",
            "fraction of peak feeder load [-]",
            (0.55, 0.50, 0.47, 0.45, 0.45, 0.48, 0.58, 0.68, 0.72, 0.72, 0.74, 0.76,
             0.74, 0.72, 0.72, 0.74, 0.80, 0.90, 0.98, 1.00, 0.98, 0.90, 0.78, 0.65),
            "illustrative mixed residential/commercial MV feeder day with an evening peak ~19:00",
        ),
        Profile(
            "flat",
            "fraction [-]",
            (1.0,) * 24,
            "constant 1.0",
        ),
        Profile(
            "shenzhen_summer_temp_c",
            "outdoor dry-bulb temperature [degC]",
            (28.0, 27.6, 27.3, 27.0, 26.8, 26.8, 27.2, 28.0, 29.0, 30.0, 31.0, 31.8,
             32.4, 32.8, 33.0, 32.8, 32.3, 31.6, 30.8, 30.0, 29.5, 29.0, 28.6, 28.3),
            "typical July day in Shenzhen (daily mean ~29.5 degC, range 27-33 degC), "
            "after Hong Kong Observatory / CMA climate normals (secondary)",
        ),
        Profile(
            "pv_clear_sky",
            "PV AC output per kWp [kW/kWp] (fraction of rated)",
            _pv_shape(PV_CLEAR_SUMMER_KWH_PER_KWP),
            "clear summer day in Shenzhen: 5.0 kWh/kWp, AC peak ~0.785 of kWp (performance ratio ~0.8) "
            "(DOMAIN.md: 'a clear summer day ~5, never ~8'; peak 75-85 % of kWp); shape cos(zenith)^2.2 "
            "for 22.55 N in mid-July, solar noon ~12:30 (derived; exponent fitted to that yield)",
        ),
        Profile(
            "pv_shenzhen_mean",
            "PV AC output per kWp [kW/kWp] (fraction of rated)",
            _pv_shape(PV_ANNUAL_MEAN_KWH_PER_KWP),
            "annual-average Shenzhen day, cloudy days included: 3.0 kWh/kWp (~1,100 kWh/kWp a year; "
            "DOMAIN.md: 1,000-1,200 kWh/kWp, cf. Global Solar Atlas PVOUT for the Pearl River Delta, "
            "secondary); the clear-day shape scaled by 0.6 (derived; real mean days are also shorter "
            "in winter, which this shape ignores)",
        ),
        Profile(
            "ev_home_arrivals",
            "relative arrival rate [-]",
            (0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.9,
             1.0, 1.0, 1.0, 1.2, 1.6, 2.4, 3.4, 3.8, 3.2, 2.2, 1.2, 0.6),
            "residential AC-pile arrivals peaking 18:00-20:00, after ACN-Data / Chinese "
            "residential charging studies (secondary)",
        ),
        Profile(
            "ev_public_arrivals",
            "relative arrival rate [-]",
            (0.6, 0.4, 0.3, 0.3, 0.4, 0.6, 0.9, 1.1, 1.2, 1.2, 1.2, 1.3,
             1.4, 1.3, 1.2, 1.2, 1.3, 1.4, 1.4, 1.3, 1.2, 1.1, 1.0, 0.8),
            "public DC fast / supercharger arrivals (taxis and ride-hailing keep them busy "
            "most of the day; night dip), after Shenzhen taxi charging studies (secondary)",
        ),
        Profile(
            "ebike_arrivals",
            "relative arrival rate [-]",
            (0.3, 0.2, 0.2, 0.2, 0.2, 0.3, 0.6, 1.0, 1.0, 1.0, 1.2, 1.6,
             1.4, 1.1, 1.0, 1.0, 1.1, 1.3, 1.4, 1.4, 1.2, 1.0, 0.7, 0.5),
            "delivery-rider e-bike battery swaps/charges around meal times (illustrative)",
        ),
    )
}


def get_profile(name: str) -> Profile:
    """Return the profile registered as ``name``; unknown names list the valid ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; valid: {', '.join(sorted(PROFILES))}") from None
