"""What every fleet offers: frozen parameters, a copyable state, owned work buffers.

A fleet is a struct of equal-length 1-D parameter arrays (one entry per
device, frozen: read-only after construction) plus the bus index, operator and
dispatch cost of each device. Everything that changes during a run lives in a
:class:`FleetState`, a value of arrays and scalars that can be copied and
compared; the no-call twin, look-ahead and checkpoints are copies of it. Per
tick::

    state = fleet.initial_state()
    fleet.advance(state, t_s, dt_s)                 # exogenous events up to the tick start
    env = fleet.flexibility(state, t_s, dt_s)       # pure: bounds and default power [kW]
    p_kw = fleet.step(state, p_set_kw, t_s, dt_s, env)  # clipped into the envelope, integrated

``advance`` applies what no controller decides (arrivals, departures, profile
values); ``flexibility`` never changes the state, so looking ahead is free of
side effects; ``step`` is the only place where power moves energy. Whatever
setpoint arrives, a fleet never leaves its envelope: this is where power
limits, SoC bounds, comfort bands and backup reserves are enforced, so a
dispatch bug can cost delivery but never physics.

Work buffers: :meth:`Fleet.flexibility` writes the envelope and its
intermediate arrays into a :class:`Workspace` that the fleet owns (or one the
caller made with :meth:`Fleet.new_workspace`, e.g. for the twin), instead of
allocating arrays of length ``n`` every tick. An envelope is valid until the
next ``flexibility`` call on the same workspace. A workspace may take its three
envelope arrays from the caller (``new_workspace(out=...)``): an operator's
portfolio passes views into its concatenated buffers, so that each fleet writes
its envelope where dispatch reads it, with no copy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from vpp.units import S_PER_H

__all__ = ["Envelope", "Fleet", "FleetState", "FlexGroups", "KindSpec", "Workspace", "frozen"]


def frozen(x, n: int, dtype=float) -> np.ndarray:
    """A scalar or per-device parameter as a read-only array of length ``n``."""
    a = np.array(np.broadcast_to(np.asarray(x, dtype=dtype), (n,)), dtype=dtype)
    a.flags.writeable = False
    return a


@dataclass(slots=True)
class FleetState:
    """Base of every fleet's state: numpy arrays (copied deeply) and scalars.

    Subclasses are plain dataclasses; :meth:`copy` and :meth:`equals` work on
    their fields generically.
    """

    p_kw: np.ndarray  # power drawn by each device in the last tick [kW]

    def copy(self):
        """An independent copy (arrays copied, scalars by value)."""
        return type(self)(
            **{f.name: (v.copy() if isinstance(v, np.ndarray) else v) for f in fields(self) for v in (getattr(self, f.name),)}
        )

    def equals(self, other) -> bool:
        """Bit-identical to ``other`` (NaNs in the same places count as equal)."""
        if type(other) is not type(self):
            return False
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if a.shape != b.shape or a.dtype != b.dtype or a.tobytes() != b.tobytes():
                    return False
            elif not (a == b or (a != a and b != b)):
                return False
        return True


_ENVELOPE_NAMES = ("p_min_kw", "p_max_kw", "p_default_kw")


class Workspace:
    """Work buffers of one fleet: the envelope arrays and kind-specific scratch, each of length ``n``.

    ``out`` (optional) supplies the three envelope arrays instead of fresh ones:
    writable float64 arrays of shape ``(n,)``, typically views into a caller's
    larger buffers. Fleets write them only in place (``out=``, ``[:]``), never
    rebind them, so the envelope lands in the caller's memory.
    """

    def __init__(self, n: int, names: tuple[str, ...], out: Envelope | None = None):
        self.n = n
        self.names = _ENVELOPE_NAMES + ("p_set_kw",) + tuple(names)
        given = {}
        if out is not None:
            for name in _ENVELOPE_NAMES:
                a = getattr(out, name)
                if not (isinstance(a, np.ndarray) and a.shape == (n,) and a.dtype == np.float64
                        and a.flags.writeable and a.flags.c_contiguous):
                    raise ValueError(f"workspace out.{name} must be a writable contiguous float64 array of shape "
                                     f"({n},)")
                given[name] = a
        for name in self.names:
            setattr(self, name, given[name] if name in given else np.zeros(n))
        self.key: tuple[int, float, float] | None = None  # (id(state), t_s, dt_s) of the envelope held


@dataclass(frozen=True, slots=True)
class Envelope:
    """Per-device power bounds for one tick and the power each device draws with no call.

    ``p_min_kw <= p_default_kw <= p_max_kw`` element-wise [kW], load convention.
    ``work`` is the workspace that holds these arrays and the fleet's
    intermediate values for the tick (``None`` for envelopes built by hand).
    """

    p_min_kw: np.ndarray
    p_max_kw: np.ndarray
    p_default_kw: np.ndarray
    work: Workspace | None = None

    @property
    def down_kw(self) -> np.ndarray:
        """Room to reduce load below the default [kW] (>= 0)."""
        return self.p_default_kw - self.p_min_kw

    @property
    def up_kw(self) -> np.ndarray:
        """Room to increase load above the default [kW] (>= 0)."""
        return self.p_max_kw - self.p_default_kw

    def clip(self, p_set_kw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Setpoints [kW] clipped into the envelope."""
        return np.clip(p_set_kw, self.p_min_kw, self.p_max_kw, out=out)


