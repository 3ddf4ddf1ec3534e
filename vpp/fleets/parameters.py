"""Named device parameter sets with their sources.

Every figure here is a default that a scenario file may override. "secondary"
marks a figure from a reprint or third party (see ../shared/DOMAIN.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ChargerParameters",
    "BaseStationParameters",
    "BuildingParameters",
    "CHARGER_PARAMETERS",
    "DC_TAPER_SOC",
    "DC_TAPER_FRAC",
    "SLOW_TAPER_SOC",
    "SLOW_TAPER_FRAC",
    "BASESTATION_PARAMETERS",
    "BUILDING_PARAMETERS",
    "lookup",
]


# CC-CV acceptance of a car battery on DC fast charging, as a fraction of its
# peak versus state of charge: flat to ~55 % SoC, about a third of peak by
# 80 %, ~5 % near full (DOMAIN.md: "roughly flat to ~50-60 % SoC, falling to
# about a third of peak by ~80 % and far lower near full"; trade press, secondary).
DC_TAPER_SOC: tuple[float, ...] = (0.0, 0.55, 0.8, 1.0)
DC_TAPER_FRAC: tuple[float, ...] = (1.0, 1.0, 1.0 / 3.0, 0.05)

# At low C-rates (AC on-board chargers ~0.1-0.2 C, e-bike pack chargers
# ~0.25 C) the constant-current stage lasts to ~80 % SoC before the voltage
# limit makes the current fall: the two-stage model of ACN-Sim
# (Linear2StageBattery, transition_soc = 0.8, linear to zero at full; secondary).
# The last knot keeps the 5 % tail of the DC curve so that full stays reachable.
SLOW_TAPER_SOC: tuple[float, ...] = (0.0, 0.8, 1.0)
SLOW_TAPER_FRAC: tuple[float, ...] = (1.0, 1.0, 0.05)


def _check_mixture(name: str, mixture) -> None:
    """Raise ValueError unless ``mixture`` is (share, lo, hi) triples with shares summing to 1."""
    if len(mixture) == 0:
        raise ValueError(f"{name} needs at least one (share, lo_kw, hi_kw) range")
    for item in mixture:
        if len(item) != 3:
            raise ValueError(f"{name}: each entry is (share, lo_kw, hi_kw), got {item!r}")
        share, lo, hi = item
        if not (share >= 0.0 and 0.0 <= lo <= hi):
            raise ValueError(f"{name}: need share >= 0 and 0 <= lo_kw <= hi_kw, got {item!r}")
    total = sum(item[0] for item in mixture)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"{name}: shares must sum to 1, got {total!r}")


def _check_taper(taper_soc, taper_frac) -> None:
    """Raise ValueError unless the knots describe a valid non-increasing acceptance curve on [0, 1]."""
    if len(taper_soc) != len(taper_frac) or len(taper_soc) < 2:
        raise ValueError(
            f"taper_soc and taper_frac need the same length >= 2, got {len(taper_soc)} and {len(taper_frac)}"
        )
    if taper_soc[0] != 0.0 or taper_soc[-1] != 1.0:
        raise ValueError(f"taper_soc must run from 0.0 to 1.0, got {taper_soc!r}")
    if any(b <= a for a, b in zip(taper_soc, taper_soc[1:])):
        raise ValueError(f"taper_soc must be strictly increasing, got {taper_soc!r}")
    if taper_frac[0] != 1.0:
        raise ValueError(f"taper_frac must start at 1.0 (the peak), got {taper_frac!r}")
    if any(not 0.0 <= f <= 1.0 for f in taper_frac):
        raise ValueError(f"taper_frac values must lie in [0, 1], got {taper_frac!r}")
    if any(b > a for a, b in zip(taper_frac, taper_frac[1:])):
        raise ValueError(f"taper_frac must be non-increasing, got {taper_frac!r}")


@dataclass(frozen=True)
class ChargerParameters:
    """A charger type and the sessions it typically serves.

    Session power is the lower of the charger's rating and the vehicle's
    acceptance: ``min(p_rated_kw, p_accept * f(soc))`` with the vehicle's peak
    acceptance ``p_accept`` drawn from the ``p_accept_kw`` mixture and ``f``
    piecewise linear through the knots ``(taper_soc, taper_frac)`` (see
    :func:`vpp.fleets.kernels.taper_energy_kwh`).
    """

    p_rated_kw: float  # charger rating at the grid connection [kW]
    eta: float  # one-way charging (and V2G discharging) efficiency [-]
    sessions_per_day: float  # mean sessions per charger per day [1/day]
    arrival_profile: str  # name in vpp.profiles.PROFILES
    dwell_mean_h: float  # mean plug-in duration [h] (lognormal)
    dwell_sigma: float  # lognormal shape of the dwell time [-]
    e_need_mean_kwh: float  # mean energy requested by a session, battery side [kWh] (lognormal)
    e_need_sigma: float  # lognormal shape of the energy need [-]
    cap_kwh: tuple[float, float]  # battery capacity range of arriving vehicles [kWh] (uniform)
    soc_arrival: tuple[float, float]  # state of charge range at arrival [-] (uniform)
    soc_max: float  # highest state of charge a session may ask for [-]
    gap_min_h: float  # shortest idle time between two sessions on one charger [h]
    # Peak charging acceptance of arriving vehicles (or battery batches), grid side [kW]:
    # a mixture of uniform ranges (share [-], lo_kw, hi_kw), shares summing to 1.
    p_accept_kw: tuple[tuple[float, float, float], ...]
    # Acceptance as a fraction of the peak [-] versus state of charge [-], piecewise linear:
    # taper_soc strictly increasing from 0.0 to 1.0; taper_frac in [0, 1], non-increasing, from 1.0.
    taper_soc: tuple[float, ...] = DC_TAPER_SOC
    taper_frac: tuple[float, ...] = DC_TAPER_FRAC
    source: str = field(default="")

    def __post_init__(self) -> None:
        _check_mixture("p_accept_kw", self.p_accept_kw)
        _check_taper(self.taper_soc, self.taper_frac)


CHARGER_PARAMETERS: dict[str, ChargerParameters] = {
    "ac_pile": ChargerParameters(
        p_rated_kw=7.0, eta=0.92, sessions_per_day=0.9, arrival_profile="ev_home_arrivals",
        dwell_mean_h=9.0, dwell_sigma=0.5, e_need_mean_kwh=18.0, e_need_sigma=0.5,
        cap_kwh=(45.0, 75.0), soc_arrival=(0.15, 0.6), soc_max=0.95, gap_min_h=0.5,
        p_accept_kw=((1.0, 6.6, 11.0),),
        taper_soc=SLOW_TAPER_SOC, taper_frac=SLOW_TAPER_FRAC,
        source="7 kW AC pile (GB/T 20234 mode 3, 32 A single phase; DOMAIN.md); residential overnight "
        "sessions; ACN-Data dwell statistics (secondary); acceptance 6.6-11 kW = the car's on-board "
        "charger (single-phase 6.6/7 kW to three-phase 11 kW units, makers' data, secondary); "
        "taper: ACN-Sim two-stage battery, CC to 80 % SoC (secondary)",
    ),
    "dc_fast": ChargerParameters(
        p_rated_kw=120.0, eta=0.94, sessions_per_day=7.0, arrival_profile="ev_public_arrivals",
        dwell_mean_h=0.9, dwell_sigma=0.35, e_need_mean_kwh=35.0, e_need_sigma=0.35,
        cap_kwh=(50.0, 80.0), soc_arrival=(0.1, 0.4), soc_max=0.9, gap_min_h=0.15,
        p_accept_kw=((0.85, 100.0, 250.0), (0.15, 270.0, 500.0)),
        source="60-120 kW DC fast charger (DOMAIN.md); taxi/ride-hailing top-ups (secondary); "
        "acceptance: 400 V cars peak at 100-250 kW, 800 V cars 270-500 kW (DOMAIN.md, trade press, "
        "secondary), 85 % 400 V as taxi and ride-hailing fleets mostly are (assumption); "
        "CC-CV taper flat to 55 %, 1/3 at 80 %, 5 % at full (DOMAIN.md, secondary)",
    ),
    "supercharger": ChargerParameters(
        p_rated_kw=600.0, eta=0.95, sessions_per_day=10.0, arrival_profile="ev_public_arrivals",
        dwell_mean_h=0.5, dwell_sigma=0.3, e_need_mean_kwh=45.0, e_need_sigma=0.3,
        cap_kwh=(70.0, 100.0), soc_arrival=(0.1, 0.35), soc_max=0.85, gap_min_h=0.1,
        p_accept_kw=((0.6, 100.0, 250.0), (0.4, 270.0, 500.0)),
        source="liquid-cooled supercharger terminal up to ~600 kW, 1000 V/600 A (DOMAIN.md, trade press, "
        "secondary; Shenzhen 'supercharging city'); acceptance: 400 V cars 100-250 kW (Tesla V3 250 kW), "
        "800 V cars 270-500 kW (DOMAIN.md, secondary), 40 % 800 V at superchargers (assumption); "
        "CC-CV taper flat to 55 %, 1/3 at 80 %, 5 % at full, so a session's mean power is well below "
        "its peak (DOMAIN.md, secondary); dwell ~30 min: users leave soon after charging (idle fees, "
        "DOMAIN.md) and a 45 kWh top-up of a 400 V car takes ~15-35 min on this taper (derived)",
    ),
    "ebike_cabinet": ChargerParameters(
        p_rated_kw=3.0, eta=0.9, sessions_per_day=2.5, arrival_profile="ebike_arrivals",
        dwell_mean_h=7.0, dwell_sigma=0.4, e_need_mean_kwh=9.0, e_need_sigma=0.25,
        cap_kwh=(8.0, 16.0), soc_arrival=(0.1, 0.3), soc_max=0.95, gap_min_h=0.25,
        p_accept_kw=((1.0, 2.0, 4.0),),
        taper_soc=SLOW_TAPER_SOC, taper_frac=SLOW_TAPER_FRAC,
        source="e-bike charging/swap cabinet: ~8-16 compartments, <= 60 V packs at a few hundred W each, "
        "~2-5 kW per cabinet (DOMAIN.md; vendor guides, secondary). A session is the cabinet's batch of "
        "rider batteries as one aggregate battery (derived): rating 12 compartments x 250 W = 3 kW; "
        "8-16 packs of ~1 kWh (48 V x 20 Ah) = 8-16 kWh; acceptance 8-16 x 250 W = 2-4 kW; riders swap at "
        "10-30 % SoC and packs are charged to ~95 % (the charger's end-of-charge current), so the need "
        "is 0.65-0.85 of the batch, mean ~9 kWh (derived); ~2.5 batches a day (~20-25 pack charges) and "
        "a batch stays ~7 h (a full charge takes ~3-6 h on this taper; illustrative); taper: ~0.25 C pack "
        "chargers, CC to 80 % "
        "(ACN-Sim two-stage battery, secondary)",
    ),
}


@dataclass(frozen=True)
class BaseStationParameters:
    """A 5G base-station site with its -48 V battery plant.

    The battery may carry the site during a call but never falls below the
    backup reserve, the energy that after discharge losses carries the site's
    design load for the backup hours:
    ``reserve_kwh = backup_h * p_design_kw / eta`` [kWh]
    (:func:`vpp.fleets.kernels.backup_reserve_kwh`; DOMAIN.md). The design load
    is the site's full (busy-hour) load, not its current load.
    """

    p_idle_kw: float  # site load at zero traffic [kW]
    p_busy_kw: float  # site load at busy-hour traffic [kW]
    cap_kwh: float  # battery capacity [kWh]
    p_batt_max_kw: float  # battery charge/discharge limit (rectifier and BMS) [kW]
    eta: float  # one-way battery efficiency [-]
    backup_h: float  # backup duration to hold at the design load [h]
    p_design_kw: float  # design load the backup reserve is sized for (full/busy-hour site load) [kW]
    soc_min: float  # lowest state of charge at any time [-]
    soc_max: float  # highest state of charge [-]
    traffic_profile: str  # name in vpp.profiles.PROFILES
    source: str = field(default="")


BASESTATION_PARAMETERS: dict[str, BaseStationParameters] = {
    "5g_macro": BaseStationParameters(
        p_idle_kw=2.3, p_busy_kw=3.9, cap_kwh=25.0, p_batt_max_kw=5.0, eta=0.95, backup_h=3.0,
        p_design_kw=3.9, soc_min=0.1, soc_max=1.0, traffic_profile="bs_traffic_urban",
        source="site load 2.3 kW idle to 3.9 kW full (operator figures, secondary); design load = the "
        "full load 3.9 kW; 24-27 kWh battery sized for 3 h backup of the radio load (DOMAIN.md, derived); "
        "reserve 3 h x 3.9 kW / 0.95 = 12.3 kWh (DOMAIN.md formula); 5 kW ~ 0.2 C rectifier limit (derived)",
    ),
}


@dataclass(frozen=True)
class BuildingParameters:
    """A commercial building: base load, cooling HVAC with a 1R1C model, optional PV and battery."""

    floor_area_m2: float  # conditioned floor area [m2]
    p_base_kw: float  # peak non-flexible load [kW]
    base_profile: str  # name in vpp.profiles.PROFILES for the base load and internal gains
    p_hvac_max_kw: float  # HVAC electrical rating [kW]
    cop: float  # cooling coefficient of performance [-]
    r_k_per_kw: float  # envelope thermal resistance [K/kW]
    c_kwh_per_k: float  # thermal capacitance [kWh/K]
    q_internal_kw: float  # peak internal heat gain (people, equipment, solar) [kW thermal]
    t_set_c: float  # thermostat setpoint [degC]
    t_min_c: float  # comfort band lower edge [degC]
    t_max_c: float  # comfort band upper edge [degC]
    pv_kwp: float  # PV peak power when a building has PV [kWp]
    batt_cap_kwh: float  # battery capacity when a building has one [kWh]
    p_batt_max_kw: float  # battery power limit [kW]
    batt_eta: float  # one-way battery efficiency [-]
    source: str = field(default="")


BUILDING_PARAMETERS: dict[str, BuildingParameters] = {
    "office_mid": BuildingParameters(
        floor_area_m2=5000.0, p_base_kw=100.0, base_profile="office_occupancy", p_hvac_max_kw=250.0, cop=3.0,
        r_k_per_kw=0.0229, c_kwh_per_k=131.0, q_internal_kw=250.0, t_set_c=25.0, t_min_c=23.0,
        t_max_c=27.0, pv_kwp=100.0, batt_cap_kwh=200.0, p_batt_max_kw=100.0, batt_eta=0.95,
        source="mid-size Shenzhen office, 5,000 m2 over ~5 floors (illustrative). Base load 100 kW = "
        "lighting (~9 W/m2, GB 50034 office LPD) + plugs, ~20 W/m2 (derived). Cooling: design "
        "cooling-load index for offices in hot-summer/warm-winter China ~110-140 W/m2 thermal "
        "(HVAC design handbooks, e.g. Lu Yaoqing 'Practical HVAC Design Handbook', secondary) over a "
        "system COP ~3 gives 30-60 W/m2 electric (DOMAIN.md reviewer's estimate): UA = 1/R = 43.7 "
        "kW/K (envelope, infiltration and fresh air incl. its latent load, lumped) and peak gains "
        "250 kW (~500 people, lighting, equipment, solar through glazing), so at 33 degC outdoors "
        "and 25 degC inside the cooling load is 8/0.0229 + 250 = 599 kW thermal = 120 W/m2 and "
        "200 kW = 40 W/m2 electric, inside the 250 kW rating (derived). C = 131 kWh/K "
        "(~94 kJ/(m2 K), between ISO 13790's very light and light classes) for R*C = 3 h (derived). "
        "Comfort band 23-27 degC (GB 50736 summer range 24-28, tightened). Roof ~1,000 m2 at "
        "~10 m2/kWp with row spacing = 100 kWp; battery 200 kWh / 100 kW (PEDF pilot sizing, "
        "illustrative)",
    ),
}


def lookup(registry: dict, name: str, what: str):
    """Return ``registry[name]``; an unknown name raises a KeyError listing the valid ones."""
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"unknown {what} {name!r}; valid: {', '.join(sorted(registry))}") from None
