"""Render a run's results.json into report.md and the console table. Never runs load."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from rich.console import Console
from rich.table import Table

from bench.results import Result, Run

TEMPLATES = Path(__file__).parent / "templates"


def fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def pct(part: int, whole: int) -> str:
    return "—" if not whole else f"{100 * part / whole:.1f}%"


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                      trim_blocks=False, lstrip_blocks=False, autoescape=False)
    env.globals.update(fmt=fmt, pct=pct, mb_per_inflight=Result.mb_per_request_in_flight)
    return env


def render_markdown(run: Run) -> str:
    return _env().get_template("report.md.j2").render(run=run)


def write_reports(run_dir: Path) -> Run:
    run = Run.load(run_dir)
    (run_dir / "report.md").write_text(render_markdown(run))
    return run


def console_table(run: Run) -> Table:
    table = Table(expand=False, title=f"Concurrency Lab {run.run_id}: {run.scenario.name}, "
                        f"db_ms={run.scenario.db_ms} llm_ms={run.scenario.llm_ms}")
    for col in ("target", "users", "rps", "p50 ms", "p95 ms", "fail", "ceiling", "eff.",
                "canary p95 ms", "PSS idle→peak MB", "RSS peak MB", "CPU %", "flags"):
        table.add_column(col, justify="left" if col in ("target", "flags") else "right",
                         no_wrap=col != "flags")
    for r in run.results:
        name = r.target + ("".join(f" {k}={v}" for k, v in r.params.items()
                                   if k == "workers") if r.params else "")
        table.add_row(
            name + (" ⚠" if r.anti_pattern else ""), str(r.users), f"{r.rps:.1f}",
            fmt(r.latency_ms.p50), fmt(r.latency_ms.p95), pct(r.failures, r.requests),
            fmt(r.ceiling_rps, 1), fmt(r.efficiency, 2), r.canary_text(),
            f"{fmt(r.memory_mb.idle_pss)}→{fmt(r.memory_mb.peak_pss)}", fmt(r.memory_mb.peak_rss),
            fmt(r.cpu_pct.target), "; ".join(r.flags) or "—")
    return table


def print_table(run: Run, console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal:  # CI logs and pipes: don't squeeze the table into 80 columns
        console = Console(width=200)
    console.print(console_table(run))
