"""vpp: a virtual power plant dispatch simulator.

Vectorised fleets of distributed energy resources (numpy), SimPy agents that
decide *when* things happen, pro-rata dispatch of demand-response calls, and a
pandapower grid underneath. The Python API is :func:`vpp.run_scenario` over a
scenario from :func:`vpp.load_scenario`; the ``vpp`` command is a thin shell
over the same calls.

Importing ``vpp`` has no side effects and loads neither SimPy nor pandapower:
the public entry points below are imported on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_scenario", "run_scenario", "Results", "Scenario", "sweep", "firm_capacity"]

_LAZY = {
    "load_scenario": ("vpp.scenario", "load_scenario"),
    "Scenario": ("vpp.scenario", "Scenario"),
    "run_scenario": ("vpp.run", "run_scenario"),
    "Results": ("vpp.run", "Results"),
    "sweep": ("vpp.sweep", "sweep"),  # the module vpp.sweep is callable too: see _CallableModule there
    "firm_capacity": ("vpp.firm", "firm_capacity"),
}


def __getattr__(name: str):
    # Lazy so that `import vpp.fleets` stays free of simpy and pandapower.
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'vpp' has no attribute {name!r}")
