"""Device physics as vectorised fleets (numpy; never imports simpy or pandapower).

Each device kind is one module (physics, state, configuration, builder) and
one entry in :data:`vpp.fleets.registry.KINDS`.
"""

from __future__ import annotations

from vpp.fleets.base import Envelope, Fleet, FleetState, KindSpec, Workspace
from vpp.fleets.basestation import BaseStationFleet, BaseStationState
from vpp.fleets.building import BuildingFleet, BuildingState
from vpp.fleets.ev import EVFleet, EVState, SessionTable, draw_sessions
from vpp.fleets.registry import KINDS, get_kind

__all__ = [
    "Envelope",
    "Fleet",
    "FleetState",
    "KindSpec",
    "Workspace",
    "EVFleet",
    "EVState",
    "SessionTable",
    "draw_sessions",
    "BaseStationFleet",
    "BaseStationState",
    "BuildingFleet",
    "BuildingState",
    "KINDS",
    "get_kind",
]
