"""EV charging fleets: AC piles, DC fast chargers, superchargers, e-bike cabinets, V2G.

A device is a charger; the vehicles it serves over the run are drawn up front
as a session table of shape ``(n_chargers, n_sessions_max)`` (arrival,
departure, battery capacity, energy at arrival, energy needed, the vehicle's
peak acceptance). During the run each charger holds at most one session at a
time; a pointer per charger walks its sessions. Everything is array work: no
object per vehicle.

Charging power is the lower of the pile's rating and the vehicle's acceptance,
which tapers with state of charge (CC-CV: flat to ~55 % SoC, about a third of
peak by 80 %, far lower near full; :func:`vpp.fleets.kernels.taper_energy_kwh`
integrates it in closed form). An e-bike cabinet's session is the batch of
rider batteries charging in its compartments at once.

Sessions may instead be replayed from a file (``sessions_file``: ACN-Data or a
plain CSV, read by :mod:`vpp.scenario.series`): :func:`replay_sessions` turns
the records into the same table, drawing only what the file lacks (battery
capacity, arrival state of charge, acceptance) from the charger's parameter set.

Timing within a tick: a session is plugged in at the first tick whose end lies
after its arrival and leaves at the first tick start at or after its
departure; its energy in each tick is limited to what it can take in the
fraction of the tick it is actually present, so energy is exact for any tick
length. One session per charger per tick: a vehicle arriving in the same tick
as its predecessor left waits for the next tick (an artefact that shrinks with
``dt_s``).

Flexibility comes from laxity: a session may be slowed down as long as its
remaining energy can still be delivered at full (tapered) power before
departure; a V2G charger may discharge down to ``soc_v2g_min`` what the
session can still win back. Default (no-call) behaviour is uncontrolled
charging at full power. Energy still missing at departure is recorded as
unmet, never hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from vpp.fleets.base import Envelope, Fleet, FleetState, FlexGroups, KindSpec, Workspace, frozen
from vpp.fleets.config import (
    MAX_DEVICE_KW,
    MAX_DEVICE_KWH,
    MAX_HOURS,
    PathText,
    Efficiency,
    FleetConfigBase,
    Fraction,
    check_timezone,
    one_of,
    real,
    resolve_path,
)
from vpp.fleets.kernels import NUMBA_AVAILABLE, taper_energy_kwh, taper_start_kwh
from vpp.fleets.parameters import CHARGER_PARAMETERS, ChargerParameters
from vpp.profiles import get_profile
from vpp.units import H_PER_DAY, S_PER_H

__all__ = [
    "SessionTable",
    "SessionRecords",
    "draw_sessions",
    "replay_sessions",
    "EVFleet",
    "EVState",
    "EVFleetConfig",
    "build_ev_fleet",
    "SPEC",
]

_E_TOL_KWH = 1e-6  # a session counts as unmet above this remaining energy [kWh]


_SESSION_FIELDS = ("arrival_s", "departure_s", "cap_kwh", "e_arrival_kwh", "e_need_kwh", "p_accept_kw")


@dataclass(frozen=True)
class DenseSessions:
    """A session table laid out as ``(n_chargers, k_max)`` arrays (unused slots: ``arrival_s = inf``).

    For tests and per-device reference code only: the fleet keeps its sessions
    sparse (:class:`SessionTable`).
    """

    arrival_s: np.ndarray
    departure_s: np.ndarray
    cap_kwh: np.ndarray
    e_arrival_kwh: np.ndarray
    e_need_kwh: np.ndarray
    p_accept_kw: np.ndarray


@dataclass(frozen=True)
class SessionTable:
    """Charging sessions, stored sparsely: one entry per real session, grouped by charger.

    Charger ``i``'s sessions are entries ``ptr[i]:ptr[i + 1]`` of the 1-D
    arrays, in order of arrival (compressed sparse rows). A dense
    ``(n_chargers, k_max)`` table would hold the busiest charger's count for
    every charger: at city scale 11 % of its slots were used (issue 9). All
    arrays are read-only.
    """

    arrival_s: np.ndarray  # plug-in time [s since scenario start], (m,)
    departure_s: np.ndarray  # plug-out time [s], (m,)
    cap_kwh: np.ndarray  # vehicle battery capacity [kWh], (m,)
    e_arrival_kwh: np.ndarray  # stored energy at plug-in [kWh], (m,)
    e_need_kwh: np.ndarray  # energy the driver asks for, battery side [kWh], (m,)
    p_accept_kw: np.ndarray  # the vehicle's peak charging acceptance, grid side [kW], (m,)
    ptr: np.ndarray  # row offsets [-], (n_chargers + 1,), ptr[0] = 0, non-decreasing

    def __post_init__(self) -> None:
        ptr = np.array(self.ptr, dtype=np.int64)
        if ptr.ndim != 1 or ptr.shape[0] < 1 or ptr[0] != 0 or np.any(np.diff(ptr) < 0):
            raise ValueError("SessionTable.ptr must be 1-D, start at 0 and never decrease")
        ptr.flags.writeable = False
        object.__setattr__(self, "ptr", ptr)
        m = int(ptr[-1])
        for name in _SESSION_FIELDS:
            a = np.array(getattr(self, name), dtype=float)
            if a.shape != (m,):
                raise ValueError(f"SessionTable.{name} has shape {a.shape}, expected ({m},) from ptr")
            a.flags.writeable = False
            object.__setattr__(self, name, a)

    @classmethod
    def from_dense(cls, arrival_s, departure_s, cap_kwh, e_arrival_kwh, e_need_kwh, p_accept_kw) -> SessionTable:
        """The sparse table of ``(n_chargers, k)`` arrays whose unused slots have ``arrival_s = inf``.

        Each row must be sorted by arrival, with its unused slots last.
        """
        arrival_s = np.asarray(arrival_s, dtype=float)
        if arrival_s.ndim != 2:
            raise ValueError(f"dense session arrays must be 2-D, got shape {arrival_s.shape}")
        used = np.isfinite(arrival_s)
        ptr = np.concatenate([[0], np.cumsum(used.sum(axis=1))])
        cols = [np.asarray(a, dtype=float)[used] for a in (arrival_s, departure_s, cap_kwh, e_arrival_kwh,
                                                           e_need_kwh, p_accept_kw)]
        return cls(*cols, ptr=ptr)

    @property
    def n_chargers(self) -> int:
        """Number of chargers (rows)."""
        return int(self.ptr.shape[0] - 1)

    @property
    def n_sessions(self) -> int:
        """Number of sessions in the table."""
        return int(self.ptr[-1])

    @property
    def counts(self) -> np.ndarray:
        """Sessions per charger [-]."""
        return np.diff(self.ptr)

    @property
    def charger(self) -> np.ndarray:
        """The charger each session belongs to [-], (m,)."""
        return np.repeat(np.arange(self.n_chargers), self.counts)

    @property
    def nbytes(self) -> int:
        """Memory the table holds [B]."""
        return sum(getattr(self, name).nbytes for name in _SESSION_FIELDS) + self.ptr.nbytes

    def dense(self) -> DenseSessions:
        """The same sessions as ``(n_chargers, k_max)`` arrays (for tests and reference code)."""
        n, counts = self.n_chargers, self.counts
        k_max = int(counts.max(initial=0))
        slot = np.arange(self.n_sessions) - np.repeat(self.ptr[:-1], counts)
        rows = self.charger
        out = {}
        for name in _SESSION_FIELDS:
            fill = np.inf if name in ("arrival_s", "departure_s") else 0.0
            a = np.full((n, k_max), fill)
            a[rows, slot] = getattr(self, name)
            out[name] = a
        return DenseSessions(**out)


def _mixture(rng: np.random.Generator, mix, shape) -> np.ndarray:
    """Draws from a mixture of uniform ranges ``((share, lo, hi), ...)``."""
    mix = np.asarray(mix, dtype=float).reshape(-1, 3)
    comp = rng.choice(mix.shape[0], size=shape, p=mix[:, 0] / mix[:, 0].sum())
    lo, hi = mix[comp, 1], mix[comp, 2]
    return lo + (hi - lo) * rng.random(size=shape)


def _charged_before_start(table: SessionTable, p_rated_kw: np.ndarray, params: ChargerParameters) -> SessionTable:
    """``table``, with vehicles plugged in before ``t = 0`` already charged uncontrolled since arrival.

    They have drawn the tapered full power from their arrival to ``t = 0``, at
    most what they asked for; that energy moves from ``e_need_kwh`` into
    ``e_arrival_kwh``. Only those sessions go through the taper integral.
    """
    ongoing = np.flatnonzero((table.arrival_s < 0.0) & (table.departure_s > 0.0))
    e_arrival_kwh, e_need_kwh = table.e_arrival_kwh.copy(), table.e_need_kwh.copy()
    if ongoing.size:
        p_rated_s = np.asarray(p_rated_kw, dtype=float)[table.charger[ongoing]]
        e_pre_kwh = np.minimum(
            e_need_kwh[ongoing],
            taper_energy_kwh(e_arrival_kwh[ongoing], table.cap_kwh[ongoing], p_rated_s, table.p_accept_kw[ongoing],
                             params.eta, -table.arrival_s[ongoing] / S_PER_H, params.taper_soc, params.taper_frac),
        )
        e_arrival_kwh[ongoing] += e_pre_kwh
        e_need_kwh[ongoing] -= e_pre_kwh
    return SessionTable(table.arrival_s, table.departure_s, table.cap_kwh, e_arrival_kwh, e_need_kwh,
                        table.p_accept_kw, ptr=table.ptr)


def draw_sessions(
    rng: np.random.Generator,
    params: ChargerParameters,
    p_rated_kw: np.ndarray,
    t_end_s: float,
    clock_start_h: float,
) -> SessionTable:
    """Draw every session of a charger fleet for the run ``[0, t_end_s)`` as arrays.

    Sessions per charger per day are Poisson(``sessions_per_day``); arrival
    hours follow the named arrival profile; dwell time and energy need are
    lognormal with the given means; the vehicle's peak acceptance comes from
    the parameter set's mixture; sessions on one charger never overlap and
    keep ``gap_min_h`` between them. Days start one day before the run so that
    vehicles already plugged in at ``t = 0`` exist; they arrive with the energy
    they would have received by then under uncontrolled charging.
    """
    p_rated_kw = np.asarray(p_rated_kw, dtype=float)
    n = p_rated_kw.shape[0]
    t_end_h = t_end_s / S_PER_H
    days = np.arange(-1, int(np.ceil((clock_start_h + t_end_h) / H_PER_DAY)) + 1)
    n_days = days.shape[0]
    lam = params.sessions_per_day
    k_day = int(np.ceil(lam + 4.0 * np.sqrt(lam) + 2.0))

    counts = np.minimum(rng.poisson(lam, size=(n, n_days)), k_day)
    weights = np.asarray(get_profile(params.arrival_profile).hourly, dtype=float)
    hour = rng.choice(24, size=(n, n_days, k_day), p=weights / weights.sum())
    hod_h = hour + rng.random(size=(n, n_days, k_day))
    valid = np.arange(k_day)[None, None, :] < counts[:, :, None]
    arrival_h = np.where(valid, days[None, :, None] * H_PER_DAY + hod_h - clock_start_h, np.inf)
    arrival_h = np.sort(arrival_h.reshape(n, n_days * k_day), axis=1)
    k_max = int(valid.sum(axis=(1, 2)).max(initial=0))
    arrival_h = arrival_h[:, :k_max]
    shape = arrival_h.shape

    def lognormal(mean: float, sigma: float) -> np.ndarray:
        return rng.lognormal(np.log(mean) - 0.5 * sigma**2, sigma, size=shape)

    dwell_h = lognormal(params.dwell_mean_h, params.dwell_sigma)
    e_need_kwh = lognormal(params.e_need_mean_kwh, params.e_need_sigma)
    cap_kwh = rng.uniform(*params.cap_kwh, size=shape)
    soc_arrival = rng.uniform(*params.soc_arrival, size=shape)
    p_accept_kw = _mixture(rng, params.p_accept_kw, shape)

    # Sessions on one charger queue behind each other: a loop over session
    # slots (a few dozen at most), each step vectorised over all chargers.
    departure_h = arrival_h + dwell_h
    for j in range(1, k_max):
        arrival_h[:, j] = np.maximum(arrival_h[:, j], departure_h[:, j - 1] + params.gap_min_h)
        departure_h[:, j] = arrival_h[:, j] + dwell_h[:, j]

    arrival_s = arrival_h * S_PER_H
    departure_s = departure_h * S_PER_H
    # Sessions that start after the run or end before it are never plugged in: not stored.
    beyond = (arrival_s >= t_end_s) | (departure_s <= 0.0)
    arrival_s[beyond] = np.inf
    departure_s[beyond] = np.inf

    e_arrival_kwh = soc_arrival * cap_kwh
    e_need_kwh = np.clip(e_need_kwh, 0.0, np.maximum(params.soc_max * cap_kwh - e_arrival_kwh, 0.0))
    table = SessionTable.from_dense(arrival_s, departure_s, cap_kwh, e_arrival_kwh, e_need_kwh, p_accept_kw)
    return _charged_before_start(table, p_rated_kw, params)


@dataclass(frozen=True)
class SessionRecords:
    """Sessions read from a file, one entry per session, for :func:`replay_sessions`.

    ``cap_kwh``, ``soc_arrival`` and ``p_accept_kw`` are NaN where the file
    has none (they are then drawn from the charger's parameter set).
    """

    charger: np.ndarray  # charger index 0..n-1 in the fleet [-]
    arrival_s: np.ndarray  # plug-in time [s since scenario start]
    departure_s: np.ndarray  # plug-out time [s]
    e_kwh: np.ndarray  # energy asked for [kWh]: battery side, or at the charger when e_at_grid
    e_at_grid: bool  # e_kwh was metered at the charger (ACN-Data kWhDelivered): battery side is e_kwh * eta
    cap_kwh: np.ndarray  # battery capacity [kWh] or NaN
    soc_arrival: np.ndarray  # state of charge at plug-in [-] or NaN
    p_accept_kw: np.ndarray  # the vehicle's peak acceptance, grid side [kW] or NaN


def replay_sessions(
    rng: np.random.Generator,
    params: ChargerParameters,
    p_rated_kw: np.ndarray,
    records: SessionRecords,
) -> tuple[SessionTable, list[str]]:
    """A session table from recorded sessions; returns ``(table, notes)``.

    Each session stays on its charger with its own times and energy. What
    the record lacks is drawn as :func:`draw_sessions` draws it: battery
    capacity and arrival state of charge uniform in the parameter set's
    ranges, peak acceptance from its mixture. A recorded energy need is a
    fact: where a drawn battery cannot take it, the arrival state of charge
    is lowered (down to empty) until it fits below ``soc_max``, and a drawn
    capacity too small even then is raised to ``need / soc_max``; only a
    recorded capacity and state of charge that cannot hold the need clip it
    (each adjustment is counted in the notes). Sessions under way at
    ``t = 0`` arrive with the energy uncontrolled charging would have given
    them by then, as drawn ones do.
    """
    p_rated_kw = np.asarray(p_rated_kw, dtype=float)
    n = p_rated_kw.shape[0]
    m = records.charger.shape[0]
    notes: list[str] = []
    cap_draw = rng.uniform(*params.cap_kwh, size=m)
    soc_draw = rng.uniform(*params.soc_arrival, size=m)
    accept_draw = _mixture(rng, params.p_accept_kw, m)
    e_need_kwh = np.asarray(records.e_kwh, dtype=float) * (params.eta if records.e_at_grid else 1.0)
    has_cap = np.isfinite(records.cap_kwh)
    has_soc = np.isfinite(records.soc_arrival)
    cap_kwh = np.where(has_cap, records.cap_kwh, cap_draw)
    grow = ~has_cap & (e_need_kwh > params.soc_max * cap_kwh)
    cap_kwh = np.where(grow, e_need_kwh / params.soc_max, cap_kwh)
    e_arrival_kwh = np.where(has_soc, records.soc_arrival, soc_draw) * cap_kwh
    lowered = ~has_soc & (e_arrival_kwh > params.soc_max * cap_kwh - e_need_kwh)
    e_arrival_kwh = np.where(lowered, np.maximum(params.soc_max * cap_kwh - e_need_kwh, 0.0), e_arrival_kwh)
    room_kwh = cap_kwh - e_arrival_kwh
    clipped = e_need_kwh > room_kwh
    e_need_kwh = np.minimum(e_need_kwh, room_kwh)
    for count, text in ((grow.sum(), "a battery larger than the parameter set's range (need / soc_max)"),
                        (lowered.sum(), "a lower arrival state of charge than drawn, to fit their need"),
                        (clipped.sum(), "their need clipped to what the recorded battery takes")):
        if count:
            notes.append(f"{int(count)} of {m} sessions got {text}")
    p_accept_kw = np.where(np.isfinite(records.p_accept_kw), records.p_accept_kw, accept_draw)

    # One row per charger, sessions in order of arrival (the sparse table's layout).
    order = np.lexsort((records.arrival_s, records.charger))
    ptr = np.concatenate([[0], np.cumsum(np.bincount(records.charger, minlength=n))])

    def col(values):
        return np.asarray(values, dtype=float)[order]

    table = SessionTable(col(records.arrival_s), col(records.departure_s), col(cap_kwh), col(e_arrival_kwh),
                         col(e_need_kwh), col(p_accept_kw), ptr=ptr)
    return _charged_before_start(table, p_rated_kw, params), notes


@dataclass(slots=True)
class EVState(FleetState):
    """What changes in an EV fleet: the session each charger holds and the run's accounting."""

    k: np.ndarray  # pointer to each charger's current-or-next session [-]
    plugged: np.ndarray  # a vehicle is plugged in [bool]
    e_kwh: np.ndarray  # energy stored in the plugged vehicle [kWh]
    e_target_kwh: np.ndarray  # energy the session must reach by departure [kWh]
    cap_kwh: np.ndarray  # plugged vehicle's battery capacity [kWh]
    p_accept_kw: np.ndarray  # plugged vehicle's peak acceptance [kW]
    t_arrival_s: np.ndarray  # plugged session's arrival [s]
    t_departure_s: np.ndarray  # plugged session's departure [s]
    t_next_s: np.ndarray  # the charger's next event: its vehicle's departure, else its next arrival (inf: none) [s]
    e_grid_kwh: float = 0.0  # energy drawn from the grid [kWh] (V2G export negative)
    e_to_vehicles_kwh: float = 0.0  # net energy stored in vehicles [kWh]
    e_loss_kwh: float = 0.0  # conversion losses [kWh]
    e_unmet_kwh: float = 0.0  # energy missing at departure [kWh]
    n_departed: int = 0
    n_unmet: int = 0
    n_arrived: int = 0


class EVFleet(Fleet):
    """Chargers of one type, their sessions, and (for a share of them) V2G."""

    kind = "ev"
    work_names = ("frac", "e_rem", "e_acc", "e_start", "p_flat", "tmp", "tmp2")
    notes: tuple[str, ...] = ()  # what building the fleet adjusted in its input (replayed sessions), one line each
    twin_cost_keys = ("e_unmet_kwh", "n_sessions_unmet", "e_pending_at_end_kwh", "e_to_vehicles_kwh")

    def __init__(
        self,
        name: str,
        bus_idx: np.ndarray,
        operator: str,
        cost_cny_per_kwh,
        p_rated_kw,
        eta: float,
        v2g,
        soc_v2g_min: float,
        sessions: SessionTable,
        taper_soc: tuple[float, ...] = (0.0, 1.0),
        taper_frac: tuple[float, ...] = (1.0, 1.0),
    ):
        super().__init__(name, bus_idx, operator, cost_cny_per_kwh)
        n = self.n
        self.p_rated_kw = self._param(p_rated_kw)
        self.eta = float(eta)
        self.v2g = self._param(v2g, bool)
        self.soc_v2g_min = float(soc_v2g_min)
        self.taper_soc = tuple(float(x) for x in taper_soc)
        self.taper_frac = tuple(float(x) for x in taper_frac)
        self._knot_soc = frozen(self.taper_soc, len(self.taper_soc))
        self._knot_frac = frozen(self.taper_frac, len(self.taper_frac))
        if np.any(np.diff(self._knot_soc) <= 0.0) or np.any(np.diff(self._knot_frac) > 0.0):
            raise ValueError(f"fleet {name!r}: taper_soc must increase and taper_frac must not increase")
        # The curve is flat at its first value up to this state of charge [-].
        self._frac_flat = float(self._knot_frac[0])
        falling = np.flatnonzero(self._knot_frac < self._frac_flat)
        self._soc_flat = float(self._knot_soc[falling[0] - 1]) if falling.size else 1.0
        if sessions.n_chargers != n:
            raise ValueError(f"fleet {name!r}: session table has {sessions.n_chargers} rows, expected {n}")
        self.sessions = sessions
        # Each charger walks its own sessions, ptr[i] .. ptr[i + 1] - 1 (absolute positions in the table);
        # sessions over before t = 0 are skipped.
        over = np.bincount(sessions.charger[sessions.departure_s <= 0.0], minlength=n)
        self._k0 = frozen(sessions.ptr[:-1] + over, n, np.int64)
        self._k_end = frozen(sessions.ptr[1:], n, np.int64)
        self.use_numba = NUMBA_AVAILABLE  # compiled envelope (vpp.fleets.kernels_numba); False: numpy only

    def initial_state(self) -> EVState:
        n = self.n
        return EVState(
            p_kw=np.zeros(n), k=self._k0.copy(), plugged=np.zeros(n, dtype=bool), e_kwh=np.zeros(n),
            e_target_kwh=np.zeros(n), cap_kwh=np.ones(n), p_accept_kw=np.zeros(n), t_arrival_s=np.zeros(n),
            t_departure_s=np.zeros(n), t_next_s=self._next_arrival_s(self._k0, self._k_end),
        )

    def _next_arrival_s(self, k: np.ndarray, k_end: np.ndarray) -> np.ndarray:
        """Arrival of session ``k`` (inf where ``k`` reached the charger's ``k_end``) [s]."""
        tab = self.sessions
        has = k < k_end
        out = np.full(k.shape[0], np.inf)
        out[has] = tab.arrival_s[k[has]]
        return out

    def _advance(self, s: EVState, t_s: float, dt_s: float) -> None:
        # Only chargers whose next event (departure or arrival) falls before the tick's end are
        # touched: a few per thousand per minute. The compiled pass pays from 10^3 chargers up
        # (benchmarks/bench_numba.py).
        if self.use_numba:
            from vpp.fleets.kernels_numba import ev_advance  # compiled (or loaded from cache) on first call

            tab = self.sessions
            e_unmet, n_unmet, n_departed, n_arrived = ev_advance(
                s.k, self._k_end, s.plugged, s.t_next_s, s.e_kwh, s.e_target_kwh, s.cap_kwh, s.p_accept_kw,
                s.t_arrival_s, s.t_departure_s, tab.arrival_s, tab.departure_s, tab.cap_kwh, tab.e_arrival_kwh,
                tab.e_need_kwh, tab.p_accept_kw, t_s, dt_s, _E_TOL_KWH)
            s.e_unmet_kwh += e_unmet
            s.n_unmet += n_unmet
            s.n_departed += n_departed
            s.n_arrived += n_arrived
            return
        self._advance_numpy(s, t_s, dt_s)

    def _advance_numpy(self, s: EVState, t_s: float, dt_s: float) -> None:
        """Departures at ``t_s``, then arrivals in the tick, as array passes: the reference, and the path without numba."""
        t_end_s = t_s + dt_s
        due = np.flatnonzero(s.t_next_s < t_end_s)
        if due.size == 0:
            return
        leaving = due[s.plugged[due] & (s.t_departure_s[due] <= t_s)]
        if leaving.size:
            rem_kwh = np.maximum(s.e_target_kwh[leaving] - s.e_kwh[leaving], 0.0)
            s.e_unmet_kwh += float(rem_kwh.sum())
            s.n_unmet += int((rem_kwh > _E_TOL_KWH).sum())
            s.n_departed += int(leaving.size)
            s.plugged[leaving] = False
            s.k[leaving] += 1
        idx = due[~s.plugged[due] & (s.k[due] < self._k_end[due])]
        k = s.k[idx]
        tab = self.sessions
        arriving = tab.arrival_s[k] < t_end_s
        idx, k = idx[arriving], k[arriving]
        s.plugged[idx] = True
        s.t_arrival_s[idx] = tab.arrival_s[k]
        s.t_departure_s[idx] = tab.departure_s[k]
        s.cap_kwh[idx] = tab.cap_kwh[k]
        s.p_accept_kw[idx] = tab.p_accept_kw[k]
        s.e_kwh[idx] = tab.e_arrival_kwh[k]
        # min() absorbs round-off when a session asks for a completely full battery.
        s.e_target_kwh[idx] = np.minimum(tab.e_arrival_kwh[k] + tab.e_need_kwh[k], tab.cap_kwh[k])
        s.n_arrived += int(idx.size)
        s.t_next_s[due] = np.where(s.plugged[due], s.t_departure_s[due], self._next_arrival_s(s.k[due], self._k_end[due]))

    def _envelope(self, s: EVState, t_s: float, dt_s: float, ws: Workspace) -> bool:
        # numba pays from one charger up (benchmarks/bench_numba.py), so there is no size threshold.
        if self.use_numba:
            return self._envelope_numba(s, t_s, dt_s, ws)
        self._envelope_numpy(s, t_s, dt_s, ws)
        return False

    def _default_power(self, s: EVState, t_s: float, dt_s: float, ws: Workspace) -> bool:
        # Compiled only: the numpy envelope shares its temporaries between bounds, so a default-only numpy
        # pass would save little. The twin's envelope was ~40 % of a city tick (issue 9 profile).
        if not self.use_numba:
            return False
        from vpp.fleets.kernels_numba import ev_default_power

        ev_default_power(s.plugged, s.t_arrival_s, s.t_departure_s, s.e_kwh, s.e_target_kwh, s.cap_kwh,
                         s.p_accept_kw, self.p_rated_kw, self._knot_soc, self._knot_frac, self._frac_flat,
                         self._soc_flat, self.eta, t_s, dt_s, ws.p_default_kw)
        return True

    def _envelope_numba(self, s: EVState, t_s: float, dt_s: float, ws: Workspace) -> bool:
        """The envelope in one compiled pass over devices (same numbers as :meth:`_envelope_numpy`).

        The kernel applies the ordering guard of :meth:`Fleet.flexibility` itself: returns ``True``.
        """
        from vpp.fleets.kernels_numba import ev_envelope  # imports numba; compiled (or loaded) on first call

        ev_envelope(s.plugged, s.t_arrival_s, s.t_departure_s, s.e_kwh, s.e_target_kwh, s.cap_kwh,
                    s.p_accept_kw, self.p_rated_kw, self.v2g, self._knot_soc, self._knot_frac, self._frac_flat,
                    self._soc_flat, self.eta, self.soc_v2g_min, t_s, dt_s, ws.p_min_kw, ws.p_max_kw,
                    ws.p_default_kw)
        return True

    def _envelope_numpy(self, s: EVState, t_s: float, dt_s: float, ws: Workspace) -> None:
        """The envelope as whole-array numpy passes: the reference, and the path without numba."""
        dt_h = dt_s / S_PER_H
        t_end_s = t_s + dt_s
        eta = self.eta
        frac, e_rem, e_acc, e_start, tmp, tmp2 = ws.frac, ws.e_rem, ws.e_acc, ws.e_start, ws.tmp, ws.tmp2
        p_min, p_max, p_def = ws.p_min_kw, ws.p_max_kw, ws.p_default_kw
        # Fraction of the tick the vehicle is present [-] (0 where nothing is plugged).
        np.minimum(s.t_departure_s, t_end_s, out=frac)
        np.maximum(s.t_arrival_s, t_s, out=tmp)
        np.subtract(frac, tmp, out=frac)
        np.multiply(frac, 1.0 / dt_s, out=frac)
        np.clip(frac, 0.0, 1.0, out=frac)
        np.multiply(frac, s.plugged, out=frac)
        # Energy still needed [kWh, battery side].
        np.subtract(s.e_target_kwh, s.e_kwh, out=e_rem)
        np.maximum(e_rem, 0.0, out=e_rem)
        np.multiply(e_rem, s.plugged, out=e_rem)
        # The most the vehicle takes in the time it is present (rating and tapered acceptance). Most
        # sessions stay on the flat part of the curve for the whole tick, where that is exactly
        # eta * min(rating, acceptance) * time; the closed-form taper walk runs only on the others.
        np.multiply(frac, dt_h, out=tmp)
        p_flat = ws.p_flat
        np.multiply(s.p_accept_kw, self._frac_flat, out=p_flat)
        np.minimum(self.p_rated_kw, p_flat, out=p_flat)
        np.multiply(p_flat, tmp, out=e_acc)
        e_acc *= eta
        np.add(s.e_kwh, e_acc, out=tmp2)
        np.multiply(s.cap_kwh, self._soc_flat, out=e_start)
        slow = np.flatnonzero((tmp2 > e_start) & (e_rem > 0.0))  # e_rem > 0 only where plugged; full: 0 anyway
        if slow.size:
            e_acc[slow] = taper_energy_kwh(s.e_kwh[slow], s.cap_kwh[slow], self.p_rated_kw[slow],
                                           s.p_accept_kw[slow], eta, tmp[slow], self.taper_soc, self.taper_frac)
        np.minimum(e_acc, e_rem, out=e_acc)
        np.multiply(e_acc, 1.0 / (eta * dt_h), out=p_max)
        np.multiply(frac, self.p_rated_kw, out=tmp2)
        np.minimum(p_max, tmp2, out=p_max)  # energy back to power may round one step above the rating
        # Laxity: the lowest level from which charging at full power after this tick, until
        # departure, still reaches the target [kWh]. Charging less than that now is not allowed;
        # a V2G vehicle may discharge down to it. The power along the way is at least the power
        # at the target (the curve never rises with SoC), so a session whose remaining energy
        # fits at that power has no must-charge and needs the exact walk only if it can discharge.
        np.subtract(s.t_departure_s, t_end_s, out=tmp)
        np.maximum(tmp, 0.0, out=tmp)
        np.multiply(tmp, 1.0 / S_PER_H, out=tmp)
        np.divide(s.e_target_kwh, s.cap_kwh, out=tmp2)
        np.clip(tmp2, 0.0, 1.0, out=tmp2)
        tmp2[:] = np.interp(tmp2, self._knot_soc, self._knot_frac)
        np.multiply(tmp2, s.p_accept_kw, out=tmp2)
        np.minimum(tmp2, self.p_rated_kw, out=tmp2)
        np.multiply(tmp2, tmp, out=tmp2)
        tmp2 *= eta  # energy surely deliverable after this tick [kWh]
        np.subtract(s.e_target_kwh, tmp2, out=tmp2)  # an upper bound of the laxity level
        np.copyto(e_start, s.e_kwh)
        exact = np.flatnonzero(s.plugged & ((tmp2 > s.e_kwh) | self.v2g))
        if exact.size:
            e_start[exact] = taper_start_kwh(s.e_target_kwh[exact], s.cap_kwh[exact], self.p_rated_kw[exact],
                                             s.p_accept_kw[exact], eta, tmp[exact], self.taper_soc,
                                             self.taper_frac)
        np.subtract(e_start, s.e_kwh, out=tmp)  # energy that must go in this tick [kWh]
        np.multiply(tmp, s.plugged, out=tmp)
        np.multiply(tmp, 1.0 / (eta * dt_h), out=p_min)
        np.clip(p_min, 0.0, p_max, out=p_min)
        # V2G: discharge only what the session can win back and not below soc_v2g_min.
        np.multiply(s.cap_kwh, self.soc_v2g_min, out=tmp2)
        np.maximum(e_start, tmp2, out=tmp2)  # lowest level the battery may reach now [kWh]
        np.subtract(s.e_kwh, tmp2, out=tmp2)
        np.maximum(tmp2, 0.0, out=tmp2)
        np.multiply(tmp2, eta / dt_h, out=tmp2)  # [kW] grid side
        np.multiply(frac, self.p_rated_kw, out=tmp)
        np.minimum(tmp2, tmp, out=tmp2)
        np.multiply(tmp2, self.v2g, out=tmp2)
        # A session with energy that must go in now cannot discharge.
        np.negative(tmp2, out=tmp2)
        np.copyto(p_min, tmp2, where=p_min <= 0.0)
        np.copyto(p_def, p_max)

    def _integrate(self, s: EVState, p_kw: np.ndarray, t_s: float, dt_h: float, ws: Workspace) -> None:
        if self.use_numba:
            from vpp.fleets.kernels_numba import ev_integrate

            e_delta, e_grid = ev_integrate(p_kw, s.e_kwh, s.e_target_kwh, self.eta, dt_h)
        else:
            e_delta, e_grid = self._integrate_numpy(s, p_kw, dt_h, ws)
        s.e_to_vehicles_kwh += e_delta
        s.e_loss_kwh += e_grid - e_delta
        s.e_grid_kwh += e_grid

    def _integrate_numpy(self, s: EVState, p_kw: np.ndarray, dt_h: float, ws: Workspace) -> tuple[float, float]:
        """Stored energy after the tick; returns (stored energy change, grid energy) [kWh]."""
        eta = self.eta
        d_e = ws.tmp  # stored energy change [kWh]
        np.multiply(p_kw, eta * dt_h, out=d_e)
        np.multiply(p_kw, dt_h / eta, out=ws.tmp2, where=p_kw < 0.0)
        np.copyto(d_e, ws.tmp2, where=p_kw < 0.0)
        e_before = float(s.e_kwh.sum())
        np.add(s.e_kwh, d_e, out=s.e_kwh)
        # Never past the target: the bound already ensures it, this absorbs float round-off.
        np.minimum(s.e_kwh, np.maximum(s.e_target_kwh, s.e_kwh - d_e), out=s.e_kwh)
        return float(s.e_kwh.sum()) - e_before, float(p_kw.sum()) * dt_h

    def soc(self, s: EVState) -> np.ndarray:
        """State of charge of the plugged vehicle [-] (NaN where no vehicle is plugged)."""
        return np.where(s.plugged, s.e_kwh / s.cap_kwh, np.nan)

    def _p_full_kw(self, s: EVState, idx) -> np.ndarray:
        """Full charging power on the flat part of the curve, grid side [kW] (the taper is ignored here)."""
        return np.minimum(self.p_rated_kw[idx], s.p_accept_kw[idx] * self._frac_flat)

    def dispatch_keys(self, s: EVState, t_s: float, dt_s: float) -> dict[str, np.ndarray]:
        """``deadline_s`` (departure) and ``laxity_s`` of each plugged session; ``inf`` where nothing is plugged.

        Laxity = time from ``t_s`` to departure minus the time the remaining
        energy (battery side) needs at full power on the flat part of the
        charging curve [s]; the taper makes the true need longer, so this is
        the laxity's upper bound (the envelope enforces the exact one).
        Negative: the session can no longer reach its target.
        """
        deadline_s = np.where(s.plugged, s.t_departure_s, np.inf)
        e_rem_kwh = np.maximum(s.e_target_kwh - s.e_kwh, 0.0)
        rate_kw = self.eta * self._p_full_kw(s, slice(None))  # stored per hour at full power [kW]
        need_s = np.full(self.n, np.inf)
        np.divide(e_rem_kwh * S_PER_H, rate_kw, out=need_s, where=rate_kw > 0.0)
        need_s[e_rem_kwh <= 0.0] = 0.0
        laxity_s = np.where(s.plugged, (s.t_departure_s - t_s) - need_s, np.inf)
        return {"deadline_s": deadline_s, "laxity_s": laxity_s}

    def flex_groups(self, s: EVState, t_s: float, dt_s: float, n_ticks: int, env: Envelope,
                    members: np.ndarray | None = None, bucket_s: float = 3600.0) -> FlexGroups | None:
        """Plugged sessions grouped by departure bucket (width ``bucket_s`` from ``t_s``) and V2G capability.

        Per session over the horizon (vectorised over sessions, one pass per
        tick): present fraction of each tick; full power on the flat part of
        the curve (``min(rating, acceptance)``; the taper is ignored after
        tick 0); the no-call forecast (full power until the target); the
        highest energy reachable (capped at the target); the lowest (the
        arrival energy, or down to ``soc_v2g_min`` for V2G); and the departure
        energy as a cumulative lower bound: at the end of tick ``k`` at least
        ``e_target - eta * p_full * (time present after it)``, the level from
        which full power still reaches the target by departure (capped at the
        reachable maximum for a session already late). Each bound is summed
        per group. Tick 0 uses the envelope's default exactly. Sessions that
        arrive later are unknown to the operator and not modelled.
        """
        idx = np.arange(self.n) if members is None else np.asarray(members)
        idx = idx[s.plugged[idx]]
        if idx.size == 0:
            return None
        dt_h = dt_s / S_PER_H
        eta = self.eta
        p_full = self._p_full_kw(s, idx)
        v2g = self.v2g[idx]
        p_dis = np.where(v2g, self.p_rated_kw[idx], 0.0)
        t_arr, t_dep = s.t_arrival_s[idx], s.t_departure_s[idx]
        e_tgt = s.e_target_kwh[idx]
        e0 = s.e_kwh[idx]
        n_bucket = int(np.ceil(n_ticks * dt_s / bucket_s)) + 1
        bucket = np.clip(np.floor((t_dep - t_s) / bucket_s), 0, n_bucket - 1).astype(np.int64)
        keys, grp = np.unique(bucket * 2 + v2g, return_inverse=True)
        grp = grp.reshape(-1)
        n_g = keys.shape[0]
        labels = tuple(f"{self.name}:departs+{int(k // 2) * bucket_s / S_PER_H:g}h{':v2g' if k % 2 else ''}"
                       for k in keys)
        shape = (n_g, n_ticks)
        p_base, c_max, d_max = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        e_min, e_max = np.zeros(shape), np.zeros(shape)

        def per_group(x):
            return np.bincount(grp, weights=x, minlength=n_g)

        e_def = e0.copy()  # no-call forecast [kWh]
        e_hi = e0.copy()  # highest reachable [kWh]
        floor = np.where(v2g, np.minimum(e0, self.soc_v2g_min * s.cap_kwh[idx]), e0)
        e_lo = e0.copy()  # lowest reachable [kWh]
        for k in range(n_ticks):
            t0 = t_s + k * dt_s
            t1 = t0 + dt_s
            frac = np.clip((np.minimum(t_dep, t1) - np.maximum(t_arr, t0)) / dt_s, 0.0, 1.0)
            if k == 0:  # the envelope: exact, taper included
                p_def = env.p_default_kw[idx]
                p_up, p_down = np.maximum(env.p_max_kw[idx], 0.0), np.maximum(-env.p_min_kw[idx], 0.0)
            else:
                p_def = np.minimum(p_full * frac, np.maximum(e_tgt - e_def, 0.0) / (eta * dt_h))
                p_up, p_down = p_full * frac, p_dis * frac
            c_max[:, k] = per_group(p_up)
            d_max[:, k] = per_group(p_down)
            p_base[:, k] = per_group(p_def)
            e_def = e_def + eta * p_def * dt_h
            e_hi = np.minimum(e_tgt, e_hi + eta * p_up * dt_h)
            e_lo = np.maximum(floor, e_lo - p_down * dt_h / eta)
            lax = e_tgt - eta * p_full * np.maximum(t_dep - t1, 0.0) / S_PER_H
            e_min[:, k] = per_group(np.minimum(np.maximum(lax, e_lo), e_hi))
            e_max[:, k] = per_group(e_hi)
        one = np.ones(idx.size)
        return FlexGroups(
            labels=labels, member=idx, group=grp, share_down=one, share_up=one, p_base_kw=p_base,
            p_fixed_kw=np.zeros(shape), c_max_kw=c_max, d_max_kw=d_max, e0_kwh=per_group(e0), e_min_kwh=e_min,
            e_max_kwh=e_max, leak=np.ones(n_g), gain_c=np.full(n_g, eta), gain_d=np.full(n_g, 1.0 / eta),
            w_kwh=np.zeros(shape),
        )

    def tick_metrics(self, s: EVState) -> dict[str, float]:
        return {"n_plugged": float(s.plugged.sum()), "e_unmet_kwh": s.e_unmet_kwh}

    def summary(self, s: EVState) -> dict[str, float]:
        pending_kwh = np.where(s.plugged, np.maximum(s.e_target_kwh - s.e_kwh, 0.0), 0.0)
        return {
            "n_devices": self.n,
            "n_v2g": int(self.v2g.sum()),
            "p_rated_total_kw": float(self.p_rated_kw.sum()),
            "n_sessions_arrived": s.n_arrived,
            "n_sessions_departed": s.n_departed,
            "n_sessions_unmet": s.n_unmet,
            "e_unmet_kwh": s.e_unmet_kwh,
            "n_sessions_plugged_at_end": int(s.plugged.sum()),
            "e_pending_at_end_kwh": float(pending_kwh.sum()),
            "e_grid_kwh": s.e_grid_kwh,
            "e_to_vehicles_kwh": s.e_to_vehicles_kwh,
            "e_loss_kwh": s.e_loss_kwh,
        }


# --- scenario configuration and construction -------------------------------------------------


MAX_SESSIONS_PER_DAY = 200.0  # mean sessions per charger per day [1/day]; the session table grows with it


class EVFleetConfig(FleetConfigBase):
    """Chargers of one type (``charger`` names a parameter set; any field below overrides it)."""

    kind: Literal["ev"]
    charger: str = "ac_pile"
    p_rated_kw: real(gt=0.0, le=MAX_DEVICE_KW) | None = Field(None, description="charger rating [kW]")
    eta: Efficiency | None = Field(None, description="charging efficiency [-]")
    sessions_per_day: real(ge=0.0, le=MAX_SESSIONS_PER_DAY) | None = Field(
        None, description="mean sessions per charger per day [1/day]"
    )
    dwell_mean_h: real(gt=0.0, le=MAX_HOURS) | None = Field(None, description="mean plug-in duration [h]")
    e_need_mean_kwh: real(gt=0.0, le=MAX_DEVICE_KWH) | None = Field(
        None, description="mean energy requested per session [kWh]"
    )
    v2g_share: Fraction = Field(0.0, description="share of chargers that can discharge (V2G) [-]")
    soc_v2g_min: Fraction = Field(0.3, description="V2G never discharges a vehicle below this SoC [-]")
    sessions_file: PathText | None = Field(
        None, description="replay sessions from this CSV/Parquet file (ACN-Data or plain format) instead of "
        "drawing them; relative to the scenario file's folder",
    )
    sessions_day: date | None = Field(
        None, description="calendar day of t_s = 0 (at time.clock_start_h) for the file's timestamps; "
        "default: the day of the first connection",
    )
    sessions_timezone: Annotated[str, Field(max_length=100)] | None = Field(
        None, description="IANA zone of the scenario clock, for timestamps with a UTC offset (e.g. "
        "America/Los_Angeles for ACN-Data)",
    )

    # Measured with tracemalloc on whole runs (tests/scenario/test_limits.py): parameters, state and
    # work buffers of plant and twin, without the session table, which estimate_bytes adds.
    bytes_per_device: ClassVar[int] = 600

    @field_validator("charger")
    @classmethod
    def _charger(cls, v: str) -> str:
        return one_of(v, CHARGER_PARAMETERS, "charger")

    @field_validator("sessions_file")
    @classmethod
    def _sessions_file(cls, v: str | None, info) -> str | None:
        return None if v is None else resolve_path(v, info)

    @field_validator("sessions_timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        return check_timezone(v)

    @model_validator(mode="after")
    def _sessions(self):
        if self.sessions_file is None:
            given = [k for k in ("sessions_day", "sessions_timezone") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} only with sessions_file")
        else:
            drawn = [k for k in ("sessions_per_day", "dwell_mean_h", "e_need_mean_kwh") if getattr(self, k) is not None]
            if drawn:
                raise ValueError(f"{', '.join(drawn)} only shape drawn sessions; with sessions_file the sessions "
                                 "come from the file: remove them")
        return self

    def estimate_bytes(self, duration_s: float, clock_start_h: float) -> int:
        """Peak memory of this fleet during a run [B]: per-device arrays plus drawing the session table.

        :func:`draw_sessions` works on ``n_days x k_day`` candidate arrivals
        per charger (dense temporaries) before it keeps only the real sessions
        (sparse, 48 B each). Its peak, measured with tracemalloc at 10^4
        chargers for 1 and 3 days and every charger kind, is 68-98 B per
        candidate, the kept table included; rounded up here to 100 B.
        """
        lam = CHARGER_PARAMETERS[self.charger].sessions_per_day if self.sessions_per_day is None else self.sessions_per_day
        n_days = int(math.ceil((clock_start_h + duration_s / S_PER_H) / H_PER_DAY)) + 2
        k_day = int(math.ceil(lam + 4.0 * math.sqrt(lam) + 2.0))
        return self.n_devices * (self.bytes_per_device + 100 * n_days * k_day)


def build_ev_fleet(cfg: EVFleetConfig, rng: np.random.Generator, bus_idx: np.ndarray, time,
                   sessions: SessionRecords | None = None) -> EVFleet:
    """An EV fleet from its configuration; sessions drawn from ``rng``, or replayed from ``sessions``.

    ``sessions`` are the records of ``cfg.sessions_file``, read by the caller
    (:func:`vpp.scenario.series.read_sessions`): fleets never read files.
    """
    if (cfg.sessions_file is None) != (sessions is None):
        raise ValueError(f"fleet {cfg.name!r}: sessions are given exactly when sessions_file is set")
    overrides = ("p_rated_kw", "eta", "sessions_per_day", "dwell_mean_h", "e_need_mean_kwh")
    params = replace(
        CHARGER_PARAMETERS[cfg.charger], **{k: getattr(cfg, k) for k in overrides if getattr(cfg, k) is not None}
    )
    n = cfg.n_devices
    p_rated_kw = np.full(n, params.p_rated_kw)
    v2g = rng.random(n) < cfg.v2g_share
    notes: list[str] = []
    if sessions is None:
        table = draw_sessions(rng, params, p_rated_kw, time.duration_s, time.clock_start_h)
    else:
        table, notes = replay_sessions(rng, params, p_rated_kw, sessions)
    fleet = EVFleet(cfg.name, bus_idx, cfg.operator, cfg.cost_cny_per_kwh, p_rated_kw, params.eta, v2g,
                    cfg.soc_v2g_min, table, params.taper_soc, params.taper_frac)
    fleet.notes = tuple(f"fleet {cfg.name!r}: {line}" for line in notes)
    return fleet


SPEC = KindSpec(
    name="ev", fleet=EVFleet, config=EVFleetConfig, build=build_ev_fleet,
    parameter_sets=CHARGER_PARAMETERS, parameter_field="charger",
    describe=lambda p: f"{p.p_rated_kw:g} kW; {p.source}",
)
