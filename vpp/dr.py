"""The demand-response call, modelled on an OpenADR 2.0b event.

An event (:class:`DRCall`) has an id and a modification number; an active
period ``[start_s, end_s)`` with a notification time, a ramp-up and a recovery
window; one signal with intervals; targets (the whole VPP, a set of grid
buses, operators, fleets); whether a response is required; and a programme
tier. Delivered power is measured against the plant's no-call twin (see
:mod:`vpp.sim.engine`); the rebound after the call is measured over
``recovery_s`` (default: the rest of the run).

Signals (``signal``; ``intervals`` hold ``(t0_s, t1_s, value)``, contiguous over the active period)
    * ``delta_kw``: the requested change of the targets' power [kW], a
      magnitude (>= 0) signed by ``direction``;
    * ``level``: OpenADR's simple levels 0-3, stored already converted to kW
      (level x fraction of the event's ``p_kw``, see
      :mod:`vpp.scenario.schema`), so it behaves as ``delta_kw``;
    * ``setpoint_kw``: an absolute target of the targets' power [kW]. The
      requested change depends on the plant's power, which only the engine
      knows: :meth:`DRCall.setpoint_delta_kw` converts it against a baseline;
    * ``price_cny_per_kwh``: a price [CNY/kWh] that requests no power
      (``p_kw`` = 0); kept for strategies. A power event may also carry a
      price in ``price_intervals``.

Ramp-up
    The requested change rises linearly from 0 at ``start_s`` to the interval
    value in force at ``start_s + ramp_up_s`` (the brief of issue 10). OpenADR's
    own ``x-eiRampUp`` is a window *before* the start in which a resource may
    begin to move; here the ramp lies inside the active period.

Modifications
    A later version of an event has the same ``call_id``, a higher
    ``modification`` number and replaces the earlier one from the time it is
    announced. The first version of a scenario event carries the later ones
    in ``updates`` (``(announce_s, version)`` pairs);
    :func:`versions` lists what the grid operator sends and when. The
    event-level methods (:meth:`DRCall.requested_kw`, :meth:`DRCall.delta_kw_at`,
    :meth:`DRCall.active_s`, :meth:`DRCall.energy_kwh`) follow the version in
    force at each instant; :meth:`DRCall.overlap_s`, :meth:`DRCall.weight_s`
    and :meth:`DRCall.is_active` describe one version alone. A cancelled
    version requests nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from vpp.units import S_PER_H

__all__ = ["Direction", "DRCall", "SIGNALS", "POWER_SIGNALS", "RESPONSE_REQUIRED", "versions"]

SIGNALS = ("delta_kw", "setpoint_kw", "level", "price_cny_per_kwh")
"""Signal kinds of an event, as OpenADR names them (``level`` is OpenADR's SIMPLE signal)."""

POWER_SIGNALS = ("delta_kw", "setpoint_kw", "level")
"""Signals that request power; ``price_cny_per_kwh`` does not."""

RESPONSE_REQUIRED = ("always", "never")
"""OpenADR's ``responseRequired``: ``always`` (the platform must opt in or out) or ``never``."""

_TOL_S = 1e-6  # slack when checking that intervals are contiguous and cover the active period [s]


class Direction(str, Enum):
    """Which way the call moves the plant's load."""

    REDUCE = "reduce"
    INCREASE = "increase"

    @property
    def sign(self) -> float:
        """Sign of the requested power change under the load convention (-1 reduce, +1 increase)."""
        return -1.0 if self is Direction.REDUCE else 1.0


def _ramp_integral_s(x0: float, x1: float, start_s: float, ramp_s: float) -> float:
    """``∫ min(1, (t - start_s) / ramp_s) dt`` over ``[x0, x1)`` with ``start_s <= x0 <= x1`` [s]."""
    if x1 <= x0:
        return 0.0
    if ramp_s <= 0.0:
        return x1 - x0
    knee = start_s + ramp_s
    out = 0.0
    if x0 < knee:
        a, b = x0 - start_s, min(x1, knee) - start_s
        out += (b * b - a * a) / (2.0 * ramp_s)
    if x1 > knee:
        out += x1 - max(x0, knee)
    return out


@dataclass(frozen=True)
class DRCall:
    """One version of a demand-response event (and, for the first version, its later ones in ``updates``).

    Attributes are in the units their names carry; ``bus_idx`` are positions in
    the simulator's bus table (``None``: every bus). ``operators`` and ``fleets``
    (names) narrow the targets further: a device is targeted when it sits on a
    target bus, belongs to a named operator and to a named fleet (each ``None``
    meaning any).

    ``intervals`` empty means one interval at ``p_kw`` over the whole active
    period (calls raised during a run); a scenario event always lists them.
    """

    call_id: str
    direction: Direction
    p_kw: float  # the largest requested change magnitude [kW] (> 0; 0 for a price-only event)
    start_s: float  # start of the active period [s]
    end_s: float  # end of the active period [s] (exclusive)
    notification_s: float  # when the grid operator announces the call [s]
    bus_idx: tuple[int, ...] | None = None
    modification: int = 0
    recovery_s: float | None = None  # rebound window after end_s [s]; None: the rest of the run
    origin: str = "scenario"  # who raised it: "scenario", or "grid_operator:<element>"
    intervals: tuple[tuple[float, float, float], ...] = ()  # (t0_s, t1_s, value in the signal's unit)
    ramp_up_s: float = 0.0  # the change ramps linearly from 0 at start_s to full at start_s + ramp_up_s [s]
    signal: str = "delta_kw"  # one of SIGNALS
    operators: tuple[str, ...] | None = None  # target operators by name; None: any
    fleets: tuple[str, ...] | None = None  # target fleets by name; None: any
    response_required: str = "always"  # one of RESPONSE_REQUIRED
    tier: str | None = None  # programme tier name (vpp.programme.tiers.TIERS)
    cancelled: bool = False
    from_setpoint: bool = False  # a tick's delta_kw version of a setpoint_kw event (as_delta): against the default
    price_intervals: tuple[tuple[float, float, float], ...] = ()  # (t0_s, t1_s, price [CNY/kWh])
    updates: tuple[tuple[float, "DRCall"], ...] = ()  # later versions: (announce_s, version), in order
    _versions: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        who = f"DR call {self.call_id!r}"
        if self.signal not in SIGNALS:
            raise ValueError(f"{who}: unknown signal {self.signal!r}; valid: {', '.join(SIGNALS)}")
        if self.response_required not in RESPONSE_REQUIRED:
            raise ValueError(f"{who}: response_required must be one of {RESPONSE_REQUIRED}")
        if self.signal == "price_cny_per_kwh":
            if self.p_kw != 0.0:
                raise ValueError(f"{who}: a price-only event requests no power; p_kw must be 0, got {self.p_kw}")
        elif not self.p_kw > 0.0:
            raise ValueError(f"{who}: p_kw must be > 0, got {self.p_kw}")
        if not self.end_s > self.start_s:
            raise ValueError(f"{who}: end_s ({self.end_s}) must be after start_s ({self.start_s})")
        if self.notification_s > self.start_s:
            raise ValueError(f"{who}: notification_s must not be after start_s")
        if not (math.isfinite(self.ramp_up_s) and self.ramp_up_s >= 0.0):
            raise ValueError(f"{who}: ramp_up_s must be a finite number >= 0, got {self.ramp_up_s}")
        for name in ("intervals", "price_intervals"):
            self._check_intervals(name, getattr(self, name))
        if self.signal in ("delta_kw", "level"):
            if any(v < 0.0 for _, _, v in self.intervals):
                raise ValueError(f"{who}: {self.signal} interval values are magnitudes >= 0 [kW]")
            if any(v > self.p_kw * (1.0 + 1e-12) for _, _, v in self.intervals):
                raise ValueError(f"{who}: p_kw ({self.p_kw}) must be at least the largest interval value")
        if self.signal == "price_cny_per_kwh" and self.intervals and self.price_intervals:
            raise ValueError(f"{who}: a price-only event keeps its prices in intervals, not price_intervals")
        last_t, last_mod = self.notification_s, self.modification
        for t_s, v in self.updates:
            if v.call_id != self.call_id or v.updates:
                raise ValueError(f"{who}: an update must be a plain version of the same call")
            if v.modification <= last_mod:
                raise ValueError(f"{who}: modification numbers must increase ({v.modification} after {last_mod})")
            if t_s < last_t:
                raise ValueError(f"{who}: versions must be announced in order ({t_s} after {last_t})")
            if v.start_s != self.start_s or v.direction is not self.direction or v.bus_idx != self.bus_idx:
                raise ValueError(f"{who}: a modification may not change start_s, direction or targets")
            last_t, last_mod = t_s, v.modification
        first = replace(self, updates=()) if self.updates else self
        object.__setattr__(self, "_versions", ((self.notification_s, first),) + tuple(self.updates))

    def _check_intervals(self, name: str, intervals) -> None:
        if not intervals:
            return
        t = self.start_s
        for t0, t1, v in intervals:
            if abs(t0 - t) > _TOL_S or not t1 > t0 or not math.isfinite(v):
                raise ValueError(f"DR call {self.call_id!r}: {name} must be contiguous, finite and cover "
                                 f"[start_s, end_s) = [{self.start_s}, {self.end_s})")
            t = t1
        if abs(t - self.end_s) > _TOL_S:
            raise ValueError(f"DR call {self.call_id!r}: {name} end at {t}, not at end_s ({self.end_s})")

    # --- one version ---------------------------------------------------------------------------------

    def is_active(self, t_s: float) -> bool:
        """Whether the instant ``t_s`` [s] lies in this version's active period ``[start_s, end_s)``."""
        return self.start_s <= t_s < self.end_s

    def overlap_s(self, t0_s: float, t1_s: float) -> float:
        """Length of this version's active period inside ``[t0_s, t1_s)`` [s]."""
        return max(0.0, min(self.end_s, t1_s) - max(self.start_s, t0_s))

    @property
    def delta_kw(self) -> float:
        """The largest requested change of the plant's power [kW], signed by the load convention."""
        return self.direction.sign * self.p_kw

    @property
    def schedule(self) -> tuple[tuple[float, float, float], ...]:
        """This version's intervals, with the implicit one (``p_kw`` over the active period) when none are listed."""
        return self.intervals or ((self.start_s, self.end_s, self.p_kw),)

    def weight_s(self, t0_s: float, t1_s: float) -> float:
        """This version alone: ``∫ |requested change| / p_kw dt`` over ``[t0_s, t1_s)`` [s], ramp included.

        Full-power-equivalent seconds: the change requested over the window is
        ``delta_kw * weight_s``; for a flat call it equals :meth:`overlap_s`.
        0 for a cancelled version and for a price-only event.
        """
        if self.cancelled or self.p_kw == 0.0:
            return 0.0
        if self.signal == "setpoint_kw":
            raise ValueError(f"DR call {self.call_id!r}: a setpoint_kw call requests a change only against the "
                             "plant's power; use setpoint_delta_kw(t_s, p_baseline_kw)")
        lo, hi = max(t0_s, self.start_s), min(t1_s, self.end_s)
        if hi <= lo:
            return 0.0
        total = 0.0
        for a, b, v in self.schedule:
            x0, x1 = max(lo, a), min(hi, b)
            if x1 > x0 and v != 0.0:
                total += (v / self.p_kw) * _ramp_integral_s(x0, x1, self.start_s, self.ramp_up_s)
        return total

    def _value_at(self, intervals, t_s: float) -> float | None:
        for a, b, v in intervals:
            if a <= t_s < b:
                return v
        return None

    def _ramp(self, t_s: float) -> float:
        return 1.0 if self.ramp_up_s <= 0.0 else min(1.0, (t_s - self.start_s) / self.ramp_up_s)

    def own_delta_kw_at(self, t_s: float) -> float:
        """This version alone: the requested change at ``t_s`` [kW, signed], ramp included; 0 outside."""
        if self.cancelled or self.p_kw == 0.0 or not self.is_active(t_s):
            return 0.0
        if self.signal == "setpoint_kw":
            self.weight_s(t_s, t_s)  # raises: needs a baseline
        v = self._value_at(self.schedule, t_s) or 0.0
        return self.direction.sign * v * self._ramp(t_s)

    def setpoint_kw_at(self, t_s: float) -> float | None:
        """The setpoint in force at ``t_s`` [kW] (a ``setpoint_kw`` version alone), or None outside its intervals."""
        if self.signal != "setpoint_kw" or self.cancelled or not self.is_active(t_s):
            return None
        return self._value_at(self.schedule, t_s)

    def setpoint_delta_kw(self, t_s: float, p_baseline_kw: float) -> float:
        """The change [kW, signed] that moves the targets from ``p_baseline_kw`` to the setpoint in force at ``t_s``.

        Only in the call's direction (0 when the baseline is already on the
        setpoint's side), ramped in like any other signal. The engine chooses
        the baseline (what the platform expects its targets to draw).
        """
        sp = self.setpoint_kw_at(t_s)
        if sp is None:
            return 0.0
        need_kw = max(0.0, self.direction.sign * (sp - p_baseline_kw))
        return self.direction.sign * need_kw * self._ramp(t_s)

    def price_at(self, t_s: float) -> float | None:
        """The price signal in force at ``t_s`` [CNY/kWh], or None."""
        if self.cancelled or not self.is_active(t_s):
            return None
        intervals = self.intervals if self.signal == "price_cny_per_kwh" else self.price_intervals
        return self._value_at(intervals, t_s)

    # --- the event: versions in force over time -------------------------------------------------------

    @property
    def versions(self) -> tuple[tuple[float, "DRCall"], ...]:
        """``(announce_s, version)`` of every version, first one at ``notification_s``; versions carry no updates."""
        return self._versions

    @property
    def latest(self) -> "DRCall":
        """The last version."""
        return self._versions[-1][1]

    def version_at(self, t_s: float) -> "DRCall":
        """The version in force at ``t_s``: the last one announced at or before it (the first one before that)."""
        out = self._versions[0][1]
        for announce_s, v in self._versions[1:]:
            if announce_s <= t_s:
                out = v
            else:
                break
        return out

    def _pieces(self, t0_s: float, t1_s: float):
        """``(a, b, version)``: the sub-windows of ``[t0_s, t1_s)`` in which each version is in force."""
        vs = self._versions
        for k, (_, v) in enumerate(vs):
            a = t0_s if k == 0 else max(t0_s, vs[k][0])
            b = t1_s if k + 1 == len(vs) else min(t1_s, vs[k + 1][0])
            if b > a:
                yield a, b, v

    @property
    def has_setpoint(self) -> bool:
        """Whether any version is a ``setpoint_kw`` event (its request needs a baseline)."""
        return self.signal == "setpoint_kw" or any(v.signal == "setpoint_kw" for _, v in self.updates)

    def requested_kw(self, t0_s: float, t1_s: float, p_baseline_kw: float | None = None) -> float:
        """Time average over ``[t0_s, t1_s)`` of the requested change magnitude [kW]: ramp, intervals, versions.

        0 outside the active period and for a price-only event. A
        ``setpoint_kw`` version asks for the change from ``p_baseline_kw``
        (the targets' power without the call, which the caller knows) to its
        setpoint, at the middle of each sub-window it is in force (the ramp
        averaged there): without a baseline it raises ``ValueError``.
        """
        dt_s = t1_s - t0_s
        if not self.has_setpoint:
            if not dt_s > 0.0:
                return abs(self.delta_kw_at(t0_s))
            if not self.updates:
                return self.p_kw * (self.weight_s(t0_s, t1_s) / dt_s)
            return sum(v.p_kw * (v.weight_s(a, b) / dt_s) for a, b, v in self._pieces(t0_s, t1_s))
        if p_baseline_kw is None:
            raise ValueError(f"DR call {self.call_id!r}: a setpoint_kw call requests a change only against a "
                             "baseline (p_baseline_kw)")
        if not dt_s > 0.0:
            return abs(self.version_at(t0_s).setpoint_delta_kw(t0_s, p_baseline_kw))
        total = 0.0
        for a, b, v in self._pieces(t0_s, t1_s):
            if v.signal != "setpoint_kw":
                total += v.p_kw * v.weight_s(a, b)
                continue
            lo, hi = max(a, v.start_s), min(b, v.end_s)
            if hi > lo and not v.cancelled:
                total += abs(v.setpoint_delta_kw(0.5 * (lo + hi), p_baseline_kw)) * (hi - lo)
        return total / dt_s

    def as_delta(self, t_s: float, dt_s: float, p_baseline_kw: float) -> "DRCall":
        """A ``delta_kw`` version of this ``setpoint_kw`` call for the tick ``[t_s, t_s + dt_s)``.

        Its request is the change that moves the targets from ``p_baseline_kw``
        to the setpoint (:meth:`requested_kw`), held flat until the next
        conversion replaces it; nothing when the baseline is already on the
        setpoint's side. Other calls are returned as they are.
        """
        if not self.has_setpoint:
            return self
        v = self.version_at(t_s)
        d_kw = self.requested_kw(t_s, t_s + dt_s, p_baseline_kw)
        return replace(v, signal="delta_kw", intervals=((v.start_s, v.end_s, d_kw),), p_kw=max(d_kw, 1e-9),
                       ramp_up_s=0.0, updates=(), from_setpoint=True)

    def delta_kw_at(self, t_s: float) -> float:
        """The requested change at the instant ``t_s`` [kW, signed], of the version in force then."""
        return self.version_at(t_s).own_delta_kw_at(t_s)

    def active_s(self, t0_s: float, t1_s: float) -> float:
        """Time in ``[t0_s, t1_s)`` in the active period of the version in force (not cancelled) [s]."""
        if not self.updates:
            return 0.0 if self.cancelled else self.overlap_s(t0_s, t1_s)
        return sum(0.0 if v.cancelled else v.overlap_s(a, b) for a, b, v in self._pieces(t0_s, t1_s))

    @property
    def effective_end_s(self) -> float:
        """Where the event's activity ends, versions and cancellation applied (``start_s`` if never active)."""
        end_s = self.start_s
        for a, b, v in self._pieces(-math.inf, math.inf):
            if not v.cancelled and min(b, v.end_s) > max(a, v.start_s):
                end_s = max(end_s, min(b, v.end_s))
        return end_s

    def energy_kwh(self) -> float:
        """Requested energy of the whole event [kWh], versions, ramp and intervals applied."""
        t1 = max(v.end_s for _, v in self._versions)
        return self.requested_kw(self.start_s, t1) * (t1 - self.start_s) / S_PER_H

    def bus_mask(self, n_bus: int) -> np.ndarray:
        """Boolean mask over bus positions targeted by the call."""
        if self.bus_idx is None:
            return np.ones(n_bus, dtype=bool)
        mask = np.zeros(n_bus, dtype=bool)
        mask[list(self.bus_idx)] = True
        return mask


def versions(call: DRCall) -> tuple[tuple[float, DRCall], ...]:
    """What the grid operator sends for ``call``: ``(announce_s, version)``, first version at its notification."""
    return call.versions
