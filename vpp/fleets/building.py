"""Commercial buildings: base load, cooling HVAC (1R1C thermal model), optional PV and battery.

Per building, per tick::

    p_kw = p_base_kw + p_hvac_kw + p_pv_kw + p_batt_kw

``p_base_kw`` is not flexible. The HVAC keeps the indoor temperature in the
comfort band ``[t_min_c, t_max_c]``: its electric power may range between
what holds the band's warm edge (setpoint relaxation) and what reaches its
cool edge (pre-cooling); by default a thermostat tracks ``t_set_c``. Rebound
after a call follows from the physics: the thermostat pulls the warmer room
back to its setpoint. PV (negative load) follows the irradiance profile (a
named daily shape, or a per-tick series read from a file by the caller) and is
not curtailed. The battery (PEDF buildings) by default charges from PV surplus
only and otherwise holds its charge; in a call it may discharge or charge
within its power and SoC limits. Cooling only: Shenzhen's climate (heating is
not modelled).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from vpp.fleets.base import Envelope, Fleet, FleetState, FlexGroups, KindSpec, Workspace
from vpp.fleets.config import (
    MAX_DEVICE_KW,
    MAX_DEVICE_KWH,
    FleetConfigBase,
    Fraction,
    SeriesFile,
    one_of,
    real,
    series_or_profile,
)
from vpp.fleets.kernels import (
    NUMBA_AVAILABLE,
    battery_energy_step,
    battery_loss_kwh,
    battery_power_bounds,
    rc_coefficient,
    rc_power_for_temperature,
    rc_temperature_step,
    split_by_room,
)
from vpp.fleets.parameters import BUILDING_PARAMETERS, BuildingParameters
from vpp.profiles import PROFILES, get_profile
from vpp.units import S_PER_H, hour_of_day

__all__ = ["BuildingFleet", "BuildingState", "BuildingFleetConfig", "build_building_fleet", "SPEC"]


@dataclass(slots=True)
class BuildingState(FleetState):
    """What changes in the buildings: room temperature, battery energy, this tick's inputs, accounting."""

    t_in_c: np.ndarray  # indoor temperature [degC]
    e_batt_kwh: np.ndarray  # stored battery energy [kWh]
    p_base_kw: np.ndarray  # non-flexible load this tick [kW]
    q_gain_kw: np.ndarray  # internal heat gain this tick [kW thermal]
    p_pv_kw: np.ndarray  # PV output this tick, negative [kW]
    p_hvac_kw: np.ndarray  # HVAC electric power last tick [kW]
    p_batt_kw: np.ndarray  # battery power last tick, charging positive [kW]
    t_out_c: float = 0.0  # outdoor temperature this tick [degC]
    e_grid_kwh: float = 0.0
    e_hvac_kwh: float = 0.0
    e_pv_kwh: float = 0.0
    e_batt_loss_kwh: float = 0.0
    comfort_violation_kh: float = 0.0  # degree-hours outside the band, summed over buildings [K h]


