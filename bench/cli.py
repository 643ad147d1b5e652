"""`bench`: the lab's command line (run → results.json → report)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bench import manifest
from bench.compare import (
    CALIBRATION,
    CALIBRATION_REFUSED,
    RESULTS_DIR,
    RUNTIMES,
    TARGET_SCENARIOS,
    CompareOptions,
    run_compare,
)
from bench.docker import DockerError
from bench.load import SCENARIOS
from bench.results import invocation

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Concurrency Lab: compare web frameworks' concurrency models under load.")
console = Console()

# 8 s windows keep the quick run (18 targets, the jobs and cpu cells) within 15 minutes on 2 cores;
# every level is still drained, so a queueing model's long waits count. The full run measures 30 s.
QUICK_USERS, QUICK_DURATION = [1, 100], 8.0
FULL_USERS, FULL_DURATION = [1, 10, 50, 100, 200], 30.0


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise typer.BadParameter(f"{what} must be positive integers, got {text!r}")
    return values


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@app.command()
def compare(
    targets: Annotated[str, typer.Option(help="comma-separated target names (default: all)")] = "",
    users: Annotated[str, typer.Option(help="users levels, e.g. 1,10,100 (1 is always added)")] = "",
    duration: Annotated[float, typer.Option(
        help="seconds of the measured window per users level (a warm-up and a drain come on top)")] = 0,
    db_ms: Annotated[int, typer.Option(help="pg_sleep per request, ms", min=0, max=5000)] = 50,
    llm_ms: Annotated[int, typer.Option(help="upstream latency, ms", min=0, max=20000)] = 500,
    scenario: Annotated[str, typer.Option(help=f"one of {', '.join(TARGET_SCENARIOS)}")] = "recommendation",
    set_: Annotated[list[str], typer.Option("--set", help="param sweep: workers=4,8,16")] = [],  # noqa: B006
    quick: Annotated[bool, typer.Option(help=f"users {QUICK_USERS}, {QUICK_DURATION:g} s each")] = False,
    calibration: Annotated[bool, typer.Option(
        help="also run Locust straight at the upstream (row `calibration`)")] = True,
    claims: Annotated[bool, typer.Option(
        help="also run the cells and experiments the claims table needs")] = True,
    all_claims: Annotated[bool, typer.Option(
        help="with --quick: every claim's cells and experiments too (the DB-bound workload, the "
             "default go pool, bare variants, the pub/sub timelines), which only the full run has "
             "otherwise")] = False,
    docker: Annotated[bool, typer.Option(
        "--docker", help="targets via docker compose; memory = the container's working set")] = False,
    runtime: Annotated[str, typer.Option(
        help="native, docker, or native,docker: both, side by side in one run (report: Docker vs native)"
    )] = "",
    results_dir: Annotated[Path, typer.Option(help="where run folders go")] = RESULTS_DIR,
    repeat: Annotated[int, typer.Option(
        help="measure each level N times: rows are the medians with their min-max, claims are "
             "judged on the medians and on each repeat", min=1, max=20)] = 1,
    locust_processes: Annotated[str, typer.Option(
        help="Locust processes per level: N (`locust --processes N` beyond 1), or auto: more than one "
             "where the level below predicts one past 1.5 cores (its CPU x the users ratio), and a level "
             "that saturates Locust anyway (80 % of a core) measured again with one process per 70 % "
             "(one per core at most)")] = "1",
) -> None:
    """Measure targets under identical Locust load; write results/<run>/ and print the table."""
    if scenario == CALIBRATION:
        raise typer.BadParameter(CALIBRATION_REFUSED)
    if scenario not in SCENARIOS:
        raise typer.BadParameter(f"unknown scenario {scenario!r}; use one of {', '.join(TARGET_SCENARIOS)}")
    try:
        chosen = manifest.select([t.strip() for t in targets.split(",") if t.strip()])
        sweep = manifest.parse_sets(set_, chosen)
    except manifest.ManifestError as exc:
        raise typer.BadParameter(str(exc)) from None
    runtimes = tuple(r.strip() for r in runtime.split(",") if r.strip()) or (
        ("docker",) if docker else ("native",))
    if set(runtimes) - set(RUNTIMES) or len(set(runtimes)) != len(runtimes):
        raise typer.BadParameter(f"--runtime takes {', '.join(RUNTIMES)} or both, got {runtime!r}")
    if docker and runtimes != ("docker",):
        raise typer.BadParameter("--docker is --runtime docker: give one of them")
    if locust_processes != "auto" and not (locust_processes.isdigit() and int(locust_processes) >= 1):
        raise typer.BadParameter(f"--locust-processes takes a number or auto, got {locust_processes!r}")
    if "docker" in runtimes and sweep:
        raise typer.BadParameter("--set needs native targets: compose runs each target's "
                                 "manifest defaults (drop --docker to sweep)")
    opts = CompareOptions(
        targets=chosen,
        users=_int_list(users, "--users") if users else (QUICK_USERS if quick else FULL_USERS),
        duration_s=duration or (QUICK_DURATION if quick else FULL_DURATION),
        db_ms=db_ms, llm_ms=llm_ms, scenario=scenario, sweep=sweep, results_dir=results_dir,
        calibration=calibration, claims=claims, quick=quick, all_claims=all_claims, runtimes=runtimes,
        invocation=invocation(), repeat=repeat,
        locust_processes=None if locust_processes == "auto" else int(locust_processes))
    _run_and_render(results_dir, time.strftime("%Y%m%d-%H%M%S"),
                    lambda run_id: run_compare(opts, console, run_id=run_id))


def _run_and_render(results_dir: Path, run_id: str, run: Callable[[str], Path]) -> Path:
    """A `bench compare` / `bench capacity` / `bench profile` run into results_dir/run_id, then its
    table and reports; Ctrl-C (or SIGTERM) keeps and renders what was measured."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        run_dir = run(run_id)
    except DockerError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        run_dir = results_dir / run_id
        console.print(f"[yellow]interrupted: what was measured is kept in {run_dir}[/]")
        _render(run_dir)
        raise typer.Exit(130) from None
    _render(run_dir)
    return run_dir


