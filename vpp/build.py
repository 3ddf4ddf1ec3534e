"""Build the plant a scenario describes: grid, fleets placed on buses, DR calls.

Every check that needs the grid (does a bus exist?) happens here, before the
first tick, and fails with a :class:`~vpp.scenario.ScenarioError` naming the
field. Random draws use one child generator per fleet, spawned by index from
the scenario seed, so adding a fleet at the end leaves the others unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vpp.dr import Direction, DRCall
from vpp.fleets import BaseStationFleet, BuildingFleet, EVFleet, Fleet, draw_sessions
from vpp.fleets.parameters import BASESTATION_PARAMETERS, BUILDING_PARAMETERS, CHARGER_PARAMETERS
from vpp.scenario.load import ScenarioError
from vpp.scenario.schema import (
    BaseStationFleetConfig,
    BuildingFleetConfig,
    EVFleetConfig,
    Scenario,
)

__all__ = ["Plant", "build_plant", "build_grid", "bus_positions"]

# Child-seed slots after the fleets' own (fleet i uses slot i).
_SLOT_LINKS = 0
_SLOT_SAMPLES = 1
_N_EXTRA_SLOTS = 2


@dataclass
class Plant:
    """Everything a run needs, built and checked."""

    grid: object  # vpp.grid.model.GridModel
    fleets: list[Fleet]
    calls: list[DRCall]
    link_rng: np.random.Generator
    sample_rng: np.random.Generator


def build_grid(scenario: Scenario):
    """Load the scenario's network into a :class:`~vpp.grid.model.GridModel`."""
    from vpp.grid.model import GridModel
    from vpp.grid.networks import load_network

    g = scenario.grid
    try:
        net = load_network(g.network, g.source)
    except (KeyError, ImportError) as exc:
        raise ScenarioError(f"grid.network: {exc.args[0]}") from None
    return GridModel(net, g.network)


def _describe_buses(grid) -> str:
    idx = grid.bus_index
    if idx.size <= 12:
        return ", ".join(str(int(b)) for b in idx)
    return f"{idx.size} buses, labels {int(idx.min())}..{int(idx.max())} (e.g. {', '.join(str(int(b)) for b in idx[:6])}, ...)"


def bus_positions(grid, buses: list[int], field: str) -> np.ndarray:
    """Positions of bus labels in the grid; an unknown label is a ScenarioError naming ``field``."""
    missing = [b for b in buses if not grid.has_bus(b)]
    if missing:
        raise ScenarioError(
            f"{field}: bus {missing[0]} does not exist in grid {grid.name!r}; valid: {_describe_buses(grid)}"
        )
    return np.array([grid.position(b) for b in buses], dtype=np.int64)


def _place(rng: np.random.Generator, grid, selection, n: int, field: str) -> np.ndarray:
    if selection == "load_buses":
        weights = grid.load_weights()
        if weights.sum() <= 0.0:
            raise ScenarioError(f"{field}: grid {grid.name!r} has no loads; give 'all' or a list of bus indices")
        candidates = np.flatnonzero(weights > 0.0)
        p = weights[candidates] / weights[candidates].sum()
    elif selection == "all":
        candidates = np.arange(grid.n_bus)
        p = None
    else:
        candidates = bus_positions(grid, list(selection), field)
        p = None
    return rng.choice(candidates, size=n, p=p).astype(np.int64)


def _override(base, cfg, names: tuple[str, ...]):
    changes = {k: getattr(cfg, k) for k in names if getattr(cfg, k) is not None}
    return replace(base, **changes)


def _ev(cfg: EVFleetConfig, rng, bus_idx, scenario: Scenario) -> EVFleet:
    params = _override(
        CHARGER_PARAMETERS[cfg.charger], cfg, ("p_rated_kw", "eta", "sessions_per_day", "dwell_mean_h", "e_need_mean_kwh")
    )
    n = cfg.n_devices
    p_rated_kw = np.full(n, params.p_rated_kw)
    v2g = rng.random(n) < cfg.v2g_share
    sessions = draw_sessions(rng, params, p_rated_kw, scenario.time.duration_s, scenario.time.clock_start_h)
    return EVFleet(cfg.name, bus_idx, cfg.operator, cfg.cost_cny_per_kwh, p_rated_kw, params.eta, v2g,
                   cfg.soc_v2g_min, sessions)


