"""5G base stations with a backup battery that must always keep its reserve.

Each site draws its radio and cooling load from the grid, following a traffic
profile between ``p_idle_kw`` and ``p_busy_kw``. Its -48 V battery may carry the
site load during a call (the site's grid draw falls towards zero; a site never
exports) and recharges afterwards, but it never discharges below the backup
reserve: the energy that, after discharge losses, carries the site's *design*
load for the backup hours, ``backup_h * p_design_kw / eta`` (nor below
``soc_min``). A site found below its floor is made to recharge before anything
else.

Default (no-call) behaviour: the rectifier keeps the battery at full charge,
recharging at up to ``p_batt_max_kw``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from vpp.fleets.base import Envelope, Fleet, FleetState, FlexGroups, KindSpec, Workspace
from vpp.fleets.config import MAX_DEVICE_KW, MAX_DEVICE_KWH, MAX_HOURS, Efficiency, FleetConfigBase, Fraction, one_of, real
from vpp.fleets.kernels import NUMBA_AVAILABLE, backup_reserve_kwh, battery_power_bounds
from vpp.fleets.parameters import BASESTATION_PARAMETERS, BaseStationParameters
from vpp.profiles import PROFILES, get_profile
from vpp.units import hour_of_day

__all__ = ["BaseStationFleet", "BaseStationState", "BaseStationFleetConfig", "build_basestation_fleet", "SPEC"]


@dataclass(slots=True)
class BaseStationState(FleetState):
    """What changes at the sites: stored energy, this tick's site load and the run's accounting."""

    e_kwh: np.ndarray  # stored battery energy [kWh]
    p_site_kw: np.ndarray  # site (radio + cooling) load this tick [kW]
    p_batt_kw: np.ndarray  # battery power last tick, grid side, charging positive [kW]
    e_site_kwh: float = 0.0
    e_grid_kwh: float = 0.0
    e_batt_net_kwh: float = 0.0
    e_loss_kwh: float = 0.0
    e_discharged_kwh: float = 0.0
    n_reserve_breaches: int = 0
    reserve_margin_min_kwh: float = float("inf")


class BaseStationFleet(Fleet):
    """Base-station sites: traffic-driven load plus a reserve-bound battery."""

    kind = "basestation"
    work_names = ("floor", "b_must", "tmp")
    twin_cost_keys = ("e_stored_kwh", "n_reserve_breaches")

    def __init__(
        self,
        name: str,
        bus_idx: np.ndarray,
        operator: str,
        cost_cny_per_kwh,
        *,
        p_idle_kw,
        p_busy_kw,
        p_design_kw,
        cap_kwh,
        p_batt_max_kw,
        eta: float,
        backup_h: float,
        soc_min: float,
        soc_max: float,
        soc_init,
        traffic_profile: str,
        traffic_scale,
        clock_start_h: float,
    ):
        super().__init__(name, bus_idx, operator, cost_cny_per_kwh)
        p = self._param
        self.p_idle_kw = p(p_idle_kw)
        self.p_busy_kw = p(p_busy_kw)
        self.p_design_kw = p(p_design_kw)
        self.cap_kwh = p(cap_kwh)
        self.p_batt_max_kw = p(p_batt_max_kw)
        self.traffic_scale = p(traffic_scale)
        self.eta = float(eta)
        self.backup_h = float(backup_h)
        self.soc_min = float(soc_min)
        self.soc_max = float(soc_max)
        self.soc_init = p(soc_init)
        self.traffic = get_profile(traffic_profile)
        self.clock_start_h = float(clock_start_h)
        self.reserve_kwh = p(backup_reserve_kwh(self.backup_h, self.p_design_kw, self.eta))
        self.floor_kwh = p(np.maximum(self.reserve_kwh, self.soc_min * self.cap_kwh))
        self.e_max_kwh = p(self.soc_max * self.cap_kwh)
        self.use_numba = NUMBA_AVAILABLE  # compiled envelope (vpp.fleets.kernels_numba_dispatch); False: numpy only

    def initial_state(self) -> BaseStationState:
        n = self.n
        return BaseStationState(
            p_kw=np.zeros(n), e_kwh=self.soc_init * self.cap_kwh, p_site_kw=np.zeros(n), p_batt_kw=np.zeros(n)
        )

    def _advance(self, s: BaseStationState, t_s: float, dt_s: float) -> None:
        traffic = float(self.traffic(hour_of_day(t_s, self.clock_start_h)))
        np.multiply(self.traffic_scale, traffic, out=s.p_site_kw)
        np.clip(s.p_site_kw, 0.0, 1.0, out=s.p_site_kw)
        s.p_site_kw *= self.p_busy_kw - self.p_idle_kw
        s.p_site_kw += self.p_idle_kw

    def _envelope(self, s: BaseStationState, t_s: float, dt_s: float, ws: Workspace) -> bool:
        # The compiled pass was 5-15x faster than numpy at every size measured, 10 to 10^6 sites
        # (benchmarks/bench_dispatch.py), so there is no size threshold.
        if self.use_numba:
            from vpp.fleets.kernels_numba_dispatch import basestation_envelope  # imports numba on first call

            basestation_envelope(s.e_kwh, s.p_site_kw, self.floor_kwh, self.e_max_kwh, self.p_batt_max_kw, self.eta,
                                 dt_s / 3600.0, ws.p_min_kw, ws.p_max_kw, ws.p_default_kw)
            return True  # the kernel applied the ordering guard
        self._envelope_numpy(s, t_s, dt_s, ws)
        return False

    def _envelope_numpy(self, s: BaseStationState, t_s: float, dt_s: float, ws: Workspace) -> None:
        """The envelope as whole-array numpy passes: the reference, and the path without numba."""
        dt_h = dt_s / 3600.0
        # Discharge within the rectifier limit, never exporting (at most the site load), never
        # below the floor; charge within the limit up to soc_max.
        np.minimum(self.p_batt_max_kw, s.p_site_kw, out=ws.tmp)
        b_min, b_max = battery_power_bounds(
            s.e_kwh, self.floor_kwh, self.e_max_kwh, self.p_batt_max_kw, ws.tmp, dt_h, self.eta
        )
        # Below the floor: recharge towards it now (bounded by what the battery can take).
        np.subtract(self.floor_kwh, s.e_kwh, out=ws.b_must)
        np.maximum(ws.b_must, 0.0, out=ws.b_must)
        ws.b_must *= 1.0 / (self.eta * dt_h)
        np.minimum(ws.b_must, b_max, out=ws.b_must)
        np.copyto(b_min, ws.b_must, where=ws.b_must > 0.0)
        np.add(s.p_site_kw, b_min, out=ws.p_min_kw)
        np.add(s.p_site_kw, b_max, out=ws.p_max_kw)
        np.copyto(ws.p_default_kw, ws.p_max_kw)

    def _integrate(self, s: BaseStationState, p_kw: np.ndarray, t_s: float, dt_h: float, ws: Workspace) -> None:
        np.subtract(p_kw, s.p_site_kw, out=s.p_batt_kw)
        p_batt_kw = s.p_batt_kw
        e_new = s.e_kwh + np.where(p_batt_kw > 0.0, self.eta * p_batt_kw, p_batt_kw / self.eta) * dt_h
        floor_kwh = self.floor_kwh
        # A discharge bounded to the floor lands on it up to round-off; pin it there.
        discharging = p_batt_kw < 0.0
        e_new = np.where(discharging & (s.e_kwh >= floor_kwh), np.maximum(e_new, floor_kwh), e_new)
        # A breach is a discharge that ends below the floor; a site that started below it and
        # recharged is not one.
        s.n_reserve_breaches += int(((e_new < floor_kwh - 1e-9) & discharging).sum())
        if self.n:
            s.reserve_margin_min_kwh = min(s.reserve_margin_min_kwh, float(np.min(e_new - self.reserve_kwh)))
        e_batt_delta = float(e_new.sum() - s.e_kwh.sum())
        e_batt_grid = float(p_batt_kw.sum()) * dt_h
        s.e_site_kwh += float(s.p_site_kw.sum()) * dt_h
        s.e_grid_kwh += float(p_kw.sum()) * dt_h
        s.e_batt_net_kwh += e_batt_delta
        s.e_loss_kwh += e_batt_grid - e_batt_delta
        s.e_discharged_kwh += float(np.maximum(-p_batt_kw, 0.0).sum()) * dt_h
        s.e_kwh[:] = e_new

    def flex_groups(self, s: BaseStationState, t_s: float, dt_s: float, n_ticks: int, env: Envelope,
                    members: np.ndarray | None = None, bucket_s: float = 3600.0) -> FlexGroups | None:
        """The sites ``members`` as one battery group over ``n_ticks`` ticks (``bucket_s`` unused: no deadline).

        The site load follows the traffic profile, known ahead (tick 0: the
        state's). Exact per site and summed: the site load, the charge limit,
        the discharge limit (never exporting: at most the site load), the
        reserve floor (capped at what a site below it can reach by recharging
        at full power) and ``soc_max``. Approximated by the aggregate: energy
        may move between sites (Müller et al. 2019's outer approximation), so
        a group plan may ask one site for more than it holds; the envelope
        clips it. The no-call forecast recharges at full power to ``soc_max``.
        """
        idx = np.arange(self.n) if members is None else np.asarray(members)
        if idx.size == 0:
            return None
        dt_h = dt_s / 3600.0
        eta = self.eta
        p_batt = self.p_batt_max_kw[idx]
        floor, e_top = self.floor_kwh[idx], self.e_max_kwh[idx]
        shape = (1, n_ticks)
        p_base, p_fixed, c_max, d_max = (np.zeros(shape) for _ in range(4))
        e_min, e_max = np.zeros(shape), np.full(shape, float(e_top.sum()))
        e_def = s.e_kwh[idx].copy()
        e_hi = s.e_kwh[idx].copy()
        scale, idle, span = self.traffic_scale[idx], self.p_idle_kw[idx], self.p_busy_kw[idx] - self.p_idle_kw[idx]
        for k in range(n_ticks):
            if k == 0:
                site = s.p_site_kw[idx]
                p_def = env.p_default_kw[idx]
            else:  # as _advance does, from the profile
                traffic = float(self.traffic(hour_of_day(t_s + k * dt_s, self.clock_start_h)))
                site = np.clip(scale * traffic, 0.0, 1.0) * span + idle
                p_def = site + np.minimum(p_batt, np.maximum(e_top - e_def, 0.0) / (eta * dt_h))
            p_fixed[0, k] = site.sum()
            c_max[0, k] = p_batt.sum()
            d_max[0, k] = np.minimum(p_batt, site).sum()
            p_base[0, k] = p_def.sum()
            b_def = p_def - site
            e_def = e_def + np.where(b_def > 0.0, eta * b_def, b_def / eta) * dt_h
            e_hi = np.minimum(e_top, e_hi + eta * p_batt * dt_h)
            e_min[0, k] = np.minimum(floor, e_hi).sum()
        one = np.ones(idx.size)
        return FlexGroups(
            labels=(f"{self.name}:batteries",), member=idx, group=np.zeros(idx.size, dtype=np.int64),
            share_down=one, share_up=one, p_base_kw=p_base, p_fixed_kw=p_fixed, c_max_kw=c_max, d_max_kw=d_max,
            e0_kwh=np.array([s.e_kwh[idx].sum()]), e_min_kwh=e_min, e_max_kwh=e_max, leak=np.ones(1),
            gain_c=np.full(1, eta), gain_d=np.full(1, 1.0 / eta), w_kwh=np.zeros(shape),
        )

    def soc(self, s: BaseStationState) -> np.ndarray:
        """Battery state of charge [-]."""
        return s.e_kwh / self.cap_kwh

    def tick_metrics(self, s: BaseStationState) -> dict[str, float]:
        if not self.n:
            return {"soc_mean": float("nan"), "reserve_margin_min_kwh": float("nan")}
        return {
            "soc_mean": float(self.soc(s).mean()),
            "reserve_margin_min_kwh": float(np.min(s.e_kwh - self.reserve_kwh)),
        }

    def summary(self, s: BaseStationState) -> dict[str, float]:
        return {
            "n_devices": self.n,
            "cap_total_kwh": float(self.cap_kwh.sum()),
            "reserve_total_kwh": float(self.reserve_kwh.sum()),
            "e_stored_kwh": float(s.e_kwh.sum()),
            "e_site_kwh": s.e_site_kwh,
            "e_grid_kwh": s.e_grid_kwh,
            "e_battery_discharged_kwh": s.e_discharged_kwh,
            "e_loss_kwh": s.e_loss_kwh,
            "n_reserve_breaches": s.n_reserve_breaches,
            "reserve_margin_min_kwh": s.reserve_margin_min_kwh if self.n else float("nan"),
        }


# --- scenario configuration and construction -------------------------------------------------


_KW = real(gt=0.0, le=MAX_DEVICE_KW)
_KWH = real(gt=0.0, le=MAX_DEVICE_KWH)


class BaseStationFleetConfig(FleetConfigBase):
    """5G base-station sites (``parameters`` names a set; any field below overrides it)."""

    kind: Literal["basestation"]
    parameters: str = "5g_macro"
    p_idle_kw: _KW | None = Field(None, description="site load at zero traffic [kW]")
    p_busy_kw: _KW | None = Field(None, description="site load at busy-hour traffic [kW]")
    p_design_kw: _KW | None = Field(None, description="design load the backup reserve is sized for [kW]")
    cap_kwh: _KWH | None = Field(None, description="battery capacity [kWh]")
    p_batt_max_kw: _KW | None = Field(None, description="battery power limit [kW]")
    eta: Efficiency | None = Field(None, description="one-way battery efficiency [-]")
    backup_h: real(ge=0.0, le=MAX_HOURS) | None = Field(None, description="backup duration at the design load [h]")
    soc_min: Fraction | None = None
    soc_max: Fraction | None = None
    soc_init: Fraction = Field(1.0, description="battery state of charge at t_s = 0 [-]")
    traffic_profile: str | None = None
    traffic_spread: Fraction = Field(0.15, description="+/- spread of per-site traffic around the profile [-]")

    # Measured with tracemalloc on whole runs (tests/scenario/test_limits.py).
    bytes_per_device: ClassVar[int] = 500

    @field_validator("parameters")
    @classmethod
    def _params(cls, v: str) -> str:
        return one_of(v, BASESTATION_PARAMETERS, "parameters")

    @field_validator("traffic_profile")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        return None if v is None else one_of(v, PROFILES, "profile")

    def resolved(self) -> BaseStationParameters:
        """The parameter set with this configuration's overrides applied."""
        names = ("p_idle_kw", "p_busy_kw", "p_design_kw", "cap_kwh", "p_batt_max_kw", "eta", "backup_h",
                 "soc_min", "soc_max", "traffic_profile")
        return replace(BASESTATION_PARAMETERS[self.parameters],
                       **{k: getattr(self, k) for k in names if getattr(self, k) is not None})

    @model_validator(mode="after")
    def _check(self):
        p = self.resolved()
        if p.soc_min >= p.soc_max:
            raise ValueError(f"soc_min ({p.soc_min}) must be below soc_max ({p.soc_max})")
        if p.p_idle_kw > p.p_busy_kw:
            raise ValueError(f"p_idle_kw ({p.p_idle_kw}) must not exceed p_busy_kw ({p.p_busy_kw})")
        reserve_kwh = float(backup_reserve_kwh(p.backup_h, p.p_design_kw, p.eta))
        if reserve_kwh > p.soc_max * p.cap_kwh:
            raise ValueError(
                f"the backup reserve backup_h * p_design_kw / eta = {reserve_kwh:.3g} kWh exceeds "
                f"soc_max * cap_kwh = {p.soc_max * p.cap_kwh:.3g} kWh: the battery cannot hold it"
            )
        return self


def build_basestation_fleet(cfg: BaseStationFleetConfig, rng: np.random.Generator, bus_idx: np.ndarray,
                            time) -> BaseStationFleet:
    """A base-station fleet from its configuration; per-site traffic spread drawn from ``rng``."""
    p = cfg.resolved()
    n = cfg.n_devices
    traffic_scale = 1.0 + rng.uniform(-cfg.traffic_spread, cfg.traffic_spread, size=n)
    return BaseStationFleet(
        cfg.name, bus_idx, cfg.operator, cfg.cost_cny_per_kwh,
        p_idle_kw=p.p_idle_kw, p_busy_kw=p.p_busy_kw, p_design_kw=p.p_design_kw, cap_kwh=p.cap_kwh,
        p_batt_max_kw=p.p_batt_max_kw, eta=p.eta, backup_h=p.backup_h, soc_min=p.soc_min, soc_max=p.soc_max,
        soc_init=np.clip(cfg.soc_init, p.soc_min, p.soc_max), traffic_profile=p.traffic_profile,
        traffic_scale=traffic_scale, clock_start_h=time.clock_start_h,
    )


SPEC = KindSpec(
    name="basestation", fleet=BaseStationFleet, config=BaseStationFleetConfig, build=build_basestation_fleet,
    parameter_sets=BASESTATION_PARAMETERS, parameter_field="parameters",
    describe=lambda p: f"basestation; {p.source}",
)
