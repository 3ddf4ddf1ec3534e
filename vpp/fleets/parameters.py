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
    "BASESTATION_PARAMETERS",
    "BUILDING_PARAMETERS",
    "lookup",
]


@dataclass(frozen=True)
class ChargerParameters:
    """A charger type and the sessions it typically serves."""

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
    source: str = field(default="")


CHARGER_PARAMETERS: dict[str, ChargerParameters] = {
    "ac_pile": ChargerParameters(
        p_rated_kw=7.0, eta=0.92, sessions_per_day=0.9, arrival_profile="ev_home_arrivals",
        dwell_mean_h=9.0, dwell_sigma=0.5, e_need_mean_kwh=18.0, e_need_sigma=0.5,
        cap_kwh=(45.0, 75.0), soc_arrival=(0.15, 0.6), soc_max=0.95, gap_min_h=0.5,
        source="7 kW AC pile (GB/T 20234 mode 3, 32 A single phase); residential overnight "
        "sessions; DOMAIN.md, ACN-Data dwell statistics (secondary)",
    ),
    "dc_fast": ChargerParameters(
        p_rated_kw=120.0, eta=0.94, sessions_per_day=7.0, arrival_profile="ev_public_arrivals",
        dwell_mean_h=0.9, dwell_sigma=0.35, e_need_mean_kwh=35.0, e_need_sigma=0.35,
        cap_kwh=(50.0, 80.0), soc_arrival=(0.1, 0.4), soc_max=0.9, gap_min_h=0.15,
        source="60-120 kW DC fast charger (DOMAIN.md); taxi/ride-hailing top-ups (secondary)",
    ),
    "supercharger": ChargerParameters(
        p_rated_kw=600.0, eta=0.95, sessions_per_day=10.0, arrival_profile="ev_public_arrivals",
        dwell_mean_h=0.4, dwell_sigma=0.3, e_need_mean_kwh=45.0, e_need_sigma=0.3,
        cap_kwh=(70.0, 100.0), soc_arrival=(0.1, 0.35), soc_max=0.85, gap_min_h=0.1,
        source="liquid-cooled supercharger up to ~600 kW (DOMAIN.md; Shenzhen 'supercharging city')",
    ),
    "ebike_cabinet": ChargerParameters(
        p_rated_kw=1.5, eta=0.9, sessions_per_day=3.0, arrival_profile="ebike_arrivals",
        dwell_mean_h=3.0, dwell_sigma=0.4, e_need_mean_kwh=2.0, e_need_sigma=0.4,
        cap_kwh=(3.0, 5.0), soc_arrival=(0.05, 0.3), soc_max=1.0, gap_min_h=0.25,
        source="e-bike charging cabinet ~1-2 kW (DOMAIN.md); a session is the cabinet's batch "
        "of rider batteries, modelled as one aggregate battery (derived)",
    ),
}


@dataclass(frozen=True)
class BaseStationParameters:
    """A 5G base-station site with its -48 V battery plant."""

    p_idle_kw: float  # site load at zero traffic [kW]
    p_busy_kw: float  # site load at busy-hour traffic [kW]
    cap_kwh: float  # battery capacity [kWh]
    p_batt_max_kw: float  # battery charge/discharge limit (rectifier and BMS) [kW]
    eta: float  # one-way battery efficiency [-]
    backup_h: float  # backup duration to hold at the current site load [h]
    soc_min: float  # lowest state of charge at any time [-]
    soc_max: float  # highest state of charge [-]
    traffic_profile: str  # name in vpp.profiles.PROFILES
    source: str = field(default="")


BASESTATION_PARAMETERS: dict[str, BaseStationParameters] = {
    "5g_macro": BaseStationParameters(
        p_idle_kw=2.3, p_busy_kw=3.9, cap_kwh=25.0, p_batt_max_kw=5.0, eta=0.95, backup_h=3.0,
        soc_min=0.1, soc_max=1.0, traffic_profile="bs_traffic_urban",
        source="site load 2.3 kW idle to 3.9 kW busy (operator figures, secondary); 24-27 kWh "
        "battery sized for 3 h backup (DOMAIN.md, derived); 5 kW ~ 0.2 C rectifier limit (derived)",
    ),
}


@dataclass(frozen=True)
class BuildingParameters:
    """A commercial building: base load, cooling HVAC with a 1R1C model, optional PV and battery."""

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
        p_base_kw=120.0, base_profile="office_occupancy", p_hvac_max_kw=80.0, cop=3.2,
        r_k_per_kw=0.05, c_kwh_per_k=60.0, q_internal_kw=60.0, t_set_c=25.0, t_min_c=23.0,
        t_max_c=27.0, pv_kwp=100.0, batt_cap_kwh=200.0, p_batt_max_kw=100.0, batt_eta=0.95,
        source="mid-size office (~5,000 m2): 1R1C with time constant R*C = 3 h, cooling "
        "COP 3.2; comfort band 23-27 degC (GB 50736 summer range 24-28, tightened); "
        "PEDF pilot sizing (illustrative)",
    ),
}


def lookup(registry: dict, name: str, what: str):
    """Return ``registry[name]``; an unknown name raises a KeyError listing the valid ones."""
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"unknown {what} {name!r}; valid: {', '.join(sorted(registry))}") from None