class BuildingFleet(Fleet):
    """Buildings with cooling HVAC and, for some, PV and a battery."""

    kind = "building"
    work_names = ("a", "hvac_min", "hvac_max", "hvac_def", "b_def", "b_min", "b_max", "tmp")
    twin_cost_keys = ("e_stored_kwh", "comfort_violation_kh")

    def __init__(
        self,
        name: str,
        bus_idx: np.ndarray,
        operator: str,
        cost_cny_per_kwh,
        *,
        p_base_kw,
        base_profile: str,
        p_hvac_max_kw,
        cop,
        r_k_per_kw,
        c_kwh_per_k,
        q_internal_kw,
        t_set_c,
        t_min_c,
        t_max_c,
        t_in_init_c,
        pv_kwp,
        batt_cap_kwh,
        p_batt_max_kw,
        batt_eta: float,
        soc_min: float,
        soc_max: float,
        soc_init,
        outdoor_profile: str,
        irradiance_profile: str,
        clock_start_h: float,
        irradiance_kw_per_kwp: Callable[[float], float] | None = None,
    ):
        super().__init__(name, bus_idx, operator, cost_cny_per_kwh)
        p = self._param
        self.p_base_peak_kw = p(p_base_kw)
        self.p_hvac_max_kw = p(p_hvac_max_kw)
        self.cop = p(cop)
        self.r_k_per_kw = p(r_k_per_kw)
        self.c_kwh_per_k = p(c_kwh_per_k)
        self.q_internal_peak_kw = p(q_internal_kw)
        self.t_set_c = p(t_set_c)
        self.t_min_c = p(t_min_c)
        self.t_max_c = p(t_max_c)
        self.t_in_init_c = p(t_in_init_c)
        self.pv_kwp = p(pv_kwp)
        self.batt_cap_kwh = p(batt_cap_kwh)
        self.p_batt_max_kw = p(np.where(self.batt_cap_kwh > 0.0, np.broadcast_to(p_batt_max_kw, (self.n,)), 0.0))
        self.batt_eta = float(batt_eta)
        self.soc_min = float(soc_min)
        self.soc_max = float(soc_max)
        self.soc_init = p(soc_init)
        self.e_batt_min_kwh = p(self.soc_min * self.batt_cap_kwh)
        self.e_batt_max_kwh = p(self.soc_max * self.batt_cap_kwh)
        self.base_profile = get_profile(base_profile)
        self.outdoor = get_profile(outdoor_profile)
        self.irradiance = get_profile(irradiance_profile)
        # PV output per rated power at scenario time t_s [kW/kWp], e.g. a file's tick means; replaces the profile.
        self.irradiance_kw_per_kwp = irradiance_kw_per_kwp
        self.clock_start_h = float(clock_start_h)
        self.use_numba = NUMBA_AVAILABLE  # compiled envelope (vpp.fleets.kernels_numba_dispatch); False: numpy only
        self._rc_a: tuple[float, np.ndarray] | None = None  # (dt_h, rc_coefficient) of the last tick length

    def initial_state(self) -> BuildingState:
        n = self.n
        z = np.zeros
        return BuildingState(
            p_kw=z(n), t_in_c=self.t_in_init_c.copy(), e_batt_kwh=self.soc_init * self.batt_cap_kwh,
            p_base_kw=z(n), q_gain_kw=z(n), p_pv_kw=z(n), p_hvac_kw=z(n), p_batt_kw=z(n),
        )

    def _advance(self, s: BuildingState, t_s: float, dt_s: float) -> None:
        hod_h = hour_of_day(t_s, self.clock_start_h)
        occupancy = float(self.base_profile(hod_h))
        s.t_out_c = float(self.outdoor(hod_h))
        np.multiply(self.p_base_peak_kw, occupancy, out=s.p_base_kw)
        np.multiply(self.q_internal_peak_kw, occupancy, out=s.q_gain_kw)
        if self.irradiance_kw_per_kwp is not None:
            pv_kw_per_kwp = float(self.irradiance_kw_per_kwp(t_s))
        else:
            pv_kw_per_kwp = float(self.irradiance(hod_h))
        np.multiply(self.pv_kwp, -pv_kw_per_kwp, out=s.p_pv_kw)

    def _hvac_for(self, s: BuildingState, t_target_c: np.ndarray, a: np.ndarray, out: np.ndarray) -> None:
        p_kw = rc_power_for_temperature(
            t_target_c, s.t_in_c, s.t_out_c, s.q_gain_kw, self.cop, self.r_k_per_kw, a
        )
        np.clip(p_kw, 0.0, self.p_hvac_max_kw, out=out)

    def _envelope(self, s: BuildingState, t_s: float, dt_s: float, ws: Workspace) -> bool:
        # The compiled pass was 3-8x faster than numpy at every size measured, 10 to 10^6 buildings
        # (benchmarks/bench_dispatch.py), so there is no size threshold.
        if self.use_numba:
            from vpp.fleets.kernels_numba_dispatch import building_envelope  # imports numba on first call

            dt_h = dt_s / S_PER_H
            building_envelope(
                s.t_in_c, s.t_out_c, s.q_gain_kw, s.p_base_kw, s.p_pv_kw, s.e_batt_kwh, self.cop, self.r_k_per_kw,
                self._rc_coefficient(dt_h), self.p_hvac_max_kw, self.t_set_c, self.t_min_c, self.t_max_c,
                self.e_batt_min_kwh, self.e_batt_max_kwh, self.p_batt_max_kw, self.batt_eta, dt_h, ws.a, ws.hvac_min,
                ws.hvac_max, ws.hvac_def, ws.b_def, ws.b_min, ws.b_max, ws.p_min_kw, ws.p_max_kw, ws.p_default_kw,
            )
            return True  # the kernel applied the ordering guard
        self._envelope_numpy(s, t_s, dt_s, ws)
        return False

    def _rc_coefficient(self, dt_h: float) -> np.ndarray:
        """:func:`rc_coefficient` of every building for ticks of ``dt_h`` [h], computed once per tick length.

        R and C are frozen, so this never changes during a run; recomputing an
        ``exp`` per building every tick was half the compiled envelope's time.
        """
        if self._rc_a is None or self._rc_a[0] != dt_h:
            a = rc_coefficient(self.r_k_per_kw, self.c_kwh_per_k, dt_h)
            a.flags.writeable = False
            self._rc_a = (dt_h, a)
        return self._rc_a[1]

    def _envelope_numpy(self, s: BuildingState, t_s: float, dt_s: float, ws: Workspace) -> None:
        """The envelope as whole-array numpy passes: the reference, and the path without numba."""
        dt_h = dt_s / S_PER_H
        ws.a[:] = rc_coefficient(self.r_k_per_kw, self.c_kwh_per_k, dt_h)
        self._hvac_for(s, self.t_max_c, ws.a, ws.hvac_min)
        self._hvac_for(s, self.t_min_c, ws.a, ws.hvac_max)
        self._hvac_for(s, self.t_set_c, ws.a, ws.hvac_def)
        b_min, b_max = battery_power_bounds(
            s.e_batt_kwh, self.e_batt_min_kwh, self.e_batt_max_kwh, self.p_batt_max_kw, self.p_batt_max_kw,
            dt_h, self.batt_eta,
        )
        fixed = ws.tmp
        np.add(s.p_base_kw, s.p_pv_kw, out=fixed)
        # Default battery: store PV surplus, otherwise hold.
        np.add(fixed, ws.hvac_def, out=ws.b_def)
        np.negative(ws.b_def, out=ws.b_def)
        np.clip(ws.b_def, 0.0, b_max, out=ws.b_def)
        np.add(fixed, ws.hvac_min, out=ws.p_min_kw)
        ws.p_min_kw += b_min
        np.add(fixed, ws.hvac_max, out=ws.p_max_kw)
        ws.p_max_kw += b_max
        np.add(fixed, ws.hvac_def, out=ws.p_default_kw)
        ws.p_default_kw += ws.b_def
        # The battery bounds are kept for the step (the workspace holds them until the next envelope); the
        # fresh arrays replace the workspace's own (which only the compiled path writes into), no copy.
        ws.b_min, ws.b_max = b_min, b_max

    def _integrate(self, s: BuildingState, p_kw: np.ndarray, t_s: float, dt_h: float, ws: Workspace) -> None:
        hvac_def, b_def = ws.hvac_def, ws.b_def
        delta_kw = p_kw - (s.p_base_kw + s.p_pv_kw + hvac_def + b_def)
        down = delta_kw < 0.0
        room_hvac_kw = np.where(down, hvac_def - ws.hvac_min, ws.hvac_max - hvac_def)
        room_batt_kw = np.where(down, b_def - ws.b_min, ws.b_max - b_def)
        d_hvac_kw, d_batt_kw = split_by_room(delta_kw, room_hvac_kw, room_batt_kw)
        np.clip(hvac_def + d_hvac_kw, ws.hvac_min, ws.hvac_max, out=s.p_hvac_kw)
        np.clip(b_def + d_batt_kw, ws.b_min, ws.b_max, out=s.p_batt_kw)
        s.t_in_c[:] = rc_temperature_step(
            s.t_in_c, s.t_out_c, s.q_gain_kw, s.p_hvac_kw, self.cop, self.r_k_per_kw, ws.a
        )
        s.e_batt_kwh[:] = battery_energy_step(s.e_batt_kwh, s.p_batt_kw, dt_h, self.batt_eta)
        out_of_band_k = np.maximum(s.t_in_c - self.t_max_c, 0.0) + np.maximum(self.t_min_c - s.t_in_c, 0.0)
        s.comfort_violation_kh += float(out_of_band_k.sum()) * dt_h
        s.e_grid_kwh += float(p_kw.sum()) * dt_h
        s.e_hvac_kwh += float(s.p_hvac_kw.sum()) * dt_h
        s.e_pv_kwh += float(-s.p_pv_kw.sum()) * dt_h
        s.e_batt_loss_kwh += float(battery_loss_kwh(s.p_batt_kw, dt_h, self.batt_eta).sum())

    def flex_groups(self, s: BuildingState, t_s: float, dt_s: float, n_ticks: int, env: Envelope,
                    members: np.ndarray | None = None, bucket_s: float = 3600.0) -> FlexGroups | None:
        """The buildings ``members`` as a thermal group and a battery group over ``n_ticks`` ticks.

        Thermal group: each building's 1R1C room as a leaky store of cooling,
        ``x = (C / COP) * (t_set - T_in)`` [kWh electric equivalent], which the
        exact tick update of :func:`~vpp.fleets.kernels.rc_temperature_step`
        turns into ``x[k+1] = a * x[k] + (1 - a) R C * P_hvac - w[k]`` with
        ``w[k] = (1 - a) (C / COP) (T_out + R Q_gain - t_set)``; the comfort band
        is the energy-equivalent band ``-(C / COP)(t_max - t_set) <= x <=
        (C / COP)(t_set - t_min)``. Summed over buildings, ``w``, the band and
        the HVAC limits are exact; the decay ``a`` and the gain ``(1 - a) R C``
        are replaced by their (C / COP)- and rating-weighted means (exact for
        identical buildings; Hao et al. 2015's generalized battery with
        averaged parameters). The group's fixed load is base load plus PV;
        its no-call forecast is the thermostat holding ``t_set``.

        Battery group (buildings with a battery): summed energy, power and SoC
        bounds; no-call forecast stores PV surplus, otherwise holds.

        Outdoor temperature, occupancy and PV follow their profiles (tick 0:
        the state's). A building's room at tick 0 is split between the groups
        in proportion to its HVAC and battery room (``share_down``/``share_up``),
        as the fleet splits a setpoint between them.
        """
        idx = np.arange(self.n) if members is None else np.asarray(members)
        if idx.size == 0:
            return None
        dt_h = dt_s / S_PER_H
        a = self._rc_coefficient(dt_h)[idx]
        cop, r, c = self.cop[idx], self.r_k_per_kw[idx], self.c_kwh_per_k[idx]
        t_set, p_hvac_max = self.t_set_c[idx], self.p_hvac_max_kw[idx]
        k_th = c / cop  # [kWh per K]
        with_batt = idx[self.batt_cap_kwh[idx] > 0.0]
        jb = np.flatnonzero(self.batt_cap_kwh[idx] > 0.0)
        n_g = 2 if with_batt.size else 1
        shape = (n_g, n_ticks)
        p_base, p_fixed, c_max, d_max, w = (np.zeros(shape) for _ in range(5))
        t_in = s.t_in_c[idx].copy()
        e_b = s.e_batt_kwh[idx].copy()
        eta_b = self.batt_eta
        e_bmin, e_bmax, p_bmax = self.e_batt_min_kwh[idx], self.e_batt_max_kwh[idx], self.p_batt_max_kw[idx]
        ws = env.work
        for k in range(n_ticks):
            if k == 0:
                t_out, q_gain, fixed = s.t_out_c, s.q_gain_kw[idx], s.p_base_kw[idx] + s.p_pv_kw[idx]
            else:  # as _advance does, from the profiles
                t_k = t_s + k * dt_s
                hod_h = hour_of_day(t_k, self.clock_start_h)
                occupancy = float(self.base_profile(hod_h))
                t_out = float(self.outdoor(hod_h))
                pv = float(self.irradiance_kw_per_kwp(t_k)) if self.irradiance_kw_per_kwp is not None else \
                    float(self.irradiance(hod_h))
                q_gain = self.q_internal_peak_kw[idx] * occupancy
                fixed = self.p_base_peak_kw[idx] * occupancy - self.pv_kwp[idx] * pv
            hvac = np.clip(rc_power_for_temperature(t_set, t_in, t_out, q_gain, cop, r, a), 0.0, p_hvac_max)
            b_max = np.minimum(p_bmax, np.maximum(e_bmax - e_b, 0.0) / (eta_b * dt_h))
            b_def = np.clip(-(fixed + hvac), 0.0, b_max)
            if k == 0 and ws is not None:  # the envelope's own defaults
                hvac, b_def = ws.hvac_def[idx], ws.b_def[idx]
            p_fixed[0, k] = fixed.sum()
            c_max[0, k] = p_hvac_max.sum()
            w[0, k] = ((1.0 - a) * k_th * (t_out + r * q_gain - t_set)).sum()
            p_base[0, k] = fixed.sum() + hvac.sum()
            t_in = rc_temperature_step(t_in, t_out, q_gain, hvac, cop, r, a)
            if n_g == 2:
                c_max[1, k] = d_max[1, k] = p_bmax[jb].sum()
                p_base[1, k] = b_def[jb].sum()
            e_b = battery_energy_step(e_b, b_def, dt_h, eta_b)
        band_lo = float(-(k_th * (self.t_max_c[idx] - t_set)).sum())
        band_hi = float((k_th * (t_set - self.t_min_c[idx])).sum())
        x0 = float((k_th * (t_set - s.t_in_c[idx])).sum())
        leak = [float((k_th * a).sum() / k_th.sum())]
        gain = (1.0 - a) * r * c  # [h]
        gain_c = [float((p_hvac_max * gain).sum() / p_hvac_max.sum()) / dt_h if p_hvac_max.sum() > 0.0 else 1.0]
        gain_d = [0.0]
        e0, e_lo, e_hi = [x0], [band_lo], [band_hi]
        labels = [f"{self.name}:thermal"]
        # Each building's room at tick 0 is its HVAC room plus its battery room.
        if ws is not None:
            r_hv_dn, r_hv_up = ws.hvac_def[idx] - ws.hvac_min[idx], ws.hvac_max[idx] - ws.hvac_def[idx]
            r_b_dn, r_b_up = ws.b_def[idx] - ws.b_min[idx], ws.b_max[idx] - ws.b_def[idx]
        else:
            r_hv_dn = r_hv_up = np.ones(idx.size)
            r_b_dn = r_b_up = np.zeros(idx.size)

        def share(num, other):
            tot = num + other
            return np.divide(num, tot, out=np.ones_like(tot), where=tot > 0.0)

        member, group = [idx], [np.zeros(idx.size, dtype=np.int64)]
        share_down, share_up = [share(r_hv_dn, r_b_dn)], [share(r_hv_up, r_b_up)]
        if n_g == 2:
            labels.append(f"{self.name}:batteries")
            e0.append(float(s.e_batt_kwh[with_batt].sum()))
            e_lo.append(float(e_bmin[jb].sum()))
            e_hi.append(float(e_bmax[jb].sum()))
            leak.append(1.0)
            gain_c.append(eta_b)
            gain_d.append(1.0 / eta_b)
            member.append(with_batt)
            group.append(np.ones(with_batt.size, dtype=np.int64))
            share_down.append(1.0 - share_down[0][jb])
            share_up.append(1.0 - share_up[0][jb])
        return FlexGroups(
            labels=tuple(labels), member=np.concatenate(member), group=np.concatenate(group),
            share_down=np.concatenate(share_down), share_up=np.concatenate(share_up), p_base_kw=p_base,
            p_fixed_kw=p_fixed, c_max_kw=c_max, d_max_kw=d_max, e0_kwh=np.array(e0),
            e_min_kwh=np.repeat(np.array(e_lo)[:, None], n_ticks, axis=1),
            e_max_kwh=np.repeat(np.array(e_hi)[:, None], n_ticks, axis=1), leak=np.array(leak),
            gain_c=np.array(gain_c), gain_d=np.array(gain_d), w_kwh=w,
        )

    def tick_metrics(self, s: BuildingState) -> dict[str, float]:
        if not self.n:
            return {"t_in_mean_c": float("nan"), "t_in_max_c": float("nan")}
        return {"t_in_mean_c": float(s.t_in_c.mean()), "t_in_max_c": float(s.t_in_c.max())}

    def summary(self, s: BuildingState) -> dict[str, float]:
        return {
            "n_devices": self.n,
            "n_with_pv": int((self.pv_kwp > 0.0).sum()),
            "n_with_battery": int((self.batt_cap_kwh > 0.0).sum()),
            "e_stored_kwh": float(s.e_batt_kwh.sum()),
            "e_grid_kwh": s.e_grid_kwh,
            "e_hvac_kwh": s.e_hvac_kwh,
            "e_pv_kwh": s.e_pv_kwh,
            "e_battery_loss_kwh": s.e_batt_loss_kwh,
            "comfort_violation_kh": s.comfort_violation_kh,
        }


