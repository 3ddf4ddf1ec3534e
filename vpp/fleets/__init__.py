"""Device physics as vectorised fleets (numpy only: never imports simpy or pandapower)."""

from __future__ import annotations

from vpp.fleets.base import Envelope, Fleet
from vpp.fleets.basestation import BaseStationFleet
from vpp.fleets.building import BuildingFleet
from vpp.fleets.ev import EVFleet, SessionTable, draw_sessions

__all__ = [
    "Envelope",
    "Fleet",
    "EVFleet",
    "SessionTable",
    "draw_sessions",
    "BaseStationFleet",
    "BuildingFleet",
    "FLEET_KINDS",
]

FLEET_KINDS: dict[str, type[Fleet]] = {
    cls.kind: cls for cls in (EVFleet, BaseStationFleet, BuildingFleet)
}
