"""What a distribution operator sees in a power flow: congested elements, the buses behind them, the MW to shed.

A *congestion* is a line or transformer loaded above its limit, or a bus
below its voltage limit. The buses *behind* a branch are those cut off from
every external grid when the branch is opened (switch states respected); a
call on those buses is the only one that relieves it. In a meshed section
nothing is behind a single branch, and the congestion is reported with no
buses (it cannot be relieved by a targeted call).

Sizing (unity power factor of the change assumed, a margin added by the caller):

* transformer: flow ``S = loading/100 * sn_mva * parallel``; shed
  ``S * (1 - limit/loading)`` [MW];
* line: flow ``S = sqrt(3) * vn_kv * i_ka`` with ``i_ka = loading/100 *
  max_i_ka * df * parallel``; shed ``S * (1 - limit/loading)`` [MW];
* undervoltage: the buses below the limit (and everything behind the feeder
  they hang on) with the shed from a measured sensitivity ``d vm / d P``
  (:meth:`Topology.voltage_need_mw` takes the two solutions).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

__all__ = ["Congestion", "Topology", "GridWatch"]


@dataclass(frozen=True)
class Congestion:
    """One violated limit: which element, how far over, the buses behind it and the power to shed [MW]."""

    element: str  # "trafo", "line" or "bus"
    index: int  # row label in the net's table (bus label for "bus")
    value: float  # loading [%] or voltage [pu]
    limit: float
    need_mw: float  # power to shed behind the element to clear it (no margin) [MW]
    bus_pos: tuple[int, ...]  # bus positions behind the element (empty: cannot be targeted)
    forecast: bool = False  # seen in the forecast power flow, not (yet) in the present one

    @property
    def key(self) -> str:
        """A stable name for the element, e.g. ``trafo114``."""
        return f"{self.element}{self.index}"


class Topology:
    """The net's graph (switches respected) and branch ratings, for finding what lies behind a branch."""

    def __init__(self, net, bus_index: np.ndarray):
        import pandapower.topology as top

        self.net = net
        self._pos = {int(b): i for i, b in enumerate(bus_index)}
        self._graph = top.create_nxgraph(net, respect_switches=True, include_out_of_service=False,
                                         multi=True, calc_branch_impedances=False)
        self._slack = {int(b) for b in net.ext_grid.bus[net.ext_grid.in_service]}
        self._behind: dict[tuple[str, int], tuple[int, ...]] = {}
        line, trafo = net.line, net.trafo
        self._line_idx = line.index.to_numpy()
        self._trafo_idx = trafo.index.to_numpy()
        vn_from = net.bus.vn_kv.reindex(line.from_bus).to_numpy(dtype=float)
        self._line_s_full_mva = np.sqrt(3.0) * vn_from * (line.max_i_ka * line.df * line.parallel).to_numpy(dtype=float)
        self._trafo_s_full_mva = (trafo.sn_mva * trafo.parallel).to_numpy(dtype=float)

    def behind(self, element: str, index: int) -> tuple[int, ...]:
        """Bus positions cut off from every external grid when the branch opens (empty if none or meshed)."""
        key = (element, int(index))
        out = self._behind.get(key)
        if out is None:
            table = self.net.line if element == "line" else self.net.trafo
            a, b = ("from_bus", "to_bus") if element == "line" else ("hv_bus", "lv_bus")
            u, v = int(table.at[index, a]), int(table.at[index, b])
            g = self._graph.copy()
            for k in [k for k, d in g.get_edge_data(u, v, default={}).items() if k[0] == element and k[1] == index]:
                g.remove_edge(u, v, key=k)
            comps = [c for c in (nx.node_connected_component(g, u), nx.node_connected_component(g, v))
                     if not (c & self._slack)]
            buses = set().union(*comps) if comps else set()
            out = tuple(sorted(self._pos[b] for b in buses if b in self._pos))
            self._behind[key] = out
        return out

    def overloads(self, line_loading_percent: np.ndarray, trafo_loading_percent: np.ndarray,
                  limit_percent: float) -> list[Congestion]:
        """Lines and transformers loaded above ``limit_percent``, worst first."""
        out = []
        for element, loading, idx, s_full in (
            ("trafo", trafo_loading_percent, self._trafo_idx, self._trafo_s_full_mva),
            ("line", line_loading_percent, self._line_idx, self._line_s_full_mva),
        ):
            over = np.flatnonzero(np.nan_to_num(loading, nan=0.0) > limit_percent)
            for k in over:
                s_mva = loading[k] / 100.0 * s_full[k]
                need = s_mva * (1.0 - limit_percent / loading[k])
                out.append(Congestion(element, int(idx[k]), float(loading[k]), limit_percent, float(need),
                                      self.behind(element, int(idx[k]))))
        out.sort(key=lambda c: -c.value / c.limit)
        return out

    def undervoltage(self, vm_pu: np.ndarray, limit_pu: float) -> tuple[int, ...]:
        """Bus positions below ``limit_pu``."""
        return tuple(int(i) for i in np.flatnonzero(np.nan_to_num(vm_pu, nan=np.inf) < limit_pu))

    @staticmethod
    def voltage_need_mw(vm_min_pu: float, vm_min_relieved_pu: float, relief_mw: float, limit_pu: float) -> float:
        """Shed [MW] that lifts the worst voltage to ``limit_pu``, from a measured sensitivity.

        ``vm_min_relieved_pu`` is the worst voltage after shedding ``relief_mw``
        on the target buses; linear in between (a first-order estimate).
        """
        gain = (vm_min_relieved_pu - vm_min_pu) / relief_mw
        if not gain > 0.0:
            return float("nan")
        return max(limit_pu - vm_min_pu, 0.0) / gain


