"""The ``optimal`` strategy: a least-cost linear programme over a call's remaining window, with energy constraints.

What it decides. An operator's share of a call is a requested change of its
power, tick by tick, until the call ends. Per-device LPs at 10^5 devices are
too large to solve every tick, so the devices are aggregated into *groups*
(:class:`vpp.fleets.base.FlexGroups`, made by each fleet kind): EV sessions per
fleet x departure bucket (``bucket_s``, default 1 h) x V2G capability, each
fleet's base-station batteries, each building fleet's thermal mass and its
batteries. A group is a "virtual battery" with summed bounds: the standard
aggregate model (Müller et al. 2019, "Aggregation and disaggregation of
energetic flexibility from distributed energy resources", IEEE Trans. Smart
Grid 10(2), 1205-1214; for thermal loads Hao et al. 2015, "Aggregate
flexibility of thermostatically controlled loads", IEEE Trans. Power Syst.
30(1), 189-198). The LP plans every group's power over the window, the
portfolio applies its first tick, split over each group's devices in
proportion to their room, and plans again.

The LP (``G`` groups, ``H`` ticks of ``dt_h`` hours, ``k = 0`` the tick being
dispatched). Variables per group and tick: charge ``c >= 0`` and discharge
``d >= 0`` power [kW] (grid side), the stored energy ``E`` at the tick's end
[kWh], and the deviation from the group's no-call forecast split into
``dp, dm >= 0`` [kW]; per tick the request slacks ``a, b >= 0`` [kW].

* energy: ``E[g,k] = leak_g E[g,k-1] + (gain_c c - gain_d d) dt_h - w[g,k]``,
  ``E[g,-1] = e0_g``; ``e_min[g,k] <= E[g,k] <= e_max[g,k]``. This carries the
  EV departure energy (a cumulative lower bound by deadline, per session and
  summed), the base stations' backup reserve and SoC bounds, the building
  batteries' SoC bounds and the comfort band (the 1R1C room as a leaky store
  of cooling; its band in energy-equivalent form);
* envelope: ``c <= c_max[g,k]``, ``d <= d_max[g,k]`` and, at tick 0, the exact
  room of the group's devices: ``dp <= up0_g``, ``dm <= down0_g``;
* deviation: ``p_fixed + c - d - p_base = dp - dm`` (the group's power minus
  its no-call forecast);
* request: ``sum_g (dp - dm)[g,k] - a_k + b_k = r_k``;
* objective: ``min dt_h * sum( cost_g (dp + dm) + M_k (a_k + b_k) )`` with
  ``cost_g`` the room-weighted mean ``cost_cny_per_kwh`` of the group's devices
  and the shortfall penalty ``M_k`` far above any cost (default ``1e3 * (1 +
  max cost)`` CNY/kWh, a little higher for earlier ticks so that a shortfall
  that must happen happens later rather than now).

The requested change ``r_k`` follows the call's own profile (intervals,
ramp) over the window, scaled so that ``r_0`` is this tick's request. It is a
change against the call's no-call level (``reference: no_call``, the default):
the operator keeps a :class:`NoCallModel` of the targeted devices, copied
from their states at the call's first plan and stepped at default power, and
the request rows are offset by the drift of the groups' forecast from it
(``catch_up``: a pre-cooled room needs less cooling, an EV behind its no-call
charge keeps charging longer). Measured against the twin on a small plant,
open loop: 1.00 of the call with the model, 0.64 against the forecast from
the current state (``reference: state``, the behaviour before), which
mistakes catch-up for delivery.

After the window (no-call reference): over the call's recovery window
(``recovery_s``, else ``default_recovery_s``) the request rows ask for the
no-call level at the rebound penalty ``rho`` (default ``10 * (1 + max
cost)``, far below the shortfall penalty, so delivery comes first); over the
return phase after it (``return_s``) there is no request, the largest rebound
costs ``rho / 2`` per kWh spread evenly, and the energy the call moved
(``moved_kwh``, tracked against the model) must be back by the horizon's end
or cost ``2 rho`` per kWh. So the plan prefers devices whose energy can come
back late, holds the plant at the no-call level while the programme's
recovery lasts, and then returns the energy flat instead of all at once.
After the window a plan is kept 5 min (``_POST_WINDOW_KEEP_S``) of short ticks.

Exact: tick 0's bounds (the envelope, summed); every bound of a group of one
device; the summed quantities themselves (energies, fixed loads, HVAC and
battery limits, the comfort band's width). Approximated: the aggregate lets
energy move between the devices of a group (the Minkowski sum of their
flexibility sets is replaced by the box of summed bounds, an outer
approximation: a plan may be undeliverable device by device, and the fleets'
envelopes then clip it); EV power after tick 0 uses the flat part of the
charging curve (the taper is ignored); a building group uses weighted-mean
decay and gain; future EV arrivals are unknown; buildings' and base stations'
profiles are taken as known forecasts; the horizon (window, recovery and
return) is cut at ``max_horizon_ticks``.
Feasibility: before solving, each group's energy bounds are
intersected with the energies its power bounds can reach, tick by tick (a
bound that cannot be reached is moved to the nearest reachable value), so the
LP is always feasible and a request it cannot meet shows up as a shortfall
(``Plan.shortfall_kw``), never as a failure. Should HiGHS still not return an
optimum, the tick falls back to the merit order (the one-tick LP) and the
plan says so.

Re-solve policy: a plan is kept per call and reused for ``resolve_every_ticks``
ticks (default 1: a new plan every tick); a new call or modification, a
request that differs from the plan's by more than 1e-6 (relative), a
different tick length or the end of the plan's horizon also trigger a
re-solve. A reused plan's group setpoints for the tick are clipped to the
groups' current room. The horizon is the call's remaining window, at most
``max_horizon_ticks`` (default 288).

Solved with HiGHS through :func:`scipy.optimize.linprog` (``method="highs"``).
Size (benchmarks/bench_optimal.py, this 2-core machine): the LP alone stays
within 1 s up to ~10,000-15,000 group-ticks (e.g. 100 groups x 96 ticks);
an operator's mix of five fleets makes 15-40 groups, so a plan for a 2-h call
takes ~0.1 s at 10^5 devices and ~0.7 s at 10^6 with 5-min ticks (H = 24),
~0.2-0.4 s at 10^5 with 1-min ticks (H = 120), most of it the per-device
forecast of the groups, not the LP. highspy called directly was 5-40 %
faster on the LP alone, a few % of a plan: not worth a dependency.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from vpp.dispatch.allocation import merit_order
from vpp.fleets.base import FlexGroups

__all__ = ["OptimalConfig", "Plan", "LPArrays", "LPResult", "lp_arrays", "solve_groups", "merge_groups", "static_group", "OptimalPlanner",
           "request_profile", "REFERENCES"]

_REQUEST_RTOL = 1e-6
_POST_WINDOW_KEEP_S = 300.0  # after a call's window, a plan is kept this long (whole ticks, at least one) [s]
REFERENCES = ("no_call", "state")


@dataclass(frozen=True)
class OptimalConfig:
    """Knobs of the ``optimal`` strategy (see the module docstring)."""

    resolve_every_ticks: int = 1
    bucket_s: float = 3600.0  # width of the EV departure buckets [s]
    max_horizon_ticks: int = 288
    penalty_cny_per_kwh: float | None = None  # shortfall penalty; None: 1e3 * (1 + the largest cost)
    reference: str = "no_call"  # what requests are measured against: "no_call" (the call's counterfactual) or "state"
    default_recovery_s: float = 0.0  # recovery window planned after a call that names none [s]
    return_s: float = 14400.0  # after the recovery window, the deferred energy returns over this long [s]; 0: at once
    rebound_penalty_cny_per_kwh: float | None = None  # rebound in the recovery window; None: 10 * (1 + largest cost)

    def __post_init__(self):
        if self.reference not in REFERENCES:
            raise ValueError(f"optimal reference {self.reference!r} is not one of: {', '.join(REFERENCES)}")


@dataclass(frozen=True)
class LPResult:
    """What :func:`solve_groups` found: deviation per group and tick [kW], shortfall per tick [kW], HiGHS status."""

    dev_kw: np.ndarray  # (G, H) planned power minus no-call forecast, signed
    shortfall_kw: np.ndarray  # (H,) |request| not delivered (>= 0)
    excess_kw: np.ndarray  # (H,) delivered beyond the request (>= 0)
    status: int  # scipy's linprog status (0: optimal)
    message: str
    solve_s: float  # wall time of the solver call [s]
    cost_cny: float  # dispatch cost of the plan, penalties excluded [CNY]
    e_kwh: np.ndarray  # (G, H) planned stored energy at each tick's end


@dataclass
class Plan:
    """One operator's plan for one call, made at ``t_s`` (kept for reuse and for reporting)."""

    call_id: str
    modification: int
    t_s: float
    dt_s: float
    labels: tuple[str, ...]
    member: np.ndarray  # portfolio device index per membership
    group: np.ndarray
    share_down: np.ndarray
    share_up: np.ndarray
    request_kw: np.ndarray  # (H,)
    result: LPResult | None
    fallback: bool = False  # the tick fell back to the merit order
    note: str = ""

    @property
    def shortfall_kw(self) -> np.ndarray:
        """Planned shortfall per tick [kW] (the whole request at tick 0 for a fallback that met nothing)."""
        return self.result.shortfall_kw if self.result is not None else np.zeros(self.request_kw.shape)


