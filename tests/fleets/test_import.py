"""Importing the device physics loads neither the event kernel nor the grid model.

Rule 1 of ../shared/ARCHITECTURE.md: "A test asserts that importing
`vpp.fleets` loads neither simpy nor pandapower". Run in a fresh interpreter so
that modules other tests imported cannot hide a violation.
"""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
import vpp.fleets
heavy = ("simpy", "pandapower")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def _loaded_heavy_modules(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_vpp_fleets_loads_neither_simpy_nor_pandapower():
    assert _loaded_heavy_modules(_PROBE) == []


def test_probe_detects_a_heavy_import():
    """The probe itself works: importing simpy next to vpp.fleets shows up."""
    assert "simpy" in _loaded_heavy_modules("import simpy\n" + _PROBE)
