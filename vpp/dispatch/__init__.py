"""Flexibility aggregation and allocation of DR calls over devices (numpy; no SimPy)."""

from __future__ import annotations

from vpp.dispatch.aggregate import BusFlexibility, aggregate_by_bus, concat_envelopes
from vpp.dispatch.allocation import ALLOCATORS, get_allocator, merit_order, pro_rata
from vpp.dispatch.portfolio import Portfolio

__all__ = [
    "ALLOCATORS",
    "BusFlexibility",
    "Portfolio",
    "aggregate_by_bus",
    "concat_envelopes",
    "get_allocator",
    "merit_order",
    "pro_rata",
]
