"""Result column names, derived in one place.

Plant-wide columns are bare names (``p_vpp_kw``); everything that carries a
user's name is namespaced with dots: ``fleet.<name>.<quantity>``,
``kind.<kind>.<quantity>``, ``call.<id>.<quantity>``. Fleet, kind and call
names may not contain dots (the scenario schema's name pattern), so no user
name can collide with another column or with a plant-wide one.
"""

from __future__ import annotations

__all__ = ["PLANT", "GRID", "PRICE", "fleet_col", "kind_col", "call_col", "call_kind_col", "split"]

PLANT = (
    "t_s",
    "p_vpp_kw",  # plant power [kW]
    "p_twin_kw",  # no-call twin's power [kW] (NaN without a twin)
    "p_change_kw",  # p_vpp_kw - p_twin_kw [kW, load convention] (NaN without a twin)
    "p_delivered_kw",  # sum over active calls of each call's delivered power, in its direction [kW]
    "p_requested_kw",  # sum over calls of the requested change, averaged over the tick [kW]
    "flex_down_kw",  # room below default offered at the tick start [kW]
    "flex_up_kw",  # room above default offered at the tick start [kW]
)

GRID = (
    "vm_min_pu",
    "vm_max_pu",
    "line_loading_max_percent",
    "trafo_loading_max_percent",
    "p_ext_grid_mw",
    "p_loss_mw",
    "n_bus_voltage_violations",
    "vm_min_twin_pu",
    "vm_max_twin_pu",
    "line_loading_max_twin_percent",
    "trafo_loading_max_twin_percent",
    "p_ext_grid_twin_mw",  # the twin's import from the external grid(s) [MW]
    "p_loss_twin_mw",  # the twin's line and transformer losses [MW]
)

PRICE = "price_cny_per_kwh"  # energy price of the tick [CNY/kWh], when the scenario gives prices


def fleet_col(fleet: str, quantity: str) -> str:
    """Column of one fleet's quantity, e.g. ``fleet.ac.p_kw``."""
    return f"fleet.{fleet}.{quantity}"


def kind_col(kind: str, quantity: str) -> str:
    """Column of one device kind's quantity, e.g. ``kind.ev.p_twin_kw``."""
    return f"kind.{kind}.{quantity}"


def call_col(call_id: str, quantity: str) -> str:
    """Column of one DR call's quantity, e.g. ``call.evening.delivered_kw``."""
    return f"call.{call_id}.{quantity}"


def call_kind_col(call_id: str, kind: str) -> str:
    """Column of one DR call's delivery by one device kind [kW]."""
    return f"call.{call_id}.delivered.{kind}_kw"


def split(column: str) -> tuple[str, ...]:
    """The parts of a namespaced column name (``("fleet", "ac", "p_kw")``)."""
    return tuple(column.split("."))
