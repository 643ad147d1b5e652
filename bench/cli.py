"""`bench`: the lab's command line (run → results.json → report)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bench import manifest
from bench.compare import RESULTS_DIR, CompareOptions, run_compare
from bench.load import SCENARIOS

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Concurrency Lab: compare web frameworks' concurrency models under load.")
console = Console()

QUICK_USERS, QUICK_DURATION = [1, 100], 20.0
FULL_USERS, FULL_DURATION = [1, 10, 50, 100, 200], 30.0


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise typer.BadParameter(f"{what} must be positive integers, got {text!r}")
    return values


def _parse_sets(items: list[str]) -> dict[str, list[int]]:
    sweep: dict[str, list[int]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set takes NAME=V1[,V2...], got {item!r}")
        sweep[key.strip()] = _int_list(values, f"--set {key}")
    return sweep


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@app.command()
def compare(
    targets: Annotated[str, typer.Option(help="comma-separated target names (default: all)")] = "",
    users: Annotated[str, typer.Option(help="users levels, e.g. 1,10,100 (1 is always added)")] = "",
    duration: Annotated[float, typer.Option(help="seconds of load per users level")] = 0,
    db_ms: Annotated[int, typer.Option(help="pg_sleep per request, ms", min=0, max=5000)] = 50,
    llm_ms: Annotated[int, typer.Option(help="upstream latency, ms", min=0, max=20000)] = 500,
    scenario: Annotated[str, typer.Option(help=f"one of {', '.join(SCENARIOS)}")] = "recommendation",
    set_: Annotated[list[str], typer.Option("--set", help="param sweep: workers=4,8,16")] = [],  # noqa: B006
    quick: Annotated[bool, typer.Option(help=f"users {QUICK_USERS}, {QUICK_DURATION:g} s each")] = False,
    results_dir: Annotated[Path, typer.Option(help="where run folders go")] = RESULTS_DIR,
) -> None:
    """Measure targets under identical Locust load; write results/<run>/ and print the table."""
    if scenario not in SCENARIOS:
        raise typer.BadParameter(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    try:
        chosen = manifest.select([t.strip() for t in targets.split(",") if t.strip()])
        sweep = _parse_sets(set_)
        for target in chosen:
            target.resolve({k: v[0] for k, v in sweep.items()})  # unknown params fail now
    except manifest.ManifestError as exc:
        raise typer.BadParameter(str(exc)) from None
    opts = CompareOptions(
        targets=chosen,
        users=_int_list(users, "--users") if users else (QUICK_USERS if quick else FULL_USERS),
        duration_s=duration or (QUICK_DURATION if quick else FULL_DURATION),
        db_ms=db_ms, llm_ms=llm_ms, scenario=scenario, sweep=sweep, results_dir=results_dir)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    try:
        run_dir = run_compare(opts, console, run_id=run_id)
    except KeyboardInterrupt:
        run_dir = results_dir / run_id
        console.print(f"[yellow]interrupted: what was measured is kept in {run_dir}[/]")
        _render(run_dir)
        raise typer.Exit(130) from None
    _render(run_dir)


def _render(run_dir: Path) -> None:
    from bench.report import print_table, write_reports
    if not (run_dir / "results.json").exists():
        return
    run = write_reports(run_dir)
    print_table(run, console)
    console.print(f"report: {run_dir / 'report.md'}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a results/<run> folder")] = RESULTS_DIR / "latest",
) -> None:
    """Re-render report.md (and the table) from a run's results.json, without running load."""
    if not (run_dir / "results.json").exists():
        raise typer.BadParameter(f"no results.json in {run_dir}")
    _render(run_dir.resolve())


@app.command("targets")
def list_targets() -> None:
    """List every target found in the manifests."""
    from rich.table import Table
    table = Table("target", "framework", "model", "port", "capacity", "db_pool")
    for target in manifest.load_targets().values():
        resolved = target.resolve()
        table.add_row(target.name + (" ⚠" if target.anti_pattern else ""), target.framework,
                      resolved.model, str(target.port), str(resolved.capacity or "∞"),
                      str(resolved.db_pool))
    console.print(table)


@app.command()
def infra() -> None:
    """Start embedded PostgreSQL and the mock upstream; print their URLs; Ctrl-C stops them."""
    from bench.infra import main
    main()


@app.command("upstream-bench")
def upstream_bench(
    concurrency: Annotated[int, typer.Option(help="requests in flight")] = 500,
    duration: Annotated[float, typer.Option(help="seconds")] = 10,
    latency_ms: Annotated[int, typer.Option(help="mock latency per request")] = 50,
) -> None:
    """Benchmark the mock upstream on one core (the other core drives load)."""
    from bench.upstream_bench import main
    raise typer.Exit(main(["--concurrency", str(concurrency), "--duration", str(duration),
                           "--latency-ms", str(latency_ms)]))


if __name__ == "__main__":
    app()
