"""Build the plant a scenario describes: grid, fleets placed on buses, DR calls.

Every check that needs the grid (does a bus exist?) happens here, before the
first tick, and fails with a :class:`~vpp.scenario.ScenarioError` naming the
field. Random draws use one child generator per fleet, spawned by index from
the scenario seed, so adding a fleet at the end leaves the others unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from vpp.dr import POWER_SIGNALS, Direction, DRCall
from vpp.fleets import Fleet
from vpp.fleets.registry import KINDS
from vpp.scenario.load import ScenarioError
from vpp.scenario.schema import Scenario
from vpp.scenario.series import build_background, fleet_inputs, read_prices

__all__ = [
    "Plant", "build_plant", "build_grid", "bus_positions", "estimate_call_room", "plant_warnings", "call_room_warnings",
    "tier_warnings",
]

# Child-seed slots after the fleets' own (fleet i uses slot i).
_SLOT_LINKS = 0
_SLOT_SAMPLES = 1
_SLOT_COMPLIANCE = 2  # which devices ignore setpoints (platform.non_compliance_share); new slots go last
_N_EXTRA_SLOTS = 3


@dataclass
class Plant:
    """Everything a run needs, built and checked."""

    grid: object  # vpp.grid.model.GridModel
    fleets: list[Fleet]
    calls: list[DRCall]
    link_rng: np.random.Generator
    sample_rng: np.random.Generator
    compliance_rng: np.random.Generator | None = None  # draws the devices that ignore setpoints
    background: object = None  # vpp.scenario.series.Background: the net's own load and generation per tick
    prices: object = None  # vpp.scenario.series.TickSeries of the energy price [CNY/kWh], or None
    notes: list[str] = field(default_factory=list)  # what reading the input files adjusted or dropped


def build_grid(scenario: Scenario):
    """Load the scenario's network into a :class:`~vpp.grid.model.GridModel` solved by ``grid.solver``."""
    from vpp.grid.model import GridModel
    from vpp.grid.networks import load_network, network_label

    g = scenario.grid
    try:
        net = load_network(g.network, g.source)
    except (KeyError, ImportError) as exc:  # NetworkError is a KeyError
        raise ScenarioError(f"grid.network: {exc.args[0]}") from None
    return GridModel(net, network_label(g.network, g.source), solver=g.solver)


def _describe_buses(grid) -> str:
    idx = grid.bus_index
    if idx.size <= 12:
        return ", ".join(str(int(b)) for b in idx)
    return f"{idx.size} buses, labels {int(idx.min())}..{int(idx.max())} (e.g. {', '.join(str(int(b)) for b in idx[:6])}, ...)"


def bus_positions(grid, buses: list[int | str], field: str) -> np.ndarray:
    """Positions of buses, given by label or name, in the grid; an unknown one is a ScenarioError naming ``field``."""
    from vpp.grid.networks import NetworkError, bus_labels

    try:
        buses = bus_labels(grid.net, buses, grid.name)
    except NetworkError as exc:
        raise ScenarioError(f"{field}: {exc}") from None
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


def _timeline(signal, start_s: float, end_s: float) -> tuple[tuple[float, float, float], ...]:
    """``(t0_s, t1_s, value)`` of a validated signal's intervals from ``start_s`` (the last one ends at ``end_s``)."""
    out = []
    t0 = start_s
    for iv, value in zip(signal.intervals, signal.values()):
        out.append((t0, t0 + iv.duration, value))
        t0 += iv.duration
    out[-1] = (out[-1][0], end_s, out[-1][2])  # no rounding drift at the end
    return tuple(out)


def _stretched(intervals: tuple, end_s: float) -> tuple:
    """``intervals`` cut at ``end_s``, or with the last one running on to it."""
    out = [(a, min(b, end_s), v) for a, b, v in intervals if a < end_s]
    if out and out[-1][1] < end_s:
        out[-1] = (out[-1][0], end_s, out[-1][2])
    return tuple(out)


def _signal_fields(signals, start_s: float, end_s: float, label: str) -> dict:
    """``signal``, ``intervals``, ``price_intervals`` and ``p_kw`` of a DRCall from validated signals."""
    power = [s for s in signals if s.type in POWER_SIGNALS]
    price = [s for s in signals if s.type not in POWER_SIGNALS]
    if not power:
        return {"signal": "price_cny_per_kwh", "intervals": _timeline(price[0], start_s, end_s), "p_kw": 0.0,
                "price_intervals": ()}
    intervals = _timeline(power[0], start_s, end_s)
    return {"signal": power[0].type, "intervals": intervals, "p_kw": max(v for _, _, v in intervals),
            "price_intervals": _timeline(price[0], start_s, end_s) if price else ()}


