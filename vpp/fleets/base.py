"""What every fleet offers.

A fleet is a struct of equal-length 1-D arrays, one entry per device, plus the
bus index, operator and dispatch cost of each device. Each control tick the
simulator asks a fleet for its :class:`Envelope` over ``[t_s, t_s + dt_s)``
and then steps it under per-device setpoints::

    env = fleet.flexibility(t_s, dt_s)        # bounds and default power [kW]
    p_kw = fleet.step(p_set_kw, t_s, dt_s)    # clipped into the envelope, integrated

Whatever setpoint arrives, a fleet never leaves its envelope: this is where
power limits, SoC bounds, comfort bands and backup reserves are enforced, so a
dispatch bug can cost delivery but never physics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from vpp.units import S_PER_H

__all__ = ["Envelope", "Fleet"]


@dataclass(frozen=True, slots=True)
class Envelope:
    """Per-device power bounds for one tick and the power each device draws with no call.

    ``p_min_kw <= p_default_kw <= p_max_kw`` element-wise [kW], load convention.
    """

    p_min_kw: np.ndarray
    p_max_kw: np.ndarray
    p_default_kw: np.ndarray

    @property
    def down_kw(self) -> np.ndarray:
        """Room to reduce load below the default [kW] (>= 0)."""
        return self.p_default_kw - self.p_min_kw

    @property
    def up_kw(self) -> np.ndarray:
        """Room to increase load above the default [kW] (>= 0)."""
        return self.p_max_kw - self.p_default_kw

    def clip(self, p_set_kw: np.ndarray) -> np.ndarray:
        """Setpoints [kW] clipped into the envelope."""
        return np.clip(p_set_kw, self.p_min_kw, self.p_max_kw)


class Fleet(ABC):
    """Base of every vectorised device fleet.

    Subclasses implement :meth:`_advance` (bulk events up to ``t_s``: arrivals,
    departures, profile updates), :meth:`_envelope` and :meth:`_integrate`.
    """

    kind: ClassVar[str]
    """Device kind, e.g. ``"ev"``; used for per-kind totals in results."""

    def __init__(self, name: str, bus_idx: np.ndarray, operator: str, cost_cny_per_kwh: np.ndarray):
        bus_idx = np.asarray(bus_idx, dtype=np.int64)
        if bus_idx.ndim != 1:
            raise ValueError("bus_idx must be 1-D")
        self.name = name
        self.bus_idx = bus_idx
        self.operator = operator
        self.cost_cny_per_kwh = np.broadcast_to(
            np.asarray(cost_cny_per_kwh, dtype=float), bus_idx.shape
        ).copy()
        self.p_kw = np.zeros(bus_idx.shape)
        self._env: Envelope | None = None
        self._env_key: tuple[float, float] | None = None

    @property
    def n(self) -> int:
        """Number of devices."""
        return int(self.bus_idx.shape[0])

    def _per_device(self, x) -> np.ndarray:
        """A scalar or per-device parameter as a fresh float array of length ``n``."""
        return np.broadcast_to(np.asarray(x, dtype=float), (self.n,)).copy()

    def flexibility(self, t_s: float, dt_s: float) -> Envelope:
        """Envelope of every device for the tick ``[t_s, t_s + dt_s)``.

        Processes the fleet's bulk events up to ``t_s`` first; idempotent for a
        given ``(t_s, dt_s)``.
        """
        key = (float(t_s), float(dt_s))
        if self._env_key != key:
            self._advance(t_s, dt_s)
            env = self._envelope(t_s, dt_s)
            # Guard against float noise so that p_min <= p_default <= p_max holds exactly.
            p_max = np.maximum(env.p_max_kw, env.p_min_kw)
            p_default = np.clip(env.p_default_kw, env.p_min_kw, p_max)
            self._env = Envelope(env.p_min_kw, p_max, p_default)
            self._env_key = key
        return self._env

    def step(self, p_set_kw: np.ndarray, t_s: float, dt_s: float) -> np.ndarray:
        """Run the tick ``[t_s, t_s + dt_s)`` at setpoints ``p_set_kw`` [kW]; return the power drawn [kW].

        Setpoints outside the envelope are clipped into it.
        """
        env = self.flexibility(t_s, dt_s)
        p_set_kw = np.asarray(p_set_kw, dtype=float)
        if p_set_kw.shape != (self.n,):
            raise ValueError(f"fleet {self.name!r}: p_set_kw has shape {p_set_kw.shape}, expected ({self.n},)")
        if np.isnan(p_set_kw).any():
            raise ValueError(f"fleet {self.name!r}: p_set_kw contains NaN")
        p_kw = env.clip(p_set_kw)
        self._integrate(p_kw, t_s, dt_s / S_PER_H)
        self.p_kw = p_kw
        self._env_key = None  # the state moved on: the next call recomputes
        return p_kw

    def step_default(self, t_s: float, dt_s: float) -> np.ndarray:
        """Run the tick with every device at its default power [kW]."""
        return self.step(self.flexibility(t_s, dt_s).p_default_kw, t_s, dt_s)

    @abstractmethod
    def _advance(self, t_s: float, dt_s: float) -> None:
        """Apply bulk events (arrivals, departures, profile values) up to ``t_s``."""

    @abstractmethod
    def _envelope(self, t_s: float, dt_s: float) -> Envelope:
        """Bounds and default power for the tick ``[t_s, t_s + dt_s)``."""

    @abstractmethod
    def _integrate(self, p_kw: np.ndarray, t_s: float, dt_h: float) -> None:
        """Advance the state over one tick at powers ``p_kw`` already inside the envelope."""

    @abstractmethod
    def tick_metrics(self) -> dict[str, float]:
        """Scalar fleet statistics after the last step (recorded every tick)."""

    @abstractmethod
    def summary(self) -> dict[str, float]:
        """Fleet KPIs over the run so far."""
