"""Power-flow solvers by name, built once from a pandapower net and updated per tick.

``SOLVERS`` maps a name to a solver class; :func:`get_solver` looks one up and
lists the valid names on an unknown one. This module imports neither
pandapower nor lightsim2grid at import time (the scenario schema checks names
against ``SOLVERS``); each solver imports what it needs when it is built.

Every solver is built from a pandapower net whose load table already holds
the VPP's loads, and is then driven tick by tick with the P and Q of every
load and static generator (arrays in the net's table order, [MW] and [Mvar],
before the elements' ``scaling``, exactly as pandapower's ``p_mw`` columns).
It returns a :class:`GridState`.

``pandapower``
    ``pandapower.runpp`` on the net, warm-started from the previous tick
    (``init="results"``): the reference. pandapower's own Newton-Raphson
    (``lightsim2grid=False``), so that installing lightsim2grid does not
    change the reference under our feet.
``lightsim2grid``
    lightsim2grid's C++ Newton-Raphson (KLU) on the admittance matrix that
    pandapower itself builds from the net. The net is converted once, by
    pandapower's own ``runpp`` at build time, so switches (open line switches,
    fused bus-bus switches), several external grids, islands, parallel lines,
    transformer tap and phase-shift conventions, three-winding transformers
    and shunts mean exactly what they mean to ``runpp``: there is no second
    conversion that could read them differently. Each tick only rebuilds the
    bus injections from the load and sgen arrays, warm-starts from the
    previous tick's voltages and reads lines, transformers and the external
    grid's power off the solved voltages with pandapower's formulas. Nets it
    cannot represent this way fall back to ``pandapower`` with one line
    saying why (:func:`build_solver`).

A power flow that does not converge is retried once from another start; if
that fails too the state is NaN throughout with ``converged=False``, never an
earlier tick's values.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np

__all__ = ["GridState", "SOLVERS", "get_solver", "build_solver", "PandapowerSolver", "LightSimSolver"]

# pandapower's numba kernels are compiled anew in every process (cache=False): ~5 s here, which a
# run of a few hundred small-net power flows never wins back, so the reference runs without them.
_NUMBA = False
_MAX_ITERATION = 10  # Newton-Raphson iterations on the first attempt (pandapower's default for "nr")
_RETRY_MAX_ITERATION = 30  # ... and on the retry, from a cold start (heavy ticks converge slowly)
_TOLERANCE_MVA = 1e-8  # largest bus power mismatch at convergence [MVA] (pandapower's default, sn_mva = 1)
_SQRT3 = float(np.sqrt(3.0))


@dataclass(frozen=True, slots=True)
class GridState:
    """Power-flow results of one tick; NaN everywhere when it did not converge."""

    converged: bool
    vm_pu: np.ndarray  # voltage magnitude per bus position [pu] (NaN on buses pandapower leaves unsupplied)
    line_loading_percent: np.ndarray  # per line, in the net's line table order [%]
    trafo_loading_percent: np.ndarray  # per two-winding transformer, in the net's trafo table order [%]
    p_ext_grid_mw: float  # total import from the external grid(s) [MW]
    p_loss_mw: float  # total line and transformer losses [MW]
    attempts: int = 1  # power flows tried for this tick: 1, or 2 when the first did not converge

    @classmethod
    def failed(cls, n_bus: int, n_line: int, n_trafo: int, attempts: int) -> "GridState":
        """The state of a tick whose power flow did not converge: NaN throughout."""
        return cls(False, np.full(n_bus, np.nan), np.full(n_line, np.nan), np.full(n_trafo, np.nan),
                   float("nan"), float("nan"), attempts)


class PandapowerSolver:
    """``pandapower.runpp`` on the net itself (the reference solver).

    Writes each tick's injections into ``net`` and runs the power flow there:
    the net must be private to this solver (a :class:`~vpp.grid.model.GridModel`
    owns a deep copy). The first attempt warm-starts from the previous tick's
    solution (``init="auto"`` on the first tick or after a failure: DC angles,
    magnitudes at the external grid's setpoint); the retry starts from
    ``init="dc"`` (flat magnitudes, DC angles) with up to 30 iterations. A plain
    flat start is no use as the retry: it fails outright on nets with
    phase-shifting transformers (mv_oberrhein) where "dc" converges.
    """

    name = "pandapower"

    def __init__(self, net, bus_index: np.ndarray):
        self.net = net
        self.bus_index = np.asarray(bus_index)
        self._init = "auto"

    def solve(self, load_p_mw, load_q_mvar, sgen_p_mw, sgen_q_mvar) -> GridState:
        """One power flow with these load and sgen injections [MW, Mvar, table order, before scaling]."""
        import pandapower as pp

        net = self.net
        if len(net.load):
            net.load["p_mw"] = load_p_mw
            net.load["q_mvar"] = load_q_mvar
        if len(net.sgen):
            net.sgen["p_mw"] = sgen_p_mw
            net.sgen["q_mvar"] = sgen_q_mvar
        attempts = 0
        for init, max_iteration in ((self._init, "auto"), ("dc", _RETRY_MAX_ITERATION)):
            attempts += 1
            try:
                pp.runpp(net, init=init, max_iteration=max_iteration, numba=_NUMBA, lightsim2grid=False)
                break
            except pp.LoadflowNotConverged:
                continue
        else:
            self._init = "auto"  # never warm-start from a failed solution
            return GridState.failed(self.bus_index.size, len(net.line), len(net.trafo), attempts)
        self._init = "results"
        vm_pu = net.res_bus.vm_pu.reindex(self.bus_index).to_numpy(dtype=float, copy=True)
        line_pct = net.res_line.loading_percent.to_numpy(dtype=float, copy=True) if len(net.line) else np.zeros(0)
        trafo_pct = net.res_trafo.loading_percent.to_numpy(dtype=float, copy=True) if len(net.trafo) else np.zeros(0)
        p_loss_mw = float(net.res_line.pl_mw.sum()) + (float(net.res_trafo.pl_mw.sum()) if len(net.trafo) else 0.0)
        return GridState(True, vm_pu, line_pct, trafo_pct, float(net.res_ext_grid.p_mw.sum()), p_loss_mw, attempts)


class Unsupported(Exception):
    """A net the fast solver cannot represent exactly; the message says why (one line)."""


def _quiet_runpp(net, **kwargs):
    import pandapower as pp

    log = logging.getLogger("pandapower")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        pp.runpp(net, **kwargs)
    finally:
        log.setLevel(level)


class _IslandEngine:
    """Newton-Raphson through lightsim2grid's ``LSGrid``, one per island (synchronous component).

    Each island's grid is built from pandapower's branch, shunt and bus data:
    branches without tap or phase shift as lines (pi model, half the charging
    admittance at each end), the others as transformers with the same ratio and
    shift; a slack generator at the island's reference bus, one voltage-setpoint
    generator (P = 0) per PV bus and loads carrying each bus's whole net
    demand (generators' fixed P included). ``LSGrid`` keeps its Jacobian's
    symbolic factorisation between calls, which a bare algorithm object called
    from Python does not; that halves the solve time.

    Each island takes exactly one reference bus: pandapower fixes the voltage
    at every reference bus, and ``LSGrid`` would distribute the slack among
    several instead.
    """

    kind = "LSGrid"

    def __init__(self, model, islands):
        from lightsim2grid.network import LSGrid
        from lightsim2grid.algorithm import AlgorithmType

        self.islands = []
        n = model["n"]
        ref_set = set(int(r) for r in model["ref"])
        pv_set = set(int(b) for b in model["pv"])
        for buses in islands:
            local = np.full(n, -1, dtype=np.int64)
            local[buses] = np.arange(buses.size)
            f, t = model["f"], model["t"]
            on = (local[f] >= 0) & (local[t] >= 0)
            fl, tl = local[f[on]].astype(np.int32), local[t[on]].astype(np.int32)
            r, x, h, ratio, shift = (model[k][on] for k in ("r", "x", "h", "ratio", "shift_deg"))
            is_trafo = (ratio != 1.0) | (shift != 0.0)
            ln = ~is_trafo
            g = LSGrid()
            g.set_sn_mva(model["base_mva"])
            g.init_bus(buses.size, 1, model["base_kv"][buses], int(ln.sum()), int(is_trafo.sum()))
            g.init_powerlines_full(r[ln], x[ln], h[ln] / 2.0, h[ln] / 2.0, fl[ln], tl[ln])
            n_tr = int(is_trafo.sum())
            g.init_trafo(r[is_trafo], x[is_trafo], h[is_trafo], ratio[is_trafo], shift[is_trafo], [True] * n_tr,
                         fl[is_trafo], tl[is_trafo], True)
            gs, bs = model["gs_mw"][buses], model["bs_mvar"][buses]
            sh = np.flatnonzero((gs != 0.0) | (bs != 0.0))
            g.init_shunt(gs[sh], -bs[sh], sh.astype(np.int32))  # lightsim2grid's shunt q is consumed: -BS
            # Two loads per bus: lightsim2grid's vectorised setters take float32, so each bus's demand goes in
            # as a float32 part and the float32 remainder, which LSGrid adds up in double precision.
            two = np.tile(np.arange(buses.size, dtype=np.int32), 2)
            g.init_loads(np.zeros(two.size), np.zeros(two.size), two)
            refs = [b for b in buses if int(b) in ref_set]
            pvs = [b for b in buses if int(b) in pv_set]
            gen_bus = np.array(refs + pvs, dtype=np.int64)
            vm = np.abs(model["v_ref"][gen_bus])
            g.init_generators(np.zeros(gen_bus.size), vm, np.full(gen_bus.size, -1e9), np.full(gen_bus.size, 1e9),
                              local[gen_bus].astype(np.int32))
            g.add_gen_slackbus(0, 1.0)
            g.deactivate_result_computation()  # we read voltages only: no flows per element
            available = g.available_default_algorithms()
            for algo in (AlgorithmType.NRSing_KLU, AlgorithmType.NR_KLU):
                if algo in available:
                    g.change_algorithm(algo)
                    break
            whole = buses.size == n and np.array_equal(buses, np.arange(n))
            self.islands.append((g, None if whole else buses, np.ones(2 * buses.size, dtype=bool),
                                 np.zeros(2 * buses.size, dtype=np.float32), np.zeros(2 * buses.size, dtype=np.float32)))

    def ybus_mismatch(self, ybus) -> float:
        """Largest difference between the islands' admittance matrices and pandapower's [pu]."""
        worst = 0.0
        for g, buses, *_ in self.islands:
            y = ybus if buses is None else ybus[buses][:, buses]
            worst = max(worst, float(abs(g.get_Ybus() - y).max()))
        return worst

    @staticmethod
    def _split32(x, out):
        """``x`` into ``out`` (float32, twice as long): a float32 part, then the float32 remainder.

        Their sum is ``x`` to ~1e-15 relative, where one float32 would be 6e-8.
        """
        k = x.size
        out[:k] = x
        out[k:] = x - out[:k]
        return out

    def solve(self, p_mw, q_mvar, v0, max_iter):
        split = self._split32
        if len(self.islands) == 1 and self.islands[0][1] is None:
            g, _, every, buf_p, buf_q = self.islands[0]
            g.update_loads_p(every, split(p_mw, buf_p))
            g.update_loads_q(every, split(q_mvar, buf_q))
            v = g.ac_pf(v0.copy(), max_iter, _TOLERANCE_MVA)
            return v if v.size else None
        v = np.empty_like(v0)
        for g, buses, every, buf_p, buf_q in self.islands:
            g.update_loads_p(every, split(p_mw[buses], buf_p))
            g.update_loads_q(every, split(q_mvar[buses], buf_q))
            res = g.ac_pf(v0[buses], max_iter, _TOLERANCE_MVA)
            if res.size == 0:
                return None
            v[buses] = res
        return v


class _YbusEngine:
    """Newton-Raphson with lightsim2grid's bare algorithm on pandapower's ``Ybus``.

    For islands with several reference buses (external grids): the first is
    the angle reference and the others are left out of the PV and PQ sets, so
    their voltage stays at its setpoint, as in pandapower. Slower than
    :class:`_IslandEngine` (the algorithm redoes its symbolic factorisation on
    every call from Python), exact all the same.
    """

    kind = "Ybus"

    def __init__(self, model):
        from scipy import sparse

        self._ybus = sparse.csc_matrix(model["ybus"], dtype=np.complex128)
        self._ybus.sum_duplicates()
        self._ybus.sort_indices()
        n = model["n"]
        self._slack = np.asarray(model["ref"][:1], dtype=np.int32)
        self._weights = np.zeros(n)
        self._weights[self._slack] = 1.0
        self._pv = np.asarray(model["pv"], dtype=np.int32)
        self._pq = np.asarray(model["pq"], dtype=np.int32)
        self._base_mva = model["base_mva"]
        self._new_algorithm()

    def _new_algorithm(self):
        try:
            from lightsim2grid.algorithm import NRSing_KLU as Algorithm
        except ImportError:  # a build without KLU
            from lightsim2grid.algorithm import NRSing_SparseLU as Algorithm
        self._algo = Algorithm()

    # The bare algorithm object neither pickles nor deep-copies: a copy gets a fresh one.
    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_algo"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._new_algorithm()

    def solve(self, p_mw, q_mvar, v0, max_iter):
        sbus = (p_mw + 1j * q_mvar) * (-1.0 / self._base_mva)
        algo = self._algo
        if not algo.compute_pf(self._ybus, v0.copy(), sbus, self._slack, self._weights, self._pv, self._pq,
                               max_iter, _TOLERANCE_MVA):
            return None
        return algo.get_V()


class LightSimSolver:
    """lightsim2grid's Newton-Raphson on pandapower's own model of the net.

    Built once: one ``runpp`` on a copy of the net converts it (pandapower's
    internal "ppci" case: per-unit branch data with taps and shifts, bus
    types, element-to-bus lookups, admittance matrices) and gives a converged
    solution to start from. The solve runs in ``LSGrid`` objects built from
    that case, one per island (:class:`_IslandEngine`), checked at build time
    to reproduce pandapower's admittance matrix to 1e-9 pu; islands with
    several external grids, or a mismatch, use lightsim2grid's algorithm on
    pandapower's matrix directly (:class:`_YbusEngine`). :attr:`engine` says
    which.

    Per tick: each bus's net demand from the load and sgen arrays (pandapower's
    own sums, scaling and in-service flags included), one Newton-Raphson solve,
    and results read off the voltages with pandapower's definitions:

    - line loading: ``max(i_from_ka, i_to_ka) / (max_i_ka * df * parallel)``;
    - transformer loading: ``max(i_hv_ka * vn_hv_kv, i_lv_ka * vn_lv_kv) * sqrt(3)
      / sn_mva / parallel / df`` (pandapower's default ``trafo_loading="current"``);
    - losses: ``p_from + p_to`` summed over lines and transformers;
    - external grids: real power injected at the reference buses plus the
      demand there, less other generators on those buses.

    Buses that ``runpp`` leaves unsupplied (out of service, or in an island
    with no external grid) are NaN, as in ``net.res_bus``; branches it drops
    keep the (constant) result ``runpp`` gave them at build time.

    The first attempt warm-starts from the previous tick's voltages (from the
    build-time solution on the first tick and after a failure); the retry
    starts from the build-time solution with up to 30 iterations.

    Raises :class:`Unsupported` for nets this cannot reproduce exactly.
    """

    name = "lightsim2grid"

    def __init__(self, net, bus_index: np.ndarray):
        try:
            import lightsim2grid  # noqa: F401
        except ImportError:
            raise Unsupported("lightsim2grid is not installed (pip install lightsim2grid)") from None
        _check_supported(net)
        from scipy import sparse
        from scipy.sparse.csgraph import connected_components

        try:
            from pandapower.pypower.idx_brch import (BR_B, BR_B_ASYM, BR_G, BR_G_ASYM, BR_R, BR_R_ASYM, BR_X,
                                                     BR_X_ASYM, F_BUS, SHIFT, T_BUS, TAP)
            from pandapower.pypower.idx_bus import BASE_KV, BS, GS, PD
            from pandapower.pypower.idx_gen import GEN_BUS, GEN_STATUS, PG
        except ImportError as exc:
            raise Unsupported(f"this pandapower lacks {exc.name or exc}, needed to read its internal model") from None

        bus_index = np.asarray(bus_index)
        work = copy.deepcopy(net)  # runpp writes into its net
        self._n_line = len(net.line)
        self._n_trafo = len(net.trafo)
        self._n_bus = bus_index.size
        for init in ("auto", "dc"):
            try:
                _quiet_runpp(work, init=init, max_iteration=_RETRY_MAX_ITERATION, numba=False, lightsim2grid=False)
                break
            except Exception:  # LoadflowNotConverged, or anything pandapower's converter raises
                continue
        else:
            raise Unsupported("pandapower's power flow, needed once to build the solver, did not converge on this net")
        internal = work._ppc["internal"]
        lookups = work._pd2ppc_lookups
        base_mva = float(internal["baseMVA"])
        self._base_mva = base_mva
        bus, br, gen = internal["bus"], internal["branch"], internal["gen"]
        n = bus.shape[0]
        self._n_ppci = n
        ref = np.asarray(internal["ref"], dtype=np.int64)
        self._ref = ref
        self._v_ref = np.asarray(internal["V"], dtype=np.complex128).copy()  # build-time solution: the cold start

        # pandapower bus -> ppci bus (fused buses share one; unsupplied ones map past the end)
        bus_lookup = np.asarray(lookups["bus"])
        take = bus_lookup[bus_index]
        self._vm_take = None if (take < n).all() else np.where(take < n, take, n)  # index n reads a NaN
        self._vm_index = take if self._vm_take is None else None

        # Net demand per bus [MW, Mvar] = what the tables give (pandapower's build_bus: load p * scaling,
        # less sgen p * scaling, in service only) + a fixed part (other PQ elements, less generators' P).
        is_el = work._is_elements
        load_bus, load_w = self._element_map(work, "load", is_el, bus_lookup, n)
        sgen_bus, sgen_w = self._element_map(work, "sgen", is_el, bus_lookup, n)
        self._inj_bus = np.concatenate([load_bus, sgen_bus])
        self._inj_w = np.concatenate([load_w, -sgen_w])
        self._n_load = load_bus.size
        load, sgen = net.load, net.sgen
        tables = (load.p_mw.to_numpy(float), load.q_mvar.to_numpy(float),
                  sgen.p_mw.to_numpy(float), sgen.q_mvar.to_numpy(float))
        sbus = np.asarray(internal["Sbus"], dtype=np.complex128)
        self._fixed_p_mw = 0.0
        self._fixed_q_mvar = 0.0
        p_now, q_now = self._demand(*tables)
        self._fixed_p_mw = -sbus.real * base_mva - p_now
        self._fixed_q_mvar = -sbus.imag * base_mva - q_now
        # The external grids' power: injection at the reference buses + their demand PD, less other
        # generators there (pandapower's pfsoln). PD = net demand + generation (Cg Sg) at the bus.
        bus_pd = bus[:, PD].real.astype(float)
        sg_p_mw = sbus.real * base_mva + bus_pd
        on = gen[:, GEN_STATUS].real > 0
        gbus = gen[:, GEN_BUS].real.astype(np.int64)
        other = on & ~np.isin(np.arange(gen.shape[0]), np.asarray(internal["ref_gens"], dtype=np.int64)) \
            & np.isin(gbus, ref)
        self._p_ext_const_mw = float(sg_p_mw[ref].sum() - gen[other, PG].real.sum())

        # Branch results: rows of Yf and Yt for the lines and transformers pandapower kept in the ppci.
        branch_is = np.asarray(internal["branch_is"], dtype=bool)
        ppci_row = np.cumsum(branch_is) - 1  # ppc branch -> ppci branch
        base_kv = bus[:, BASE_KV].real.astype(float)
        n_line, n_trafo = self._n_line, self._n_trafo
        default = np.zeros(n_line + n_trafo)
        if n_line:
            default[:n_line] = work.res_line.loading_percent.to_numpy(float)
        if n_trafo:
            default[n_line:] = work.res_trafo.loading_percent.to_numpy(float)
        rows, out_pos, c_from, c_to, zero_max = [], [], [], [], []
        f_bus, t_bus = br[:, F_BUS].real.astype(np.int64), br[:, T_BUS].real.astype(np.int64)
        for kind, offset in (("line", 0), ("trafo", n_line)):
            if kind not in lookups["branch"]:
                continue
            f, t = lookups["branch"][kind]
            keep = branch_is[f:t]
            pos = np.flatnonzero(keep)
            row = ppci_row[f:t][keep]
            # |I| [kA] = |Y V| [pu] * baseMVA / (sqrt(3) * base_kv)
            k_from = base_mva / (_SQRT3 * base_kv[f_bus[row]])
            k_to = base_mva / (_SQRT3 * base_kv[t_bus[row]])
            if kind == "line":
                line = net.line
                df = line["df"].to_numpy(float) if "df" in line else np.ones(n_line)
                i_max_ka = (line.max_i_ka.to_numpy(float) * df * line.parallel.to_numpy(float))[pos]
                zero = i_max_ka == 0.0
                scale = np.where(zero, 0.0, 100.0 / np.where(zero, 1.0, i_max_ka))
                c_from.append(k_from * scale)
                c_to.append(k_to * scale)
                zero_max.append(pos[zero] + offset)
            else:
                tr = net.trafo
                df = tr["df"].to_numpy(float) if "df" in tr else np.ones(n_trafo)
                # loading [%] = max(i_hv * vn_hv, i_lv * vn_lv) * sqrt(3) / sn_mva * 100 / parallel / df
                scale = _SQRT3 * 100.0 / (tr.sn_mva.to_numpy(float) * tr.parallel.to_numpy(float) * df)
                c_from.append(k_from * (tr.vn_hv_kv.to_numpy(float) * scale)[pos])
                c_to.append(k_to * (tr.vn_lv_kv.to_numpy(float) * scale)[pos])
            rows.append(row)
            out_pos.append(pos + offset)
        sel = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        self._loading_default = default
        self._loading_pos = np.concatenate(out_pos) if out_pos else np.zeros(0, dtype=np.int64)
        self._c_from = np.concatenate(c_from) if c_from else np.zeros(0)
        self._c_to = np.concatenate(c_to) if c_to else np.zeros(0)
        self._zero_max = np.concatenate(zero_max) if zero_max else np.zeros(0, dtype=np.int64)
        ybus = sparse.csr_matrix(internal["Ybus"])
        yf = sparse.csr_matrix(internal["Yf"])[sel]
        yt = sparse.csr_matrix(internal["Yt"])[sel]
        m = sel.size
        cf = sparse.csr_matrix((np.ones(m), (np.arange(m), f_bus[sel])), shape=(m, n))
        ct = sparse.csr_matrix((np.ones(m), (np.arange(m), t_bus[sel])), shape=(m, n))
        # One product gives the currents at both ends and, as quadratic forms Re(V^H A V), the losses of all
        # lines and transformers (A = Cf' Yf + Ct' Yt: sum of S_from + S_to) and the real power injected at
        # the reference buses (A = Ybus on their rows only).
        loss = cf.T @ yf + ct.T @ yt
        at_ref = sparse.csr_matrix((np.ones(ref.size), (ref, ref)), shape=(n, n)) @ ybus
        self._y_stack = sparse.vstack([yf, yt, loss, at_ref]).tocsr()
        self._y_stack.sum_duplicates()
        self._m = m
        self._is_ref = np.zeros(n)
        self._is_ref[ref] = 1.0

        # The engine: LSGrid per island where every island has one reference bus and the matrices agree.
        model = {
            "n": n, "base_mva": base_mva, "base_kv": base_kv, "ref": ref,
            "pv": np.asarray(internal["pv"], dtype=np.int64), "pq": np.asarray(internal["pq"], dtype=np.int64),
            "f": f_bus, "t": t_bus, "r": br[:, BR_R].real.astype(float), "x": br[:, BR_X].real.astype(float),
            "h": (br[:, BR_G].real + 1j * br[:, BR_B].real).astype(np.complex128),
            "ratio": np.where(br[:, TAP].real == 0.0, 1.0, br[:, TAP].real).astype(float),
            "shift_deg": br[:, SHIFT].real.astype(float),
            "gs_mw": bus[:, GS].real.astype(float), "bs_mvar": bus[:, BS].real.astype(float),
            "v_ref": self._v_ref, "ybus": ybus,
        }
        asym = np.abs(br[:, [BR_R_ASYM, BR_X_ASYM, BR_G_ASYM, BR_B_ASYM]].real).max() if len(br) else 0.0
        graph = sparse.csr_matrix((np.ones(f_bus.size), (f_bus, t_bus)), shape=(n, n))
        n_comp, label = connected_components(graph, directed=False)
        islands = [np.flatnonzero(label == c) for c in range(n_comp)]
        one_ref = all(np.isin(ref, b).sum() == 1 for b in islands)
        self.engine = None
        if one_ref and asym == 0.0:
            try:
                engine = _IslandEngine(model, islands)
                # Self-check on the build-time case: same admittance matrix, same solution.
                v = engine.solve(p_now + self._fixed_p_mw, q_now + self._fixed_q_mvar, self._v_ref, _MAX_ITERATION)
                if (v is not None and np.abs(np.abs(v) - np.abs(self._v_ref)).max() < 1e-8
                        and engine.ybus_mismatch(ybus) <= 1e-9 * max(1.0, float(abs(ybus).max()))):
                    self.engine = engine
            except Exception:  # an LSGrid that refuses the data: the Ybus engine takes it
                self.engine = None
        if self.engine is None:
            try:
                self.engine = _YbusEngine(model)
            except ImportError as exc:
                raise Unsupported(f"this lightsim2grid lacks {exc.name or exc} (pip install 'lightsim2grid>=1.2')") from None
        self._v_prev: np.ndarray | None = None

    @property
    def engine_kind(self) -> str:
        """``"LSGrid"`` (one lightsim2grid grid per island) or ``"Ybus"`` (the algorithm on pandapower's matrix)."""
        return self.engine.kind

    @staticmethod
    def _element_map(net, element, is_el, bus_lookup, n):
        tab = net[element]
        if not len(tab):
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        b = bus_lookup[tab.bus.to_numpy()]
        active = np.asarray(is_el[element], dtype=bool) & (b < n)
        return np.where(active, b, 0), np.where(active, tab.scaling.to_numpy(float), 0.0)

    def _demand(self, load_p_mw, load_q_mvar, sgen_p_mw, sgen_q_mvar):
        """Net demand per ppci bus [MW], [Mvar]: minus pandapower's Sbus times baseMVA."""
        w = self._inj_w
        n = self._n_ppci
        p = np.bincount(self._inj_bus, weights=np.concatenate([load_p_mw, sgen_p_mw]) * w, minlength=n)
        q = np.bincount(self._inj_bus, weights=np.concatenate([load_q_mvar, sgen_q_mvar]) * w, minlength=n)
        return p + self._fixed_p_mw, q + self._fixed_q_mvar

    def solve(self, load_p_mw, load_q_mvar, sgen_p_mw, sgen_q_mvar) -> GridState:
        """One power flow with these load and sgen injections [MW, Mvar, table order, before scaling]."""
        p_mw, q_mvar = self._demand(load_p_mw, load_q_mvar, sgen_p_mw, sgen_q_mvar)
        first = self._v_ref if self._v_prev is None else self._v_prev
        v = self.engine.solve(p_mw, q_mvar, first, _MAX_ITERATION)
        attempts = 1
        if v is None or not np.isfinite(v).all():
            attempts = 2
            v = self.engine.solve(p_mw, q_mvar, self._v_ref, _RETRY_MAX_ITERATION)
            if v is None or not np.isfinite(v).all():
                self._v_prev = None  # never warm-start from a failed solution
                return GridState.failed(self._n_bus, self._n_line, self._n_trafo, attempts)
        self._v_prev = v
        vm = np.abs(v)
        vm_pu = vm[self._vm_index] if self._vm_take is None else np.append(vm, np.nan)[self._vm_take]

        y_v = _matvec(self._y_stack, v)
        m = self._m
        loading = self._loading_default.copy()
        loading[self._loading_pos] = np.maximum(np.abs(y_v[:m]) * self._c_from, np.abs(y_v[m:2 * m]) * self._c_to)
        if self._zero_max.size:
            loading[self._zero_max] = np.inf  # pandapower: a line with no rated current is infinitely loaded
        n = self._n_ppci
        p_loss_mw = np.vdot(v, y_v[2 * m:2 * m + n]).real * self._base_mva
        p_inj_mw = np.vdot(v, y_v[2 * m + n:]).real * self._base_mva
        p_ext_grid_mw = p_inj_mw + p_mw @ self._is_ref + self._p_ext_const_mw
        n_line = self._n_line
        return GridState(True, vm_pu, loading[:n_line], loading[n_line:], float(p_ext_grid_mw), float(p_loss_mw),
                         attempts)


def _matvec(a, x: np.ndarray) -> np.ndarray:
    """``a @ x`` for a complex CSR matrix and vector, without scipy's Python-level dispatch (~5 us a call)."""
    global _csr_matvec
    if _csr_matvec is None:
        try:
            from scipy.sparse._sparsetools import csr_matvec as _csr_matvec
        except ImportError:  # a scipy that moved its private kernels
            _csr_matvec = False
    if _csr_matvec is False:
        return a @ x
    y = np.zeros(a.shape[0], dtype=np.complex128)
    _csr_matvec(a.shape[0], a.shape[1], a.indptr, a.indices, a.data, x, y)
    return y


_csr_matvec = None


def _check_supported(net) -> None:
    """Raise :class:`Unsupported` (one line, why) for what the fast solver cannot reproduce exactly."""
    load = net.load
    if len(load):
        cols = [c for c in ("const_z_percent", "const_i_percent", "const_z_p_percent", "const_i_p_percent",
                            "const_z_q_percent", "const_i_q_percent") if c in load]
        if cols and (load.loc[load.in_service, cols].to_numpy(float) != 0).any():
            raise Unsupported("loads with constant-impedance or constant-current shares (const_z/const_i) "
                              "draw voltage-dependent power")
    for element in ("svc", "tcsc", "ssc", "vsc", "bus_dc"):
        if element in net and len(net[element]):
            raise Unsupported(f"the net has {element} elements, which pandapower solves inside its own iterations")
    if len(net.gen) and "slack" in net.gen and (net.gen.slack & net.gen.in_service).any():
        raise Unsupported("generators with slack=True share the slack with the external grid")


SOLVERS: dict[str, type] = {
    "pandapower": PandapowerSolver,
    "lightsim2grid": LightSimSolver,
}
"""Power-flow solvers by name; ``pandapower`` is the reference."""


def get_solver(name: str) -> type:
    """The solver class called ``name``; KeyError listing the valid names otherwise."""
    try:
        return SOLVERS[name]
    except KeyError:
        raise KeyError(f"unknown grid solver {name!r}; valid: {', '.join(SOLVERS)}") from None


def build_solver(name: str, net, bus_index: np.ndarray):
    """Build solver ``name`` on ``net``: ``(solver, note)``.

    ``note`` is ``""``, or one line saying why the fast solver could not take
    this net and ``runpp`` runs instead. The pandapower solver works on
    ``net`` itself (it must be private to it); others copy what they need.
    """
    cls = get_solver(name)
    if cls is PandapowerSolver:
        return PandapowerSolver(net, bus_index), ""
    try:
        return cls(net, bus_index), ""
    except Unsupported as exc:
        return PandapowerSolver(net, bus_index), f"{name} cannot take this net ({exc}); pandapower's runpp runs instead"