def static_group(label: str, member: np.ndarray, p_min_kw: np.ndarray, p_max_kw: np.ndarray,
                 p_default_kw: np.ndarray, n_ticks: int) -> FlexGroups:
    """A group with no energy model: its tick-0 envelope (summed over ``member``) held for ``n_ticks`` ticks."""
    lo, hi, de = float(p_min_kw.sum()), float(p_max_kw.sum()), float(p_default_kw.sum())
    shape = (1, n_ticks)
    one = np.ones(member.size)
    return FlexGroups(
        labels=(label,), member=np.asarray(member), group=np.zeros(member.size, dtype=np.int64), share_down=one,
        share_up=one, p_base_kw=np.full(shape, de), p_fixed_kw=np.full(shape, lo),
        c_max_kw=np.full(shape, max(hi - lo, 0.0)), d_max_kw=np.zeros(shape), e0_kwh=np.zeros(1),
        e_min_kwh=np.full(shape, -np.inf), e_max_kwh=np.full(shape, np.inf), leak=np.ones(1), gain_c=np.zeros(1),
        gain_d=np.zeros(1), w_kwh=np.zeros(shape),
    )


def merge_groups(parts: list[tuple[FlexGroups, int]]) -> FlexGroups:
    """One :class:`FlexGroups` of several fleets' groups; ``member`` offset by each fleet's first device index."""
    offsets = np.cumsum([0] + [fg.n_groups for fg, _ in parts])

    def cat(name):
        return np.concatenate([getattr(fg, name) for fg, _ in parts])

    return FlexGroups(
        labels=tuple(lab for fg, _ in parts for lab in fg.labels),
        member=np.concatenate([np.asarray(fg.member, dtype=np.int64) + off for fg, off in parts]),
        group=np.concatenate([np.asarray(fg.group, dtype=np.int64) + g0 for (fg, _), g0 in zip(parts, offsets)]),
        share_down=cat("share_down"), share_up=cat("share_up"), p_base_kw=cat("p_base_kw"),
        p_fixed_kw=cat("p_fixed_kw"), c_max_kw=cat("c_max_kw"), d_max_kw=cat("d_max_kw"), e0_kwh=cat("e0_kwh"),
        e_min_kwh=cat("e_min_kwh"), e_max_kwh=cat("e_max_kwh"), leak=cat("leak"), gain_c=cat("gain_c"),
        gain_d=cat("gain_d"), w_kwh=cat("w_kwh"),
    )


