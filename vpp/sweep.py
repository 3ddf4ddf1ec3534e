"""Parameter sweeps: ``sweep(base, grid={"dotted.path": [values]}, seeds=n) -> DataFrame``.

A sweep is the Cartesian product of the ``grid`` values (in the order the
paths are given, the last varying fastest) times ``seeds`` replicates. Case
``i`` is combination ``i // seeds`` with seed index ``i % seeds``. Every case
is the base scenario's mapping with its paths set and is validated as a
scenario file (:mod:`vpp.scenario.overrides`), all of them before any case
runs.

Seeds: replicate ``s`` runs with the integer seed drawn from child ``s`` of
``SeedSequence(base seed).spawn`` (the base seed is the case's own ``seed``,
so a grid over ``seed`` also works). The child is chosen by the seed index,
not the combination, so every combination sees the same ``seeds`` random
worlds (common random numbers: a difference between two strategies is then
not noise between two draws). The seed a case ran with is the column
``scenario_seed``; ``vpp run SCENARIO --set seed=<it> --set <paths>``
reproduces it.

Backends: ``"serial"`` (in this process, for tests and debugging) and
``"dask"``: by default a ``distributed.LocalCluster`` bound to 127.0.0.1 with
one single-threaded worker process per core and BLAS limited to one thread;
``scheduler=`` (or the environment variable ``VPP_DASK_SCHEDULER``) uses an
existing Dask cluster instead, whose workers must have ``vpp`` installed.
Each worker process builds a network once and hands every case a copy
(:func:`_cached_grid`, given to ``run_scenario(grid=...)``). Both backends give identical results.

Store (``out=DIR``): ``DIR/cases/<key>.json`` per finished case, ``key`` a
hash of the validated case scenario and the code version
(:func:`code_version`), each written to a temporary file and moved into
place, so a killed sweep leaves only whole files. ``resume=True`` reads the
cases already there instead of running them. ``DIR/sweep.parquet`` (the
returned table) and ``DIR/sweep.json`` are written at the end.

The table: one row per case; columns ``case``, one per swept path (named by
the path), ``seed_index``, ``scenario_seed``, ``status`` (``ok`` or
``error``), ``error``, ``key``, then every scalar number of the run's
summary flattened under ``kpi.`` (calls and settlements by call id, e.g.
``kpi.calls.evening_peak.delivered_ratio``), and with ``measure=`` the
numbers it reads from each run under ``kpi.measure.``. Wall times are in the case
files only, so a table is the same however it was computed.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import sys
import threading
import types
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vpp.scenario.load import ScenarioError, scenario_hash
from vpp.scenario.overrides import check_path, scenario_data, set_path, split_path, with_overrides

__all__ = ["sweep", "SweepError", "SweepSpec", "load_spec", "plan", "code_version", "flatten_summary",
           "SCHEDULER_ENV", "BLAS_ENV"]

SCHEDULER_ENV = "VPP_DASK_SCHEDULER"
# Each Dask worker is one process per core: BLAS threads on top would oversubscribe the cores.
BLAS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
CONNECT_TIMEOUT_S = 10.0  # to reach an existing scheduler [s]
MAX_CASES = 100_000
_KPI = "kpi."
_MEASURE = "kpi.measure."
_META_COLUMNS = ("case", "seed_index", "scenario_seed", "status", "error", "key")
_SKIP_SUMMARY = {"calendar", "last_tick", "warnings", "tracking_log", "recovery_window_s"}


class SweepError(ScenarioError):
    """A sweep that cannot start (bad spec, bad case, unreachable scheduler); one line per problem."""


# --- planning -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One validated case of a sweep."""

    index: int
    params: dict[str, Any]  # swept path -> value
    seed_index: int
    scenario: Any  # vpp.scenario.Scenario
    key: str  # hash of the validated scenario and the code version


@dataclass
class SweepSpec:
    """A sweep file: ``scenario`` (relative to the file), ``grid``, optional ``seeds`` and ``set``."""

    scenario: Any
    grid: dict[str, list]
    seeds: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)
    source: str = "<sweep>"


def child_seed(base_seed: int, seed_index: int) -> int:
    """The scenario seed of replicate ``seed_index``: child ``seed_index`` of ``SeedSequence(base_seed)``."""
    child = np.random.SeedSequence(int(base_seed)).spawn(seed_index + 1)[seed_index]
    return int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))  # < 2**63: the schema's MAX_SEED


