"""Networks by name: pandapower's built-ins and (with the ``simbench`` extra) SimBench codes.

The registry maps our names to pandapower builder functions; pandapower is
imported only when a network is built, so this module is cheap to import
(the scenario schema checks names against it).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
from typing import Any

__all__ = ["PANDAPOWER_NETWORKS", "NETWORK_SOURCES", "load_network", "simbench_available"]

PANDAPOWER_NETWORKS: dict[str, tuple[str, dict[str, Any]]] = {
    # name: (function in pandapower.networks, keyword arguments)
    "mv_oberrhein": ("mv_oberrhein", {}),
    "cigre_mv": ("create_cigre_network_mv", {"with_der": False}),
    "cigre_mv_der": ("create_cigre_network_mv", {"with_der": "pv_wind"}),
    "cigre_lv": ("create_cigre_network_lv", {}),
    "simple_mv_open_ring": ("simple_mv_open_ring_net", {}),
    "lv_schutterwald": ("lv_schutterwald", {}),
    "kerber_landnetz_kabel_1": ("create_kerber_landnetz_kabel_1", {}),
    "kerber_vorstadtnetz_kabel_1": ("create_kerber_vorstadtnetz_kabel_1", {}),
    "case33bw": ("case33bw", {}),
    "case14": ("case14", {}),
    "case30": ("case30", {}),
    "case118": ("case118", {}),
    "case300": ("case300", {}),
}

NETWORK_SOURCES = ("pandapower", "simbench")


@contextlib.contextmanager
def _quiet_pandapower():
    # Some builders (mv_oberrhein) run a power flow inside and pandapower logs a
    # numba warning for it; we pass numba explicitly in our own runs.
    log = logging.getLogger("pandapower")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def simbench_available() -> bool:
    """Whether the optional SimBench package is installed."""
    return importlib.util.find_spec("simbench") is not None


def load_network(name: str, source: str = "pandapower"):
    """Build a fresh pandapower net.

    ``source="pandapower"``: ``name`` is a key of :data:`PANDAPOWER_NETWORKS`.
    ``source="simbench"``: ``name`` is a SimBench code such as
    ``"1-MV-urban--0-sw"`` (needs ``pip install 'vpp[simbench]'``).
    """
    if source == "pandapower":
        try:
            func_name, kwargs = PANDAPOWER_NETWORKS[name]
        except KeyError:
            raise KeyError(
                f"unknown pandapower network {name!r}; valid: {', '.join(sorted(PANDAPOWER_NETWORKS))}"
            ) from None
        networks = importlib.import_module("pandapower.networks")
        with _quiet_pandapower():
            return getattr(networks, func_name)(**kwargs)
    if source == "simbench":
        if not simbench_available():
            raise ImportError("grid.source 'simbench' needs the simbench extra: pip install 'vpp[simbench]'")
        sb = importlib.import_module("simbench")
        try:
            with _quiet_pandapower():
                return sb.get_simbench_net(name)
        except Exception as exc:  # simbench raises bare ValueErrors/KeyErrors for bad codes
            raise KeyError(f"unknown SimBench code {name!r} ({exc})") from None
    raise KeyError(f"unknown grid source {source!r}; valid: {', '.join(NETWORK_SOURCES)}")