def _reachable_bounds(g: FlexGroups, down0: np.ndarray, up0: np.ndarray, dt_h: float):
    """Energy bounds intersected with what the power bounds can reach, tick by tick (vectorised over groups).

    Returns ``(e_min, e_max)`` with a non-empty reachable interval at every
    tick, so the LP is feasible: a bound no trajectory reaches moves to the
    nearest reachable energy.
    """
    n_g, n_t = g.p_base_kw.shape
    e_min, e_max = g.e_min_kwh.astype(float).copy(), g.e_max_kwh.astype(float).copy()
    lo = g.e0_kwh.astype(float).copy()
    hi = lo.copy()
    for k in range(n_t):
        if k == 0:
            base_net = g.p_base_kw[:, 0] - g.p_fixed_kw[:, 0]
            net_lo, net_hi = base_net - down0, base_net + up0
        else:
            net_lo, net_hi = -g.d_max_kw[:, k], g.c_max_kw[:, k]

        def stored(net):
            return (g.gain_c * np.maximum(net, 0.0) - g.gain_d * np.maximum(-net, 0.0)) * dt_h

        lo = g.leak * lo + stored(net_lo) - g.w_kwh[:, k]
        hi = g.leak * hi + stored(net_hi) - g.w_kwh[:, k]
        e_min[:, k] = np.minimum(e_min[:, k], hi)
        e_max[:, k] = np.maximum(np.maximum(e_max[:, k], lo), e_min[:, k])
        lo, hi = np.maximum(lo, e_min[:, k]), np.minimum(hi, e_max[:, k])
    return e_min, e_max


@dataclass(frozen=True)
class LPArrays:
    """The group LP in the form ``min obj @ x`` s.t. ``a_eq @ x = b_eq``, ``lb <= x <= ub`` (variable blocks below)."""

    obj: np.ndarray
    a_eq: object  # scipy.sparse CSR matrix
    b_eq: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    n_groups: int
    n_ticks: int
    a_ub: object = None  # scipy.sparse CSR matrix of the return phase (``a_ub @ x <= b_ub``), or None
    b_ub: np.ndarray | None = None

    @property
    def gh(self) -> int:
        return self.n_groups * self.n_ticks

    def block(self, x: np.ndarray, name: str) -> np.ndarray:
        """One variable block of a solution: ``c``, ``d``, ``e``, ``dp``, ``dm`` as (G, H); ``a``, ``b`` as (H,)."""
        gh, n_t = self.gh, self.n_ticks
        if name in ("a", "b"):
            start = 5 * gh + (0 if name == "a" else n_t)
            return x[start:start + n_t]
        i = ("c", "d", "e", "dp", "dm").index(name)
        return x[i * gh:(i + 1) * gh].reshape(self.n_groups, n_t)


