"""EV charging fleets: AC piles, DC fast chargers, superchargers, e-bike cabinets, V2G.

A device is a charger; the vehicles it serves over the run are drawn up front
as a session table of shape ``(n_chargers, n_sessions_max)`` (arrival,
departure, battery capacity, energy at arrival, energy needed). During the run
each charger holds at most one session at a time; a pointer per charger walks
its sessions. Everything is array work: no object per vehicle.

Timing within a tick: a session is plugged in at the first tick whose end lies
after its arrival and leaves at the first tick start at or after its
departure; its power in each tick is limited by the fraction of the tick it is
actually present, so energy is exact for any tick length. One session per
charger per tick: a vehicle arriving in the same tick as its predecessor left
waits for the next tick (an artefact that shrinks with ``dt_s``).

Flexibility comes from laxity: a session may be slowed down as long as its
remaining energy can still be delivered at full power before departure; a V2G
charger may discharge down to ``soc_v2g_min`` when its session has slack to
spare. Default (no-call) behaviour is uncontrolled charging at full power.
Energy still missing at departure is recorded as unmet, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vpp.fleets.base import Envelope, Fleet
from vpp.fleets.kernels import battery_energy_step, battery_loss_kwh
from vpp.fleets.parameters import ChargerParameters
from vpp.profiles import get_profile
from vpp.units import H_PER_DAY, S_PER_H

__all__ = ["SessionTable", "draw_sessions", "EVFleet"]

_E_TOL_KWH = 1e-6  # a session counts as unmet above this remaining energy [kWh]


@dataclass(frozen=True)
class SessionTable:
    """Charging sessions per charger, sorted by arrival; unused slots have ``arrival_s = inf``.

    All arrays have shape ``(n_chargers, n_sessions_max)``.
    """

    arrival_s: np.ndarray  # plug-in time [s since scenario start]
    departure_s: np.ndarray  # plug-out time [s]
    cap_kwh: np.ndarray  # vehicle battery capacity [kWh]
    e_arrival_kwh: np.ndarray  # stored energy at plug-in [kWh]
    e_need_kwh: np.ndarray  # energy the driver asks for, battery side [kWh]

    @property
    def n_sessions(self) -> int:
        """Number of real (finite-arrival) sessions in the table."""
        return int(np.isfinite(self.arrival_s).sum())


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
    lognormal with the given means; sessions on one charger never overlap and
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

    # Sessions on one charger queue behind each other: a loop over session
    # slots (a few dozen at most), each step vectorised over all chargers.
    departure_h = arrival_h + dwell_h
    for j in range(1, k_max):
        arrival_h[:, j] = np.maximum(arrival_h[:, j], departure_h[:, j - 1] + params.gap_min_h)
        departure_h[:, j] = arrival_h[:, j] + dwell_h[:, j]

    arrival_s = arrival_h * S_PER_H
    departure_s = departure_h * S_PER_H
    beyond = arrival_s >= t_end_s
    arrival_s[beyond] = np.inf
    departure_s[beyond] = np.inf

    e_arrival_kwh = soc_arrival * cap_kwh
    e_need_kwh = np.clip(e_need_kwh, 0.0, np.maximum(params.soc_max * cap_kwh - e_arrival_kwh, 0.0))
    # Vehicles plugged in before t = 0 have charged uncontrolled since arrival.
    ongoing = (arrival_s < 0.0) & (departure_s > 0.0)
    e_pre_kwh = np.where(
        ongoing, np.minimum(e_need_kwh, params.eta * p_rated_kw[:, None] * (-arrival_s) / S_PER_H), 0.0
    )
    e_arrival_kwh = e_arrival_kwh + e_pre_kwh
    e_need_kwh = e_need_kwh - e_pre_kwh
    return SessionTable(arrival_s, departure_s, cap_kwh, e_arrival_kwh, e_need_kwh)


class EVFleet(Fleet):
    """Chargers of one type, their sessions, and (for a share of them) V2G."""

    kind = "ev"

    def __init__(
        self,
        name: str,
        bus_idx: np.ndarray,
        operator: str,
        cost_cny_per_kwh: np.ndarray,
        p_rated_kw: np.ndarray,
        eta: float,
        v2g: np.ndarray,
        soc_v2g_min: float,
        sessions: SessionTable,
    ):
        super().__init__(name, bus_idx, operator, cost_cny_per_kwh)
        n = self.n
        self.p_rated_kw = np.broadcast_to(np.asarray(p_rated_kw, dtype=float), (n,)).copy()
        self.eta = float(eta)
        self.v2g = np.broadcast_to(np.asarray(v2g, dtype=bool), (n,)).copy()
        self.soc_v2g_min = float(soc_v2g_min)
        if sessions.arrival_s.shape[0] != n:
            raise ValueError(f"fleet {name!r}: session table has {sessions.arrival_s.shape[0]} rows, expected {n}")
        self.sessions = sessions
        self.k_max = sessions.arrival_s.shape[1]
        # Pointer to each charger's current-or-next session; sessions over before t = 0 are skipped.
        self.k = (sessions.departure_s <= 0.0).sum(axis=1).astype(np.int64)
        self.plugged = np.zeros(n, dtype=bool)
        self.e_kwh = np.zeros(n)
        self.e_target_kwh = np.zeros(n)
        self.cap_kwh = np.ones(n)
        self.t_arrival_s = np.zeros(n)
        self.t_departure_s = np.zeros(n)
        # Accounting, fleet-wide [kWh] and session counts.
        self.e_grid_kwh = 0.0
        self.e_to_vehicles_kwh = 0.0
        self.e_loss_kwh = 0.0
        self.e_unmet_kwh = 0.0
        self.n_departed = 0
        self.n_unmet = 0
        self.n_arrived = 0

    def _advance(self, t_s: float, dt_s: float) -> None:
        leaving = self.plugged & (self.t_departure_s <= t_s)
        if leaving.any():
            rem_kwh = np.maximum(self.e_target_kwh[leaving] - self.e_kwh[leaving], 0.0)
            self.e_unmet_kwh += float(rem_kwh.sum())
            self.n_unmet += int((rem_kwh > _E_TOL_KWH).sum())
            self.n_departed += int(leaving.sum())
            self.plugged[leaving] = False
            self.k[leaving] += 1
        idx = np.flatnonzero(~self.plugged & (self.k < self.k_max))
        if idx.size == 0:
            return
        k = self.k[idx]
        s = self.sessions
        arriving = s.arrival_s[idx, k] < t_s + dt_s
        idx, k = idx[arriving], k[arriving]
        self.plugged[idx] = True
        self.t_arrival_s[idx] = s.arrival_s[idx, k]
        self.t_departure_s[idx] = s.departure_s[idx, k]
        self.cap_kwh[idx] = s.cap_kwh[idx, k]
        self.e_kwh[idx] = s.e_arrival_kwh[idx, k]
        # min() absorbs round-off when a session asks for a completely full battery.
        self.e_target_kwh[idx] = np.minimum(s.e_arrival_kwh[idx, k] + s.e_need_kwh[idx, k], s.cap_kwh[idx, k])
        self.n_arrived += int(idx.size)

    def _envelope(self, t_s: float, dt_s: float) -> Envelope:
        dt_h = dt_s / S_PER_H
        t_end_s = t_s + dt_s
        present = np.minimum(self.t_departure_s, t_end_s) - np.maximum(self.t_arrival_s, t_s)
        frac = np.where(self.plugged, np.clip(present / dt_s, 0.0, 1.0), 0.0)
        e_rem_kwh = np.where(self.plugged, np.maximum(self.e_target_kwh - self.e_kwh, 0.0), 0.0)
        p_cap_kw = self.p_rated_kw * frac
        p_max_kw = np.minimum(p_cap_kw, e_rem_kwh / (self.eta * dt_h))
        # Energy deliverable at full power after this tick, before departure [kWh, battery side].
        e_later_kwh = self.eta * self.p_rated_kw * np.maximum(self.t_departure_s - t_end_s, 0.0) / S_PER_H
        p_must_kw = np.clip((e_rem_kwh - e_later_kwh) / (self.eta * dt_h), 0.0, p_max_kw)
        # V2G: discharge only what the session's slack can win back, and not below soc_v2g_min.
        slack_kwh = np.maximum(e_later_kwh - e_rem_kwh, 0.0)
        above_floor_kwh = np.maximum(self.e_kwh - self.soc_v2g_min * self.cap_kwh, 0.0)
        p_dis_kw = np.where(
            self.v2g & self.plugged,
            np.minimum(p_cap_kw, np.minimum(slack_kwh, above_floor_kwh) * self.eta / dt_h),
            0.0,
        )
        p_min_kw = np.where(p_must_kw > 0.0, p_must_kw, -p_dis_kw)
        return Envelope(p_min_kw, p_max_kw, p_max_kw.copy())

    def _integrate(self, p_kw: np.ndarray, t_s: float, dt_h: float) -> None:
        e_new = battery_energy_step(self.e_kwh, p_kw, dt_h, self.eta)
        # Never past the need: the bound already ensures it, this absorbs float round-off.
        e_new = np.where(p_kw > 0.0, np.minimum(e_new, self.e_target_kwh), e_new)
        self.e_to_vehicles_kwh += float((e_new - self.e_kwh).sum())
        self.e_loss_kwh += float(battery_loss_kwh(p_kw, dt_h, self.eta).sum())
        self.e_grid_kwh += float(p_kw.sum() * dt_h)
        self.e_kwh = e_new

    @property
    def soc(self) -> np.ndarray:
        """State of charge of the plugged vehicle [-] (NaN where no vehicle is plugged)."""
        return np.where(self.plugged, self.e_kwh / self.cap_kwh, np.nan)

    def tick_metrics(self) -> dict[str, float]:
        n_plugged = int(self.plugged.sum())
        return {
            "n_plugged": float(n_plugged),
            "e_unmet_kwh": self.e_unmet_kwh,
        }

    def summary(self) -> dict[str, float]:
        pending_kwh = np.where(self.plugged, np.maximum(self.e_target_kwh - self.e_kwh, 0.0), 0.0)
        return {
            "n_devices": self.n,
            "n_v2g": int(self.v2g.sum()),
            "p_rated_total_kw": float(self.p_rated_kw.sum()),
            "n_sessions_arrived": self.n_arrived,
            "n_sessions_departed": self.n_departed,
            "n_sessions_unmet": self.n_unmet,
            "e_unmet_kwh": self.e_unmet_kwh,
            "n_sessions_plugged_at_end": int(self.plugged.sum()),
            "e_pending_at_end_kwh": float(pending_kwh.sum()),
            "e_grid_kwh": self.e_grid_kwh,
            "e_to_vehicles_kwh": self.e_to_vehicles_kwh,
            "e_loss_kwh": self.e_loss_kwh,
        }
