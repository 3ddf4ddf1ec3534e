"""The grid: pandapower networks by name and the per-tick power flow.

``vpp.grid.networks`` is cheap to import; ``vpp.grid.model`` imports pandapower.
"""

from __future__ import annotations

__all__ = ["networks", "model"]
