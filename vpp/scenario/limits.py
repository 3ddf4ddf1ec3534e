"""Will a scenario fit? Peak memory and run time estimated from its sizes, before anything is allocated.

The estimate is arithmetic on the validated scenario (Python integers, no
arrays): each fleet's configuration states what it needs
(:meth:`~vpp.fleets.config.FleetConfigBase.estimate_bytes`: per-device arrays
of the plant and the no-call twin, and for EV fleets the session draws), the
recorder needs ``n_ticks x columns`` floats, the per-bus time series
``n_ticks x n_bus`` of them, with room for the result tables built from them.
The constants were measured with ``tracemalloc`` on whole runs and rounded up
(``tests/scenario/test_limits.py`` keeps them honest); the estimate aims to be
an upper bound within a factor of about two.

A run whose estimate exceeds what the machine can give it (``MemAvailable``
and any cgroup limit) fails at validation, naming the fields that drive it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vpp.scenario.schema import Scenario

__all__ = [
    "Estimate",
    "estimate",
    "available_memory_bytes",
    "resource_problems",
    "describe",
    "NETWORK_BUSES",
    "MAX_RUN_S",
    "MEMORY_SHARE",
]

# Buses of pandapower's built-in networks (len(net.bus), pandapower 3.x); other networks (SimBench
# codes) are assumed to have UNKNOWN_NETWORK_BUSES for the per-bus time series.
NETWORK_BUSES = {
    "mv_oberrhein": 179, "cigre_mv": 15, "cigre_mv_der": 15, "cigre_lv": 44, "simple_mv_open_ring": 7,
    "lv_schutterwald": 2940, "kerber_landnetz_kabel_1": 18, "kerber_vorstadtnetz_kabel_1": 294,
    "case33bw": 33, "case14": 14, "case30": 30, "case118": 118, "case300": 300,
}
UNKNOWN_NETWORK_BUSES = 3000

MEMORY_SHARE = 0.8  # share of the available memory a run may plan to use [-]
MAX_RUN_S = 7 * 86_400.0  # longest estimated wall time accepted [s]

_BASE_BYTES = 400 * 2**20  # interpreter, numpy/pandas/pandapower and the network [B]
_BYTES_PER_CELL = 8 * 3  # a recorded float, its DataFrame copy and the Parquet writer's [B]
_BUS_COLUMNS = 3  # per-bus arrays recorded every tick (p, p_twin, vm)
_BUS_TABLE_FACTOR = 3  # the per-bus table (5 columns) and its Parquet copy, per recorded cell
# Plant-wide and grid columns (vpp.metrics.columns PLANT + GRID + grid_converged; a test checks the
# count, which is kept here so that validating a scenario does not import pandas).
_FIXED_COLUMNS = 24
_FLEET_METRIC_COLUMNS = 4  # per-fleet tick metrics, an upper count over kinds
# Run time per tick [s]: device steps (plant and twin), per-fleet and per-call overheads, power flow.
_S_PER_DEVICE_TICK = 250e-9
_S_PER_FLEET_TICK = 3e-4
_S_PER_CALL_TICK = 1e-4
_S_PER_TICK = 1e-3
_S_PER_POWER_FLOW = 25e-3


@dataclass(frozen=True)
class Estimate:
    """Rough peak memory and wall time of a run, and what drives them."""

    bytes_total: int  # peak memory [B]
    seconds: float  # wall time [s]
    parts: tuple[tuple[str, int, str], ...]  # (field to reduce, bytes, what for), largest first


def _n_bus(sc: Scenario) -> int:
    if sc.grid.source == "pandapower":
        return NETWORK_BUSES.get(sc.grid.network, UNKNOWN_NETWORK_BUSES)
    return UNKNOWN_NETWORK_BUSES


def estimate(sc: Scenario) -> Estimate:
    """Peak memory [B] and wall time [s] of running ``sc``, from its sizes alone."""
    t = sc.time
    n_ticks = t.n_ticks
    twin = sc.measurement.twin
    kinds = {f.kind for f in sc.fleets}
    parts: list[tuple[str, int, str]] = []
    n_devices = 0
    for i, f in enumerate(sc.fleets):
        b = int(f.estimate_bytes(t.duration_s, t.clock_start_h))
        parts.append((f"fleets[{i}].n_devices", b, f"fleet {f.name!r}, {f.n_devices:,} devices"))
        n_devices += f.n_devices
    n_cols = (_FIXED_COLUMNS + 2 * len(kinds) + (2 + _FLEET_METRIC_COLUMNS) * len(sc.fleets)
              + (4 + len(kinds)) * len(sc.dr_calls))
    parts.append(("time.dt_s", n_ticks * n_cols * _BYTES_PER_CELL, f"{n_ticks:,} ticks x {n_cols} result columns"))
    if sc.output.bus_timeseries:
        n_bus = _n_bus(sc)
        b = n_ticks * n_bus * 8 * _BUS_COLUMNS * _BUS_TABLE_FACTOR
        parts.append(("output.bus_timeseries", b, f"per-bus time series, {n_ticks:,} ticks x {n_bus:,} buses"))
    if sc.output.sample_devices:
        n_sampled = sum(min(sc.output.sample_devices, f.n_devices) for f in sc.fleets)
        b = n_ticks * n_sampled * 8 * 6  # the array, then t_s, fleet, device, bus, p_kw columns
        parts.append(("output.sample_devices", b, f"{n_sampled:,} sampled devices x {n_ticks:,} ticks"))
    parts.sort(key=lambda p: -p[1])
    per_tick = (n_devices * _S_PER_DEVICE_TICK * (1.0 if twin else 0.5) + len(sc.fleets) * _S_PER_FLEET_TICK
                + len(sc.dr_calls) * _S_PER_CALL_TICK + _S_PER_TICK)
    if sc.grid.power_flow:
        per_tick += _S_PER_POWER_FLOW * (2.0 if twin and sc.dr_calls else 1.0)
    return Estimate(_BASE_BYTES + sum(p[1] for p in parts), n_ticks * per_tick, tuple(parts))


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory_bytes() -> int | None:
    """Memory a new allocation can get [B]: ``MemAvailable``, capped by a cgroup limit; None if unknown."""
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and limit < 2**60:  # cgroup v1 reports "no limit" as a huge number
            candidates.append(max(limit - (usage or 0), 0))
    return min(candidates) if candidates else None


def _size(b: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b / 1e3:.3g} kB"


def _duration(s: float) -> str:
    if s >= 86_400:
        return f"{s / 86_400:.3g} days"
    if s >= 3_600:
        return f"{s / 3_600:.3g} h"
    if s >= 60:
        return f"{s / 60:.3g} min"
    return f"{s:.3g} s"


_HOW_TO_REDUCE = {
    "time.dt_s": "time.duration_s (or raise time.dt_s)",
    "output.bus_timeseries": "the per-bus time series (output.bus_timeseries: false)",
    "output.sample_devices": "output.sample_devices",
}


def resource_problems(sc: Scenario, available_bytes: int | None = None) -> list[str]:
    """Lines ``field: problem`` for a run that cannot fit this machine (empty when it fits).

    ``available_bytes`` defaults to :func:`available_memory_bytes`; when that
    is unknown, memory is not checked.
    """
    est = estimate(sc)
    out = []
    avail = available_memory_bytes() if available_bytes is None else available_bytes
    budget = None if avail is None else int(avail * MEMORY_SHARE)
    if budget is not None and est.bytes_total > budget:
        big = [p for p in est.parts[:3] if p[1] >= 0.1 * est.parts[0][1]]
        top = "; ".join(f"{what}: {_size(b)}" for _, b, what in big)
        reduce = " or ".join(_HOW_TO_REDUCE.get(field, field) for field, _, _ in big)
        out.append(
            f"{big[0][0]}: the run would need about {_size(est.bytes_total)} of memory ({top}), more than the "
            f"{_size(budget)} it may use here ({MEMORY_SHARE:.0%} of {_size(avail)} available); reduce {reduce}"
        )
    if est.seconds > MAX_RUN_S:
        out.append(
            f"time.duration_s: the run would take about {_duration(est.seconds)} ({sc.time.n_ticks:,} ticks, "
            f"{sum(f.n_devices for f in sc.fleets):,} devices), more than the {_duration(MAX_RUN_S)} allowed; "
            f"shorten time.duration_s, raise time.dt_s or reduce the fleets' n_devices"
        )
    return out


def describe(est: Estimate) -> str:
    """``about 1.2 GB of memory and 3 min`` for messages."""
    return f"about {_size(est.bytes_total)} of memory and {_duration(est.seconds)}"