class GridWatch:
    """The grid operator's eyes: its own copy of the network, limits, and an optional forecast.

    ``check`` reads the plant's power flow at ``t_s`` (what the operator's
    SCADA sees) and returns the congestions in it. With ``horizon_s > 0`` it
    also solves the network at ``t_s + horizon_s`` with the background load
    and generation of that time (the operator's schedule) and the VPP's
    present power (persistence), and adds what that forecast shows. Forecast
    and sizing solves run on the watch's own copy of the grid, so they never
    touch the warm start of the plant's or the twin's power flows.
    """

    def __init__(self, grid_model, loading_max_percent: float, vm_min_pu: float, horizon_s: float, factors):
        self.grid = grid_model
        self.topology = Topology(grid_model.net, grid_model.bus_index)
        self.loading_max_percent = float(loading_max_percent)
        self.vm_min_pu = float(vm_min_pu)
        self.horizon_s = float(horizon_s)
        self.factors = factors  # t_s -> (load_factor, sgen_factor) of the background

    def _in(self, state, p_bus_kw: np.ndarray, t_s: float, forecast: bool) -> list[Congestion]:
        out = self.topology.overloads(state.line_loading_percent, state.trafo_loading_percent,
                                      self.loading_max_percent)
        low = self.topology.undervoltage(state.vm_pu, self.vm_min_pu)
        if low:
            worst = int(np.nanargmin(state.vm_pu))
            load = np.maximum(p_bus_kw[list(low)], 0.0)
            need = float("nan")
            if load.sum() > 0.0:
                relief_kw = min(1000.0, float(load.sum()))
                p_relieved = p_bus_kw.copy()
                p_relieved[list(low)] -= relief_kw * load / load.sum()
                probe = self.grid.solve(p_relieved, *self.factors(t_s))
                if probe.converged:
                    need = Topology.voltage_need_mw(float(state.vm_pu[worst]), float(np.nanmin(probe.vm_pu)),
                                                    relief_kw / 1000.0, self.vm_min_pu)
            out.append(Congestion("bus", int(self.grid.bus_index[worst]), float(state.vm_pu[worst]),
                                  self.vm_min_pu, need, low if np.isfinite(need) else ()))
        if forecast:
            out = [Congestion(c.element, c.index, c.value, c.limit, c.need_mw, c.bus_pos, True) for c in out]
        return out

    def value(self, key: str, state) -> tuple[float, float]:
        """The present value and limit of an element named by :attr:`Congestion.key` (loading [%] or vm [pu])."""
        if key.startswith("trafo"):
            k = int(np.flatnonzero(self.topology._trafo_idx == int(key[5:]))[0])
            return float(state.trafo_loading_percent[k]), self.loading_max_percent
        if key.startswith("line"):
            k = int(np.flatnonzero(self.topology._line_idx == int(key[4:]))[0])
            return float(state.line_loading_percent[k]), self.loading_max_percent
        # An undervoltage is judged by the worst voltage; the distance below the limit is mirrored so that
        # "value < limit * (1 - margin)" means comfortably clear, like a loading.
        vm = float(np.nanmin(state.vm_pu))
        return self.vm_min_pu * (2.0 - vm / self.vm_min_pu), self.vm_min_pu

    def check(self, t_s: float, state, p_bus_kw: np.ndarray) -> list[Congestion]:
        """Congestions in the plant's power flow at ``t_s`` and, if forecasting, at ``t_s + horizon_s``."""
        if not state.converged:
            return []
        out = self._in(state, p_bus_kw, t_s, forecast=False)
        if self.horizon_s > 0.0:
            t_f = t_s + self.horizon_s
            ahead = self.grid.solve(p_bus_kw, *self.factors(t_f))
            if ahead.converged:
                seen = {c.key for c in out}
                out += [c for c in self._in(ahead, p_bus_kw, t_f, forecast=True) if c.key not in seen]
        return out
