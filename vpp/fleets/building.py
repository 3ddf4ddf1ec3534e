"""Commercial buildings: base load, cooling HVAC (1R1C thermal model), optional PV and battery.

Per building, per tick::

    p_kw = p_base_kw + p_hvac_kw + p_pv_kw + p_batt_kw

``p_base_kw`` is not flexible. The HVAC keeps the indoor temperature in the
comfort band ``[t_min_c, t_max_c]``: its electric power may range between
what holds the band's warm edge (setpoint relaxation) and what reaches its
cool edge (pre-cooling); by default a thermostat tracks ``t_set_c``. Rebound
after a call follows from the physics: the thermostat pulls the warmer room
back to its setpoint. PV (negative load) follows the irradiance profile and is
not curtailed. The battery (PEDF buildings) by default charges from PV surplus
only and otherwise holds its charge; in a call it may discharge or charge
within its power and SoC limits. Cooling only: Shenzhen's climate (heating is
not modelled).
"""

from __future__ import annotations

import numpy as np

from vpp.fleets.base import Envelope, Fleet
from vpp.fleets.kernels import (
    battery_energy_step,
    battery_loss_kwh,
    battery_power_bounds,
    rc_coefficient,
    rc_power_for_temperature,
    rc_temperature_step,
    split_by_room,
)
from vpp.profiles import get_profile
from vpp.units import S_PER_H, hour_of_day

__all__ = ["BuildingFleet"]


