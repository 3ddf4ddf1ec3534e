"""An operator's portfolio: several fleets dispatched as one set of device arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vpp.dispatch.aggregate import BusFlexibility, aggregate_by_bus
from vpp.dispatch.allocation import Allocator
from vpp.dr import DRCall
from vpp.fleets.base import Envelope, Fleet, FleetState

__all__ = ["Portfolio"]


class Portfolio:
    """The fleets one operator owns, with their devices laid end to end.

    ``bus_idx`` and ``cost_cny_per_kwh`` are the concatenation of the fleets'
    arrays; a call's targeted devices are found once per call and cached. The
    portfolio owns buffers for the concatenated envelope and setpoints; the
    fleets' states are passed in (the portfolio holds none).
    """

    def __init__(self, fleets: Sequence[Fleet], n_bus: int, allocator: Allocator):
        self.fleets = list(fleets)
        self.n_bus = n_bus
        self.allocator = allocator
        self.bus_idx = np.concatenate([f.bus_idx for f in self.fleets]) if self.fleets else np.zeros(0, np.int64)
        self.cost_cny_per_kwh = (
            np.concatenate([f.cost_cny_per_kwh for f in self.fleets]) if self.fleets else np.zeros(0)
        )
        self._bounds = np.cumsum([0] + [f.n for f in self.fleets])
        self._targets: dict[tuple[str, int], np.ndarray] = {}
        n = self.n
        self._env = Envelope(np.zeros(n), np.zeros(n), np.zeros(n))
        self._p_set_kw = np.zeros(n)
        self._p_kw = np.zeros(n)
        self._fleet_envs: list[Envelope] = []

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
        """Envelope of every device for the tick, in the portfolio's own buffers (never changes ``states``)."""
        self._fleet_envs = [f.flexibility(s, t_s, dt_s) for f, s in zip(self.fleets, states)]
        env = self._env
        for e, (_, lo, hi) in zip(self._fleet_envs, self.slices()):
            env.p_min_kw[lo:hi] = e.p_min_kw
            env.p_max_kw[lo:hi] = e.p_max_kw
            env.p_default_kw[lo:hi] = e.p_default_kw
        return env

    def by_bus(self, env: Envelope) -> BusFlexibility:
        """The envelope summed per bus [kW]."""
        return aggregate_by_bus(self.bus_idx, env, self.n_bus)

    def targets(self, call: DRCall) -> np.ndarray:
        """Indices of the devices a call targets."""
        key = (call.call_id, call.modification)
        idx = self._targets.get(key)
        if idx is None:
            idx = np.flatnonzero(call.bus_mask(self.n_bus)[self.bus_idx])
            self._targets[key] = idx
        return idx

    def setpoints(
        self, env: Envelope, requests: Sequence[tuple[DRCall, float]]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Per-device setpoints [kW] and, per call, the instructed change per bus [kW, signed].

        Each ``(call, delta_kw)`` moves the default power in turn: it is split
        over the call's targeted devices by the allocation strategy, within the
        room left after earlier requests.
        """
        p_kw = self._p_set_kw
        np.copyto(p_kw, env.p_default_kw)
        instructed: dict[str, np.ndarray] = {}
        for call, delta_kw in requests:
            if delta_kw == 0.0:
                continue
            idx = self.targets(call)
            room_kw = (p_kw[idx] - env.p_min_kw[idx]) if delta_kw < 0.0 else (env.p_max_kw[idx] - p_kw[idx])
            d_kw = self.allocator(delta_kw, np.maximum(room_kw, 0.0), self.cost_cny_per_kwh[idx])
            p_kw[idx] += d_kw
            instructed[call.call_id] = np.bincount(self.bus_idx[idx], weights=d_kw, minlength=self.n_bus)
        return p_kw, instructed

    def step(self, states: Sequence[FleetState], p_set_kw: np.ndarray, t_s: float, dt_s: float) -> np.ndarray:
        """Step every fleet at its slice of the setpoints (envelopes from the last :meth:`flexibility`).

        Returns the power drawn per device [kW], in the portfolio's buffer.
        """
        for s, e, (f, lo, hi) in zip(states, self._fleet_envs, self.slices()):
            self._p_kw[lo:hi] = f.step(s, p_set_kw[lo:hi], t_s, dt_s, e)
        return self._p_kw
