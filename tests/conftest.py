"""Small, function-scoped fixtures (no shared mutable state between tests)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_SMALL = {
    "name": "small",
    "seed": 3,
    "time": {"clock_start_h": 17.0, "duration_s": 10800, "dt_s": 300},
    "grid": {"network": "mv_oberrhein"},
    "fleets": [
        {"kind": "ev", "name": "ac", "operator": "evnet", "charger": "ac_pile", "n_devices": 300, "v2g_share": 0.2},
        {"kind": "ev", "name": "dc", "operator": "evnet", "charger": "dc_fast", "n_devices": 20},
        {"kind": "basestation", "name": "towers", "operator": "towerco", "n_devices": 50},
        {"kind": "building", "name": "offices", "operator": "bldg", "n_devices": 5, "pv_share": 0.5,
         "battery_share": 0.5},
    ],
    "dr_calls": [
        {"id": "peak", "direction": "reduce", "p_kw": 400, "notification_s": 1800, "start_s": 3600, "end_s": 7200},
    ],
}


@pytest.fixture
def small_dict() -> dict:
    """A small scenario (375 devices, 36 ticks) as a fresh mapping each test may change."""
    return copy.deepcopy(_SMALL)


@pytest.fixture(scope="session")
def make_small_dict():
    """A factory of fresh copies of the small scenario, for fixtures wider than one test."""
    return lambda: copy.deepcopy(_SMALL)


@pytest.fixture
def root() -> Path:
    """The repository root."""
    return ROOT