class BuildingFleet(Fleet):
    """Buildings with cooling HVAC and, for some, PV and a battery."""

    kind = "building"

    def __init__(
        self,
        name: str,
        bus_idx: np.ndarray,
        operator: str,
        cost_cny_per_kwh: np.ndarray,
        *,
        p_base_kw: np.ndarray,
        base_profile: str,
        p_hvac_max_kw: np.ndarray,
        cop: np.ndarray,
        r_k_per_kw: np.ndarray,
        c_kwh_per_k: np.ndarray,
        q_internal_kw: np.ndarray,
        t_set_c: np.ndarray,
        t_min_c: np.ndarray,
        t_max_c: np.ndarray,
        t_in_init_c: np.ndarray,
        pv_kwp: np.ndarray,
        batt_cap_kwh: np.ndarray,
        p_batt_max_kw: np.ndarray,
        batt_eta: float,
        soc_min: float,
        soc_max: float,
        soc_init: np.ndarray,
        outdoor_profile: str,
        irradiance_profile: str,
        clock_start_h: float,
    ):
        super().__init__(name, bus_idx, operator, cost_cny_per_kwh)
        n = self.n
        per_device = self._per_device
        self.p_base_peak_kw = per_device(p_base_kw)
        self.p_hvac_max_kw = per_device(p_hvac_max_kw)
        self.cop = per_device(cop)
        self.r_k_per_kw = per_device(r_k_per_kw)
        self.c_kwh_per_k = per_device(c_kwh_per_k)
        self.q_internal_peak_kw = per_device(q_internal_kw)
        self.t_set_c = per_device(t_set_c)
        self.t_min_c = per_device(t_min_c)
        self.t_max_c = per_device(t_max_c)
        self.t_in_c = per_device(t_in_init_c)
        self.pv_kwp = per_device(pv_kwp)
        self.batt_cap_kwh = per_device(batt_cap_kwh)
        self.p_batt_max_kw = np.where(self.batt_cap_kwh > 0.0, per_device(p_batt_max_kw), 0.0)
        self.batt_eta = float(batt_eta)
        self.soc_min = float(soc_min)
        self.soc_max = float(soc_max)
        self.e_batt_kwh = per_device(soc_init) * self.batt_cap_kwh
        self.base_profile = get_profile(base_profile)
        self.outdoor = get_profile(outdoor_profile)
        self.irradiance = get_profile(irradiance_profile)
        self.clock_start_h = float(clock_start_h)
        # Per-tick inputs and component powers [kW].
        self.t_out_c = 0.0
        self.p_base_kw = np.zeros(n)
        self.q_gain_kw = np.zeros(n)
        self.p_pv_kw = np.zeros(n)
        self.p_hvac_kw = np.zeros(n)
        self.p_batt_kw = np.zeros(n)
        self._parts: dict[str, np.ndarray] = {}
        # Accounting.
        self.e_grid_kwh = 0.0
        self.e_hvac_kwh = 0.0
        self.e_pv_kwh = 0.0
        self.e_batt_loss_kwh = 0.0
        self.comfort_violation_kh = 0.0  # degree-hours outside the band, summed over buildings [K h]

    def _advance(self, t_s: float, dt_s: float) -> None:
        hod_h = hour_of_day(t_s, self.clock_start_h)
        occupancy = self.base_profile(hod_h)
        self.t_out_c = float(self.outdoor(hod_h))
        self.p_base_kw = self.p_base_peak_kw * occupancy
        self.q_gain_kw = self.q_internal_peak_kw * occupancy
        self.p_pv_kw = -self.pv_kwp * self.irradiance(hod_h)

    def _envelope(self, t_s: float, dt_s: float) -> Envelope:
        dt_h = dt_s / S_PER_H
        a = rc_coefficient(self.r_k_per_kw, self.c_kwh_per_k, dt_h)

        def hvac_for(t_target_c: np.ndarray) -> np.ndarray:
            p_kw = rc_power_for_temperature(
                t_target_c, self.t_in_c, self.t_out_c, self.q_gain_kw, self.cop, self.r_k_per_kw, a
            )
            return np.clip(p_kw, 0.0, self.p_hvac_max_kw)

        hvac_min_kw = hvac_for(self.t_max_c)
        hvac_max_kw = hvac_for(self.t_min_c)
        hvac_def_kw = hvac_for(self.t_set_c)
        b_min_kw, b_max_kw = battery_power_bounds(
            self.e_batt_kwh,
            self.soc_min * self.batt_cap_kwh,
            self.soc_max * self.batt_cap_kwh,
            self.p_batt_max_kw,
            self.p_batt_max_kw,
            dt_h,
            self.batt_eta,
        )
        # Default battery: store PV surplus, otherwise hold.
        surplus_kw = np.maximum(-(self.p_base_kw + hvac_def_kw + self.p_pv_kw), 0.0)
        b_def_kw = np.minimum(surplus_kw, b_max_kw)
        fixed_kw = self.p_base_kw + self.p_pv_kw
        self._parts = {
            "a": a,
            "hvac_min": hvac_min_kw,
            "hvac_max": hvac_max_kw,
            "hvac_def": hvac_def_kw,
            "b_min": b_min_kw,
            "b_max": b_max_kw,
            "b_def": b_def_kw,
        }
        return Envelope(
            fixed_kw + hvac_min_kw + b_min_kw,
            fixed_kw + hvac_max_kw + b_max_kw,
            fixed_kw + hvac_def_kw + b_def_kw,
        )

    def _integrate(self, p_kw: np.ndarray, t_s: float, dt_h: float) -> None:
        q = self._parts
        delta_kw = p_kw - (self.p_base_kw + self.p_pv_kw + q["hvac_def"] + q["b_def"])
        down = delta_kw < 0.0
        room_hvac_kw = np.where(down, q["hvac_def"] - q["hvac_min"], q["hvac_max"] - q["hvac_def"])
        room_batt_kw = np.where(down, q["b_def"] - q["b_min"], q["b_max"] - q["b_def"])
        d_hvac_kw, d_batt_kw = split_by_room(delta_kw, room_hvac_kw, room_batt_kw)
        self.p_hvac_kw = np.clip(q["hvac_def"] + d_hvac_kw, q["hvac_min"], q["hvac_max"])
        self.p_batt_kw = np.clip(q["b_def"] + d_batt_kw, q["b_min"], q["b_max"])
        self.t_in_c = rc_temperature_step(
            self.t_in_c, self.t_out_c, self.q_gain_kw, self.p_hvac_kw, self.cop, self.r_k_per_kw, q["a"]
        )
        self.e_batt_kwh = battery_energy_step(self.e_batt_kwh, self.p_batt_kw, dt_h, self.batt_eta)
        out_of_band_k = np.maximum(self.t_in_c - self.t_max_c, 0.0) + np.maximum(self.t_min_c - self.t_in_c, 0.0)
        self.comfort_violation_kh += float(out_of_band_k.sum() * dt_h)
        self.e_grid_kwh += float(p_kw.sum() * dt_h)
        self.e_hvac_kwh += float(self.p_hvac_kw.sum() * dt_h)
        self.e_pv_kwh += float(-self.p_pv_kw.sum() * dt_h)
        self.e_batt_loss_kwh += float(battery_loss_kwh(self.p_batt_kw, dt_h, self.batt_eta).sum())

    def tick_metrics(self) -> dict[str, float]:
        if not self.n:
            return {"t_in_mean_c": float("nan"), "t_in_max_c": float("nan")}
        return {"t_in_mean_c": float(self.t_in_c.mean()), "t_in_max_c": float(self.t_in_c.max())}

    def summary(self) -> dict[str, float]:
        return {
            "n_devices": self.n,
            "n_with_pv": int((self.pv_kwp > 0.0).sum()),
            "n_with_battery": int((self.batt_cap_kwh > 0.0).sum()),
            "e_grid_kwh": self.e_grid_kwh,
            "e_hvac_kwh": self.e_hvac_kwh,
            "e_pv_kwh": self.e_pv_kwh,
            "e_battery_loss_kwh": self.e_batt_loss_kwh,
            "comfort_violation_kh": self.comfort_violation_kh,
        }
