"""Base stations with full batteries as one operator's portfolio, for tests that drive the engine with calls."""

from __future__ import annotations

import numpy as np

from vpp.dispatch import Portfolio, get_allocator
from vpp.fleets import BaseStationFleet


def full_towers(n: int = 40, n_bus: int = 2) -> dict[str, Portfolio]:
    """``n`` base stations with full batteries, spread over ``n_bus`` buses: about 100 kW of room to reduce at
    the default size, far more than the calls in these tests ask for."""
    fleet = BaseStationFleet(
        "t", np.arange(n) % n_bus, "towerco", 1.0, p_idle_kw=2.3, p_busy_kw=3.9, p_design_kw=3.9, cap_kwh=25.0,
        p_batt_max_kw=5.0, eta=0.95, backup_h=3.0, soc_min=0.1, soc_max=1.0, soc_init=1.0,
        traffic_profile="bs_traffic_urban", traffic_scale=np.ones(n), clock_start_h=18.0,
    )
    return {"towerco": Portfolio([fleet], n_bus, get_allocator("pro_rata"))}