def _event(c, label: str, bus_idx: tuple[int, ...] | None) -> DRCall:
    """The DRCall of a validated event (times in seconds), its modifications as later versions in ``updates``."""
    start_s, end_s = c.start_s, c.end_s
    if c.signals is None:
        sig = {"signal": "delta_kw", "intervals": ((start_s, end_s, c.request_kw),), "p_kw": c.request_kw,
               "price_intervals": ()}
    else:
        sig = _signal_fields(c.signals, start_s, end_s, label)
    t = c.targets
    first = DRCall(
        call_id=c.id,
        direction=Direction(c.direction),
        start_s=start_s,
        end_s=end_s,
        notification_s=c.notification_s,
        bus_idx=bus_idx,
        modification=c.modification,
        recovery_s=c.recovery_s,
        ramp_up_s=c.ramp_up_s,
        operators=None if t is None or t.operators is None else tuple(t.operators),
        fleets=None if t is None or t.fleets is None else tuple(t.fleets),
        response_required=c.response_required,
        tier=c.tier,
        **sig,
    )
    updates = []
    prev = first
    for k, m in enumerate(c.modifications):
        if m.cancelled:
            version = replace(prev, modification=m.modification, cancelled=True)
        else:
            new_end = prev.end_s if m.end_s is None else m.end_s
            if m.signals is not None:
                sig = _signal_fields(m.signals, start_s, new_end, f"{label}.modifications[{k}]")
            elif m.request_kw is not None:
                sig = {"intervals": ((start_s, new_end, m.request_kw),), "p_kw": m.request_kw,
                       "price_intervals": _stretched(prev.price_intervals, new_end)}
            else:
                intervals = _stretched(prev.intervals, new_end)
                top = max((v for _, _, v in intervals), default=0.0) if prev.signal != "price_cny_per_kwh" else 0.0
                sig = {"intervals": intervals, "price_intervals": _stretched(prev.price_intervals, new_end),
                       # p_kw stays the scale of the call when the cut leaves only zero intervals
                       "p_kw": top if top > 0.0 or prev.signal == "price_cny_per_kwh" else prev.p_kw}
            version = replace(
                prev, end_s=new_end, modification=m.modification,
                ramp_up_s=prev.ramp_up_s if m.ramp_up_s is None else m.ramp_up_s,
                recovery_s=prev.recovery_s if m.recovery_s is None else m.recovery_s, **sig,
            )
        updates.append((m.at, version))
        prev = version
    return replace(first, updates=tuple(updates)) if updates else first


def build_calls(scenario: Scenario, grid) -> list[DRCall]:
    """DR calls with target buses as grid positions (unknown buses are a ScenarioError)."""
    calls = []
    for c, label in zip(scenario.dr_calls, scenario.dr_call_labels):
        bus_idx = None
        buses = c.target_buses
        if buses is not None:
            where = f"{label}.buses" if c.buses is not None else f"{label}.targets.buses"
            bus_idx = tuple(int(b) for b in bus_positions(grid, buses, where))
        calls.append(_event(c, label, bus_idx))
    return calls


def check_buses(scenario: Scenario, grid) -> list[DRCall]:
    """Check that every bus the scenario names exists in the grid (ScenarioError otherwise).

    Returns the DR calls, whose target buses that check resolves.
    """
    for i, f in enumerate(scenario.fleets):
        if isinstance(f.buses, list):
            bus_positions(grid, f.buses, f"fleets[{i}].buses")
    return build_calls(scenario, grid)


def _check_setpoint_calls(scenario: Scenario, calls) -> None:
    """A ``setpoint_kw`` event is a target for the power on its buses, measured against the no-call twin."""
    for c in calls:
        if not c.has_setpoint:
            continue
        if not scenario.measurement.twin:
            raise ScenarioError(
                f"dr call {c.call_id!r}: a setpoint_kw signal asks for the change from what its buses would draw "
                "without the call, which only the no-call twin knows: set measurement.twin: true, or use delta_kw "
                "or level")
        if c.operators is not None or c.fleets is not None:
            raise ScenarioError(
                f"dr call {c.call_id!r}: a setpoint_kw signal is a target for the power on its buses (targets.buses "
                "or the whole VPP); operator and fleet targets are allowed with delta_kw or level")