def _render(run_dir: Path) -> None:
    from bench.claims import claims_table
    from bench.report import faults_console_table, finalize, is_faults_run, print_table
    if not (run_dir / "results.json").exists():
        return
    run = finalize(run_dir)
    if is_faults_run(run):
        (console if console.is_terminal else Console(width=200)).print(faults_console_table(run))
        console.print(f"report: {run_dir / 'report.md'} and {run_dir / 'report.html'}")
        return
    print_table(run, console)
    if run.capacity:
        from bench.report import capacity_console_table
        (console if console.is_terminal else Console(width=200)).print(capacity_console_table(run))
    if run.profiles:
        from bench.report import profile_console_tables
        for table in profile_console_tables(run):
            (console if console.is_terminal else Console(width=200)).print(table)
    if run.claims:
        (console if console.is_terminal else Console(width=200)).print(claims_table(run))
    console.print(f"report: {run_dir / 'report.md'} and {run_dir / 'report.html'}")


def _selected(targets: str) -> list[manifest.Target]:
    """--targets: comma-separated names, a clear error for an unknown one. Empty: every target that
    serves the recommendation load (not the job targets, whose /recommendation repeats another's)."""
    names = [t.strip() for t in targets.split(",") if t.strip()]
    try:
        chosen = manifest.select(names)
    except manifest.ManifestError as exc:
        raise typer.BadParameter(str(exc)) from None
    return chosen if names else [t for t in chosen if t.measured_in("recommendation")]


