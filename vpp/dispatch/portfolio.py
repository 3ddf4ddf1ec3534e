"""An operator's portfolio: several fleets dispatched as one set of device arrays.

Latency path (a DR call reaching the platform to per-device setpoints):
:meth:`Portfolio.flexibility` has each fleet write its envelope straight into
its slice of the portfolio's buffers (the fleets' workspaces hold views into
them), :meth:`Portfolio.by_bus` sums it per bus, :meth:`Portfolio.setpoints`
splits each request. With numba (:attr:`Portfolio.use_numba`), the per-bus sums
and the split of the built-in strategies are compiled single passes
(:mod:`vpp.dispatch.kernels_numba`); the numpy path is the reference and the
path for any other allocator. A call targeting every device is split over the
whole arrays, never gathered and scattered through an index array (merit order
walks its cost order, sorted once per call and cached: costs are frozen).

Strategies that order devices by per-device keys (``edf``, ``llf``: see
:mod:`vpp.dispatch.allocation`) get them from each fleet's
:meth:`~vpp.fleets.base.Fleet.dispatch_keys` at the tick, computed only when a
call is split and once per tick; their compiled path sorts the selection by
key with numpy and walks that order with the merit order's compiled walk.
The ``optimal`` strategy is planned over the call's window by a
:class:`vpp.dispatch.optimal.OptimalPlanner` per portfolio, from the fleets'
states and envelopes of the tick (kept by :meth:`Portfolio.flexibility`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vpp.dispatch.aggregate import BusFlexibility, aggregate_by_bus
from vpp.dispatch.allocation import Allocator, edf, llf, merit_order, order_by_key, pro_rata, strategy_keys
from vpp.dr import DRCall
from vpp.fleets.base import Envelope, Fleet, FleetState
from vpp.fleets.kernels import NUMBA_AVAILABLE

__all__ = ["Portfolio"]

_ALL = slice(None)  # the selection of a call that targets every device
_NO_IDX = np.zeros(0, dtype=np.intp)  # the compiled pro-rata split's index argument when every device is targeted
# Strategies with a compiled split (edf and llf: a numpy sort by key, then the merit order's compiled walk).
_COMPILED_SPLITS = (("pro_rata", pro_rata), ("merit_order", merit_order), ("edf", edf), ("llf", llf))


class Portfolio:
    """The fleets one operator owns, with their devices laid end to end.

    ``bus_idx`` and ``cost_cny_per_kwh`` are the concatenation of the fleets'
    arrays; a call's targeted devices are found once per call and cached. The
    portfolio owns buffers for the concatenated envelope and setpoints, and a
    workspace per fleet whose envelope arrays are views into those buffers; the
    fleets' states are passed in (the portfolio holds none).
    """

    def __init__(self, fleets: Sequence[Fleet], n_bus: int, allocator: Allocator, *, optimal_config=None,
                 offer_cost: bool = False):
        self.fleets = list(fleets)
        self.n_bus = n_bus
        self.allocator = allocator
        self.keys = strategy_keys(allocator)
        """Per-device keys the strategy reads (:meth:`vpp.fleets.base.Fleet.dispatch_keys`)."""
        self.offer_cost = offer_cost
        """Whether the operator sends its room-weighted cost with each offer (:meth:`offered_cost`)."""
        self.optimal = None
        """The ``optimal`` strategy's planner (:class:`vpp.dispatch.optimal.OptimalPlanner`), if that is the strategy."""
        if getattr(allocator, "horizon", False):
            from vpp.dispatch.optimal import OptimalConfig, OptimalPlanner

            self.optimal = OptimalPlanner(optimal_config or OptimalConfig())
        self.tick: tuple[Sequence[FleetState], float, float] | None = None
        """``(states, t_s, dt_s)`` of the last :meth:`flexibility` (the tick being dispatched)."""
        self._keys: dict[str, np.ndarray] | None = None
        self.bus_idx = np.concatenate([f.bus_idx for f in self.fleets]) if self.fleets else np.zeros(0, np.int64)
        self.bus_idx.flags.writeable = False
        if self.bus_idx.size and not (0 <= int(self.bus_idx.min()) and int(self.bus_idx.max()) < n_bus):
            raise ValueError(f"bus indices must lie in [0, {n_bus})")
        self.cost_cny_per_kwh = (
            np.concatenate([f.cost_cny_per_kwh for f in self.fleets]) if self.fleets else np.zeros(0)
        )
        # Frozen: the merit order of a call's devices is sorted once per call and cached.
        self.cost_cny_per_kwh.flags.writeable = False
        self._bounds = np.cumsum([0] + [f.n for f in self.fleets])
        self._targets: dict[tuple[str, int], np.ndarray | slice] = {}
        self._merit: dict[tuple[str, int] | None, np.ndarray] = {}  # None: every device
        n = self.n
        self._env = Envelope(np.zeros(n), np.zeros(n), np.zeros(n))
        self._work = [
            f.new_workspace(out=Envelope(self._env.p_min_kw[lo:hi], self._env.p_max_kw[lo:hi],
                                         self._env.p_default_kw[lo:hi]))
            for f, lo, hi in self.slices()
        ]
        self._p_set_kw = np.zeros(n)
        self._p_kw = np.zeros(n)
        self._fleet_envs: list[Envelope] = []
        self.use_numba = NUMBA_AVAILABLE
        """Compiled per-bus sums and split (:mod:`vpp.dispatch.kernels_numba`); ``False``: numpy only."""

    @property
    def n(self) -> int:
        """Number of devices over all fleets."""
        return int(self.bus_idx.shape[0])

    def slices(self):
        """``(fleet, lo, hi)``: each fleet's slice of the portfolio's device arrays."""
        return zip(self.fleets, self._bounds[:-1], self._bounds[1:])

    def initial_states(self) -> list[FleetState]:
        """A fresh state per fleet, in fleet order."""
        return [f.initial_state() for f in self.fleets]

    def advance(self, states: Sequence[FleetState], t_s: float, dt_s: float) -> None:
        """Apply every fleet's exogenous events up to the tick ``[t_s, t_s + dt_s)``."""
        for f, s in zip(self.fleets, states):
            f.advance(s, t_s, dt_s)

    def flexibility(self, states: Sequence[FleetState], t_s: float, dt_s: float) -> Envelope:
        """Envelope of every device for the tick, in the portfolio's own buffers (never changes ``states``).

        Each fleet writes into its slice of the buffers through the workspace
        the portfolio gave it: nothing is copied.
        """
        self._fleet_envs = [f.flexibility(s, t_s, dt_s, ws) for f, s, ws in zip(self.fleets, states, self._work)]
        self.tick = (states, float(t_s), float(dt_s))
        self._keys = None
        return self._env

    @property
    def fleet_envelopes(self) -> list[Envelope]:
        """Each fleet's envelope from the last :meth:`flexibility` (views into the portfolio's buffers)."""
        return self._fleet_envs

    def dispatch_keys(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Per-device keys of the tick of the last :meth:`flexibility`, over all fleets (computed once per tick).

        ``names``: the keys wanted (default: the strategy's). Raises
        ``RuntimeError`` before any :meth:`flexibility`.
        """
        names = tuple(self.keys if names is None else names)
        if self.tick is None:
            raise RuntimeError("dispatch keys need the fleets' states: call flexibility() first")
        if self._keys is None or any(k not in self._keys for k in names):
            states, t_s, dt_s = self.tick
            per_fleet = [f.dispatch_keys(s, t_s, dt_s) for f, s in zip(self.fleets, states)]
            self._keys = {k: np.concatenate([d[k] for d in per_fleet]) if per_fleet else np.zeros(0)
                          for k in names}
        return {k: self._keys[k] for k in names}

    def offered_cost(self, env: Envelope) -> tuple[float, float]:
        """Room-weighted mean dispatch cost of reducing and of increasing [CNY/kWh] (0 without room).

        What the operator sends with its offer, for the platform's merit order.
        """
        out = []
        for room_kw in (np.subtract(env.p_default_kw, env.p_min_kw), np.subtract(env.p_max_kw, env.p_default_kw)):
            total_kw = float(room_kw.sum())
            out.append(float(np.dot(self.cost_cny_per_kwh, room_kw)) / total_kw if total_kw > 0.0 else 0.0)
        return out[0], out[1]

    def by_bus(self, env: Envelope) -> BusFlexibility:
        """The envelope summed per bus [kW]."""
        return aggregate_by_bus(self.bus_idx, env, self.n_bus, use_numba=self.use_numba)

    def _selection(self, call: DRCall) -> np.ndarray | slice:
        """The devices a call targets: an index array, or ``slice(None)`` for every device (cached per call)."""
        key = (call.call_id, call.modification)
        sel = self._targets.get(key)
        if sel is None:
            if call.bus_idx is None and call.fleets is None and call.operators is None:
                sel = _ALL
            else:
                mask = call.bus_mask(self.n_bus)[self.bus_idx]
                for f, lo, hi in self.slices():  # device groups: a device must be in a named fleet and operator
                    if (call.fleets is not None and f.name not in call.fleets) or (
                            call.operators is not None and f.operator not in call.operators):
                        mask[lo:hi] = False
                idx = np.flatnonzero(mask)
                sel = _ALL if idx.size == self.n else idx
            self._targets[key] = sel
        return sel

    def targets(self, call: DRCall) -> np.ndarray:
        """Indices of the devices a call targets."""
        sel = self._selection(call)
        return np.arange(self.n) if isinstance(sel, slice) else sel

    def _merit_order(self, call: DRCall, sel: np.ndarray | slice) -> np.ndarray:
        """The call's devices, cheapest first, ties in device order (cached per call: costs are frozen).

        Every whole-VPP call shares one order.
        """
        key = None if isinstance(sel, slice) else (call.call_id, call.modification)
        order = self._merit.get(key)
        if order is None:
            if isinstance(sel, slice):
                order = np.argsort(self.cost_cny_per_kwh, kind="stable")
            else:
                order = sel[np.argsort(self.cost_cny_per_kwh[sel], kind="stable")]
            self._merit[key] = order
        return order

    def setpoints(
        self, env: Envelope, requests: Sequence[tuple[DRCall, float]], keys: dict[str, np.ndarray] | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Per-device setpoints [kW] and, per call, the instructed change per bus [kW, signed].

        Each ``(call, delta_kw)`` moves the default power in turn: it is split
        over the call's targeted devices by the allocation strategy, within the
        room left after earlier requests. ``keys``: per-device keys for the
        strategy (default: from the fleets at the tick, :meth:`dispatch_keys`).
        The ``optimal`` strategy plans each call over its window
        (:mod:`vpp.dispatch.optimal`); with no fleet state at hand (an envelope
        made by hand) it splits the tick as the merit order.
        """
        p_kw = self._p_set_kw
        np.copyto(p_kw, env.p_default_kw)
        instructed: dict[str, np.ndarray] = {}
        if self.optimal is not None:
            if env is not self._env:
                self.tick = None  # a hand-made envelope: the fleets' tick data do not describe it
            for call, delta_kw in requests:
                if delta_kw == 0.0:
                    continue
                d_kw = self.optimal.split(self, p_kw, env, float(delta_kw), self._selection(call), call)
                instructed[call.call_id] = np.bincount(self.bus_idx, weights=d_kw, minlength=self.n_bus)
            # Calls whose window has ended: their recovery plans (the deferred energy comes back late).
            active = {call.call_id for call, delta_kw in requests if delta_kw != 0.0}
            for cid, d_kw in self.optimal.recover(self, p_kw, env, active).items():
                instructed[cid] = np.bincount(self.bus_idx, weights=d_kw, minlength=self.n_bus)
            return p_kw, instructed
        # The compiled split stands in for the built-in strategies only; any other callable runs as given.
        # (Matched by identity: an allocator need not be hashable.)
        compiled = next((k for k, f in _COMPILED_SPLITS if f is self.allocator), None) if self.use_numba else None
        if self.keys and keys is None and any(delta_kw != 0.0 for _, delta_kw in requests):
            keys = self.dispatch_keys()
        for call, delta_kw in requests:
            if delta_kw == 0.0:
                continue
            sel = self._selection(call)
            if compiled is None:
                instructed[call.call_id] = self._split_numpy(p_kw, env, float(delta_kw), sel, keys)
            else:
                instructed[call.call_id] = self._split_compiled(compiled, call, p_kw, env, float(delta_kw), sel,
                                                                keys)
        return p_kw, instructed

    def _split_numpy(self, p_kw: np.ndarray, env: Envelope, delta_kw: float, sel: np.ndarray | slice,
                     keys: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The reference split: room of the selected devices, the allocator, added back; per-bus sum [kW]."""
        given = {k: v for k, v in (keys or {}).items() if k in self.keys}
        if isinstance(sel, slice):
            # Every device: whole arrays, no gather or scatter through an index array.
            if delta_kw < 0.0:
                room_kw = np.subtract(p_kw, env.p_min_kw)
            else:
                room_kw = np.subtract(env.p_max_kw, p_kw)
            np.maximum(room_kw, 0.0, out=room_kw)
            d_kw = self.allocator(delta_kw, room_kw, self.cost_cny_per_kwh, **given)
            p_kw += d_kw
            return np.bincount(self.bus_idx, weights=d_kw, minlength=self.n_bus)
        room_kw = (p_kw[sel] - env.p_min_kw[sel]) if delta_kw < 0.0 else (env.p_max_kw[sel] - p_kw[sel])
        d_kw = self.allocator(delta_kw, np.maximum(room_kw, 0.0), self.cost_cny_per_kwh[sel],
                              **{k: v[sel] for k, v in given.items()})
        p_kw[sel] += d_kw
        return np.bincount(self.bus_idx[sel], weights=d_kw, minlength=self.n_bus)

    def _key_order(self, name: str, delta_kw: float, sel: np.ndarray | slice,
                   keys: dict[str, np.ndarray] | None) -> np.ndarray:
        """The selected devices in ``edf``/``llf`` order (as the reference sorts them), as portfolio indices."""
        key_name = strategy_keys(self.allocator)[0]
        key = (keys or {}).get(key_name)
        if key is None:
            key = np.full(self.n, np.inf)
        if isinstance(sel, slice):
            return order_by_key(delta_kw, key)
        return sel[order_by_key(delta_kw, key[sel])]

    def _split_compiled(self, name: str, call: DRCall, p_kw: np.ndarray, env: Envelope, delta_kw: float,
                        sel: np.ndarray | slice, keys: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The split of a built-in strategy as one compiled pass (same numbers as :meth:`_split_numpy`)."""
        from vpp.dispatch import kernels_numba  # imports numba; compiled (or loaded from cache) on first call

        instructed_kw = np.zeros(self.n_bus)
        if name in ("merit_order", "edf", "llf"):
            order = self._merit_order(call, sel) if name == "merit_order" else self._key_order(name, delta_kw, sel,
                                                                                                keys)
            kernels_numba.split_merit_order(delta_kw, p_kw, env.p_min_kw, env.p_max_kw, self.bus_idx, order,
                                            instructed_kw)
        else:
            every = isinstance(sel, slice)
            idx = _NO_IDX if every else sel
            kernels_numba.split_pro_rata(delta_kw, p_kw, env.p_min_kw, env.p_max_kw, self.bus_idx, idx, every,
                                         instructed_kw)
        return instructed_kw

    def step(self, states: Sequence[FleetState], p_set_kw: np.ndarray, t_s: float, dt_s: float) -> np.ndarray:
        """Step every fleet at its slice of the setpoints (envelopes from the last :meth:`flexibility`).

        Returns the power drawn per device [kW], in the portfolio's buffer.
        """
        for s, e, (f, lo, hi) in zip(states, self._fleet_envs, self.slices()):
            self._p_kw[lo:hi] = f.step(s, p_set_kw[lo:hi], t_s, dt_s, e)
        return self._p_kw