def build_plant(scenario: Scenario, grid=None) -> Plant:
    """Build grid (unless given), fleets and calls from a validated scenario.

    Time-series and session files are read here (:mod:`vpp.scenario.series`),
    so a file that does not fit the scenario stops the run before any work.
    A given ``grid`` must not have its VPP loads attached yet.
    """
    grid = build_grid(scenario) if grid is None else grid
    calls = check_buses(scenario, grid)
    _check_setpoint_calls(scenario, calls)
    background = build_background(scenario, grid)
    prices = read_prices(scenario)
    notes: list[str] = []
    children = np.random.SeedSequence(scenario.seed).spawn(len(scenario.fleets) + _N_EXTRA_SLOTS)
    fleets: list[Fleet] = []
    for i, cfg in enumerate(scenario.fleets):
        rng = np.random.default_rng(children[i])
        bus_idx = _place(rng, grid, cfg.buses, cfg.n_devices, f"fleets[{i}].buses")
        inputs = fleet_inputs(cfg, scenario.time, f"fleets[{i}]", notes)
        fleet = KINDS[cfg.kind].build(cfg, rng, bus_idx, scenario.time, **inputs)
        notes.extend(getattr(fleet, "notes", ()))
        fleets.append(fleet)
    extra = children[len(scenario.fleets):]
    return Plant(
        grid=grid,
        fleets=fleets,
        calls=calls,
        link_rng=np.random.default_rng(extra[_SLOT_LINKS]),
        sample_rng=np.random.default_rng(extra[_SLOT_SAMPLES]),
        compliance_rng=np.random.default_rng(extra[_SLOT_COMPLIANCE]),
        background=background,
        prices=prices,
        notes=notes,
    )


def estimate_call_room(plant: Plant, dt_s: float) -> list[tuple[float, float, float]]:
    """Room each call's targets offer at the call's start, with no earlier call: ``(room_kw, down_kw, up_kw)``.

    ``room_kw`` is in the call's direction over its target buses; ``down_kw``
    and ``up_kw`` are over the whole plant [kW]. The estimate advances a copy
    of every fleet's initial state at default power (the no-call twin's path)
    up to the tick in which the call starts, then reads the envelope there:
    ``p_default - p_min`` summed over the targets for a reduction,
    ``p_max - p_default`` for an increase. One pass over time serves every
    call (sorted by start), so the cost is one twin run up to the latest start.
    It ignores what earlier calls draw from the same devices, so it is an upper
    bound on what a call can get.
    """
    calls = plant.calls
    if not calls:
        return []
    fleets = plant.fleets
    n_bus = plant.grid.n_bus
    states = [f.initial_state() for f in fleets]
    work = [f.new_workspace() for f in fleets]
    start_tick = [int(np.floor(c.start_s / dt_s + 1e-9)) for c in calls]
    out: list[tuple[float, float, float] | None] = [None] * len(calls)
    i = 0  # ticks fully stepped so far
    for k in sorted(set(start_tick)):
        while i < k:
            t_s = i * dt_s
            for f, s, ws in zip(fleets, states, work):
                f.advance(s, t_s, dt_s)
                env = f.flexibility(s, t_s, dt_s, ws)
                f.step(s, env.p_default_kw, t_s, dt_s, env)
            i += 1
        t_s = k * dt_s
        down_bus = np.zeros(n_bus)
        up_bus = np.zeros(n_bus)
        envs = []
        for f, s, ws in zip(fleets, states, work):
            f.advance(s, t_s, dt_s)
            env = f.flexibility(s, t_s, dt_s, ws)
            down_bus += np.bincount(f.bus_idx, weights=env.down_kw, minlength=n_bus)
            up_bus += np.bincount(f.bus_idx, weights=env.up_kw, minlength=n_bus)
            envs.append(env)
        for j, c in enumerate(calls):
            if start_tick[j] == k:
                room_bus = down_bus if c.direction is Direction.REDUCE else up_bus
                out[j] = (float(room_bus[c.bus_mask(n_bus)].sum()), float(down_bus.sum()), float(up_bus.sum()))
        for f, s, env in zip(fleets, states, envs):
            f.step(s, env.p_default_kw, t_s, dt_s, env)
        i = k + 1
    return out


def plant_warnings(plant: Plant, time=None) -> list[str]:
    """Valid but suspicious facts about a built plant, one line each.

    Always: what reading input files adjusted or dropped (sessions outside
    the run, ...), a DR call whose target buses host no devices, and a call
    outside its tier's terms (:func:`tier_warnings`). With ``time`` (the
    scenario's :class:`~vpp.scenario.schema.TimeConfig`), also what needs an
    estimate of flexibility (:func:`estimate_call_room`, see
    :func:`call_room_warnings`).
    """
    out = list(plant.notes) + [line for _, line in _empty_target_warnings(plant)] + tier_warnings(plant.calls)
    if time is None or not plant.calls:
        return out
    return out + call_room_warnings(plant, estimate_call_room(plant, time.dt_s))


