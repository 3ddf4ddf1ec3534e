"""Importing vpp.programme loads neither SimPy nor pandapower (pure functions over numpy/pandas).

Run in a fresh interpreter so that modules other tests imported cannot hide a violation.
"""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
import vpp.programme
heavy = ("simpy", "pandapower")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_import_vpp_programme_loads_neither_simpy_nor_pandapower():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_public_names_are_exported():
    import vpp.programme as p

    for name in p.__all__:
        assert hasattr(p, name), name