def _basestation(cfg: BaseStationFleetConfig, rng, bus_idx, scenario: Scenario) -> BaseStationFleet:
    p = _override(
        BASESTATION_PARAMETERS[cfg.parameters], cfg,
        ("p_idle_kw", "p_busy_kw", "cap_kwh", "p_batt_max_kw", "eta", "backup_h", "soc_min", "soc_max", "traffic_profile"),
    )
    n = cfg.n_devices
    traffic_scale = 1.0 + rng.uniform(-cfg.traffic_spread, cfg.traffic_spread, size=n)
    soc_init = np.clip(cfg.soc_init, p.soc_min, p.soc_max)
    return BaseStationFleet(
        cfg.name, bus_idx, cfg.operator, cfg.cost_cny_per_kwh,
        p_idle_kw=p.p_idle_kw, p_busy_kw=p.p_busy_kw, cap_kwh=p.cap_kwh, p_batt_max_kw=p.p_batt_max_kw,
        eta=p.eta, backup_h=p.backup_h, soc_min=p.soc_min, soc_max=p.soc_max, soc_init=soc_init,
        traffic_profile=p.traffic_profile, traffic_scale=traffic_scale, clock_start_h=scenario.time.clock_start_h,
    )


def _building(cfg: BuildingFleetConfig, rng, bus_idx, scenario: Scenario) -> BuildingFleet:
    p = _override(
        BUILDING_PARAMETERS[cfg.parameters], cfg,
        ("p_base_kw", "p_hvac_max_kw", "cop", "r_k_per_kw", "c_kwh_per_k", "t_set_c", "t_min_c", "t_max_c",
         "pv_kwp", "batt_cap_kwh", "p_batt_max_kw"),
    )
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
        soc_init=cfg.soc_init, outdoor_profile=cfg.outdoor_profile, irradiance_profile=cfg.irradiance_profile,
        clock_start_h=scenario.time.clock_start_h,
    )


_BUILDERS = {"ev": _ev, "basestation": _basestation, "building": _building}


def build_calls(scenario: Scenario, grid) -> list[DRCall]:
    """DR calls with target buses as grid positions (unknown buses are a ScenarioError)."""
    calls = []
    for i, c in enumerate(scenario.dr_calls):
        bus_idx = None
        if c.buses is not None:
            bus_idx = tuple(int(b) for b in bus_positions(grid, c.buses, f"dr_calls[{i}].buses"))
        calls.append(
            DRCall(
                call_id=c.id,
                direction=Direction(c.direction),
                p_kw=c.request_kw,
                start_s=c.start_s,
                end_s=c.end_s,
                notification_s=c.start_s if c.notification_s is None else c.notification_s,
                bus_idx=bus_idx,
            )
        )
    return calls


def check_buses(scenario: Scenario, grid) -> list[DRCall]:
    """Check that every bus the scenario names exists in the grid (ScenarioError otherwise).

    Returns the DR calls, whose target buses that check resolves.
    """
    for i, f in enumerate(scenario.fleets):
        if isinstance(f.buses, list):
            bus_positions(grid, f.buses, f"fleets[{i}].buses")
    return build_calls(scenario, grid)


def build_plant(scenario: Scenario, grid=None) -> Plant:
    """Build grid (unless given), fleets and calls from a validated scenario."""
    grid = build_grid(scenario) if grid is None else grid
    calls = check_buses(scenario, grid)
    children = np.random.SeedSequence(scenario.seed).spawn(len(scenario.fleets) + _N_EXTRA_SLOTS)
    fleets: list[Fleet] = []
    for i, cfg in enumerate(scenario.fleets):
        rng = np.random.default_rng(children[i])
        bus_idx = _place(rng, grid, cfg.buses, cfg.n_devices, f"fleets[{i}].buses")
        fleets.append(_BUILDERS[cfg.kind](cfg, rng, bus_idx, scenario))
    extra = children[len(scenario.fleets):]
    return Plant(
        grid=grid,
        fleets=fleets,
        calls=calls,
        link_rng=np.random.default_rng(extra[_SLOT_LINKS]),
        sample_rng=np.random.default_rng(extra[_SLOT_SAMPLES]),
    )