def lp_arrays(g: FlexGroups, cost_cny_per_kwh: np.ndarray, down0_kw: np.ndarray, up0_kw: np.ndarray,
              request_kw: np.ndarray, dt_s: float, penalty_cny_per_kwh: float | None = None,
              recovery_from: int | None = None, rebound_penalty_cny_per_kwh: float | None = None,
              return_from: int | None = None, catch_up_kw: np.ndarray | None = None, sign: float = -1.0,
              debt_kwh: float = 0.0) -> LPArrays:
    """The LP of the module docstring as arrays (sparse constraint matrix), built without a Python loop over groups.

    ``request_kw`` is against the call's no-call level, which is the groups'
    forecast ``p_base_kw`` minus ``catch_up_kw`` (0 when not given). Ticks
    ``recovery_from <= k < return_from`` are the call's recovery window: their
    request rows (the no-call level, 0) are held at the rebound penalty ``rho``
    instead of the shortfall penalty (default ``10 * (1 + the largest cost)``).
    Ticks ``k >= return_from`` return the energy the call moved: no request;
    the largest rebound there (``-sign * (power - no-call)``, ``sign`` the
    call's direction) costs ``rho / 2`` per kWh spread evenly, and by the
    horizon's end the energy moved (``debt_kwh`` so far, plus what the plan
    moves) is back, or each kWh missing costs ``2 rho``.
    """
    from scipy.sparse import coo_matrix

    n_g, n_t = g.p_base_kw.shape
    request_kw = np.asarray(request_kw, dtype=float)
    if request_kw.shape != (n_t,):
        raise ValueError(f"request_kw has shape {request_kw.shape}, expected ({n_t},)")
    dt_h = dt_s / 3600.0
    cost = np.asarray(cost_cny_per_kwh, dtype=float)
    cost_max = float(np.max(np.abs(cost), initial=0.0))
    big = penalty_cny_per_kwh if penalty_cny_per_kwh is not None else 1e3 * (1.0 + cost_max)
    rho = rebound_penalty_cny_per_kwh if rebound_penalty_cny_per_kwh is not None else 10.0 * (1.0 + cost_max)
    e_min, e_max = _reachable_bounds(g, down0_kw, up0_kw, dt_h)
    gh = n_g * n_t
    cu = np.zeros(n_t) if catch_up_kw is None else np.asarray(catch_up_kw, dtype=float)
    # Variable blocks: c, d, E, dp, dm (each G*H, index g*H + k), then a, b (each H), then the return
    # phase's rebound peak z and unreturned energy s.
    C, D, E, DP, DM = (i * gh for i in range(5))
    A, B = 5 * gh, 5 * gh + n_t
    Z, S = 5 * gh + 2 * n_t, 5 * gh + 2 * n_t + 1
    n_var = 5 * gh + 2 * n_t + 2
    gk = np.arange(gh)
    g_of = gk // n_t
    k_of = gk % n_t
    rows, cols, vals = [], [], []

    def put(r, c, v):
        rows.append(np.asarray(r))
        cols.append(np.asarray(c))
        vals.append(np.broadcast_to(np.asarray(v, dtype=float), np.shape(r)))

    # Energy rows 0..gh-1: E[g,k] - leak E[g,k-1] - gain_c dt_h c + gain_d dt_h d = -w (+ leak e0 at k = 0).
    put(gk, E + gk, 1.0)
    later = gk[k_of > 0]
    put(later, E + later - 1, -g.leak[g_of[later]])
    put(gk, C + gk, -g.gain_c[g_of] * dt_h)
    put(gk, D + gk, g.gain_d[g_of] * dt_h)
    b_energy = -g.w_kwh.reshape(-1).astype(float)
    b_energy[k_of == 0] += g.leak * g.e0_kwh
    # Deviation rows gh..2gh-1: c - d - dp + dm = p_base - p_fixed.
    put(gh + gk, C + gk, 1.0)
    put(gh + gk, D + gk, -1.0)
    put(gh + gk, DP + gk, -1.0)
    put(gh + gk, DM + gk, 1.0)
    b_dev = (g.p_base_kw - g.p_fixed_kw).reshape(-1)
    # Request rows 2gh..2gh+H-1: sum_g (dp - dm) - a + b = r.
    put(2 * gh + k_of, DP + gk, 1.0)
    put(2 * gh + k_of, DM + gk, -1.0)
    kk = np.arange(n_t)
    put(2 * gh + kk, A + kk, -1.0)
    put(2 * gh + kk, B + kk, 1.0)
    a_eq = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(2 * gh + n_t, n_var)).tocsr()
    b_eq = np.concatenate([b_energy, b_dev, request_kw - cu])
    a_ub = b_ub = None
    if return_from is not None and return_from < n_t:
        # Rebound peak: -sign * sum_g dev[g,k] - z <= sign * cu[k] for every return tick; energy back by the end:
        # sign * dt_h * sum_{g,k} dev - s <= -debt - sign * dt_h * sum_k cu[k].
        ret = gk[k_of >= return_from]
        row = k_of[ret] - return_from
        n_ret = n_t - return_from
        ur = [row, row, np.arange(n_ret), np.full(gh, n_ret), np.full(gh, n_ret), [n_ret]]
        uc = [DP + ret, DM + ret, np.full(n_ret, Z), DP + gk, DM + gk, [S]]
        uv = [np.full(ret.size, -sign), np.full(ret.size, sign), -np.ones(n_ret), np.full(gh, sign * dt_h),
              np.full(gh, -sign * dt_h), [-1.0]]
        a_ub = coo_matrix((np.concatenate([np.asarray(v, dtype=float) for v in uv]),
                           (np.concatenate([np.asarray(r) for r in ur]), np.concatenate([np.asarray(c) for c in uc]))),
                          shape=(n_ret + 1, n_var)).tocsr()
        b_ub = np.concatenate([sign * cu[return_from:], [-max(debt_kwh, 0.0) - sign * dt_h * cu.sum()]])

    lb = np.zeros(n_var)
    ub = np.full(n_var, np.inf)
    c_max = g.c_max_kw.reshape(-1).astype(float).copy()
    d_max = g.d_max_kw.reshape(-1).astype(float).copy()
    first = k_of == 0
    c_max[first] = np.inf  # tick 0 is bounded by the devices' exact room (dp, dm) instead
    d_max[first] = np.where(d_max[first] > 0.0, np.inf, 0.0)
    ub[C:C + gh] = np.maximum(c_max, 0.0)
    ub[D:D + gh] = np.maximum(d_max, 0.0)
    lb[E:E + gh] = e_min.reshape(-1)
    ub[E:E + gh] = e_max.reshape(-1)
    ub[DP + gk[first]] = np.maximum(up0_kw, 0.0)
    ub[DM + gk[first]] = np.maximum(down0_kw, 0.0)
    obj = np.zeros(n_var)
    obj[DP:DP + gh] = cost[g_of] * dt_h
    obj[DM:DM + gh] = cost[g_of] * dt_h
    # Earlier ticks weigh a little more, so an unavoidable shortfall falls late (re-planned before it comes).
    m_k = big * dt_h * (1.0 + 1e-3 * (n_t - 1 - kk) / max(n_t - 1, 1))
    if recovery_from is not None and recovery_from < n_t:
        rec = kk >= recovery_from
        n_rec = int(rec.sum())
        # Earlier recovery ticks weigh a little more: a rebound the deadlines force comes as late as it can.
        m_k[rec] = rho * dt_h * (1.0 + 1e-2 * (n_rec - 1 - (kk[rec] - recovery_from)) / max(n_rec - 1, 1))
    if a_ub is not None:
        m_k[return_from:] = 0.0  # no request while the energy returns
        obj[Z] = 0.5 * rho * (n_t - return_from) * dt_h  # a peak z held over the phase costs rho / 2 per kWh
        obj[S] = 2.0 * rho
    else:
        ub[Z] = ub[S] = 0.0
    obj[A:A + n_t] = m_k
    obj[B:B + n_t] = m_k
    return LPArrays(obj, a_eq, b_eq, lb, ub, n_g, n_t, a_ub, b_ub)


