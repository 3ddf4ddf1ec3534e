"""Recording, KPIs and result writers."""

from __future__ import annotations

from vpp.metrics.recorder import Recorder
from vpp.metrics.results import Results

__all__ = ["Recorder", "Results"]
