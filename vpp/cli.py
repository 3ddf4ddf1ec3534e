"""The ``vpp`` command: a thin shell over :func:`vpp.run.run_scenario` and friends.

Exit codes (also in ``vpp --help`` and the README):

- 0: success (the run is complete);
- 1: a run that failed mid-way (the ticks computed before it are written, marked incomplete);
- 2: bad input: the scenario, a command-line value or ``--out`` (one line per problem, nothing written);
- 3: under ``--strict``, a tick whose power flow did not converge (the ticks up to it are written,
  marked incomplete);
- 130 / 143: interrupted by SIGINT / SIGTERM (the run stops at the next tick boundary and writes
  what it has, marked incomplete).

Errors go to stderr, one line each, prefixed ``error:``; warnings about valid but
suspicious input are prefixed ``warning:``.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_GRID_NOT_CONVERGED = 3
EXIT_SIGNAL = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}  # 130, 143

_EXIT_CODES = (
    "Exit codes: 0 ok; 1 the run failed mid-way (ticks computed so far written, marked incomplete); "
    "2 bad input (scenario, option or --out; nothing written); "
    "3 a power flow did not converge under --strict (ticks so far written, marked incomplete); "
    "130 / 143 interrupted by SIGINT / SIGTERM (stops at the next tick, writes what it has, marked incomplete)."
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="vpp: virtual power plant dispatch simulator.",
    epilog=_EXIT_CODES,
)


def _version(value: bool) -> None:
    if value:
        from vpp import __version__

        typer.echo(f"vpp {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """vpp: virtual power plant dispatch simulator."""


def _fail(message: str, code: int) -> None:
    for line in str(message).splitlines():
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code)


def _load(path: Path, seed: int | None, sets: list[str] | None = None):
    from vpp.scenario import ScenarioError, load_scenario
    from vpp.scenario.overrides import load_with_overrides

    try:
        if sets:
            return load_with_overrides(path, sets, extra=None if seed is None else {"seed": seed})
        return load_scenario(path, overrides=None if seed is None else {"seed": seed})
    except ScenarioError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)


_SET_HELP = ("set a scenario field by dotted path, e.g. --set fleets.0.n_devices=500 --set dispatch.strategy=edf "
             "(repeatable; list items by index; the value is read as YAML; validated as the file is)")


class _Signals:
    """SIGINT and SIGTERM handlers for the duration of a run.

    The first signal only sets a flag, which the run checks at every tick
    boundary (it then stops and its results are written, marked incomplete).
    A second signal raises KeyboardInterrupt at once, for a tick that hangs:
    the run then stops mid-tick and the ticks completed before it are written
    (if it arrives while results are being written, they are not, and an
    earlier run in ``--out`` is left as it was).
    """

    def __init__(self):
        self.received: str | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self) -> "_Signals":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def stop(self) -> str | None:
        return self.received


def _interrupted(signals: _Signals, what: str) -> None:
    typer.echo(f"interrupted by {signals.received}: {what}", err=True)
    raise typer.Exit(EXIT_SIGNAL[signals.received])


@app.command(epilog=_EXIT_CODES)
def run(
    scenario: Annotated[Path, typer.Argument(help="scenario file (.yaml, .yml or .toml)")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o",
        help="output directory (default: results/<name>); must be absent, empty, or an earlier vpp run's "
             "(which is replaced whole)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="override the scenario's seed")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar and no table")] = False,
    plot: Annotated[bool, typer.Option(
        "--plot", help="also write dispatch.png (power, DR, voltages and loading against their limits) and "
                       "network.png (a map of each bus's worst voltage and each branch's peak loading)")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="stop at the first power flow that does not converge (exit 3) instead of "
                         "recording NaN for that tick and going on")] = False,
    sets: Annotated[Optional[list[str]], typer.Option("--set", metavar="PATH=VALUE", help=_SET_HELP)] = None,
) -> None:
    """Run a scenario and write timeseries.parquet, buses.parquet, summary.json and meta.json.

    Results are staged beside the output directory and moved into place when
    written. SIGINT or SIGTERM stops the run at the next tick; what was
    computed is written, marked "complete": false with the last tick reached.
    """
    with _Signals() as signals:
        try:
            _run(scenario, out, seed, quiet, plot, strict, signals, sets)
        except KeyboardInterrupt:  # a second signal: stop at once
            typer.echo(f"interrupted by {signals.received or 'SIGINT'} again: stopped at once; results not "
                       "written (a directory --out held before is unchanged)", err=True)
            raise typer.Exit(EXIT_SIGNAL.get(signals.received, EXIT_SIGNAL["SIGINT"])) from None


def _run(scenario: Path, out: Path | None, seed: int | None, quiet: bool, plot: bool, strict: bool,
         signals: _Signals, sets: list[str] | None = None) -> None:
    from vpp.metrics.report import OutputDirError, check_out_dir, summary_table, write_results
    from vpp.run import GridNotConverged, RunError, RunInterrupted, run_scenario
    from vpp.scenario import ScenarioError

    sc = _load(scenario, seed, sets)
    out_dir = out if out is not None else Path("results") / sc.name
    label = "--out " if out is not None else "output directory "
    try:
        check_out_dir(out_dir)
    except OutputDirError as exc:
        _fail(f"{label}{exc}", EXIT_BAD_INPUT)
    if signals.received:
        _interrupted(signals, "before the run started; nothing written")
    bar = None
    progress = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=sc.time.n_ticks, unit="tick", desc=sc.name, leave=False)
        progress = lambda done, total: bar.update(1)  # noqa: E731
    elif not quiet:
        # No terminal (a log, a pipe): one line when the first tick is done instead of a bar.
        def progress(done: int, total: int) -> None:
            if done == 1:
                typer.echo(f"{sc.name}: running {total:,} ticks of {sc.time.dt_s:g} s "
                           "(SIGINT or SIGTERM stops at the next tick and keeps what is done)", err=True)

    def warn(line: str) -> None:
        typer.echo(f"warning: {line}", err=True)

    def write(results) -> None:
        try:
            write_results(results, out_dir, plot=plot)
        except OutputDirError as exc:
            _fail(f"{label}{exc}; the results were computed but not written", EXIT_RUN_FAILED)
        except OSError as exc:
            _fail(f"writing {out_dir}: {exc}; the results were computed but not written", EXIT_RUN_FAILED)

    try:
        results = run_scenario(sc, progress=progress, stop=signals.stop, strict=strict, warn=warn)
    except ScenarioError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except RunError as exc:
        res = exc.results
        last = res.meta["last_tick"]
        done = res.meta["n_ticks_done"]
        where = (f"{done:,} of {res.meta['n_ticks']:,} ticks (last t_s={last['t_s']:g}) written to {out_dir}/, "
                 "marked incomplete") if last else f"no tick was computed; {out_dir}/ marked incomplete"
        if bar is not None:
            bar.close()
            bar = None
        write(res)
        if isinstance(exc, RunInterrupted) and res.stopped_by in EXIT_SIGNAL:
            typer.echo(f"interrupted by {res.stopped_by}: {where}", err=True)
            raise typer.Exit(EXIT_SIGNAL[res.stopped_by])
        code = EXIT_GRID_NOT_CONVERGED if isinstance(exc, GridNotConverged) else EXIT_RUN_FAILED
        _fail(f"{exc}; {where}", code)
    finally:
        if bar is not None:
            bar.close()
    write(results)
    conv = ((results.summary.get("grid") or {}).get("convergence") or {})
    if conv.get("n_not_converged") or conv.get("twin_n_not_converged"):
        warn(f"grid: {conv['note']}; those ticks' grid values are NaN (use --strict to stop at the first)")
    if not quiet:
        typer.echo(summary_table(results))
        typer.echo(f"\nwritten to {out_dir}/ in {results.meta['wall_time_s']:.2f} s")
    if signals.received:
        _interrupted(signals, f"after the last tick; the complete results are written to {out_dir}/")


@app.command()
def validate(
    scenario: Annotated[Path, typer.Argument(help="scenario file (.yaml, .yml or .toml)")],
    sets: Annotated[Optional[list[str]], typer.Option("--set", metavar="PATH=VALUE", help=_SET_HELP)] = None,
) -> None:
    """Check a scenario, including that every bus it names exists in its grid; run nothing.

    Also prints warnings for valid but suspicious input (a DR call on buses
    with no devices, a call larger than the flexibility its targets offer at
    its start, ...), estimated by stepping the fleets at default power up to
    each call's start.
    """
    from vpp.build import build_plant, plant_warnings
    from vpp.scenario import ScenarioError

    sc = _load(scenario, None, sets)
    try:
        plant = build_plant(sc)
    except ScenarioError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    for w in plant_warnings(plant, sc.time):
        typer.echo(f"warning: {w}", err=True)
    n_dev = sum(f.n_devices for f in sc.fleets)
    cal = sc.time.calendar
    n_mod = sum(len(c.modifications) for c in sc.dr_calls)
    typer.echo(
        f"{scenario}: valid ({len(sc.fleets)} fleets, {n_dev:,} devices, {sc.time.n_ticks} ticks of "
        f"{sc.time.dt_s:g} s, {len(sc.dr_calls)} DR calls" + (f" with {n_mod} modifications" if n_mod else "")
        + f", grid {sc.grid.network}; "
        + (f"{cal.iso(0.0)} to {cal.iso(sc.time.duration_s)})" if cal.date_known else
           f"from clock hour {sc.time.clock_start_h:g} on an unknown date: give time.start for timestamps)")
    )


@app.command("list")
def list_names(
    what: Annotated[str, typer.Argument(help="networks | kinds | parameters | profiles | strategies | tiers")],
) -> None:
    """List the names a scenario may use."""
    from vpp.dispatch.allocation import ALLOCATORS
    from vpp.fleets.registry import KINDS
    from vpp.grid.networks import network_listing
    from vpp.profiles import PROFILES
    from vpp.programme.tiers import TIERS

    registries = {
        "networks": network_listing(),
        "kinds": {k: (spec.fleet.__doc__ or "").strip().splitlines()[0] for k, spec in KINDS.items()},
        "parameters": {
            f"{spec.name}.{spec.parameter_field}={k}": spec.describe(v)
            for spec in KINDS.values() for k, v in spec.parameter_sets.items()
        },
        "profiles": {k: f"{v.unit}; {v.source}" for k, v in PROFILES.items()},
        "strategies": {k: (v.__doc__ or "").strip().splitlines()[0] for k, v in ALLOCATORS.items()},
        "tiers": {k: f"notice >= {t.min_notice_s / 3600:g} h, response <= {t.max_response_s / 60:g} min, "
                     f"{t.energy_price_cny_per_kwh:g} CNY/kWh" for k, t in TIERS.items()},
    }
    if what not in registries:
        _fail(f"unknown list {what!r}; allowed: {', '.join(registries)}", EXIT_BAD_INPUT)
    for name, desc in registries[what].items():
        typer.echo(f"{name:<34} {desc}")


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="sizes up to 10^5 and fewer repeats (under a minute)")] = False,
    out: Annotated[Path, typer.Option("--out", help="JSON file to write (bench.png goes next to it)")] = Path(
        "bench.json"),
    max_n: Annotated[Optional[int], typer.Option("--max-n", min=1, help="largest number of devices")] = None,
) -> None:
    """Measure aggregation latency, memory, throughput and per-device baselines (SimPy; ACN-Sim if installed)."""
    from vpp.bench import format_table, run_bench, write_json, write_plot

    if out.suffix.lower() != ".json":
        _fail(f"--out must be a .json file, got {out}", EXIT_BAD_INPUT)
    if not out.parent.is_dir():
        _fail(f"--out: directory {out.parent} does not exist", EXIT_BAD_INPUT)
    res = run_bench(quick=quick, max_n=max_n, progress=lambda line: typer.echo(line, err=True))
    typer.echo(format_table(res))
    write_json(res, out)
    plot = out.with_name("bench.png")
    write_plot(res, plot)
    typer.echo(f"\nwritten to {out} and {plot}")


def _require_protocols(command: str, modules: tuple[str, ...]) -> None:
    """Exit 2 naming the extra if a protocol library is missing (they are optional: vpp[protocols])."""
    from importlib.util import find_spec

    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        _fail(f"vpp {command} needs {', '.join(missing)}: install vpp[protocols] (pip install 'vpp[protocols]')",
              EXIT_BAD_INPUT)


@app.command()
def loadgen(
    vtn: Annotated[str, typer.Option(
        "--vtn", help="the VTN's base URL, e.g. http://127.0.0.1:8080/OpenADR2/Simple/2.0b")],
    vens: Annotated[int, typer.Option("--vens", help="number of simulated VENs")],
    duration_s: Annotated[float, typer.Option("--duration-s", help="length of the run, seconds")] = 60.0,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", help="requests in flight at most (connections beyond the VTN's listen backlog, often 128, "
                              "wait for SYN retries)")] = 100,
    poll_s: Annotated[float, typer.Option("--poll-s", help="each VEN polls (oadrPoll) every this many seconds")] = 10.0,
    report_s: Annotated[float, typer.Option(
        "--report-s", help="an opted-in VEN reports every this many seconds")] = 10.0,
    seed: Annotated[int, typer.Option("--seed", help="seed of the VENs' plants and phases")] = 1,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="timeout of one request, seconds")] = 10.0,
    out: Annotated[Optional[Path], typer.Option("--out", help="JSON file to write (vpp bench format)")] = None,
) -> None:
    """Run N simulated OpenADR 2.0b VENs (simple HTTP, pull) against a VTN and measure it.

    Registration time and latency, event-to-opt-in latency (median, p99; a pull
    VEN's includes up to one poll interval), report throughput and errors by
    kind. Exit 2 if the VTN cannot be reached at all; per-VEN failures are
    counted, never fatal.
    """
    _require_protocols("loadgen", ("openleadr", "aiohttp"))
    import asyncio

    from vpp.protocols.loadgen import LoadgenConfig, VTNUnreachable, format_table, run, validate_config

    cfg = LoadgenConfig(vtn_url=vtn, n_vens=vens, duration_s=duration_s, concurrency=concurrency, poll_s=poll_s,
                        report_s=report_s, seed=seed, timeout_s=timeout_s)
    problems = validate_config(cfg)
    if out is not None and out.suffix.lower() != ".json":
        problems.append(f"--out must be a .json file, got {out}")
    elif out is not None and not out.parent.is_dir():
        problems.append(f"--out: directory {out.parent} does not exist")
    if problems:
        _fail("\n".join(problems), EXIT_BAD_INPUT)
    try:
        res = asyncio.run(run(cfg, progress=lambda line: typer.echo(line, err=True)))
    except VTNUnreachable as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    typer.echo(format_table(res))
    if out is not None:
        import json

        out.write_text(json.dumps(res, indent=2))
        typer.echo(f"\nwritten to {out}")


@app.command()
def schema(
    events: Annotated[bool, typer.Option(
        "--events", help="the schema of a DR events file (dr_events_file) instead of a scenario's")] = False,
) -> None:
    """Print the JSON Schema of a scenario file (the one shipped as vpp/data/scenario.schema.json).

    Editors that read JSON Schema complete and check scenario files: give it as
    the first line of a YAML file, ``# yaml-language-server: $schema=PATH``.
    """
    import json

    from vpp.scenario.schema import events_json_schema, scenario_json_schema

    typer.echo(json.dumps(events_json_schema() if events else scenario_json_schema(), indent=2, ensure_ascii=False))


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a directory written by vpp run, or by vpp sweep (it holds "
                                                 "sweep.parquet)")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="directory for report.html, report.md and the figures (default: RUN_DIR/report)")] = None,
    scenario: Annotated[Optional[Path], typer.Option(
        "--scenario", help="the run's scenario file, to re-load its grid for the network map when the run's "
                           "files do not name the grid")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Write a self-contained HTML report (figures embedded) and a Markdown report of a run.

    Figures: each DR call on its own panel, power by fleet kind, state of
    charge and backup reserve, voltage and loading against their limits, the
    network map, and settlement baselines against the twin. For a sweep
    directory: trade-off plots of the main KPIs against the swept parameters
    (one line per value of a categorical parameter, seed spread as error bars)
    and a table of parameters against KPIs.
    """
    from vpp.metrics.html import ReportError, write_report

    bar = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="figure", desc="report", leave=False)
    try:
        if (run_dir / "sweep.parquet").is_file():  # a sweep directory (vpp sweep --out): trade-off plots
            from vpp.metrics.html import write_sweep_report

            paths = write_sweep_report(run_dir, out, progress=None if bar is None else bar.update)
        else:
            paths = write_report(run_dir, out, scenario=scenario, progress=None if bar is None else bar.update)
    except ReportError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    finally:
        if bar is not None:
            bar.close()
    typer.echo("written: " + ", ".join(str(p) for p in paths))