def code_version() -> str:
    """``vpp.__version__`` and a hash of the package's source files: a case is rerun after any code change."""
    import vpp

    root = Path(vpp.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return f"{vpp.__version__}+{h.hexdigest()[:12]}"


def _check_grid(grid: Any, seeds: Any, where: str) -> tuple[dict[str, list], int]:
    problems = []
    if not isinstance(grid, Mapping) or not grid:
        raise SweepError(f"{where}grid: must be a mapping of dotted paths to lists of values, "
                         "e.g. {'dispatch.strategy': ['pro_rata', 'edf']}")
    out = {}
    for path, values in grid.items():
        try:
            split_path(path)
        except ScenarioError as exc:
            problems.append(f"{where}grid: {exc}")
            continue
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            problems.append(f"{where}grid.{path}: must be a list of values (got {type(values).__name__})")
        elif len(values) == 0:
            problems.append(f"{where}grid.{path}: an empty list of values; give at least one")
        else:
            out[path] = list(values)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        problems.append(f"{where}seeds: must be a whole number >= 1 (got {seeds!r})")
    if problems:
        raise SweepError("\n".join(problems))
    n = math.prod(len(v) for v in out.values()) * seeds
    if n > MAX_CASES:
        raise SweepError(f"{where}grid: {n:,} cases; at most {MAX_CASES:,} in one sweep")
    return out, seeds


def _fmt(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def plan(base, grid: Mapping[str, Sequence], seeds: int = 1, overrides: Mapping[str, Any] | None = None,
         version: str | None = None, where: str = "") -> list[Case]:
    """Every case of a sweep, validated (all problems of all cases reported at once, :class:`SweepError`)."""
    grid, seeds = _check_grid(grid, seeds, where)
    data, source, base_dir = scenario_data(base)
    if overrides:
        data = dict(data)
        fixed = with_overrides(data, overrides, source, base_dir)
        for path, value in overrides.items():
            data = set_path(data, path, value)
        full = fixed.model_dump(mode="json")
    else:
        from vpp.scenario import parse_scenario

        full = parse_scenario(dict(data), source, base_dir=base_dir).model_dump(mode="json")
    problems = []
    for path in grid:
        try:
            check_path(full, path)
        except ScenarioError as exc:
            problems.append(f"{where}grid: {exc} (in {source})")
    if problems:
        raise SweepError("\n".join(problems))
    version = code_version() if version is None else version
    cases: list[Case] = []
    for combo_i, values in enumerate(itertools.product(*grid.values())):
        params = dict(zip(grid, values))
        case_data = dict(data)
        for path, value in params.items():
            case_data = set_path(case_data, path, value)
        base_seed = case_data.get("seed", 0)
        for s in range(seeds):
            i = combo_i * seeds + s
            seeded = dict(case_data)
            if isinstance(base_seed, int) and not isinstance(base_seed, bool) and base_seed >= 0:
                seeded["seed"] = child_seed(base_seed, s)
            label = f"case {i} (" + ", ".join(f"{p}={_fmt(v)}" for p, v in params.items()) + f", seed index {s})"
            try:
                sc = with_overrides(seeded, {}, source, base_dir, full=full, label=label)
            except ScenarioError as exc:
                problems.extend(f"{where}{line}" for line in str(exc).splitlines())
                continue
            key = hashlib.sha256(f"{scenario_hash(sc)}|{version}".encode()).hexdigest()[:24]
            cases.append(Case(i, params, s, sc, key))
    if problems:
        if len(problems) > 20:
            problems = problems[:20] + [f"… and {len(problems) - 20} more"]
        raise SweepError("\n".join(problems))
    return cases


def load_spec(path: str | Path) -> SweepSpec:
    """Read a sweep file (YAML): ``scenario``, ``grid``, optional ``seeds`` (default 1) and ``set``."""
    from vpp.scenario.load import _parse_yaml, _read_text

    path = Path(path)
    text = _read_text(path, "sweep file", "a sweep is a .yaml or .yml file")
    import yaml

    try:
        data = _parse_yaml(text)
    except yaml.YAMLError as exc:
        from vpp.scenario.load import _yaml_error

        raise SweepError(f"{path}: {_yaml_error(exc)}") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: a sweep file must be a mapping with keys scenario, grid, seeds, set")
    unknown = sorted(set(data) - {"scenario", "grid", "seeds", "set", "description", "$schema"})
    if unknown:
        raise SweepError(f"{path}: unknown key {unknown[0]!r}; allowed keys: scenario, grid, seeds, set, description")
    if not isinstance(data.get("scenario"), str):
        raise SweepError(f"{path}: scenario: required, the path of the base scenario file (relative to the sweep file)")
    scenario = Path(data["scenario"])
    if not scenario.is_absolute():
        scenario = path.parent / scenario
    fixed = data.get("set") or {}
    if not isinstance(fixed, dict):
        raise SweepError(f"{path}: set: must be a mapping of dotted paths to values")
    grid, seeds = _check_grid(data.get("grid"), data.get("seeds", 1), f"{path}: ")
    return SweepSpec(scenario, grid, seeds, fixed, str(path))


# --- running one case (in a worker) -------------------------------------------------------------------

_GRIDS: dict[tuple, Any] = {}
_GRIDS_LOCK = threading.Lock()


def _cached_grid(scenario):
    """A private copy of the scenario's network, loaded once per process (one per worker).

    Loading a network (pandapower builders, file converters, checks) takes
    longer than a small run; the cache keeps one unattached
    :class:`~vpp.grid.model.GridModel` per (network, source, solver) and gives
    each run its own deep copy (``run_scenario(grid=...)`` attaches the VPP
    loads to it), so runs never share mutable state.
    """
    from vpp.build import build_grid

    g = scenario.grid
    key = (g.network, g.source, g.solver)
    with _GRIDS_LOCK:
        model = _GRIDS.get(key)
        if model is None:
            model = _GRIDS[key] = build_grid(scenario)
        return model.clone()


def _scalar(value: Any):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return None


def flatten_summary(summary: Mapping[str, Any], prefix: str = _KPI) -> dict[str, Any]:
    """Every scalar number (and bool) of a run's summary as ``{"kpi.a.b": value}``.

    Lists of records with an ``id`` (calls, settlements) are keyed by the id
    (``~N`` for a call's N-th modification); other lists and strings are
    left out. ``None`` becomes NaN so that a column stays numeric.
    """
    out: dict[str, Any] = {}

    def walk(node, name: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                if k not in _SKIP_SUMMARY:
                    walk(v, f"{name}{k}.")
        elif isinstance(node, list):
            if node and all(isinstance(x, Mapping) and "id" in x for x in node):
                for x in node:
                    mod = x.get("modification") or 0
                    walk(x, f"{name}{x['id']}{f'~{mod}' if mod else ''}.")
        elif node is None:
            out[name[:-1]] = float("nan")
        else:
            v = _scalar(node)
            if v is not None:
                out[name[:-1]] = v

    walk(summary, prefix)
    return out


def _run_case(case: Case, version: str, measure: Callable | None = None) -> dict[str, Any]:
    """Run one case; the record stored in ``cases/<key>.json`` (never raises for a failed run)."""
    from vpp.run import RunError, run_scenario

    t0 = time.perf_counter()
    record = {"key": case.key, "code_version": version, "case": case.index, "params": case.params,
              "seed_index": case.seed_index, "scenario_seed": case.scenario.seed, "status": "ok", "error": None}
    try:
        results = run_scenario(case.scenario, grid=_cached_grid(case.scenario))
    except RunError as exc:
        results = exc.results
        record.update(status="error", error=str(exc))
    except Exception as exc:  # a case that cannot run at all: recorded, the sweep goes on
        results = None
        record.update(status="error", error=f"{type(exc).__name__}: {exc}")
    summary = json.loads(json.dumps(results.summary, default=_json_default)) if results is not None else {}
    record["kpis"] = flatten_summary(summary)
    if measure is not None and results is not None and record["status"] == "ok":
        try:
            measured = json.loads(json.dumps(dict(measure(results)), default=_json_default))
        except Exception as exc:  # recorded like a run that failed: the sweep goes on
            record.update(status="error", error=f"measure: {type(exc).__name__}: {exc}")
        else:
            record["kpis"].update(flatten_summary(measured, prefix=_MEASURE))
    record["summary"] = summary
    record["wall_time_s"] = time.perf_counter() - t0
    record["worker_pid"] = os.getpid()
    return record


def _json_default(obj):
    v = _scalar(obj)
    if v is not None:
        return v
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _worker_setup() -> None:
    """Run on each Dask worker: one BLAS thread (for numpy already imported, where threadpoolctl can)."""
    os.environ.update(BLAS_ENV)
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)


# --- the store ----------------------------------------------------------------------------------------


class Store:
    """``DIR/cases/<key>.json``, one per finished case, written atomically."""

    def __init__(self, out: str | Path):
        self.root = Path(out)
        self.cases = self.root / "cases"

    def check(self, resume: bool) -> None:
        """Raise :class:`SweepError` unless the directory can hold this sweep; create nothing."""
        if self.root.exists() and not self.root.is_dir():
            raise SweepError(f"--out {self.root}: exists and is not a directory")
        if self.root.is_dir() and any(self.root.iterdir()) and not resume:
            what = "an earlier sweep (continue it with --resume)" if self.cases.is_dir() else "other files"
            raise SweepError(f"--out {self.root}: not empty, holds {what}; give an empty or new directory")
        if self.root.is_dir() and resume and any(self.root.iterdir()) and not self.cases.is_dir():
            raise SweepError(f"--out {self.root}: --resume, but it holds no sweep (no cases/ folder)")

    def create(self) -> None:
        self.cases.mkdir(parents=True, exist_ok=True)
        for tmp in self.cases.glob(".*.tmp"):  # left by a sweep killed while writing
            tmp.unlink(missing_ok=True)

    def path(self, key: str) -> Path:
        return self.cases / f"{key}.json"

    def read(self, key: str) -> dict | None:
        try:
            record = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        return record if record.get("key") == key and record.get("status") == "ok" else None

    def write(self, record: dict) -> None:
        _atomic_write(self.path(record["key"]), json.dumps(record, indent=1, allow_nan=True).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --- backends -----------------------------------------------------------------------------------------


def _run_serial(cases: list[Case], version: str, done: Callable[[dict], None], measure=None) -> None:
    for case in cases:
        done(_run_case(case, version, measure))


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None,
                connect_timeout_s: float = CONNECT_TIMEOUT_S):
    """A ``distributed.Client``: on ``scheduler``, or on a loopback local cluster (closed on exit)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SweepError("the dask backend needs the dask extra: pip install 'vpp[dask]' "
                         "(or use the serial backend)") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{connect_timeout_s}s")
        except (OSError, TimeoutError, ValueError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SweepError(f"--scheduler {scheduler}: cannot reach the Dask scheduler within "
                             f"{connect_timeout_s:g} s ({detail[:200]})") from None
        try:
            client.run(_worker_setup)
            yield client
        finally:
            client.close()
        return
    n = n_workers or os.cpu_count() or 1
    old = {k: os.environ.get(k) for k in BLAS_ENV}
    os.environ.update(BLAS_ENV)  # inherited by the worker processes before they import numpy
    try:
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, env=dict(BLAS_ENV))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        with Client(cluster) as client:
            client.run(_worker_setup)
            yield client
    finally:
        cluster.close()


def _run_dask(client, cases: list[Case], version: str, done: Callable[[dict], None], measure=None) -> None:
    from distributed import as_completed

    futures = [client.submit(_run_case, c, version, measure, key=f"vpp-case-{c.key}", pure=False) for c in cases]
    try:
        for fut in as_completed(futures):
            done(fut.result())
    finally:
        for fut in futures:
            fut.cancel()


# --- the API ------------------------------------------------------------------------------------------


def _table(cases: list[Case], records: dict[str, dict], grid_paths: Iterable[str]):
    import pandas as pd

    rows = []
    for c in cases:
        rec = records[c.key]
        row = {"case": c.index}
        for p in grid_paths:
            v = c.params[p]
            row[p] = v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v)
        row.update(seed_index=c.seed_index, scenario_seed=int(c.scenario.seed), status=rec["status"],
                   error=rec["error"], key=c.key)
        row.update(rec["kpis"])
        rows.append(row)
    df = pd.DataFrame(rows)
    return df


def sweep(base_scenario, grid: Mapping[str, Sequence], seeds: int = 1, *,
          overrides: Mapping[str, Any] | None = None, out: str | Path | None = None, resume: bool = False,
          backend: str = "dask", scheduler: str | None = None, n_workers: int | None = None,
          progress: Callable[[int, int, dict], None] | None = None, cases: list[Case] | None = None,
          connect_timeout_s: float = CONNECT_TIMEOUT_S, client=None,
          measure: Callable[[Any], Mapping[str, Any]] | None = None):
    """Run a parameter sweep and return its tidy :class:`pandas.DataFrame` (see the module docstring).

    ``base_scenario``: a scenario file path, a mapping or a validated
    :class:`~vpp.scenario.Scenario`. ``grid``: ``{"dotted.path": [values]}``.
    ``seeds``: replicates per combination. ``overrides``: ``{"dotted.path":
    value}`` set in every case. ``out``: the store directory (nothing is
    written without it); ``resume`` reuses its finished cases. ``backend``:
    ``"dask"`` (``scheduler`` or ``$VPP_DASK_SCHEDULER``, else a local
    cluster of ``n_workers``, default one per core; or ``client``, a
    ``distributed.Client`` of the caller's, left open) or ``"serial"``.
    ``progress(n_done, n_total, record)`` after each case. ``cases``: a
    :func:`plan` made beforehand (``base_scenario``, ``grid``, ``seeds`` and
    ``overrides`` must be the ones it was made from, and ``measure`` too).
    ``measure(results) -> {name: number}``: extra numbers read from each
    case's :class:`~vpp.run.Results` (its time series, say) in the worker,
    as columns ``kpi.measure.<name>``; a module-level function (Dask pickles
    it by name), which is part of every case's key.

    Raises :class:`SweepError` (a :class:`ScenarioError`) before any case
    runs for a path not in the scenario, an empty value list, a case that
    does not validate, a bad ``out`` or an unreachable scheduler.
    """
    if backend not in ("dask", "serial"):
        raise SweepError(f"backend: unknown {backend!r}; allowed: dask, serial")
    scheduler = scheduler or (os.environ.get(SCHEDULER_ENV) or None if backend == "dask" else None)
    if scheduler and backend != "dask":
        raise SweepError("--scheduler: only with the dask backend")
    version = code_version()
    if measure is not None:  # a store holding cases measured otherwise (or not at all) is not reused
        version = f"{version}|measure={measure.__module__}.{measure.__qualname__}"
    if cases is None:
        cases = plan(base_scenario, grid, seeds, overrides, version)
    store = Store(out) if out is not None else None
    if store is not None:
        store.check(resume)
    records: dict[str, dict] = {}
    if store is not None and resume:
        for c in cases:
            rec = store.read(c.key)
            if rec is not None:
                records[c.key] = rec
    todo, seen = [], set()
    for c in cases:
        if c.key not in records and c.key not in seen:  # two cases may be the same scenario
            seen.add(c.key)
            todo.append(c)
    n_total = len(cases)
    n_done = n_total - len(todo)

    def done(record: dict) -> None:
        nonlocal n_done
        if store is not None:
            store.write(record)
        records[record["key"]] = record
        n_done += 1
        if progress is not None:
            progress(n_done, n_total, record)

    t0 = time.perf_counter()
    if backend == "serial" or not todo:
        if store is not None:
            store.create()
        _run_serial(todo, version, done, measure)
    else:
        own = dask_client(scheduler, n_workers, connect_timeout_s) if client is None else contextlib.nullcontext(client)
        with own as dask:  # reached before anything is written
            if store is not None:
                store.create()
            _run_dask(dask, todo, version, done, measure)
    wall_s = time.perf_counter() - t0
    df = _table(cases, records, list(cases[0].params) if cases else list(grid))
    if store is not None:
        df.to_parquet(store.root / ".sweep.parquet.tmp")
        os.replace(store.root / ".sweep.parquet.tmp", store.root / "sweep.parquet")
        meta = {"grid": {p: list(v) for p, v in grid.items()}, "seeds": seeds, "overrides": dict(overrides or {}),
                "n_cases": n_total, "n_run": len(todo), "n_resumed": n_total - len(todo),
                "n_failed": int((df["status"] != "ok").sum()) if len(df) else 0, "backend": backend,
                "scheduler": scheduler, "code_version": version, "wall_time_s": wall_s,
                "keys": [c.key for c in cases]}
        _atomic_write(store.root / "sweep.json", json.dumps(meta, indent=1, default=str).encode())
    df.attrs.update(wall_time_s=wall_s, n_run=len(todo), n_resumed=n_total - len(todo))
    return df


class _CallableModule(types.ModuleType):
    # `vpp.sweep` is both this module and the function: importing a submodule sets it as an attribute
    # of the package, which would shadow the lazily exported function after the first import. So the
    # module itself calls the function: `vpp.sweep(...)` works however and whenever it was imported.
    def __call__(self, *args, **kwargs):
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
