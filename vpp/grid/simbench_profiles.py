"""SimBench's own year of load and generation profiles, per element (optional ``simbench`` extra).

A SimBench net carries relative profiles (``net.profiles``: one year of
15-minute values, 2016, a leap year: 366 x 96 = 35,136 rows) and, per load and
static generator, the name of its profile. ``simbench.get_absolute_values``
multiplies them by each element's ``p_mw`` / ``q_mvar`` (not by ``scaling``,
which the solver applies as pandapower does). Each value is the mean over the
quarter-hour starting at its time stamp.
"""

from __future__ import annotations

import importlib

import numpy as np

__all__ = ["SIMBENCH_STEP_S", "SIMBENCH_N_DAYS", "carries_simbench_profiles", "simbench_absolute_values"]

SIMBENCH_STEP_S = 900.0  # SimBench profile resolution [s]
SIMBENCH_N_DAYS = 366  # days in SimBench's profile year (2016) [-]


def carries_simbench_profiles(net) -> bool:
    """Whether ``net`` has SimBench profiles for its loads."""
    profiles = net.get("profiles") if hasattr(net, "get") else None
    return isinstance(profiles, dict) and "load" in profiles and len(profiles["load"]) > 0


def simbench_absolute_values(net) -> dict[str, np.ndarray]:
    """Absolute P and Q per profile step and element, in the net's element table order.

    Returns ``load_p_mw``, ``load_q_mvar`` (shape ``(n_steps, n_load)``) and
    ``sgen_p_mw`` (``(n_steps, n_sgen)``) [MW], [Mvar]. Call it on the net as
    loaded, before the VPP's own loads are added to it.
    """
    if not carries_simbench_profiles(net):
        raise KeyError("the net carries no SimBench profiles (net.profiles['load']); 'simbench' needs a SimBench net")
    try:
        sb = importlib.import_module("simbench")
    except ImportError:
        raise ImportError("SimBench profiles need the simbench extra: pip install 'vpp[simbench]'") from None
    values = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
    out = {
        "load_p_mw": values[("load", "p_mw")].reindex(columns=net.load.index).to_numpy(dtype=float),
        "load_q_mvar": values[("load", "q_mvar")].reindex(columns=net.load.index).to_numpy(dtype=float),
        "sgen_p_mw": values[("sgen", "p_mw")].reindex(columns=net.sgen.index).to_numpy(dtype=float),
    }
    n_steps = out["load_p_mw"].shape[0]
    for key, arr in out.items():
        if arr.shape[0] != n_steps or not np.isfinite(arr).all():
            raise ValueError(f"SimBench profiles: {key} has missing or non-finite values")
    return out