def solve_groups(g: FlexGroups, cost_cny_per_kwh: np.ndarray, down0_kw: np.ndarray, up0_kw: np.ndarray,
                 request_kw: np.ndarray, dt_s: float, penalty_cny_per_kwh: float | None = None,
                 recovery_from: int | None = None, rebound_penalty_cny_per_kwh: float | None = None,
                 return_from: int | None = None, catch_up_kw: np.ndarray | None = None, sign: float = -1.0,
                 debt_kwh: float = 0.0) -> LPResult:
    """Solve the group LP of the module docstring with HiGHS (``scipy.optimize.linprog``, ``method="highs"``).

    ``cost_cny_per_kwh``, ``down0_kw``, ``up0_kw``: per group (G,); ``request_kw``: per tick (H,), signed,
    against the no-call level; the phases after the window and the other arguments: :func:`lp_arrays`.
    Shortfall and excess are against ``request_kw - catch_up_kw`` (the groups' forecast).
    """
    from scipy import optimize

    lp = lp_arrays(g, cost_cny_per_kwh, down0_kw, up0_kw, request_kw, dt_s, penalty_cny_per_kwh, recovery_from,
                   rebound_penalty_cny_per_kwh, return_from, catch_up_kw, sign, debt_kwh)
    n_g, n_t = lp.n_groups, lp.n_ticks
    request_kw = np.asarray(request_kw, dtype=float)
    if catch_up_kw is not None:
        request_kw = request_kw - catch_up_kw
    t0 = time.perf_counter()
    res = optimize.linprog(lp.obj, A_ub=lp.a_ub, b_ub=lp.b_ub, A_eq=lp.a_eq, b_eq=lp.b_eq,
                           bounds=np.column_stack([lp.lb, lp.ub]), method="highs")
    solve_s = time.perf_counter() - t0
    if res.status != 0 or res.x is None:
        zeros = np.zeros((n_g, n_t))
        return LPResult(zeros, np.abs(request_kw), np.zeros(n_t), int(res.status), str(res.message), solve_s,
                        0.0, zeros)
    x = res.x
    dev = lp.block(x, "dp") - lp.block(x, "dm")
    total = dev.sum(axis=0)
    sign = np.sign(request_kw)
    shortfall = np.where(sign != 0.0, np.maximum(np.abs(request_kw) - sign * total, 0.0), 0.0)
    excess = np.where(sign != 0.0, np.maximum(sign * total - np.abs(request_kw), 0.0), np.abs(total))
    dt_h = dt_s / 3600.0
    cost = np.asarray(cost_cny_per_kwh, dtype=float)
    cost_cny = float((cost[:, None] * (lp.block(x, "dp") + lp.block(x, "dm"))).sum() * dt_h)
    return LPResult(dev, shortfall, excess, 0, str(res.message), solve_s, cost_cny, lp.block(x, "e").copy())


def request_profile(call, delta_kw: float, t_s: float, dt_s: float, max_ticks: int) -> np.ndarray:
    """This operator's requested change per tick over the call's remaining window [kW, signed].

    Tick 0 is ``delta_kw`` (this tick's request, as instructed); later ticks
    follow the call version's own profile (intervals, ramp) scaled by the same
    factor. A call whose profile cannot be read (a setpoint signal) is held flat.
    """
    end_s = call.end_s
    n_t = max(1, min(int(max_ticks), int(math.ceil((end_s - t_s) / dt_s - 1e-9))))
    out = np.full(n_t, float(delta_kw))
    try:
        req0 = call.requested_kw(t_s, t_s + dt_s)
        scale = abs(delta_kw) / (req0 if req0 > 0.0 else call.p_kw)
        sign = 1.0 if delta_kw > 0.0 else -1.0
        for k in range(1, n_t):
            out[k] = sign * scale * call.requested_kw(t_s + k * dt_s, t_s + (k + 1) * dt_s)
    except (ValueError, ZeroDivisionError):
        pass
    return out


