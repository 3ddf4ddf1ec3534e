"""ACN-Sim as a second baseline for ``vpp bench``: vpp's EV sessions charged by ACN-Sim.

ACN-Sim (``acnportal``, Caltech's adaptive charging network simulator, Lee,
Li and Low, 2019) is optional: ``pip install 'vpp[acn]'``. This module never
imports it at import time; :func:`acn_available` says whether it can, and
:data:`NOT_INSTALLED` is the line ``vpp bench`` prints when it cannot.

How an EV fleet of vpp (its own session table) becomes an ACN-Sim run:

* **Chargers**: one ACN-Sim ``EVSE`` per charger, continuous pilot from 0 to
  the pile rating, ``max_rate = p_rated_kw * 1000 / VOLTAGE_V`` [A] (a 7 kW
  AC pile at 230 V is 30.4 A), so a full pilot is exactly vpp's rating.
* **Network**: every EVSE on one feeder constraint that never binds (its
  limit is above the sum of all ratings). ACN-Sim's scheduler interface needs
  at least one constraint; vpp's baseline runs have no grid either.
* **Time**: one ACN-Sim period per vpp tick, ``period = dt_s / 60`` [min].
  ACN-Sim plugs vehicles in and out at whole periods, so arrival and
  departure are rounded to the nearest tick (vpp charges the fraction of the
  tick a vehicle is present) and departure is clipped to the horizon;
  a session that rounds to no period at all is dropped (counted).
* **Vehicles**: ACN-Sim's ``Linear2StageBattery`` (constant power to
  ``transition_soc``, then falling linearly to 0 at full, integrated in closed
  form), with ``max_power`` the vehicle's acceptance ``p_accept_kw`` and
  ``transition_soc`` the end of the flat part of vpp's taper (0.8 for AC
  piles). ACN-Sim has no charging efficiency: its energies are taken on the
  grid side, capacity ``cap_kwh / eta`` and charge ``e_arrival_kwh / eta``,
  which gives the same state of charge and the same grid power as vpp's
  ``dE/dt = eta * min(p_rated, p_accept * f(E / cap))``. vpp's taper ends at
  5 % of the acceptance at full, ACN-Sim's at 0: they differ only above 80 %.
* **Request**: ``requested_energy = (min(e_arrival + e_need, cap) - e_arrival) / eta``,
  the grid-side energy vpp's vehicle draws to reach its target.

Two ACN-Sim algorithms run: ``UncontrolledCharging`` (every plugged vehicle
not yet done gets its EVSE's full pilot for the whole period, so the last
period of a session overshoots the request by up to one period at full
power: ACN-Sim's behaviour, measured as ``e_over_request_kwh``) and
``SortedSchedulingAlgo(earliest_deadline_first)``, which caps each pilot at
the remaining demand and, with no binding constraint, charges every vehicle
as fast as it takes: vpp's default (uncontrolled) charging. Time is seconds,
energy kWh, power kW.
"""

from __future__ import annotations

import importlib.util
import time
from datetime import datetime

import numpy as np

__all__ = ["NOT_INSTALLED", "VOLTAGE_V", "ALGORITHMS", "acn_available", "acn_sessions", "acn_run"]

NOT_INSTALLED = "ACN-Sim: acnportal not installed (pip install 'vpp[acn]')"
VOLTAGE_V = 230.0  # single-phase AC supply of the piles [V]
ALGORITHMS = ("uncontrolled", "edf")


def acn_available() -> bool:
    """True when acnportal can be imported."""
    return importlib.util.find_spec("acnportal") is not None


def _transition_soc(taper_soc, taper_frac) -> float:
    """The state of charge where vpp's taper stops being flat (ACN-Sim's ``transition_soc``)."""
    frac0 = float(taper_frac[0])
    for s_prev, f in zip(taper_soc, taper_frac[1:]):
        if f < frac0:
            return float(s_prev)
    return 1.0