def _run_and_report(kind: str, results_dir: Path, run: Callable[[str], Path]):
    """A `bench faults` / `bench soak` run: its folder results/<kind>-<run id>/, then its reports
    and table; Ctrl-C (or SIGTERM) keeps and renders what was measured."""
    from bench.report import faults_console_table, write_reports
    signal.signal(signal.SIGTERM, _raise_interrupt)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    try:
        run_dir = run(run_id)
    except DockerError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        run_dir = results_dir / f"{kind}-{run_id}"
        console.print(f"[yellow]interrupted: what was measured is kept in {run_dir}[/]")
        if (run_dir / "results.json").exists():
            write_reports(run_dir)
        raise typer.Exit(130) from None
    result = write_reports(run_dir)
    (console if console.is_terminal else Console(width=200)).print(faults_console_table(result))
    console.print(f"report: {run_dir / 'report.md'} and {run_dir / 'report.html'}")
    return result


@app.command()
def faults(
    targets: Annotated[str, typer.Option(
        help="comma-separated target names (default: all but the job and process-pool targets)")] = "",
    only: Annotated[str, typer.Option(
        "--faults", help="comma-separated faults (default: all): see docs/FAULTS.md")] = "",
    users: Annotated[int, typer.Option(help="steady load while the faults strike", min=1, max=500)] = 20,
    quick: Annotated[bool, typer.Option(
        help="shorter outages (PostgreSQL down 3 s, not 10 s) and only the faults make faults runs "
             "(bench.faults.QUICK_FAULTS)")] = False,
    docker: Annotated[bool, typer.Option(
        "--docker", help="the compose services instead of native processes (needs an engine)")] = False,
    repeat: Annotated[int, typer.Option(
        help="run each fault this many times per target; the table says in how many its verdict held",
        min=1, max=20)] = 1,
    allow_broken: Annotated[bool, typer.Option(
        "--allow-broken", help="exit 0 even when rows broke their expectations")] = False,
    results_dir: Annotated[Path, typer.Option(help="where run folders go")] = RESULTS_DIR,
) -> None:
    """Inject faults into every target under steady load (PostgreSQL restarted, stopped, hung and out of
    connections, Redis stopped, the upstream failing, rate-limiting, answering garbage, hanging, dribbling
    and killed, a worker killed, SIGTERM); write results/faults-<run>/ and its table. Exits 1 when a row
    broke its expectation (or a target failed), unless --allow-broken."""
    from bench.faults import FAULTS, QUICK_FAULTS, FaultsOptions, run_faults
    chosen = _selected(targets)
    names = [f.strip() for f in only.split(",") if f.strip()] or list(QUICK_FAULTS if quick else FAULTS)
    if unknown := [f for f in names if f not in FAULTS]:
        raise typer.BadParameter(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    opts = FaultsOptions(targets=chosen, faults=[f for f in FAULTS if f in names], quick=quick, users=users,
                         results_dir=results_dir, invocation=invocation(),
                         runtime="docker" if docker else "native", repeat=repeat)
    run = _run_and_report("faults", results_dir, lambda run_id: run_faults(opts, console, run_id))
    _exit_on_broken(run, allow_broken)


def _exit_on_broken(run, allow_broken: bool) -> None:
    """Exit 1 when a row broke its expectation or a target failed to run (not: could not run here)."""
    from bench.report import broken_rows
    broken = broken_rows(run)
    failed = [name for name, why in run.skipped.items() if why.startswith("failed")]
    if not broken and not failed and not run.skipped:
        return
    console.print(f"[yellow]{broken} rows broke their expectations; {len(failed)} targets failed; "
                  f"{len(run.skipped) - len(failed)} targets could not run here[/]")
    if (broken or failed) and not allow_broken:
        raise typer.Exit(1)


@app.command()
def soak(
    targets: Annotated[str, typer.Option(
        help="comma-separated target names (default: all but the job and process-pool targets)")] = "",
    minutes: Annotated[float, typer.Option(help="minutes of steady load per target", min=0.5,
                                           max=120)] = 10,
    users: Annotated[int, typer.Option(help="Locust users", min=1, max=500)] = 100,
    docker: Annotated[bool, typer.Option(
        "--docker", help="the compose services instead of native processes (needs an engine)")] = False,
    allow_broken: Annotated[bool, typer.Option(
        "--allow-broken", help="exit 0 even when rows broke their expectations")] = False,
    results_dir: Annotated[Path, typer.Option(help="where run folders go")] = RESULTS_DIR,
) -> None:
    """Steady load for minutes on every target (not part of `make test`): errors, and the memory's
    slope in MiB/min; write results/soak-<run>/. Exits 1 when a row had errors, unless --allow-broken."""
    from bench.faults import FaultsOptions, run_soak
    chosen = _selected(targets)
    opts = FaultsOptions(targets=chosen, faults=[], users=users, results_dir=results_dir,
                         invocation=invocation(), runtime="docker" if docker else "native")
    run = _run_and_report("soak", results_dir, lambda run_id: run_soak(opts, minutes, console, run_id))
    _exit_on_broken(run, allow_broken)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a results/<run> folder")] = RESULTS_DIR / "latest",
) -> None:
    """Re-render report.md, report.html, the claims and the table from a run's results.json (no load)."""
    if not (run_dir / "results.json").exists():
        raise typer.BadParameter(f"no results.json in {run_dir}")
    _render(run_dir.resolve())