class NoCallModel:
    """An operator's counterfactual for one call: the devices it targets run at default power from its first plan.

    What the operator's devices would have done without the call, modelled
    from their states when the call reached them and stepped tick by tick at
    default power: the operator's own model of what it controls (the sessions
    still to arrive come from the session table, the same perfect forecast as
    :meth:`vpp.sim.agents.OperatorAgent.available_kwh`). The ``optimal``
    strategy measures a call's request against it, so that energy the call has
    already moved (a pre-cooled room needing less cooling, an EV behind its
    no-call charge) is not mistaken for delivery, holds the plant at it over
    the recovery window and returns the moved energy against it. It is never
    the twin, which is the simulation's ground truth and is read only by the
    metrics.

    Per tick: :meth:`begin` (advance and envelope at ``t_s``), then
    :meth:`horizon` if a plan is made, then :meth:`end` (step at default).
    """

    def __init__(self, portfolio, states, members: list[np.ndarray], t_s: float):
        self.fleets = portfolio.fleets
        self.states = [s.copy() for s in states]
        self.work = [f.new_workspace() for f in portfolio.fleets]
        self.members = members  # per fleet, the targeted devices
        self.t_s = float(t_s)  # start of the next tick to step
        self.envs = None
        self._last: tuple[float, float] | None = None  # (t_s, no-call power) of the tick last stepped
        self.repeat = False  # this tick was already stepped (the same tick dispatched again, e.g. a benchmark)

    def begin(self, t_s: float, dt_s: float) -> float:
        """Bring the model to the tick ``[t_s, t_s + dt_s)``; return the targeted devices' no-call power [kW].

        The tick last stepped may be asked for again (the same tick dispatched twice): its envelopes are
        kept and :meth:`end` then steps nothing.
        """
        self.repeat = self._last is not None and abs(t_s - self._last[0]) <= 1e-6 * dt_s
        if self.repeat:
            return self._last[1]
        while self.t_s < t_s - 1e-6 * dt_s:  # ticks nobody planned (should not happen: begin runs every tick)
            for f, s, w in zip(self.fleets, self.states, self.work):
                f.advance(s, self.t_s, dt_s)
                f.run_default(s, self.t_s, dt_s, w)
            self.t_s += dt_s
        self.envs = []
        p_kw = 0.0
        for f, s, w, m in zip(self.fleets, self.states, self.work, self.members):
            f.advance(s, t_s, dt_s)
            env = f.flexibility(s, t_s, dt_s, w)
            self.envs.append(env)
            p_kw += float(env.p_default_kw[m].sum())
        self._last = (t_s, p_kw)
        return p_kw

    def horizon(self, t_s: float, dt_s: float, n_t: int, bucket_s: float) -> np.ndarray:
        """The targeted devices' no-call power over ``n_t`` ticks from ``t_s`` (after :meth:`begin`) [kW]."""
        total = np.zeros(n_t)
        for f, s, env, m in zip(self.fleets, self.states, self.envs, self.members):
            if m.size:
                total += _forecast_kw(f, s, t_s, dt_s, n_t, env, m, bucket_s)
        return total

    def end(self, t_s: float, dt_s: float) -> None:
        """Step the model over the tick at default power (once per tick)."""
        if self.repeat:
            return
        for f, s, env in zip(self.fleets, self.states, self.envs):
            f.step(s, env.p_default_kw, t_s, dt_s, env)
        self.t_s = t_s + dt_s


def _forecast_kw(f, s, t_s: float, dt_s: float, n_t: int, env, members: np.ndarray, bucket_s: float) -> np.ndarray:
    """The no-call forecast of ``members`` of fleet ``f`` from state ``s``, summed [kW] per tick (static: held)."""
    fg = f.flex_groups(s, t_s, dt_s, n_t, env, members, bucket_s)
    if fg is None:
        return np.full(n_t, float(env.p_default_kw[members].sum()))
    return fg.p_base_kw.sum(axis=0)