@dataclass(frozen=True)
class FlexGroups:
    """A fleet's devices aggregated into groups ("virtual batteries") over ``H`` ticks, for the ``optimal`` strategy.

    Each group ``g`` is a storage model of summed device quantities (the
    aggregate model of Müller et al. 2019, "Aggregation and disaggregation of
    energetic flexibility from distributed energy resources", IEEE Trans.
    Smart Grid 10(2); for thermal loads the leaky "generalized battery" of
    Hao et al. 2015, "Aggregate flexibility of thermostatically controlled
    loads", IEEE Trans. Power Syst. 30(1)). Over tick ``k`` (``k = 0`` is the
    tick being dispatched) the group draws ``p = p_fixed + c - d`` [kW] from the
    grid with ``0 <= c <= c_max``, ``0 <= d <= d_max``, and its stored energy
    moves as ``E[k+1] = leak * E[k] + (gain_c * c - gain_d * d) * dt_h - w[k]``
    within ``[e_min[k], e_max[k]]`` (the bounds hold at the end of tick ``k``).
    ``p_base_kw`` is the group's power with no call, forecast from the state
    (tick 0: the envelope's default exactly).

    Membership: device ``member[j]`` (an index into the fleet) belongs to
    group ``group[j]`` with the fraction ``share_down[j]`` / ``share_up[j]`` of
    its room in each direction (1 when the device is one storage; a building's
    room is shared by its thermal mass and its battery). A group's room at
    tick 0 is the share-weighted sum of its members' envelope room, and its
    setpoint is split over them in proportion to that.

    Shapes: ``(G,)`` per group, ``(G, H)`` per group and tick, ``(m,)`` per membership.
    """

    labels: tuple[str, ...]
    member: np.ndarray
    group: np.ndarray
    share_down: np.ndarray
    share_up: np.ndarray
    p_base_kw: np.ndarray  # no-call forecast of the group's grid power [kW], (G, H)
    p_fixed_kw: np.ndarray  # the part it cannot move (site load, base load, PV) [kW], (G, H)
    c_max_kw: np.ndarray  # largest charging (or HVAC) power [kW], (G, H)
    d_max_kw: np.ndarray  # largest discharging power, grid side [kW], (G, H)
    e0_kwh: np.ndarray  # stored energy (or its equivalent) at the tick start [kWh], (G,)
    e_min_kwh: np.ndarray  # lower bound at the end of each tick [kWh], (G, H)
    e_max_kwh: np.ndarray  # upper bound at the end of each tick [kWh], (G, H)
    leak: np.ndarray  # retained share of the stored energy per tick [-], (G,)
    gain_c: np.ndarray  # stored per kWh charged [-], (G,)
    gain_d: np.ndarray  # taken from storage per kWh discharged at the grid [-], (G,)
    w_kwh: np.ndarray  # exogenous drain per tick [kWh], (G, H)

    @property
    def n_groups(self) -> int:
        """Number of groups ``G``."""
        return len(self.labels)


def _deadline_keys(n: int) -> dict[str, np.ndarray]:
    return {"deadline_s": np.full(n, np.inf), "laxity_s": np.full(n, np.inf)}