@app.command()
def capacity(
    targets: Annotated[str, typer.Option(help="comma-separated target names (default: every target "
                                              "of the recommendation load)")] = "",
    workload: Annotated[list[str], typer.Option(
        help="db_ms/llm_ms, repeatable (default: 5/500 the LLM-bound request, 5/20 short I/O)")] = [],  # noqa: B006
    start_users: Annotated[int, typer.Option(help="the first level after L1", min=1)] = 50,
    max_users: Annotated[int, typer.Option(help="the highest level tried", min=1)] = 3200,
    duration: Annotated[float, typer.Option(help="seconds of the measured window per level", min=1)] = 5.0,
    calibration: Annotated[bool, typer.Option(help="Locust straight at the upstream, same levels")] = True,
    results_dir: Annotated[Path, typer.Option(help="where run folders go")] = RESULTS_DIR,
) -> None:
    """Each target's knee: users x2 until p95 > 1.5 x L1, errors or a CPU limit; rps per core and
    MiB per request in flight there (bench/capacity.py)."""
    from bench.capacity import WORKLOADS, CapacityOptions, run_capacity
    try:
        loads = tuple(tuple(int(x) for x in w.split("/", 1)) for w in workload) or WORKLOADS
    except ValueError:
        raise typer.BadParameter(f"--workload takes db_ms/llm_ms, e.g. 5/500; got {workload}") from None
    if any(len(w) != 2 for w in loads):
        raise typer.BadParameter(f"--workload takes db_ms/llm_ms, e.g. 5/500; got {workload}")
    opts = CapacityOptions(targets=_selected(targets), workloads=loads, start_users=start_users,
                           max_users=max_users, duration_s=duration, calibration=calibration,
                           results_dir=results_dir, invocation=invocation())
    _run_and_render(results_dir, "capacity-" + time.strftime("%Y%m%d-%H%M%S"),
                    lambda run_id: run_capacity(opts, console, run_id=run_id))


