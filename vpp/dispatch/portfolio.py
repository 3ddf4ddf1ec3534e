"""An operator's portfolio: several fleets dispatched as one set of device arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vpp.dispatch.aggregate import BusFlexibility, aggregate_by_bus, concat_envelopes
from vpp.dispatch.allocation import Allocator
from vpp.dr import DRCall
from vpp.fleets.base import Envelope, Fleet

__all__ = ["Portfolio"]


class Portfolio:
    """The fleets one operator owns, with their devices laid end to end.

    ``bus_idx`` and ``cost_cny_per_kwh`` are the concatenation of the fleets'
    arrays; a call's targeted devices are found once per call and cached.
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

    @property
    def n(self) -> int:
        """Number of devices over all fleets."""
        return int(self.bus_idx.shape[0])

    def flexibility(self, t_s: float, dt_s: float) -> Envelope:
        """Envelope of every device for the tick ``[t_s, t_s + dt_s)``."""
        return concat_envelopes([f.flexibility(t_s, dt_s) for f in self.fleets])

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

    def setpoints(self, env: Envelope, requests: Sequence[tuple[DRCall, float]]) -> np.ndarray:
        """Per-device setpoints [kW]: default power moved by each ``(call, delta_kw)`` in turn.

        Each request is split over the call's targeted devices by the
        allocation strategy, within the room left after earlier requests.
        """
        p_kw = env.p_default_kw.copy()
        for call, delta_kw in requests:
            if delta_kw == 0.0:
                continue
            idx = self.targets(call)
            room_kw = (p_kw[idx] - env.p_min_kw[idx]) if delta_kw < 0.0 else (env.p_max_kw[idx] - p_kw[idx])
            p_kw[idx] += self.allocator(delta_kw, np.maximum(room_kw, 0.0), self.cost_cny_per_kwh[idx])
        return p_kw

    def step(self, p_set_kw: np.ndarray, t_s: float, dt_s: float) -> np.ndarray:
        """Step every fleet at its slice of the setpoints; return the power drawn per device [kW]."""
        parts = [
            f.step(p_set_kw[lo:hi], t_s, dt_s) for f, lo, hi in zip(self.fleets, self._bounds[:-1], self._bounds[1:])
        ]
        return np.concatenate(parts) if parts else np.zeros(0)

    def delivered_kw(self, call: DRCall, env: Envelope, p_kw: np.ndarray) -> float:
        """Power delivered for a call [kW]: change against default over its targets, in the call's direction."""
        idx = self.targets(call)
        return call.direction.sign * float((p_kw[idx] - env.p_default_kw[idx]).sum())