# --- scenario configuration and construction -------------------------------------------------


MAX_COP = 50.0  # coefficient of performance [-]
_DEG_C = real(ge=-100.0, le=100.0)  # a temperature [degC]


class BuildingFleetConfig(FleetConfigBase):
    """Commercial buildings (``parameters`` names a set; any field below overrides it)."""

    kind: Literal["building"]
    parameters: str = "office_mid"
    p_base_kw: real(gt=0.0, le=MAX_DEVICE_KW) | None = Field(None, description="peak non-flexible load [kW]")
    p_hvac_max_kw: real(ge=0.0, le=MAX_DEVICE_KW) | None = Field(None, description="HVAC electrical rating [kW]")
    cop: real(gt=0.0, le=MAX_COP) | None = Field(None, description="cooling coefficient of performance [-]")
    r_k_per_kw: real(gt=0.0, le=1e6) | None = Field(None, description="envelope thermal resistance [K/kW]")
    c_kwh_per_k: real(gt=0.0, le=1e6) | None = Field(None, description="thermal capacitance [kWh/K]")
    t_set_c: _DEG_C | None = Field(None, description="thermostat setpoint [degC]")
    t_min_c: _DEG_C | None = Field(None, description="comfort band low [degC]")
    t_max_c: _DEG_C | None = Field(None, description="comfort band high [degC]")
    pv_share: Fraction = Field(0.0, description="share of buildings with PV [-]")
    pv_kwp: real(ge=0.0, le=MAX_DEVICE_KW) | None = Field(None, description="PV peak power of a building with PV [kWp]")
    battery_share: Fraction = Field(0.0, description="share of buildings with a battery [-]")
    batt_cap_kwh: real(gt=0.0, le=MAX_DEVICE_KWH) | None = Field(None, description="battery capacity [kWh]")
    p_batt_max_kw: real(gt=0.0, le=MAX_DEVICE_KW) | None = Field(None, description="battery power limit [kW]")
    soc_min: Fraction = 0.1
    soc_max: Fraction = 0.95
    soc_init: Fraction = 0.6
    size_spread: Fraction = Field(0.3, description="+/- spread of building size around the parameter set [-]")
    outdoor_profile: str = "shenzhen_summer_temp_c"
    irradiance_profile: series_or_profile("irradiance", PROFILES) = Field(
        "pv_shenzhen_mean", description="PV output per kWp: a daily profile's name or a time-series file "
        "{path, column} (column pv_fraction or irradiance_w_per_m2)",
    )

    # Measured with tracemalloc on whole runs (tests/scenario/test_limits.py).
    bytes_per_device: ClassVar[int] = 800

    @field_validator("parameters")
    @classmethod
    def _params(cls, v: str) -> str:
        return one_of(v, BUILDING_PARAMETERS, "parameters")

    @field_validator("outdoor_profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        return one_of(v, PROFILES, "profile")

    def resolved(self) -> BuildingParameters:
        """The parameter set with this configuration's overrides applied."""
        names = ("p_base_kw", "p_hvac_max_kw", "cop", "r_k_per_kw", "c_kwh_per_k", "t_set_c", "t_min_c", "t_max_c",
                 "pv_kwp", "batt_cap_kwh", "p_batt_max_kw")
        return replace(BUILDING_PARAMETERS[self.parameters],
                       **{k: getattr(self, k) for k in names if getattr(self, k) is not None})

    @model_validator(mode="after")
    def _check(self):
        p = self.resolved()
        if not p.t_min_c <= p.t_set_c <= p.t_max_c or p.t_min_c >= p.t_max_c:
            raise ValueError(
                f"need t_min_c <= t_set_c <= t_max_c with t_min_c < t_max_c; got {p.t_min_c}, {p.t_set_c}, {p.t_max_c}"
            )
        if self.soc_min >= self.soc_max:
            raise ValueError(f"soc_min ({self.soc_min}) must be below soc_max ({self.soc_max})")
        if not self.soc_min <= self.soc_init <= self.soc_max:
            raise ValueError(f"soc_init ({self.soc_init}) must lie in [soc_min, soc_max] = [{self.soc_min}, {self.soc_max}]")
        return self


def build_building_fleet(cfg: BuildingFleetConfig, rng: np.random.Generator, bus_idx: np.ndarray,
                         time, irradiance: Callable[[float], float] | None = None) -> BuildingFleet:
    """A building fleet from its configuration; sizes, PV and batteries drawn from ``rng``.

    ``irradiance`` (PV output per kWp at ``t_s`` [kW/kWp]) is the series of
    ``cfg.irradiance_profile`` when that names a file, read by the caller.
    """
    from_file = isinstance(cfg.irradiance_profile, SeriesFile)
    if from_file != (irradiance is not None):
        raise ValueError(f"fleet {cfg.name!r}: irradiance is given exactly when irradiance_profile names a file")
    p = cfg.resolved()
    n = cfg.n_devices
    size = 1.0 + rng.uniform(-cfg.size_spread, cfg.size_spread, size=n)
    has_pv = rng.random(n) < cfg.pv_share
    has_batt = rng.random(n) < cfg.battery_share
    t_in_init_c = np.clip(p.t_set_c + rng.uniform(-0.5, 0.5, size=n), p.t_min_c, p.t_max_c)
    return BuildingFleet(
        cfg.name, bus_idx, cfg.operator, cfg.cost_cny_per_kwh,
        p_base_kw=p.p_base_kw * size, base_profile=p.base_profile, p_hvac_max_kw=p.p_hvac_max_kw * size,
        cop=p.cop, r_k_per_kw=p.r_k_per_kw / size, c_kwh_per_k=p.c_kwh_per_k * size,
        q_internal_kw=p.q_internal_kw * size, t_set_c=p.t_set_c, t_min_c=p.t_min_c, t_max_c=p.t_max_c,
        t_in_init_c=t_in_init_c, pv_kwp=p.pv_kwp * size * has_pv, batt_cap_kwh=p.batt_cap_kwh * size * has_batt,
        p_batt_max_kw=p.p_batt_max_kw * size, batt_eta=p.batt_eta, soc_min=cfg.soc_min, soc_max=cfg.soc_max,
        soc_init=cfg.soc_init, outdoor_profile=cfg.outdoor_profile,
        irradiance_profile="pv_shenzhen_mean" if from_file else cfg.irradiance_profile,
        clock_start_h=time.clock_start_h, irradiance_kw_per_kwp=irradiance,
    )


SPEC = KindSpec(
    name="building", fleet=BuildingFleet, config=BuildingFleetConfig, build=build_building_fleet,
    parameter_sets=BUILDING_PARAMETERS, parameter_field="parameters",
    describe=lambda p: f"building; {p.source}",
)