@app.command()
def profile(
    targets: Annotated[str, typer.Argument(
        help="the target(s) to profile, comma-separated, one after another (see `bench targets`)")],
    users: Annotated[int, typer.Option(help="Locust users of the measured cell", min=1, max=3200)] = 100,
    duration: Annotated[float, typer.Option(
        help="seconds of the measured window, which the profiler samples", min=1, max=600)] = 20.0,
    db_ms: Annotated[int, typer.Option(help="pg_sleep per request, ms", min=0, max=5000)] = 50,
    llm_ms: Annotated[int, typer.Option(help="upstream latency, ms", min=0, max=20000)] = 500,
    rate: Annotated[int, typer.Option(
        help="samples per second (py-spy, V8); Go's profiler samples at 100 Hz", min=1, max=1000)] = 100,
    results_dir: Annotated[Path, typer.Option(help="where run folders go")] = RESULTS_DIR,
) -> None:
    """Where the CPU goes: one cell of the recommendation load per target, measured with its process
    tree profiled in the window (py-spy, pprof or V8's profiler): each layer's CPU share and CPU ms per
    request, a flame graph, and the tool's own file for speedscope; writes results/profile-<run>/."""
    from bench.profile import ProfileError, ProfileOptions, language_of, run_profile
    from bench.results import Run
    names = [t.strip() for t in targets.split(",") if t.strip()]
    if not names:
        raise typer.BadParameter("name at least one target", param_hint="TARGETS")
    try:
        chosen = manifest.select(names)
        for target in chosen:
            language_of(target)
    except (manifest.ManifestError, ProfileError) as exc:
        raise typer.BadParameter(str(exc), param_hint="TARGETS") from None
    opts = ProfileOptions(targets=chosen, users=users, duration_s=duration, db_ms=db_ms, llm_ms=llm_ms,
                          rate_hz=rate, results_dir=results_dir, invocation=invocation())
    run_dir = _run_and_render(results_dir, "profile-" + time.strftime("%Y%m%d-%H%M%S"),
                              lambda run_id: run_profile(opts, console, run_id=run_id))
    run = Run.load(run_dir)
    for name, why in run.skipped.items():
        console.print(f"[red]{name} not profiled: {why}[/]")
    if run.skipped or not run.profiles:
        raise typer.Exit(1)


@app.command()
def diff(
    run_a: Annotated[Path, typer.Argument(help="the run before: a results/<run> folder or a results file")],
    run_b: Annotated[Path, typer.Argument(help="the run after")],
) -> None:
    """Each cell's change from RUN_A to RUN_B (rps, W, peak memory), whether it is beyond the runs'
    spread (`bench compare --repeat N`), and the claims whose verdict changed (no load)."""
    from bench import diff as diff_mod
    for path in (run_a, run_b):
        if not path.is_file() and not (path / "results.json").is_file():
            raise typer.BadParameter(f"{path} is neither a results file nor a run folder with results.json")
    out = console if console.is_terminal else Console(width=200)
    for table in diff_mod.diff_tables(diff_mod.diff(diff_mod.load(run_a), diff_mod.load(run_b))):
        out.print(table)


@app.command()
def readme(
    run_dir: Annotated[Path | None, typer.Argument(
        help="a results/<run> folder (default results/latest, when there is one)")] = None,
) -> None:
    """Put a run's headline table and claims (snapshot: docs/latest-run.json), or a `bench faults`
    run's table (docs/faults-run.json), a `bench capacity` run's knees (docs/capacity-run.json) or a
    `bench profile` run's layers (docs/profile-run.json), and the upstream-bench figures
    (docs/upstream-bench.json, written by `bench upstream-bench`) into README.md."""
    from bench import readme as readme_mod
    from bench.report import is_faults_run
    from bench.results import Run
    chosen = run_dir or RESULTS_DIR / "latest"
    if run_dir is not None and (run_dir / "results.json").exists() and is_faults_run(Run.load(run_dir)):
        run = readme_mod.update_faults(run_dir.resolve())
        console.print(f"README.md faults block updated from run {run.run_id}; snapshot "
                      f"{readme_mod.FAULTS_SNAPSHOT}", soft_wrap=True, highlight=False)
        return
    if run_dir is not None and (run_dir / "results.json").exists() and Run.load(run_dir).capacity:
        run = readme_mod.update_capacity(run_dir.resolve())
        console.print(f"README.md capacity block updated from run {run.run_id}; snapshot "
                      f"{readme_mod.CAPACITY_SNAPSHOT}", soft_wrap=True, highlight=False)
        return
    if run_dir is not None and (run_dir / "results.json").exists() and Run.load(run_dir).profiles:
        run = readme_mod.update_profile(run_dir.resolve())
        console.print(f"README.md profile block updated from run {run.run_id}; snapshot "
                      f"{readme_mod.PROFILE_SNAPSHOT}", soft_wrap=True, highlight=False)
        return
    if (chosen / "results.json").exists():
        run = readme_mod.update(chosen.resolve())
        console.print(f"README.md updated from run {run.run_id}; snapshot {readme_mod.SNAPSHOT}",
                      soft_wrap=True, highlight=False)
    elif run_dir is not None:
        raise typer.BadParameter(f"no results.json in {run_dir}")
    else:
        console.print(f"no run in {chosen}: the latest-comparison block is left as it is",
                      soft_wrap=True, highlight=False)
    if readme_mod.FAULTS_SNAPSHOT.exists():
        readme_mod.update_faults()
    if readme_mod.CAPACITY_SNAPSHOT.exists():
        readme_mod.update_capacity()
    if readme_mod.UPSTREAM_SNAPSHOT.exists():
        snap = readme_mod.update_upstream()
        console.print(f"README.md upstream-bench block updated from {readme_mod.UPSTREAM_SNAPSHOT} "
                      f"({snap.started_at})", soft_wrap=True, highlight=False)