def acn_sessions(fleet, n_ticks: int, dt_s: float) -> dict[str, np.ndarray]:
    """vpp's sessions of ``fleet`` in ACN-Sim's terms, as arrays (one entry per kept session).

    Returns ``charger``, ``arrival`` and ``departure`` [periods], ``capacity_kwh``,
    ``init_kwh``, ``requested_kwh`` (grid side, see the module docstring),
    ``max_power_kw`` and ``n_dropped`` (sessions that round to no period).
    """
    tab = fleet.sessions
    eta = float(fleet.eta)
    charger = np.repeat(np.arange(fleet.n), np.diff(tab.ptr))
    arrival = np.maximum(np.rint(tab.arrival_s / dt_s), 0).astype(np.int64)
    departure = np.minimum(np.rint(tab.departure_s / dt_s), n_ticks).astype(np.int64)
    # Rounding must not plug a vehicle in before the previous one on its charger has left.
    same = np.r_[False, charger[1:] == charger[:-1]]
    prev_dep = np.r_[0, departure[:-1]]
    arrival = np.where(same, np.maximum(arrival, prev_dep), arrival)
    target = np.minimum(tab.e_arrival_kwh + tab.e_need_kwh, tab.cap_kwh)
    requested = np.maximum(target - tab.e_arrival_kwh, 0.0) / eta
    keep = departure > arrival
    return {
        "charger": charger[keep], "arrival": arrival[keep], "departure": departure[keep],
        "capacity_kwh": (tab.cap_kwh / eta)[keep], "init_kwh": (tab.e_arrival_kwh / eta)[keep],
        "requested_kwh": requested[keep], "max_power_kw": tab.p_accept_kw[keep],
        "n_dropped": int((~keep).sum()),
    }


def _simulator(fleet, n_ticks: int, dt_s: float, algorithm: str):
    from acnportal import acnsim
    from acnportal.algorithms import SortedSchedulingAlgo, UncontrolledCharging, earliest_deadline_first

    if algorithm == "uncontrolled":
        scheduler = UncontrolledCharging()
    elif algorithm == "edf":
        scheduler = SortedSchedulingAlgo(earliest_deadline_first)
    else:
        raise ValueError(f"unknown ACN-Sim algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}")
    ses = acn_sessions(fleet, n_ticks, dt_s)
    transition = _transition_soc(fleet.taper_soc, fleet.taper_frac)
    net = acnsim.ChargingNetwork()
    ids = [f"c{i}" for i in range(fleet.n)]
    max_a = fleet.p_rated_kw * 1000.0 / VOLTAGE_V
    for sid, a in zip(ids, max_a.tolist()):
        net.register_evse(acnsim.EVSE(sid, max_rate=a), VOLTAGE_V, 0.0)
    net.add_constraint(acnsim.Current(ids), 2.0 * float(max_a.sum()) + 1.0, name="feeder")  # never binds
    events = []
    for k, (i, a, d, cap, e0, req, p_max) in enumerate(zip(
            ses["charger"].tolist(), ses["arrival"].tolist(), ses["departure"].tolist(),
            ses["capacity_kwh"].tolist(), ses["init_kwh"].tolist(), ses["requested_kwh"].tolist(),
            ses["max_power_kw"].tolist())):
        battery = acnsim.Linear2StageBattery(cap, min(e0, cap), p_max, transition_soc=min(transition, 0.999))
        ev = acnsim.EV(a, d, req, ids[i], f"s{k}", battery)
        events.append(acnsim.PluginEvent(a, ev))
    sim = acnsim.Simulator(net, scheduler, acnsim.EventQueue(events), datetime(2024, 7, 1, 17),
                           period=dt_s / 60.0, verbose=False)
    return sim, ses


def acn_run(fleet, n_ticks: int, dt_s: float, algorithm: str) -> dict:
    """Run ACN-Sim's ``algorithm`` ('uncontrolled' or 'edf') on ``fleet``'s sessions for ``n_ticks`` ticks.

    Building the simulator is not timed. Returns the run's wall time [s], its
    device-ticks per second (chargers x ticks over the run), the energy it
    delivered [kWh] (grid side), the energy delivered beyond the requests
    [kWh] and the session counts.
    """
    t0 = time.perf_counter()
    sim, ses = _simulator(fleet, n_ticks, dt_s, algorithm)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim.run()
    run_s = time.perf_counter() - t0
    evs = list(sim.ev_history.values())
    delivered = np.array([ev.energy_delivered for ev in evs])
    requested = np.array([ev.requested_energy for ev in evs])
    return {
        "algorithm": algorithm, "n": fleet.n, "ticks": n_ticks, "run_s": run_s, "build_s": build_s,
        "device_ticks_per_s": fleet.n * n_ticks / run_s,
        "e_grid_kwh": float(delivered.sum()),
        "e_over_request_kwh": float(np.maximum(delivered - requested, 0.0).sum()),
        "n_sessions": len(evs), "n_sessions_dropped": ses["n_dropped"],
    }