def tier_warnings(calls) -> list[str]:
    """A call outside its programme tier's terms, one line each (the tier's minimum notice is an error).

    Checked: the active period against the tier's minimum and maximum
    duration, the ramp-up against its maximum response time, and the request
    against its minimum capacity (each figure's source is in
    :mod:`vpp.programme.tiers`). Versions announced later are checked too.
    """
    from vpp.programme.tiers import get_tier

    out = []
    for c in calls:
        if c.tier is None:
            continue
        t = get_tier(c.tier)
        said: set[str] = set()
        for _, v in c.versions:
            if v.cancelled:
                continue
            label = f"dr call {c.call_id!r}" + (f" (modification {v.modification})" if v.modification else "")
            mine = []
            dur_s = v.end_s - v.start_s
            if dur_s < t.min_duration_s:
                mine.append(f"lasts {dur_s / 60:g} min, less than the {c.tier} tier's minimum of "
                           f"{t.min_duration_s / 60:g} min")
            if t.max_duration_s is not None and dur_s > t.max_duration_s:
                mine.append(f"lasts {dur_s / 60:g} min, more than the {c.tier} tier's maximum of "
                           f"{t.max_duration_s / 60:g} min")
            if v.ramp_up_s > t.max_response_s:
                mine.append(f"ramps up over {v.ramp_up_s / 60:g} min, longer than the {c.tier} tier's "
                           f"response time of {t.max_response_s / 60:g} min")
            if v.signal not in ("price_cny_per_kwh", "setpoint_kw") and 0.0 < v.p_kw < t.min_capacity_kw:
                mine.append(f"asks for {v.p_kw:,.0f} kW, less than the {c.tier} tier's minimum capacity "
                           f"of {t.min_capacity_kw:,.0f} kW")
            for text in mine:  # a later version repeating an earlier one's problem is not said again
                if text not in said:
                    said.add(text)
                    out.append(f"{label}: {text}")
    return out


def _empty_target_warnings(plant: Plant) -> list[tuple[str, str]]:
    n_bus = plant.grid.n_bus
    hosted = np.zeros(n_bus, dtype=bool)
    for f in plant.fleets:
        hosted[f.bus_idx] = True
    return [(c.call_id, f"dr call {c.call_id!r}: its target buses host no devices; it will deliver 0 kW")
            for c in plant.calls if not (hosted & c.bus_mask(n_bus)).any()]


def call_room_warnings(plant: Plant, rooms) -> list[str]:
    """A call larger than the room its targets offer at its start, and a plant short of every call.

    ``rooms`` gives, per call of ``plant.calls`` (in order), ``(room_kw,
    down_kw, up_kw)`` at its start tick with no earlier call, or ``None`` where
    it is unknown (a run that stopped before the call): from
    :func:`estimate_call_room` before a run, or from the no-call twin during it
    (:attr:`vpp.sim.engine.Engine.call_room`), which is the same path.
    """
    # A setpoint call's size is not its p_kw (the setpoint) but the gap to the baseline: not judged here.
    sized = [(c, r) for c, r in zip(plant.calls, rooms) if not c.has_setpoint]
    known = [(c, r) for c, r in sized if r is not None]
    if not known:
        return []
    empty = {cid for cid, _ in _empty_target_warnings(plant)}
    smallest = min((c for c, _ in sized), key=lambda c: c.p_kw)
    best_kw = max(max(down_kw, up_kw) for _, (_, down_kw, up_kw) in known)
    if len(known) == len(sized) and best_kw < smallest.p_kw:
        # Every call is then short of room too: one line says it for all of them.
        return [
            f"the whole plant offers at most {best_kw:,.0f} kW at the start of any call, less than the smallest "
            f"call ({smallest.call_id!r}, {smallest.p_kw:,.0f} kW): no call can be fully delivered"
        ]
    out = []
    for c, (room_kw, _, _) in known:
        if c.call_id not in empty and c.p_kw > room_kw * (1.0 + 1e-9):
            where = "its target buses offer" if c.bus_idx is not None else "the whole plant offers"
            out.append(
                f"dr call {c.call_id!r}: asks to {c.direction.value} by {c.p_kw:,.0f} kW but {where} "
                f"{room_kw:,.0f} kW at its start (t_s={c.start_s:g}, estimated with no earlier call); "
                "it cannot be fully delivered"
            )
    return out