@app.command()
def compose() -> None:
    """Regenerate docker-compose.yml from the targets.toml manifests."""
    from bench.compose import write_compose
    console.print(f"wrote {write_compose()}")


@app.command("targets")
def list_targets() -> None:
    """List every target found in the manifests, then the bare context variants (bench/bare.py)."""
    from rich.table import Table
    table = Table("target", "framework", "model", "port", "capacity", "db_pool")
    for target in [*manifest.load_targets().values(), *manifest.bare_targets().values()]:
        resolved = target.resolve()
        mark = " ⚠" if target.anti_pattern else f" (bare of {target.bare_of})" if target.bare else ""
        table.add_row(target.name + mark, target.framework,
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
    snapshot: Annotated[Path | None, typer.Option(
        help="JSON snapshot to write (default: docs/upstream-bench.json, for `bench readme`)")] = None,
) -> None:
    """Benchmark the mock upstream on one core (the other core drives load); write its snapshot."""
    from bench.upstream_bench import SNAPSHOT, main
    raise typer.Exit(main(["--concurrency", str(concurrency), "--duration", str(duration),
                           "--latency-ms", str(latency_ms), "--snapshot", str(snapshot or SNAPSHOT)]))


@app.command()
def up(
    targets: Annotated[list[str] | None, typer.Argument(help="target names (see `bench targets`)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every target")] = False,
    db_ms: Annotated[int, typer.Option(help="targets' default pg_sleep, ms", min=0, max=5000)] = 50,
    llm_ms: Annotated[int, typer.Option(help="targets' default upstream latency, ms", min=0,
                                       max=20000)] = 500,
    set_: Annotated[list[str], typer.Option("--set", help="param override: workers=8")] = [],  # noqa: B006
) -> None:
    """Start infra + targets natively on their manifest ports; print the locust command; Ctrl-C stops all."""
    from bench.up import main
    try:
        code = main(targets or [], console, all_targets=all_, sets=set_, db_ms=db_ms, llm_ms=llm_ms)
    except (manifest.ManifestError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    raise typer.Exit(code)


@app.command("docker-lab")
def docker_lab(
    stop: Annotated[bool, typer.Option(
        "--stop", help="stop the dockerd that docker-lab started (never one it did not)")] = False,
    best_effort: Annotated[bool, typer.Option(
        help="exit 0 when Docker can't be set up here; the live Docker tests then skip, saying why")] = False,
) -> None:
    """Make Docker usable here: engine, Compose v2 plugin, base images (stand-ins), each only if missing."""
    from bench import dockerlab
    if stop:
        dockerlab.stop_engine(console.print)
        return
    try:
        dockerlab.setup(console)
    except (dockerlab.LabError, DockerError) as exc:
        console.print(f"[{'yellow' if best_effort else 'red'}]docker-lab: {exc}[/]")
        raise typer.Exit(0 if best_effort else 2) from None
    console.print("docker-lab: ready; e.g. docker compose --profile fastapi up --build")


if __name__ == "__main__":
    app()