def _bar(quiet: bool, total: int, unit: str, desc: str):
    """A progress bar on a terminal (stderr), else None: callers print a line per item, or nothing if quiet."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, leave=False)


@app.command("sweep")
def sweep_cmd(
    spec: Annotated[Path, typer.Argument(help="sweep file (.yaml): scenario, grid of dotted paths to value lists, "
                                              "seeds, set")],
    out: Annotated[Path, typer.Option("--out", "-o", help="sweep directory: cases/<key>.json per case, "
                                                          "sweep.parquet and sweep.json at the end")],
    resume: Annotated[bool, typer.Option("--resume", help="keep the finished cases in --out, run the rest")] = False,
    backend: Annotated[str, typer.Option("--backend", help="dask (default) or serial (in this process)")] = "dask",
    scheduler: Annotated[Optional[str], typer.Option(
        "--scheduler",
        help="address of an existing Dask scheduler (e.g. tcp://10.0.0.5:8786; env VPP_DASK_SCHEDULER); "
             "default: a local cluster on 127.0.0.1, one single-threaded worker per core")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="local cluster size (default: cores)")]
    = None,
    connect_timeout: Annotated[float, typer.Option(
        "--connect-timeout", min=0.1, help="seconds to wait for --scheduler before giving up")] = 10.0,
    sets: Annotated[Optional[list[str]], typer.Option("--set", metavar="PATH=VALUE", help=_SET_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress lines")] = False,
) -> None:
    """Run a parameter sweep (every combination of the grid, times seeds) and write its KPI table.

    Every case is validated before any runs. Cases are stored one file each
    as they finish; --resume after an interruption runs only the rest.
    Exit 1 when some case failed (its row says why), 2 for bad input.
    """
    from vpp.scenario import ScenarioError
    from vpp.scenario.overrides import parse_assignment
    from vpp.sweep import Store, load_spec, plan, sweep

    try:
        sp = load_spec(spec)
        fixed = dict(sp.overrides)
        for text in sets or ():
            p, v = parse_assignment(text)
            fixed[p] = v
        if backend not in ("dask", "serial"):
            raise ScenarioError(f"--backend: unknown {backend!r}; allowed: dask, serial")
        if backend == "serial" and scheduler:
            raise ScenarioError("--scheduler: only with --backend dask")
        cases = plan(sp.scenario, sp.grid, sp.seeds, fixed, where=f"{spec}: ")
        Store(out).check(resume)
    except ScenarioError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    n = len(cases)
    if not quiet:
        where = "serially" if backend == "serial" else (f"on {scheduler}" if scheduler else "on a local Dask cluster")
        typer.echo(f"{spec}: {n} cases ({' x '.join(str(len(v)) for v in sp.grid.values())} x {sp.seeds} seeds), "
                   f"{where}; results in {out}/", err=True)

    bar = _bar(quiet, n, "case", spec.stem)

    def progress(done: int, total: int, record: dict) -> None:
        if bar is not None:
            bar.update(done - bar.n)
        elif not quiet:
            params = ", ".join(f"{k}={v}" for k, v in record["params"].items())
            typer.echo(f"[{done}/{total}] case {record['case']} ({params}, seed index {record['seed_index']}): "
                       f"{record['status']} in {record['wall_time_s']:.1f} s", err=True)

    try:
        df = sweep(sp.scenario, sp.grid, sp.seeds, overrides=fixed, out=out, resume=True, backend=backend,
                   scheduler=scheduler, n_workers=workers, progress=progress, cases=cases,
                   connect_timeout_s=connect_timeout)
    except ScenarioError as exc:  # an unreachable scheduler: nothing has run
        _fail(str(exc), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: finished cases are in {out}/cases; continue with --resume", err=True)
        raise typer.Exit(EXIT_SIGNAL["SIGINT"]) from None
    finally:
        if bar is not None:
            bar.close()
    n_failed = int((df["status"] != "ok").sum())
    if not quiet:
        typer.echo(f"{n} cases ({df.attrs['n_resumed']} resumed) in {df.attrs['wall_time_s']:.1f} s; "
                   f"written to {out}/sweep.parquet")
    if n_failed:
        _fail(f"{n_failed} of {n} cases failed; see the error column of {out}/sweep.parquet", EXIT_RUN_FAILED)


@app.command("firm")
def firm_cmd(
    scenario: Annotated[Path, typer.Argument(help="scenario file (.yaml, .toml or .json)")],
    hour: Annotated[str, typer.Option("--hour", help="clock time the delivery starts, HH:MM (the first at or "
                                                     "after the scenario start)")] = "19:00",
    duration: Annotated[str, typer.Option("--duration", help="how long it is sustained: ISO 8601 (PT1H, PT30M) or "
                                                             "seconds")] = "PT1H",
    seeds: Annotated[int, typer.Option("--seeds", help="Monte Carlo replicates (>= 2)")] = 20,
    confidence: Annotated[float, typer.Option("--confidence", help="share of seeds that reach the firm level, "
                                                                   "in (0, 1)")] = 0.95,
    direction: Annotated[str, typer.Option("--direction", help="reduce (load down) or increase")] = "reduce",
    ci_level: Annotated[float, typer.Option("--ci-level", help="level of the quantile's confidence interval")] = 0.95,
    probe_mw: Annotated[float, typer.Option("--probe-mw", help="size of the probe call, above the plant's room "
                                                               "[MW]")] = 1000.0,
    tracking: Annotated[Optional[bool], typer.Option(
        "--tracking/--no-tracking", help="closed-loop tracking on the pre-event load, or off; default: the "
                                         "scenario's own setting")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="directory for firm.json, firm.md, firm_per_seed.csv and the seeds' runs (runs/, a "
                            "sweep store); default: print only")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="keep the finished seeds in --out/runs")] = False,
    backend: Annotated[str, typer.Option("--backend", help="serial (default) or dask (a local cluster, one "
                                                           "worker per core)")] = "serial",
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="local cluster size (default: cores)")]
    = None,
    scheduler: Annotated[Optional[str], typer.Option(
        "--scheduler", help="address of an existing Dask scheduler (with --backend dask; env VPP_DASK_SCHEDULER)")]
    = None,
    sets: Annotated[Optional[list[str]], typer.Option("--set", metavar="PATH=VALUE", help=_SET_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress lines")] = False,
) -> None:
    """Firm capacity: the MW the plant delivers for --duration from --hour in --confidence of the seeds.

    Each seed runs the scenario with one probe call above the plant's room in
    the window and measures the delivered power against the no-call twin; its
    minimum over the window's ticks is that seed's sustained power. The firm
    capacity is the (1 - confidence) quantile over seeds, with a
    distribution-free order-statistic confidence interval (see vpp.firm).
    Exit 2 for bad input (before any run), 1 when a seed failed or the probe
    was not above the room.
    """
    from vpp.firm import ProbeSaturated, firm_capacity, write
    from vpp.scenario import ScenarioError
    from vpp.scenario.overrides import parse_assignment

    fixed = {}
    try:
        for text in sets or ():
            p, v = parse_assignment(text)
            fixed[p] = v
        if backend not in ("dask", "serial"):
            raise ScenarioError(f"--backend: unknown {backend!r}; allowed: serial, dask")
        if not scenario.is_file():
            raise ScenarioError(f"{scenario}: no such scenario file")
    except ScenarioError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)

    bar = _bar(quiet, seeds, "seed", "firm")

    def progress(done: int, total: int, record: dict) -> None:
        if bar is not None:
            bar.update(done - bar.n)
        elif not quiet:
            typer.echo(f"[{done}/{total}] seed index {record['seed_index']}: {record['status']} in "
                       f"{record['wall_time_s']:.1f} s", err=True)

    try:
        result = firm_capacity(scenario, hour, duration, seeds, confidence, direction=direction,
                               probe_mw=probe_mw, tracking=tracking, ci_level=ci_level, backend=backend,
                               out=None if out is None else out / "runs", resume=resume, n_workers=workers,
                               overrides=fixed or None, progress=progress, scheduler=scheduler)
    except ScenarioError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except (ProbeSaturated, RuntimeError) as exc:
        _fail(str(exc), EXIT_RUN_FAILED)
    finally:
        if bar is not None:
            bar.close()
    typer.echo(result.markdown())
    if out is not None:
        paths = write(result, out)
        typer.echo("written: " + ", ".join(str(p) for p in paths))


@app.command("ocpp")
def ocpp_cmd(
    scenario: Annotated[Path, typer.Argument(help="scenario file (.yaml, .yml or .toml)")],
    fleet: Annotated[str, typer.Option("--fleet", help="the EV fleet whose chargers go on the wire")],
    operator: Annotated[Optional[str], typer.Option(
        "--operator", help="the operator that owns --fleet (checked; default: the fleet's own)")] = None,
    sample: Annotated[Optional[int], typer.Option(
        "--sample", help="number of chargers drawn from the fleet's charge-only ones (default 20)")] = None,
    station: Annotated[Optional[list[str]], typer.Option(
        "--station", help="a charger instead of a sample: <fleet>-<i> or <i> (repeatable)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="override the scenario's seed")] = None,
    timeout_s: Annotated[float, typer.Option(
        "--timeout-s", help="per-tick deadline for a station's answer [s]; a later one leaves the previous "
                            "limit in force")] = 2.0,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="directory for ocpp.json and ocpp_ticks.csv (absent or empty); default: print only")]
    = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print the summary lines only")] = False,
) -> None:
    """Send an operator's setpoints for sampled chargers as OCPP 2.0.1 SetChargingProfile over loopback.

    The scenario runs twice: in memory, and with the sampled chargers as
    simulated charging stations of a CSMS on 127.0.0.1 (each holds the limit
    it accepted and reports MeterValues every tick). Prints, for the sample,
    the energy over the wire against the in-memory run, message counts and
    round-trip latencies. V2G chargers cannot be sampled (a 2.0.1 charging
    profile cannot express discharge). Exit 2 for bad input or without the
    extra vpp[protocols].
    """
    try:
        import ocpp  # noqa: F401
        import websockets  # noqa: F401
    except ImportError:
        _fail("vpp ocpp needs the optional protocol libraries: install vpp[protocols]", EXIT_BAD_INPUT)
    import json

    import numpy as np

    from vpp.build import build_plant
    from vpp.protocols import ocpp as proto
    from vpp.scenario import ScenarioError

    sc = _load(scenario, seed)
    fleets = {f.name: f for f in sc.fleets}
    ev = [f.name for f in sc.fleets if f.kind == "ev"]
    if fleet not in fleets:
        _fail(f"--fleet: unknown {fleet!r}; allowed (EV fleets): {', '.join(ev) or 'none in this scenario'}",
              EXIT_BAD_INPUT)
    if fleets[fleet].kind != "ev":
        _fail(f"--fleet: {fleet!r} is a {fleets[fleet].kind!r} fleet; OCPP steers chargers only; allowed (EV "
              f"fleets): {', '.join(ev) or 'none in this scenario'}", EXIT_BAD_INPUT)
    operators = list(dict.fromkeys(f.operator for f in sc.fleets))
    if operator is not None and operator not in operators:
        _fail(f"--operator: unknown {operator!r}; allowed: {', '.join(operators)}", EXIT_BAD_INPUT)
    if operator is not None and fleets[fleet].operator != operator:
        own = [f.name for f in sc.fleets if f.operator == operator and f.kind == "ev"]
        _fail(f"--fleet: {fleet!r} belongs to operator {fleets[fleet].operator!r}, not {operator!r}; "
              f"{operator!r}'s EV fleets: {', '.join(own) or 'none'}", EXIT_BAD_INPUT)
    if sample is not None and station:
        _fail("--sample and --station exclude each other; give one", EXIT_BAD_INPUT)
    if not timeout_s > 0.0:
        _fail(f"--timeout-s: {timeout_s:g} must be > 0", EXIT_BAD_INPUT)
    if out is not None and (out.is_file() or (out.is_dir() and any(out.iterdir()))):
        _fail(f"--out {out} exists and is not an empty directory; choose another", EXIT_BAD_INPUT)
    try:
        plant = build_plant(sc)
    except ScenarioError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    f = next(x for x in plant.fleets if x.name == fleet)
    try:
        if station:
            devices = np.unique([proto.parse_station(fleet, s, f.n) for s in station])
        else:
            # The sample is drawn from its own stream of the scenario seed: the same chargers every run.
            rng = np.random.default_rng(np.random.SeedSequence(sc.seed, spawn_key=(12, 4)))
            devices = proto.select_chargers(f.v2g, 20 if sample is None else sample, rng)
        result = proto.run_over_ocpp(sc, f, devices, tick_timeout_s=timeout_s)
    except ValueError as exc:  # unknown station, sample size, V2G charger (V2GRefused)
        _fail(str(exc), EXIT_BAD_INPUT)
    s, st = result.summary, result.stats
    scp, mv = st["set_charging_profile"], st["meter_values"]
    lat_p, lat_m = st["latency_set_charging_profile"], st["latency_meter_values"]

    def ms(q: dict, key: str) -> str:
        return "n/a" if q[key] is None else f"{q[key] * 1000.0:.1f} ms"

    lines = [
        f"{sc.name}: fleet {fleet} (operator {result.operator}), {s['n_stations']} chargers as OCPP 2.0.1 stations, "
        f"{s['n_ticks']} ticks of {sc.time.dt_s:g} s",
        f"energy to the sample: in memory {s['e_memory_kwh']:.4f} kWh, over the wire (MeterValues) "
        f"{s['e_wire_kwh']:.4f} kWh (difference {s['e_wire_kwh'] - s['e_memory_kwh']:+.6f} kWh)",
        f"max |wire - memory| per tick and charger: {s['max_abs_diff_kw'] if s['max_abs_diff_kw'] is not None else float('nan'):.6f} kW "
        f"(energy register), {s['max_abs_power_diff_kw']:.6f} kW (reported power); readings missing: "
        f"{s['n_readings_missing']}; setpoints between 0 and the rating: {s['n_setpoints_partial']} of "
        f"{s['n_setpoints']}",
        f"SetChargingProfile: {scp['sent']} sent, {scp['accepted']} accepted, {scp['rejected']} rejected, "
        f"{scp['call_error']} CallError, {scp['timed_out']} late, {scp['not_connected']} not connected; round trip "
        f"median {ms(lat_p, 'median_s')}, p99 {ms(lat_p, 'p99_s')}",
        f"MeterValues: {mv['messages']} sent, {mv['readings_received']} readings received, {mv['readings_pending']} "
        f"pending; round trip median {ms(lat_m, 'median_s')}, p99 {ms(lat_m, 'p99_s')}",
        f"BootNotification {st['boot_notification']}, StatusNotification {st['status_notification']}, "
        f"reconnections {st['reconnections']}, logged rejections {st['n_logged']}; wall: in memory "
        f"{result.wall_memory_s:.1f} s, over the wire {result.wall_wire_s:.1f} s",
    ]
    if not quiet:
        per_tick = result.frame.groupby("t_s")[["e_memory_kwh", "e_wire_kwh"]].sum(min_count=1)
        lines.append("\nper tick (sample total) [kWh]:\n" + per_tick.to_string(float_format=lambda x: f"{x:.4f}"))
    typer.echo("\n".join(lines))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        doc = {"scenario": sc.name, "fleet": fleet, "operator": result.operator,
               "stations": proto.station_ids(fleet, result.devices), "tick_timeout_s": timeout_s,
               "summary": s, "messages": st, "log": result.log,
               "wall_memory_s": result.wall_memory_s, "wall_wire_s": result.wall_wire_s}
        (out / "ocpp.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
        result.frame.to_csv(out / "ocpp_ticks.csv", index=False)
        typer.echo(f"written to {out}/ocpp.json and {out}/ocpp_ticks.csv")


# --- OpenADR 2.0b (optional extra vpp[protocols]) --------------------------------------------------------

_TLS_HELP = "PEM {what}; TLS with client certificates and OpenADR XML signatures (required off loopback)"
# Options vpp vtn and vpp ven share.
_SpeedOpt = Annotated[float, typer.Option("--speed", help="simulated seconds per wall second")]
_CertOpt = Annotated[Optional[Path], typer.Option("--cert", help=_TLS_HELP.format(what="certificate"))]
_KeyOpt = Annotated[Optional[Path], typer.Option("--key", help=_TLS_HELP.format(what="private key"))]


def _protocols(what: str) -> None:
    """Exit 2 naming the extra when the protocol libraries are missing."""
    from vpp.protocols.openadr import ProtocolsMissing, require_openleadr

    try:
        require_openleadr()
    except ProtocolsMissing:
        _fail(f"vpp {what} needs the OpenADR library: install vpp[protocols] (pip install 'vpp[protocols]')",
              EXIT_BAD_INPUT)


def _tls(host: str, cert: Path | None, key: Path | None, ca: Path | None, role: str):
    from vpp.protocols.tls import SecurityError, check_security

    try:
        return check_security(host, cert, key, ca, role=role)
    except SecurityError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)


def _check_speed(speed: float) -> None:
    import math

    if not (math.isfinite(speed) and speed > 0.0):
        _fail(f"--speed must be a number > 0 (simulated seconds per wall second), got {speed}", EXIT_BAD_INPUT)


def _protocol_logging(quiet: bool) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING if not quiet else logging.ERROR, format="%(levelname)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


_VTN_FILES = ("protocol.json", "reports.csv")


@app.command("vtn")
def vtn_cmd(
    scenario: Annotated[Path, typer.Argument(help="scenario file whose dr_calls the VTN issues")],
    host: Annotated[str, typer.Option(
        "--host", help="address to bind (off loopback: --cert, --key, --ca)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free one)")] = 8080,
    speed: _SpeedOpt = 60.0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="directory for protocol.json and reports.csv "
                                                 "(default: results/<name>-vtn)")] = None,
    poll_s: Annotated[float, typer.Option("--poll-s", min=0.05, help="polling interval asked of VENs [wall s]")] = 1.0,
    wait_s: Annotated[float, typer.Option(
        "--wait-s", min=0.0, help="how long to wait for a first VEN [wall s]")] = 300.0,
    cert: _CertOpt = None,
    key: _KeyOpt = None,
    ca: Annotated[Optional[Path], typer.Option(
        "--ca", help=_TLS_HELP.format(what="CA that VEN certificates chain to"))] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="override the scenario's seed")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="errors only")] = False,
) -> None:
    """Issue the scenario's DR events as an OpenADR 2.0b VTN to whichever VENs register.

    The simulated clock starts when the first VEN registers; each event version
    (modifications, cancellations) goes out at its announce time on it. With
    the scenario's openadr.vens: operator, VENs register under operator names
    and each gets its operator's part of each event that concerns it (split by
    rated capacity on the event's buses; see README "OpenADR"). Runs to
    the scenario's end and writes the protocol timeline (protocol.json: every
    event sent, delivered, opted; reports.csv: every tick a VEN reported).
    Exit 2 for bad input (nothing written), 1 when no VEN registered within
    --wait-s, 130 / 143 on SIGINT / SIGTERM (the timeline so far is written).
    """
    _protocols("vtn")
    _check_speed(speed)
    sc = _load(scenario, seed)
    tls = _tls(host, cert, key, ca, "bind to")
    out_dir = out if out is not None else Path("results") / f"{sc.name}-vtn"
    if out_dir.exists() and (not out_dir.is_dir() or any(p.name not in _VTN_FILES for p in out_dir.iterdir())):
        _fail(f"--out {out_dir}: not a directory an earlier vpp vtn wrote (only {', '.join(_VTN_FILES)}); "
              "choose another or empty it", EXIT_BAD_INPUT)
    _protocol_logging(quiet)
    import asyncio

    from vpp.protocols.openadr import VTN
    from vpp.scenario import ScenarioError

    async def serve() -> tuple[object, int, str | None]:
        try:
            vtn = VTN(sc, host=host, port=port, speed=speed, poll_s=poll_s, tls=tls)
        except ScenarioError as exc:
            return None, EXIT_BAD_INPUT, str(exc)
        try:
            await vtn.start()
        except OSError as exc:
            return None, EXIT_BAD_INPUT, f"--host {host} --port {port}: cannot listen ({exc.strerror or exc})"
        if not quiet:
            typer.echo(f"VTN listening at {vtn.url} (speed {speed:g}); waiting for VENs", err=True)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        received: list[str] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda s=sig: (received.append(signal.Signals(s).name), task.cancel()))
        code, message = EXIT_OK, None
        try:
            await vtn.run(wait_s=wait_s)
        except TimeoutError as exc:
            code, message = EXIT_RUN_FAILED, str(exc)
        except asyncio.CancelledError:
            code = EXIT_SIGNAL[received[0]] if received else EXIT_SIGNAL["SIGINT"]
            message = f"interrupted by {received[0] if received else 'SIGINT'}; the timeline so far is written"
        finally:
            await vtn.stop()
        return vtn, code, message

    vtn, code, message = asyncio.run(serve())
    if vtn is None:
        _fail(message, code)
    vtn.write(out_dir)
    if not quiet:
        s = vtn.summary()
        rows = s["opt_latency"]
        if len(rows) <= 10:
            for row in rows:
                typer.echo(f"{row['event_id']} v{row['modification']} -> {row['ven_id']}: {row['opt']} after "
                           f"{row['latency_wall_s']:.3f} s wall", err=True)
        else:  # thousands of VENs (vpp loadgen): a line per event version, the rest is in protocol.json
            import numpy as np

            by_version: dict = {}
            for row in rows:
                by_version.setdefault((row["event_id"], row["modification"]), []).append(row)
            for (eid, mod), got in by_version.items():
                lat = np.array([r["latency_wall_s"] for r in got])
                opts = {o: sum(r["opt"] == o for r in got) for o in sorted({r["opt"] for r in got})}
                typer.echo(f"{eid} v{mod}: {len(got):,} VENs answered {opts}; sent -> answer median "
                           f"{np.median(lat):.3f} s, p99 {np.percentile(lat, 99):.3f} s wall", err=True)
        vens = s["vens"]
        named = ", ".join(vens) if len(vens) <= 10 else f"{len(vens):,} ({vens[0]} ... {vens[-1]})"
        reported = s["n_ticks_reported"]
        ticks = reported if len(reported) <= 10 else f"{sum(reported.values()):,} ticks from {len(reported):,} VENs"
        typer.echo(f"VENs {named or 'none'}; ticks reported {ticks}; written to {out_dir}/", err=True)
    if message:
        _fail(message, code)


@app.command("ven")
def ven_cmd(
    scenario: Annotated[Path, typer.Argument(help="scenario file: the plant and twin to run (its dr_calls are not "
                                                  "scheduled; events come from the VTN)")],
    vtn: Annotated[str, typer.Option("--vtn", help="the VTN's URL, e.g. http://127.0.0.1:8080/OpenADR2/Simple/2.0b")],
    speed: _SpeedOpt = 60.0,
    ven_name: Annotated[str, typer.Option("--ven-name", help="the name this VEN registers with (openadr.vens: "
                                          "operator: each VEN registers with its operator's name)")] = "vpp",
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="output directory as for vpp run (default: results/<name>-ven)")] = None,
    poll_s: Annotated[float, typer.Option("--poll-s", min=0.05, help="polling interval [wall s]")] = 1.0,
    connect_timeout_s: Annotated[float, typer.Option(
        "--connect-timeout-s", min=0.0, help="how long to retry the first registration before exit 2 [wall s]")] = 30.0,
    cert: _CertOpt = None,
    key: _KeyOpt = None,
    ca: Annotated[Optional[Path], typer.Option(
        "--ca", help=_TLS_HELP.format(what="CA the VTN's certificate chains to"))] = None,
    vtn_fingerprint: Annotated[Optional[str], typer.Option(
        "--vtn-fingerprint", help="the VTN certificate's OpenADR fingerprint: check its message signatures")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="override the scenario's seed")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no table")] = False,
) -> None:
    """Run the scenario's plant as an OpenADR 2.0b VEN of the VTN at --vtn.

    The plant and its no-call twin run as in vpp run, tick by tick at the
    simulated clock (started at registration); each event received is taken
    into the run at the next tick boundary, the platform opts in or out, and
    the metered power of every tick is reported. With the scenario's
    openadr.vens: operator, one VEN per operator (named after it) runs around
    the one plant, each taking its operator's events and reporting its
    operator's power. Writes what vpp run writes,
    with the protocol timeline in summary.json ("protocol"). Exit 2 for bad
    input or a VTN that cannot be reached within --connect-timeout-s (nothing
    written); 1 for a run that failed mid-way; 130 / 143 on SIGINT / SIGTERM.
    """
    from urllib.parse import urlparse

    _protocols("ven")
    _check_speed(speed)
    url = urlparse(vtn)
    if url.scheme not in ("http", "https") or not url.hostname:
        _fail(f"--vtn {vtn!r}: give the VTN's URL, http:// or https://host:port/path", EXIT_BAD_INPUT)
    sc = _load(scenario, seed)
    per_operator = sc.openadr.vens == "operator"
    if per_operator and ven_name != "vpp":
        _fail(f"--ven-name {ven_name}: with openadr.vens: operator each VEN registers with its operator's name; "
              "leave --ven-name out", EXIT_BAD_INPUT)
    tls = _tls(url.hostname, cert, key, ca, "connect to")
    if (tls is None) != (url.scheme == "http"):
        _fail(f"--vtn {vtn}: use https:// with --cert, --key and --ca, http:// without them", EXIT_BAD_INPUT)
    from vpp.metrics.report import OutputDirError, check_out_dir, summary_table, write_results

    out_dir = out if out is not None else Path("results") / f"{sc.name}-ven"
    try:
        check_out_dir(out_dir)
    except OutputDirError as exc:
        _fail(f"--out {exc}", EXIT_BAD_INPUT)
    _protocol_logging(quiet)
    import asyncio

    from vpp.protocols.clock import SimClock
    from vpp.protocols.openadr import VEN, VTNUnreachable, probe_vtn, run_vens
    from vpp.run import RunError, prepare_run
    from vpp.scenario import ScenarioError

    try:  # before building the plant: a wrong URL is an error at start, nothing done
        asyncio.run(probe_vtn(vtn, tls=tls, vtn_fingerprint=vtn_fingerprint, connect_timeout_s=connect_timeout_s))
    except VTNUnreachable as err:
        _fail(f"{err}; nothing written", EXIT_BAD_INPUT)

    def warn(line: str) -> None:
        typer.echo(f"warning: {line}", err=True)

    try:
        session = prepare_run(sc, warn=warn, local_calls=False)
    except ScenarioError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    received: list[str] = []

    async def go():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda s=sig: received.append(signal.Signals(s).name))
        kw = dict(speed=speed, poll_s=poll_s, tls=tls, vtn_fingerprint=vtn_fingerprint,
                  connect_timeout_s=connect_timeout_s)
        if per_operator:  # one VEN per operator, one plant and one clock
            clock = SimClock(sc.time.calendar, speed)
            clients = [VEN(session, vtn, operator=op, clock=clock, **kw) for op in session.engine.portfolios]
        else:
            clients = [VEN(session, vtn, ven_name=ven_name, **kw)]
        try:
            return clients, await run_vens(clients, stop=lambda: received[0] if received else None), None
        except RunError as exc:
            return clients, exc.results, exc

    try:
        clients, results, exc = asyncio.run(go())
    except VTNUnreachable as err:
        _fail(f"{err}; nothing written", EXIT_BAD_INPUT)
    if per_operator:
        results.summary["protocol"] = {
            "role": "ven", "vens": "operator",
            "per_operator": [{**c.summary(), "timeline": c.timeline.rows} for c in clients],
            "opt_latency": [{**r, "operator": c.operator} for c in clients for r in c.summary()["opt_latency"]],
            "n_ticks_reported": sum(c.n_reported for c in clients),
            "n_ticks_unsent": sum(len(c.unsent) for c in clients)}
    else:
        client = clients[0]
        results.summary["protocol"] = {**client.summary(), "timeline": client.timeline.rows}
    try:
        write_results(results, out_dir)
    except (OutputDirError, OSError) as err:
        _fail(f"writing {out_dir}: {err}; the results were computed but not written", EXIT_RUN_FAILED)
    if exc is not None:
        if results.stopped_by in EXIT_SIGNAL:
            typer.echo(f"interrupted by {results.stopped_by}: partial results written to {out_dir}/", err=True)
            raise typer.Exit(EXIT_SIGNAL[results.stopped_by])
        _fail(f"{exc}; partial results written to {out_dir}/", EXIT_RUN_FAILED)
    if not quiet:
        typer.echo(summary_table(results))
        p = results.summary["protocol"]
        for row in p["opt_latency"]:
            who = f" ({row['operator']})" if "operator" in row else ""
            typer.echo(f"{row['event_id']}{who} v{row['modification']}: {row['opt']} {row['latency_wall_s']:.3f} s "
                       "wall after it arrived")
        typer.echo(f"\nticks reported {p['n_ticks_reported']} (unsent {p['n_ticks_unsent']}); written to {out_dir}/ "
                   f"in {results.meta['wall_time_s']:.2f} s")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
