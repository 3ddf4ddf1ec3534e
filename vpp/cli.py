"""The ``vpp`` command: a thin shell over :func:`vpp.run.run_scenario` and friends.

Exit codes: 0 success; 1 a run that failed mid-way (what was computed is
written); 2 bad input (one line per problem, nothing written).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="vpp: virtual power plant dispatch simulator.",
)

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2


def _fail(message: str, code: int) -> None:
    for line in str(message).splitlines():
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code)


def _load(path: Path, seed: int | None):
    from vpp.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path, overrides=None if seed is None else {"seed": seed})
    except ScenarioError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="scenario file (.yaml, .yml or .toml)")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="output directory [default: results/<name>]")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="override the scenario's seed")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar and no table")] = False,
    plot: Annotated[bool, typer.Option("--plot", help="also write dispatch.png (power, DR, voltages)")] = False,
) -> None:
    """Run a scenario and write timeseries.parquet, buses.parquet, summary.json and meta.json."""
    from vpp.metrics.report import summary_table, write_results
    from vpp.run import RunError, run_scenario
    from vpp.scenario import ScenarioError

    sc = _load(scenario, seed)
    out_dir = out if out is not None else Path("results") / sc.name
    bar = None
    progress = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=sc.time.n_ticks, unit="tick", desc=sc.name, leave=False)
        progress = lambda done, total: bar.update(1)  # noqa: E731
    try:
        results = run_scenario(sc, progress=progress)
    except ScenarioError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except RunError as exc:
        write_results(exc.results, out_dir)
        _fail(f"{exc} (the {exc.results.meta['n_ticks_done']} ticks before it are written to {out_dir})",
              EXIT_RUN_FAILED)
    finally:
        if bar is not None:
            bar.close()
    write_results(results, out_dir)
    if plot:
        from vpp.metrics.plots import plot_dispatch

        plot_dispatch(results, out_dir / "dispatch.png")
    if not quiet:
        typer.echo(summary_table(results))
        typer.echo(f"\nwritten to {out_dir}/ in {results.meta['wall_time_s']:.2f} s")


@app.command()
def validate(
    scenario: Annotated[Path, typer.Argument(help="scenario file (.yaml, .yml or .toml)")],
) -> None:
    """Check a scenario, including that every bus it names exists in its grid; run nothing."""
    from vpp.build import build_plant, plant_warnings
    from vpp.scenario import ScenarioError

    sc = _load(scenario, None)
    try:
        plant = build_plant(sc)
    except ScenarioError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    for w in plant_warnings(plant):
        typer.echo(f"warning: {w}", err=True)
    n_dev = sum(f.n_devices for f in sc.fleets)
    typer.echo(
        f"{scenario}: valid ({len(sc.fleets)} fleets, {n_dev:,} devices, {sc.time.n_ticks} ticks of "
        f"{sc.time.dt_s:g} s, {len(sc.dr_calls)} DR calls, grid {sc.grid.network})"
    )


@app.command("list")
def list_names(
    what: Annotated[str, typer.Argument(help="networks | kinds | parameters | profiles | strategies")],
) -> None:
    """List the names a scenario may use."""
    from vpp.dispatch.allocation import ALLOCATORS
    from vpp.fleets.registry import KINDS
    from vpp.grid.networks import PANDAPOWER_NETWORKS
    from vpp.profiles import PROFILES

    registries = {
        "networks": {k: f"pandapower.networks.{v[0]}" for k, v in PANDAPOWER_NETWORKS.items()},
        "kinds": {k: (spec.fleet.__doc__ or "").strip().splitlines()[0] for k, spec in KINDS.items()},
        "parameters": {
            f"{spec.name}.{spec.parameter_field}={k}": spec.describe(v)
            for spec in KINDS.values() for k, v in spec.parameter_sets.items()
        },
        "profiles": {k: f"{v.unit}; {v.source}" for k, v in PROFILES.items()},
        "strategies": {k: (v.__doc__ or "").strip().splitlines()[0] for k, v in ALLOCATORS.items()},
    }
    if what not in registries:
        _fail(f"unknown list {what!r}; allowed: {', '.join(registries)}", EXIT_BAD_INPUT)
    for name, desc in registries[what].items():
        typer.echo(f"{name:<34} {desc}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
