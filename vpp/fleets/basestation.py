"""5G base stations with a backup battery that must always keep its reserve.

Each site draws its radio and cooling load from the grid, following a traffic
profile between ``p_idle_kw`` and ``p_busy_kw``. Its -48 V battery may carry the
site load during a call (the site's grid draw falls towards zero; a site never
exports) and recharges afterwards, but it never discharges below the backup
reserve ``backup_h * p_site_kw`` at the current site load (nor below
``soc_min``). A site found below its reserve (the load rose under it) is made
to recharge before anything else.

Default (no-call) behaviour: the rectifier keeps the battery at full charge,
recharging at up to ``p_batt_max_kw``.
"""

from __future__ import annotations

import numpy as np

from vpp.fleets.base import Envelope, Fleet
from vpp.fleets.kernels import battery_energy_step, battery_loss_kwh, battery_power_bounds
from vpp.profiles import get_profile
from vpp.units import S_PER_H, hour_of_day

__all__ = ["BaseStationFleet"]


class BaseStationFleet(Fleet):
    """Base-station sites: traffic-driven load plus a reserve-bound battery."""

    kind = "basestation"

    def __init__(
        self,
        name: str,
        bus_idx: np.ndarray,
        operator: str,
        cost_cny_per_kwh: np.ndarray,
        p_idle_kw: np.ndarray,
        p_busy_kw: np.ndarray,
        cap_kwh: np.ndarray,
        p_batt_max_kw: np.ndarray,
        eta: float,
        backup_h: float,
        soc_min: float,
        soc_max: float,
        soc_init: np.ndarray,
        traffic_profile: str,
        traffic_scale: np.ndarray,
        clock_start_h: float,
    ):
        super().__init__(name, bus_idx, operator, cost_cny_per_kwh)
        n = self.n
        per_device = self._per_device
        self.p_idle_kw = per_device(p_idle_kw)
        self.p_busy_kw = per_device(p_busy_kw)
        self.cap_kwh = per_device(cap_kwh)
        self.p_batt_max_kw = per_device(p_batt_max_kw)
        self.traffic_scale = per_device(traffic_scale)
        self.eta = float(eta)
        self.backup_h = float(backup_h)
        self.soc_min = float(soc_min)
        self.soc_max = float(soc_max)
        self.traffic = get_profile(traffic_profile)
        self.clock_start_h = float(clock_start_h)
        self.e_kwh = per_device(soc_init) * self.cap_kwh
        self.p_site_kw = np.zeros(n)
        self.p_batt_kw = np.zeros(n)
        self.e_site_kwh = 0.0
        self.e_grid_kwh = 0.0
        self.e_batt_net_kwh = 0.0
        self.e_loss_kwh = 0.0
        self.e_discharged_kwh = 0.0
        self.n_reserve_breaches = 0
        self.reserve_margin_min_kwh = np.inf

    def reserve_kwh(self) -> np.ndarray:
        """Backup reserve at the current site load [kWh]: ``backup_h * p_site_kw``."""
        return self.backup_h * self.p_site_kw

    def floor_kwh(self) -> np.ndarray:
        """Lowest stored energy allowed now [kWh]: the larger of reserve and ``soc_min``."""
        return np.maximum(self.reserve_kwh(), self.soc_min * self.cap_kwh)

    def _advance(self, t_s: float, dt_s: float) -> None:
        traffic = np.clip(self.traffic(hour_of_day(t_s, self.clock_start_h)) * self.traffic_scale, 0.0, 1.0)
        self.p_site_kw = self.p_idle_kw + (self.p_busy_kw - self.p_idle_kw) * traffic

    def _envelope(self, t_s: float, dt_s: float) -> Envelope:
        dt_h = dt_s / S_PER_H
        floor_kwh = self.floor_kwh()
        # Discharge within the rectifier limit, never exporting (at most the site load), never
        # below the floor; charge within the limit up to soc_max.
        b_min_kw, b_max_kw = battery_power_bounds(
            self.e_kwh,
            floor_kwh,
            self.soc_max * self.cap_kwh,
            self.p_batt_max_kw,
            np.minimum(self.p_batt_max_kw, self.p_site_kw),
            dt_h,
            self.eta,
        )
        # Below the floor: recharge towards it now (bounded by what the battery can take).
        b_must_kw = np.minimum(b_max_kw, np.maximum(floor_kwh - self.e_kwh, 0.0) / (self.eta * dt_h))
        b_min_kw = np.where(b_must_kw > 0.0, b_must_kw, b_min_kw)
        return Envelope(self.p_site_kw + b_min_kw, self.p_site_kw + b_max_kw, self.p_site_kw + b_max_kw)

    def _integrate(self, p_kw: np.ndarray, t_s: float, dt_h: float) -> None:
        p_batt_kw = p_kw - self.p_site_kw
        floor_before_kwh = self.floor_kwh()
        e_new = battery_energy_step(self.e_kwh, p_batt_kw, dt_h, self.eta)
        # A discharge bounded to the floor lands on it up to round-off; pin it there.
        e_new = np.where(
            (p_batt_kw < 0.0) & (self.e_kwh >= floor_before_kwh), np.maximum(e_new, floor_before_kwh), e_new
        )
        below = e_new < floor_before_kwh - 1e-9
        # A breach is a discharge that ends below the floor; a site that started below it and
        # recharged is not one.
        self.n_reserve_breaches += int((below & (p_batt_kw < 0.0)).sum())
        if self.n:
            self.reserve_margin_min_kwh = min(
                self.reserve_margin_min_kwh, float(np.min(e_new - self.reserve_kwh()))
            )
        self.e_site_kwh += float(self.p_site_kw.sum() * dt_h)
        self.e_grid_kwh += float(p_kw.sum() * dt_h)
        self.e_batt_net_kwh += float((e_new - self.e_kwh).sum())
        self.e_loss_kwh += float(battery_loss_kwh(p_batt_kw, dt_h, self.eta).sum())
        self.e_discharged_kwh += float(np.maximum(-p_batt_kw, 0.0).sum() * dt_h)
        self.e_kwh = e_new
        self.p_batt_kw = p_batt_kw

    @property
    def soc(self) -> np.ndarray:
        """Battery state of charge [-]."""
        return self.e_kwh / self.cap_kwh

    def tick_metrics(self) -> dict[str, float]:
        return {
            "soc_mean": float(self.soc.mean()) if self.n else float("nan"),
            "reserve_margin_min_kwh": float(np.min(self.e_kwh - self.reserve_kwh())) if self.n else float("nan"),
        }

    def summary(self) -> dict[str, float]:
        return {
            "n_devices": self.n,
            "cap_total_kwh": float(self.cap_kwh.sum()),
            "e_site_kwh": self.e_site_kwh,
            "e_grid_kwh": self.e_grid_kwh,
            "e_battery_discharged_kwh": self.e_discharged_kwh,
            "e_loss_kwh": self.e_loss_kwh,
            "n_reserve_breaches": self.n_reserve_breaches,
            "reserve_margin_min_kwh": self.reserve_margin_min_kwh if self.n else float("nan"),
        }
