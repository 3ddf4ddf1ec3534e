"""Build the plant a scenario describes: grid, fleets placed on buses, DR calls.

Every check that needs the grid (does a bus exist?) happens here, before the
first tick, and fails with a :class:`~vpp.scenario.ScenarioError` naming the
field. Random draws use one child generator per fleet, spawned by index from
the scenario seed, so adding a fleet at the end leaves the others unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vpp.dr import Direction, DRCall
from vpp.fleets import Fleet
from vpp.fleets.registry import KINDS
from vpp.scenario.load import ScenarioError
from vpp.scenario.schema import Scenario

__all__ = ["Plant", "build_plant", "build_grid", "bus_positions", "plant_warnings"]

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
                recovery_s=c.recovery_s,
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
        fleets.append(KINDS[cfg.kind].build(cfg, rng, bus_idx, scenario.time))
    extra = children[len(scenario.fleets):]
    return Plant(
        grid=grid,
        fleets=fleets,
        calls=calls,
        link_rng=np.random.default_rng(extra[_SLOT_LINKS]),
        sample_rng=np.random.default_rng(extra[_SLOT_SAMPLES]),
    )


def plant_warnings(plant: Plant) -> list[str]:
    """Valid but suspicious facts about a built plant, one line each (e.g. a call whose buses host no devices)."""
    n_bus = plant.grid.n_bus
    hosted = np.zeros(n_bus, dtype=bool)
    for f in plant.fleets:
        hosted[f.bus_idx] = True
    out = []
    for c in plant.calls:
        if not (hosted & c.bus_mask(n_bus)).any():
            out.append(f"dr call {c.call_id!r}: its target buses host no devices; it will deliver 0 kW")
    return out
