"""The grid under the plant: a pandapower net, VPP load per bus, a power flow per tick.

This package is the only place that imports pandapower. The VPP's per-bus
power arrives in kW from the simulator and is handed to pandapower in MW on
one aggregated load element per bus that hosts devices (unity power factor).
The net's own loads and static generators follow daily profiles scaled from
their nominal values.

A power flow that does not converge is retried once from another starting
point (see :meth:`GridModel.solve`); if that fails too, the tick's
:class:`GridState` is NaN throughout with ``converged=False``. Results of an
earlier tick are never returned in its place.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass

import numpy as np
import pandapower as pp

from vpp.units import KW_PER_MW

__all__ = ["GridModel", "GridState"]

_NUMBA = importlib.util.find_spec("numba") is not None
_RETRY_MAX_ITERATION = 30  # Newton-Raphson iterations on the retry (pandapower's default for "nr" is 10)


@dataclass(frozen=True, slots=True)
class GridState:
    """Power-flow results of one tick; NaN everywhere when it did not converge."""

    converged: bool
    vm_pu: np.ndarray  # voltage magnitude per bus position [pu]
    line_loading_percent: np.ndarray  # per in-service line [%]
    trafo_loading_percent: np.ndarray  # per in-service transformer [%]
    p_ext_grid_mw: float  # total import from the external grid(s) [MW]
    p_loss_mw: float  # total line and transformer losses [MW]
    attempts: int = 1  # power flows tried for this tick: 1, or 2 when the first did not converge


class GridModel:
    """A private copy of a pandapower net with one VPP load per hosting bus.

    Buses are addressed by *position* ``0..n_bus-1`` in ``bus_index`` (the
    net's bus labels), so that fleets can sum per bus with ``np.bincount``.
    """

    def __init__(self, net, name: str = ""):
        self.name = name
        self.net = copy.deepcopy(net)  # runpp writes into its net: never the caller's
        self.bus_index = self.net.bus.index.to_numpy()
        self.n_bus = int(self.bus_index.shape[0])
        self._pos = {int(b): i for i, b in enumerate(self.bus_index)}
        self._load_p0_mw = self.net.load.p_mw.to_numpy(dtype=float).copy()
        self._load_q0_mvar = self.net.load.q_mvar.to_numpy(dtype=float).copy()
        self._sgen_p0_mw = self.net.sgen.p_mw.to_numpy(dtype=float).copy()
        self._vpp_load_idx: np.ndarray | None = None
        self._vpp_bus_pos = np.zeros(0, dtype=np.int64)
        self._init = "auto"

    def clone(self) -> "GridModel":
        """An independent copy (its own net and warm start), e.g. for the no-call twin's power flows.

        Power flows warm-start from the previous solution; solving the twin on
        its own copy keeps the plant's results independent of whether a twin runs.
        """
        return copy.deepcopy(self)

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
        """Create one VPP load element on each bus position in ``bus_pos``."""
        bus_pos = np.unique(np.asarray(bus_pos, dtype=np.int64))
        idx = pp.create_loads(
            self.net, buses=self.bus_index[bus_pos], p_mw=0.0, q_mvar=0.0, name="vpp", scaling=1.0
        )
        self._vpp_load_idx = np.asarray(idx)
        self._vpp_bus_pos = bus_pos
        # Keep the background arrays aligned with the grown load table.
        self._bg_load_idx = self.net.load.index.difference(self._vpp_load_idx)

    def solve(self, p_vpp_bus_kw: np.ndarray, load_factor: float, sgen_factor: float) -> GridState:
        """Run a power flow with the VPP drawing ``p_vpp_bus_kw`` [kW per bus position].

        ``load_factor`` and ``sgen_factor`` [-] scale the net's own loads and
        static generators from their nominal values for this tick. The first
        attempt warm-starts from the previous tick's solution (``init="auto"``
        on the first tick or after a failure: DC angles, magnitudes at the
        external grid's setpoint); if it does not converge, one retry starts
        from ``init="dc"`` (flat magnitudes, DC angles) with up to 30
        iterations. If both fail, the returned state has ``converged=False``
        and NaN everywhere.
        """
        net = self.net
        if self._vpp_load_idx is None:
            self.attach_vpp(np.zeros(0, dtype=np.int64))
        n_bg = self._load_p0_mw.shape[0]
        bg = self._bg_load_idx
        if n_bg:
            net.load.loc[bg, "p_mw"] = self._load_p0_mw * load_factor
            net.load.loc[bg, "q_mvar"] = self._load_q0_mvar * load_factor
        if self._sgen_p0_mw.shape[0]:
            net.sgen["p_mw"] = self._sgen_p0_mw * sgen_factor
        if self._vpp_load_idx.size:
            net.load.loc[self._vpp_load_idx, "p_mw"] = p_vpp_bus_kw[self._vpp_bus_pos] / KW_PER_MW
        first = self._init
        # The retry starts cold: flat voltage magnitudes and angles from a DC power flow, with more
        # iterations (heavy ticks converge slowly). A plain flat start is no use as the retry: it fails
        # outright on nets with phase-shifting transformers (mv_oberrhein) where "dc" converges.
        retry = "dc"
        attempts = 0
        for init, max_iteration in ((first, "auto"), (retry, _RETRY_MAX_ITERATION)):
            attempts += 1
            try:
                pp.runpp(net, init=init, max_iteration=max_iteration, numba=_NUMBA)
                break
            except pp.LoadflowNotConverged:
                continue
        else:
            self._init = "auto"  # never warm-start from a failed solution
            nan_bus = np.full(self.n_bus, np.nan)
            return GridState(False, nan_bus, np.full(len(net.line), np.nan), np.full(len(net.trafo), np.nan),
                             float("nan"), float("nan"), attempts)
        self._init = "results"
        vm_pu = net.res_bus.vm_pu.reindex(self.bus_index).to_numpy(dtype=float, copy=True)
        line_pct = net.res_line.loading_percent.to_numpy(dtype=float, copy=True) if len(net.line) else np.zeros(0)
        trafo_pct = net.res_trafo.loading_percent.to_numpy(dtype=float, copy=True) if len(net.trafo) else np.zeros(0)
        p_loss_mw = float(net.res_line.pl_mw.sum()) + (float(net.res_trafo.pl_mw.sum()) if len(net.trafo) else 0.0)
        return GridState(True, vm_pu, line_pct, trafo_pct, float(net.res_ext_grid.p_mw.sum()), p_loss_mw, attempts)
