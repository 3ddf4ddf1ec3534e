"""Scenario schema, validation and loading."""

from __future__ import annotations

from vpp.scenario.load import ScenarioError, load_scenario, parse_scenario, scenario_hash
from vpp.scenario.schema import Scenario

__all__ = ["Scenario", "ScenarioError", "load_scenario", "parse_scenario", "scenario_hash"]