class Fleet(ABC):
    """Base of every vectorised device fleet.

    Subclasses set :attr:`kind` and :attr:`work_names` and implement
    :meth:`initial_state`, :meth:`_advance`, :meth:`_envelope` (writing into the
    workspace), :meth:`_integrate`, :meth:`tick_metrics` and :meth:`summary`.
    """

    kind: ClassVar[str]
    """Device kind, e.g. ``"ev"``; the key of the kind registry."""

    work_names: ClassVar[tuple[str, ...]] = ()
    """Names of the per-device scratch arrays the envelope needs besides the bounds."""

    twin_cost_keys: ClassVar[tuple[str, ...]] = ()
    """Keys of :meth:`summary` whose plant-minus-twin difference is what DR calls cost this kind."""

    def __init__(self, name: str, bus_idx: np.ndarray, operator: str, cost_cny_per_kwh):
        bus_idx = np.array(bus_idx, dtype=np.int64)
        if bus_idx.ndim != 1:
            raise ValueError("bus_idx must be 1-D")
        bus_idx.flags.writeable = False
        self.name = name
        self.bus_idx = bus_idx
        self.operator = operator
        self.cost_cny_per_kwh = frozen(cost_cny_per_kwh, self.n)
        # The fleet's own workspace is made on first use: a fleet dispatched through a portfolio (which
        # passes its own workspaces) and twinned (the engine's) never needs it, and at 10^6 devices it
        # is tens of MB.
        self._ws: Workspace | None = None

    @property
    def n(self) -> int:
        """Number of devices."""
        return int(self.bus_idx.shape[0])

    def _param(self, x, dtype=float) -> np.ndarray:
        """A scalar or per-device parameter as a read-only array of length ``n``."""
        return frozen(x, self.n, dtype)

    def new_workspace(self, out: Envelope | None = None) -> Workspace:
        """Fresh work buffers for this fleet (one per concurrent user: the plant, the twin).

        ``out``: the envelope arrays to write into (e.g. views into a portfolio's
        buffers) instead of new ones; see :class:`Workspace`.
        """
        return Workspace(self.n, self.work_names, out)

    def _workspace(self, work: Workspace | None) -> Workspace:
        """``work``, or the fleet's own workspace (made on first use)."""
        if work is not None:
            return work
        if self._ws is None:
            self._ws = self.new_workspace()
        return self._ws

    @abstractmethod
    def initial_state(self) -> FleetState:
        """The state at ``t_s = 0``, before the first :meth:`advance`."""

    def advance(self, state: FleetState, t_s: float, dt_s: float) -> None:
        """Apply the exogenous events (arrivals, departures, profile values) up to the tick ``[t_s, t_s + dt_s)``."""
        self._advance(state, float(t_s), float(dt_s))

    def flexibility(self, state: FleetState, t_s: float, dt_s: float, work: Workspace | None = None) -> Envelope:
        """Envelope of every device for the tick ``[t_s, t_s + dt_s)``; never changes ``state``.

        The arrays live in ``work`` (default: the fleet's own workspace) and are
        overwritten by the next call on the same workspace.
        """
        ws = self._workspace(work)
        if not self._envelope(state, float(t_s), float(dt_s), ws):
            # Guard against float noise so that p_min <= p_default <= p_max holds exactly.
            np.maximum(ws.p_max_kw, ws.p_min_kw, out=ws.p_max_kw)
            np.clip(ws.p_default_kw, ws.p_min_kw, ws.p_max_kw, out=ws.p_default_kw)
        ws.key = (id(state), float(t_s), float(dt_s))
        return Envelope(ws.p_min_kw, ws.p_max_kw, ws.p_default_kw, ws)

    def step(
        self, state: FleetState, p_set_kw: np.ndarray, t_s: float, dt_s: float, env: Envelope | None = None
    ) -> np.ndarray:
        """Run the tick ``[t_s, t_s + dt_s)`` at setpoints ``p_set_kw`` [kW]; return the power drawn [kW].

        ``env`` must be this state's envelope for this tick (computed when not
        given). Setpoints outside the envelope are clipped into it. The returned
        array is ``state.p_kw``.
        """
        if env is None:
            env = self.flexibility(state, t_s, dt_s)
        ws = env.work
        if ws is None or ws.key != (id(state), float(t_s), float(dt_s)):
            raise ValueError(f"fleet {self.name!r}: the envelope was not computed for this state and tick")
        p_set_kw = np.asarray(p_set_kw, dtype=float)
        if p_set_kw.shape != (self.n,):
            raise ValueError(f"fleet {self.name!r}: p_set_kw has shape {p_set_kw.shape}, expected ({self.n},)")
        if np.isnan(p_set_kw).any():
            raise ValueError(f"fleet {self.name!r}: p_set_kw contains NaN")
        env.clip(p_set_kw, out=state.p_kw)
        self._integrate(state, state.p_kw, float(t_s), float(dt_s) / S_PER_H, ws)
        ws.key = None  # the state moved on: this envelope no longer describes it
        return state.p_kw

    def step_default(self, state: FleetState, t_s: float, dt_s: float) -> np.ndarray:
        """Advance and run the tick with every device at its default (no-call) power [kW]."""
        self.advance(state, t_s, dt_s)
        env = self.flexibility(state, t_s, dt_s)
        return self.step(state, env.p_default_kw, t_s, dt_s, env)

    def run_default(self, state: FleetState, t_s: float, dt_s: float, work: Workspace | None = None) -> np.ndarray:
        """Run the (already advanced) tick at default power [kW]: what :meth:`step` does at ``p_default_kw``.

        For a plant nobody dispatches (the no-call twin): a kind whose
        :meth:`_default_power` computes the default without the rest of the
        envelope skips the bounds; the powers and the new state are the same
        numbers either way (tests/fleets/test_base.py).
        """
        ws = self._workspace(work)
        t_s, dt_s = float(t_s), float(dt_s)
        if not self._default_power(state, t_s, dt_s, ws):
            env = self.flexibility(state, t_s, dt_s, ws)
            return self.step(state, env.p_default_kw, t_s, dt_s, env)
        np.copyto(state.p_kw, ws.p_default_kw)
        self._integrate(state, state.p_kw, t_s, dt_s / S_PER_H, ws)
        ws.key = None
        return state.p_kw

    def _default_power(self, state: FleetState, t_s: float, dt_s: float, ws: Workspace) -> bool:
        """Write only the default power into ``ws.p_default_kw`` and return ``True``, if the kind can do that
        more cheaply than the whole envelope (which it must equal); ``False``: not supported."""
        return False

    def dispatch_keys(self, state: FleetState, t_s: float, dt_s: float) -> dict[str, np.ndarray]:
        """Per-device keys for ordered strategies (``edf``, ``llf``) at the tick ``[t_s, t_s + dt_s)``.

        ``deadline_s``: when the device must have its energy [s since the
        start]; ``laxity_s``: time to that deadline minus the time the
        remaining energy needs at full power [s]. Reads, never writes,
        ``state``. Default (kinds without a deadline: base stations,
        buildings): ``inf`` for every device, which those strategies serve last.
        """
        return _deadline_keys(self.n)

    def flex_groups(self, state: FleetState, t_s: float, dt_s: float, n_ticks: int, env: Envelope,
                    members: np.ndarray | None = None, bucket_s: float = 3600.0) -> FlexGroups | None:
        """The devices ``members`` (default all) as aggregate storage groups over ``n_ticks`` ticks from ``t_s``.

        ``env`` is this state's envelope for the tick ``[t_s, t_s + dt_s)``;
        ``bucket_s`` is the width of deadline buckets for kinds that group by
        deadline. Reads, never writes, ``state``. ``None`` (the default): the
        kind has no energy model, and :mod:`vpp.dispatch.optimal` holds its
        tick-0 envelope for the whole horizon with no energy constraint.
        """
        return None

    @abstractmethod
    def _advance(self, state: FleetState, t_s: float, dt_s: float) -> None:
        """Apply bulk events (arrivals, departures, profile values) up to ``t_s``."""

    @abstractmethod
    def _envelope(self, state: FleetState, t_s: float, dt_s: float, ws: Workspace) -> bool | None:
        """Write bounds and default power for the tick into ``ws`` (reading, never writing, ``state``).

        Return ``True`` only if ``p_min <= p_default <= p_max`` already holds
        exactly (a compiled kernel that applied the guard itself); otherwise
        :meth:`flexibility` applies it.
        """

    @abstractmethod
    def _integrate(self, state: FleetState, p_kw: np.ndarray, t_s: float, dt_h: float, ws: Workspace) -> None:
        """Advance ``state`` over one tick at powers ``p_kw`` already inside the envelope held in ``ws``."""

    @abstractmethod
    def tick_metrics(self, state: FleetState) -> dict[str, float]:
        """Scalar fleet statistics of ``state`` after a step (recorded every tick)."""

    @abstractmethod
    def summary(self, state: FleetState) -> dict[str, float]:
        """Fleet KPIs of ``state`` over the run so far."""


@dataclass(frozen=True)
class KindSpec:
    """Everything the rest of the code needs to know about one device kind."""

    name: str
    fleet: type[Fleet]
    config: type  # pydantic model with ``kind: Literal[name]``
    build: Callable  # build(cfg, rng, bus_idx, time) -> Fleet; ``time`` has duration_s and clock_start_h
    parameter_sets: Mapping[str, object]
    parameter_field: str  # the config field naming a parameter set
    describe: Callable[[object], str]  # one line about a parameter set, for ``vpp list``
