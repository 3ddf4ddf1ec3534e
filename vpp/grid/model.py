"""The grid under the plant: a pandapower net, VPP load per bus, a power flow per tick.

This package is the only place that imports pandapower. The VPP's per-bus
power arrives in kW from the simulator and is handed to the solver in MW on
one aggregated load element per bus that hosts devices (unity power factor).
The net's own loads and static generators follow daily profiles scaled from
their nominal values.

The power flow itself is a solver chosen by name (:mod:`vpp.grid.solvers`):
``lightsim2grid`` by default, ``pandapower`` (``runpp``) as the reference and
the fallback when the fast solver cannot take the net
(:attr:`GridModel.solver_note` says why).

A power flow that does not converge is retried once from another starting
point; if that fails too, the tick's :class:`GridState` is NaN throughout with
``converged=False``. Results of an earlier tick are never returned in its place.
"""

from __future__ import annotations

import copy

import numpy as np
import pandapower as pp

from vpp.grid.solvers import GridState, build_solver, get_solver
from vpp.units import KW_PER_MW

__all__ = ["GridModel", "GridState"]


class GridModel:
    """A private copy of a pandapower net with one VPP load per hosting bus, and its solver.

    Buses are addressed by *position* ``0..n_bus-1`` in ``bus_index`` (the
    net's bus labels), so that fleets can sum per bus with ``np.bincount``.
    ``solver`` names the power-flow solver (:data:`vpp.grid.solvers.SOLVERS`);
    it is built once, when the VPP loads are attached, and
    :attr:`solver_name` says which one actually runs.
    """

    def __init__(self, net, name: str = "", solver: str = "lightsim2grid"):
        get_solver(solver)  # an unknown name fails here, listing the valid ones
        self.name = name
        self.solver_requested = solver
        self.net = copy.deepcopy(net)  # runpp writes into its net: never the caller's
        self.bus_index = self.net.bus.index.to_numpy()
        self.n_bus = int(self.bus_index.shape[0])
        self._pos = {int(b): i for i, b in enumerate(self.bus_index)}
        self._load_p0_mw = self.net.load.p_mw.to_numpy(dtype=float).copy()
        self._load_q0_mvar = self.net.load.q_mvar.to_numpy(dtype=float).copy()
        self._sgen_p0_mw = self.net.sgen.p_mw.to_numpy(dtype=float).copy()
        self._sgen_q0_mvar = self.net.sgen.q_mvar.to_numpy(dtype=float).copy()
        self._vpp_load_idx: np.ndarray | None = None
        self._vpp_bus_pos = np.zeros(0, dtype=np.int64)
        self._solver = None
        self._solver_note = ""

    def clone(self) -> "GridModel":
        """An independent copy (its own net, solver and warm start), e.g. for the no-call twin's power flows.

        Power flows warm-start from the previous solution; solving the twin on
        its own copy keeps the plant's results independent of whether a twin runs.
        """
        return copy.deepcopy(self)

    @property
    def solver(self):
        """The solver object that runs (see :mod:`vpp.grid.solvers`), built on first use."""
        return self._ensure_solver()

    @property
    def solver_name(self) -> str:
        """The solver that runs: the one asked for, or ``"pandapower"`` after a fallback."""
        return self._ensure_solver().name

    @property
    def solver_note(self) -> str:
        """Why the solver asked for does not run on this net (one line), or ``""``."""
        self._ensure_solver()
        return self._solver_note

    def position(self, bus: int) -> int:
        """Position of a bus label in :attr:`bus_index` (KeyError if absent)."""
        return self._pos[int(bus)]

    def has_bus(self, bus: int) -> bool:
        """Whether the net has a bus labelled ``bus``."""
        return int(bus) in self._pos

    def load_weights(self) -> np.ndarray:
        """Nominal net load per bus position [MW] (the net's own loads, scaling applied)."""
        load = self.net.load
        p_mw = (load.p_mw * load.scaling).to_numpy(dtype=float)
        pos = np.array([self._pos[int(b)] for b in load.bus], dtype=np.int64)
        return np.bincount(pos, weights=np.maximum(p_mw, 0.0), minlength=self.n_bus)

    def attach_vpp(self, bus_pos: np.ndarray) -> None:
        """Create one VPP load element on each bus position in ``bus_pos`` and build the solver."""
        bus_pos = np.unique(np.asarray(bus_pos, dtype=np.int64))
        idx = pp.create_loads(
            self.net, buses=self.bus_index[bus_pos], p_mw=0.0, q_mvar=0.0, name="vpp", scaling=1.0
        )
        self._vpp_load_idx = np.asarray(idx)
        self._vpp_bus_pos = bus_pos
        n_load = len(self.net.load)
        # Injection arrays in the load table's order: background loads keep their rows, VPP loads are appended.
        vpp_row = self.net.load.index.get_indexer(self._vpp_load_idx)
        bg_row = np.setdiff1d(np.arange(n_load), vpp_row)
        self._n_vpp_load = vpp_row.size
        # (create_loads appends, so both are slices in practice: cheaper than index arrays every tick)
        self._bg_load_row = _as_slice(bg_row)
        self._vpp_load_row = _as_slice(vpp_row)
        self._load_p_mw = np.zeros(n_load)
        self._load_q_mvar = np.zeros(n_load)
        self._solver = None
        self._ensure_solver()

    def _ensure_solver(self):
        if self._vpp_load_idx is None:
            self.attach_vpp(np.zeros(0, dtype=np.int64))
        if self._solver is None:
            self._solver, self._solver_note = build_solver(self.solver_requested, self.net, self.bus_index)
        return self._solver

    def solve(self, p_vpp_bus_kw: np.ndarray, load_factor: float, sgen_factor: float,
              load_p_mw: np.ndarray | None = None, load_q_mvar: np.ndarray | None = None,
              sgen_p_mw: np.ndarray | None = None) -> GridState:
        """Run a power flow with the VPP drawing ``p_vpp_bus_kw`` [kW per bus position].

        ``load_factor`` and ``sgen_factor`` [-] scale the net's own loads and
        static generators for this tick: their nominal values, or the
        per-element values given in ``load_p_mw``, ``load_q_mvar`` [MW, Mvar
        per load of the net, table order] and ``sgen_p_mw`` [MW per sgen].
        The solver warm-starts from the previous tick's solution and retries
        once from a cold start (see :mod:`vpp.grid.solvers`); if both fail,
        the returned state has ``converged=False`` and NaN everywhere.
        """
        solver = self._ensure_solver()
        load_p = self._load_p_mw
        load_q = self._load_q_mvar
        bg = self._bg_load_row
        load_p[bg] = (self._load_p0_mw if load_p_mw is None else load_p_mw) * load_factor
        load_q[bg] = (self._load_q0_mvar if load_q_mvar is None else load_q_mvar) * load_factor
        if self._n_vpp_load:
            load_p[self._vpp_load_row] = p_vpp_bus_kw[self._vpp_bus_pos] / KW_PER_MW
        sgen_p = (self._sgen_p0_mw if sgen_p_mw is None else sgen_p_mw) * sgen_factor
        return solver.solve(load_p, load_q, sgen_p, self._sgen_q0_mvar)


def _as_slice(rows: np.ndarray):
    """``rows`` as a slice when they are consecutive, else unchanged."""
    if rows.size and np.array_equal(rows, np.arange(rows[0], rows[0] + rows.size)):
        return slice(int(rows[0]), int(rows[0]) + rows.size)
    return rows