@dataclass
class OptimalPlanner:
    """The ``optimal`` strategy of one portfolio: plans per call, kept for reuse (see the module docstring)."""

    config: OptimalConfig = field(default_factory=OptimalConfig)
    plans: dict[str, Plan] = field(default_factory=dict)
    n_solves: int = 0
    n_reused: int = 0
    n_fallbacks: int = 0
    solve_s: float = 0.0  # total solver time [s]
    build_s: float = 0.0  # total time building the groups and the LP inputs [s]
    calls: dict = field(default_factory=dict)  # call id -> the newest version split (kept until its energy is back)
    no_call: dict[str, NoCallModel] = field(default_factory=dict)  # call id -> its counterfactual
    moved_kwh: dict[str, float] = field(default_factory=dict)  # call id -> energy moved in its direction so far

    def recovery_s(self, call) -> float:
        """The recovery window planned after ``call`` [s]: its own ``recovery_s``, else the configured default."""
        return float(call.recovery_s) if call.recovery_s is not None else float(self.config.default_recovery_s)

    def _phase_ends(self, call) -> tuple[float, float]:
        """When ``call``'s recovery window and its return phase end [s]."""
        rec_end = call.end_s + self.recovery_s(call)
        return rec_end, rec_end + (self.config.return_s if self.config.reference == "no_call" else 0.0)

    def recover(self, portfolio, p_kw: np.ndarray, env, active) -> dict[str, np.ndarray]:
        """Move ``p_kw`` by the plans of calls after their window (not in ``active``); the change per call [kW].

        Over its recovery window a call's plan holds the devices at the call's
        no-call level (:class:`NoCallModel`) as far as their energy bounds
        allow; over the return phase after it the energy the call moved comes
        back with the smallest peak the plan finds. A call is forgotten when
        both have passed.
        """
        tick = portfolio.tick
        out: dict[str, np.ndarray] = {}
        if tick is None:
            return out
        _, t_s, dt_s = tick
        for cid, call in list(self.calls.items()):
            if cid in active:
                continue
            if t_s >= self._phase_ends(call)[1] - 1e-6 * dt_s:
                for d in (self.calls, self.no_call, self.plans, self.moved_kwh):
                    d.pop(cid, None)
                continue
            if t_s < call.end_s - 1e-6 * dt_s:
                continue  # inside the window with nothing requested this tick (an interval at 0)
            out[cid] = self.split(portfolio, p_kw, env, 0.0, portfolio._selection(call), call)
        return out

    def split(self, portfolio, p_kw: np.ndarray, env, delta_kw: float, sel, call) -> np.ndarray:
        """Move ``p_kw`` (in place) by this tick's plan for ``call``; return the change per device [kW].

        ``portfolio`` supplies the fleets, their states and per-fleet envelopes
        of the tick (:meth:`vpp.dispatch.Portfolio.flexibility`). ``delta_kw``
        0 after the call's window: its recovery and return (:meth:`recover`).
        """
        if delta_kw != 0.0:
            self.calls[call.call_id] = call
        tick = portfolio.tick
        idx = np.arange(portfolio.n) if isinstance(sel, slice) else np.asarray(sel)
        down_kw = np.maximum(p_kw - env.p_min_kw, 0.0)
        up_kw = np.maximum(env.p_max_kw - p_kw, 0.0)
        if tick is None:  # no fleet state at hand (an envelope made by hand): the one-tick LP
            return self._fallback(portfolio, p_kw, delta_kw, idx, down_kw, up_kw, None)
        states, t_s, dt_s = tick
        model = None
        if self.config.reference == "no_call":
            model = self.no_call.get(call.call_id)
            if model is None:
                selected = np.zeros(portfolio.n, dtype=bool)
                selected[idx] = True
                members = [np.flatnonzero(selected[lo:hi]) for _, lo, hi in portfolio.slices()]
                model = self.no_call[call.call_id] = NoCallModel(portfolio, states, members, t_s)
            p_no_call_kw = model.begin(t_s, dt_s)
        plan = self.plans.get(call.call_id)
        k = None
        if plan is not None and plan.result is not None and not plan.fallback:
            k_real = (t_s - plan.t_s) / dt_s
            k = int(round(k_real))
            # After the window a plan is kept for 5 min of short ticks (1-min ticks would solve a long horizon
            # every minute of the recovery and return).
            keep = self.config.resolve_every_ticks if delta_kw != 0.0 else max(
                self.config.resolve_every_ticks, int(_POST_WINDOW_KEEP_S // dt_s))
            if (plan.modification != call.modification or plan.dt_s != dt_s or abs(k_real - k) > 1e-9
                    or not 0 <= k < min(keep, plan.request_kw.shape[0])
                    or abs(plan.request_kw[k] - delta_kw) > _REQUEST_RTOL * max(1.0, abs(delta_kw))):
                k = None
        if k is None:
            plan = self._solve(portfolio, p_kw, env, delta_kw, idx, down_kw, up_kw, call, states, t_s, dt_s, model)
            self.plans[call.call_id] = plan
            if plan.fallback:
                d_kw = self._fallback(portfolio, p_kw, delta_kw, idx, down_kw, up_kw, plan)
            else:
                d_kw = self._apply(portfolio, p_kw, env, plan, 0, down_kw, up_kw)
        else:
            self.n_reused += 1
            d_kw = self._apply(portfolio, p_kw, env, plan, k, down_kw, up_kw)
        if model is not None and not model.repeat:
            # Energy moved in the call's direction this tick, against the no-call model [kWh].
            sign = call.direction.sign
            self.moved_kwh[call.call_id] = self.moved_kwh.get(call.call_id, 0.0) + sign * (
                float(p_kw[idx].sum()) - p_no_call_kw) * dt_s / 3600.0
            model.end(t_s, dt_s)
        return d_kw

    def _fallback(self, portfolio, p_kw, delta_kw, idx, down_kw, up_kw, plan) -> np.ndarray:
        self.n_fallbacks += 1
        room = down_kw[idx] if delta_kw < 0.0 else up_kw[idx]
        d_sel = merit_order(delta_kw, room, portfolio.cost_cny_per_kwh[idx])
        d_kw = np.zeros(portfolio.n)
        d_kw[idx] = d_sel
        p_kw += d_kw
        return d_kw

    def _horizon(self, call, delta_kw: float, t_s: float, dt_s: float) -> tuple[np.ndarray, int | None, int | None]:
        """The request per tick from ``t_s`` over the rest of the window, the recovery window and the return
        phase (capped at ``max_horizon_ticks``), and the ticks where recovery and return start (None: not in it)."""
        cfg = self.config
        rec_end_s, ret_end_s = self._phase_ends(call)
        if delta_kw != 0.0:
            request = request_profile(call, delta_kw, t_s, dt_s, cfg.max_horizon_ticks)
        else:
            request = np.zeros(0)
        n_w = request.shape[0]
        t_after = max(t_s + n_w * dt_s, call.end_s)  # where the ticks after the window start

        def ticks(until_s):
            return max(0, int(math.ceil((until_s - t_after) / dt_s - 1e-9)))

        n_rec = ticks(rec_end_s)
        n_ret = ticks(ret_end_s) - n_rec
        n_rec = min(n_rec, cfg.max_horizon_ticks - n_w)
        n_ret = max(0, min(n_ret, cfg.max_horizon_ticks - n_w - n_rec))
        if n_w + n_rec + n_ret == 0:
            n_ret = 1
        out = np.concatenate([request, np.zeros(n_rec + n_ret)])
        return out, (n_w if n_rec else None), (n_w + n_rec if n_ret else None)

    def _solve(self, portfolio, p_kw, env, delta_kw, idx, down_kw, up_kw, call, states, t_s, dt_s,
               model: NoCallModel | None) -> Plan:
        cfg = self.config
        t0 = time.perf_counter()
        request, recovery_from, return_from = self._horizon(call, delta_kw, t_s, dt_s)
        if model is None:
            return_from = None  # the state reference has no measure of the energy moved: no return phase
        n_t = request.shape[0]
        selected = np.zeros(portfolio.n, dtype=bool)
        selected[idx] = True
        parts = []
        now_kw = np.zeros(n_t)  # the selection's forecast from its current state, as the groups see it
        for (f, lo, hi), s, fenv in zip(portfolio.slices(), states, portfolio.fleet_envelopes):
            members = np.flatnonzero(selected[lo:hi])
            if members.size == 0:
                continue
            fg = f.flex_groups(s, t_s, dt_s, n_t, fenv, members, cfg.bucket_s)
            if fg is None:
                j = members + lo
                now_kw += float(env.p_default_kw[j].sum())
                if float(down_kw[j].sum() + up_kw[j].sum()) <= 0.0:
                    continue  # nothing to move (e.g. no EV plugged)
                fg = static_group(f"{f.name}:static", members, env.p_min_kw[j], env.p_max_kw[j],
                                  env.p_default_kw[j], n_t)
            else:
                now_kw += fg.p_base_kw.sum(axis=0)
            parts.append((fg, int(lo)))
        # The request is a change against what the devices would do without this call: the forecast from their
        # state drifts from it as the call moves energy (a pre-cooled room, an EV behind), by catch_up_kw.
        catch_up_kw = None if model is None else now_kw - model.horizon(t_s, dt_s, n_t, cfg.bucket_s)
        if catch_up_kw is not None and call.from_setpoint:
            # A setpoint event's tick request is already the change from the devices' default power (the
            # platform's conversion, vpp.dr.DRCall.as_delta): the window is planned against the forecast.
            catch_up_kw[:recovery_from if recovery_from is not None else return_from] = 0.0
        if not parts:
            self.build_s += time.perf_counter() - t0
            return Plan(call.call_id, call.modification, t_s, dt_s, (), np.zeros(0, np.int64), np.zeros(0, np.int64),
                        np.zeros(0), np.zeros(0), request, None, True, "no devices with room")
        g = merge_groups(parts)
        n_g = g.n_groups
        member, group = g.member, g.group
        # Tick 0: each group's exact room (share-weighted envelope room, from the current setpoints, so that
        # earlier calls of the tick are accounted for) and its forecast moved by what they already did.
        w_dn = g.share_down * down_kw[member]
        w_up = g.share_up * up_kw[member]
        down0 = np.bincount(group, weights=w_dn, minlength=n_g)
        up0 = np.bincount(group, weights=w_up, minlength=n_g)
        moved = p_kw[member] - env.p_default_kw[member]
        p_base = g.p_base_kw.copy()
        p_base[:, 0] += np.bincount(group, weights=np.where(moved < 0.0, g.share_down, g.share_up) * moved,
                                    minlength=n_g)
        g = replace(g, p_base_kw=p_base)
        # Each group's cost: its devices' cost weighted by their room in the call's direction.
        sign = call.direction.sign
        w = w_dn if sign < 0.0 else w_up
        cost_m = portfolio.cost_cny_per_kwh[member]
        wsum = np.bincount(group, weights=w, minlength=n_g)
        cost = np.where(wsum > 0.0, np.bincount(group, weights=w * cost_m, minlength=n_g) / np.where(
            wsum > 0.0, wsum, 1.0), np.bincount(group, weights=cost_m, minlength=n_g) / np.maximum(
            np.bincount(group, minlength=n_g), 1))
        self.build_s += time.perf_counter() - t0
        try:
            result = solve_groups(g, cost, down0, up0, request, dt_s, cfg.penalty_cny_per_kwh, recovery_from,
                                  cfg.rebound_penalty_cny_per_kwh, return_from, catch_up_kw, sign,
                                  self.moved_kwh.get(call.call_id, 0.0))
        except Exception as exc:  # a solver failure costs this tick's optimality, never the run
            result = None
            note = f"LP failed: {type(exc).__name__}: {exc}"
        else:
            note = "" if result.status == 0 else f"HiGHS status {result.status}: {result.message}"
            self.solve_s += result.solve_s
        self.n_solves += 1
        fallback = result is None or result.status != 0
        return Plan(call.call_id, call.modification, t_s, dt_s, g.labels, member, group, g.share_down, g.share_up,
                    request, result, fallback, note)

    def _apply(self, portfolio, p_kw, env, plan: Plan, k: int, down_kw, up_kw) -> np.ndarray:
        """Split each group's deviation at tick ``k`` of the plan over its devices, in proportion to their room."""
        n_g = len(plan.labels)
        member, group = plan.member, plan.group
        w_dn = plan.share_down * down_kw[member]
        w_up = plan.share_up * up_kw[member]
        down_g = np.bincount(group, weights=w_dn, minlength=n_g)
        up_g = np.bincount(group, weights=w_up, minlength=n_g)
        dev = np.clip(plan.result.dev_kw[:, k], -down_g, up_g)
        up = dev[group] > 0.0
        w = np.where(up, w_up, w_dn)
        tot = np.where(up, up_g[group], down_g[group])
        part = np.divide(dev[group] * w, tot, out=np.zeros(member.size), where=tot > 0.0)
        d_kw = np.bincount(member, weights=part, minlength=portfolio.n)
        before = p_kw.copy()
        p_kw += d_kw
        np.clip(p_kw, env.p_min_kw, env.p_max_kw, out=p_kw)
        return p_kw - before
