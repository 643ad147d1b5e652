"""bench/profile.py: layers of synthetic stacks per language, folding each tool's output, the
report's section, the CLI's errors, and one short live profile per language."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench import manifest, profile
from bench.layers import (
    LAYER_RULES,
    LAYERS,
    fold_cpuprofile,
    fold_pprof_traces,
    fold_speedscope,
    layer_samples,
    read_folded,
    sample_layer,
    write_folded,
)
from bench.procs import spawn
from bench.profile import PySpy, WindowWatch
from bench.report import write_reports
from bench.results import Profile, Run

DATA = Path(__file__).parent / "data"
REPO = str(manifest.REPO_ROOT)


def fixture(name: str) -> dict:
    """A tiny profile in tests/harness/data; {REPO} stands for this checkout's root."""
    return json.loads((DATA / name).read_text().replace("{REPO}", REPO))


# --- classification: the innermost frame of a known layer, from the leaf ----------------------------

UVICORN = ("<module> (.venv/bin/uvicorn)", "run (uvicorn/main.py)",
           "Runner.run (python3.11/asyncio/runners.py)",
           "RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py)",
           "FastAPI.__call__ (fastapi/applications.py)", "Router.__call__ (starlette/routing.py)",
           "recommendation (fastapi_app/async_app.py)")


@pytest.mark.parametrize(("stack", "layer"), [
    # the stdlib's json under the openai SDK is the SDK's work
    (UVICORN + ("AsyncCompletions.create (openai/resources/chat/completions/completions.py)",
                "AsyncClient.send (httpx2/_client.py)", "loads (python3.11/json/__init__.py)"),
     "HTTP client/SDK"),
    # h11 and anyio belong to no layer: under httpcore they are the client's, under uvicorn the server's
    (UVICORN + ("AsyncHTTPConnection.handle_async_request (httpcore/_async/connection.py)",
                "Connection.send (h11/_connection.py)", "SocketStream.send (anyio/_backends/_asyncio.py)"),
     "HTTP client/SDK"),
    (UVICORN[:4] + ("H11Protocol.data_received (uvicorn/protocols/http/h11_impl.py)",
                    "Connection.next_event (h11/_connection.py)"), "server"),
    (UVICORN + ("AsyncConnection.execute (sqlalchemy/ext/asyncio/engine.py)",
                "PreparedStatement.fetch (asyncpg/prepared_stmt.py)"), "ORM/driver"),
    (UVICORN + ("dict_of (python3.11/typing.py)",), "app"),
    (UVICORN[:5], "framework"),
    (UVICORN[:3], "server"),  # the event loop, under uvicorn's run
    (("Worker.handle_request (gunicorn/workers/sync.py)", "Flask.wsgi_app (flask/app.py)",
      "QuerySet.__iter__ (django/db/models/query.py)"), "ORM/driver"),
    (("Worker.handle_request (gunicorn/workers/sync.py)",
      "WSGIHandler.__call__ (django/core/handlers/wsgi.py)", "Template.render (django/template/base.py)"),
     "framework"),
    (("run_simple (werkzeug/serving.py)", "Map.bind (werkzeug/routing/map.py)"), "framework"),
    (("run_simple (werkzeug/serving.py)", "select (python3.11/selectors.py)"), "server"),
    (("_bootstrap (python3.11/threading.py)", "run (python3.11/threading.py)"), "other"),
    ((), "other"),
])
def test_python_frames_are_classified_from_the_leaf(stack, layer):
    assert sample_layer("python", stack) == layer


GIN = ("net/http.(*conn).serve", "net/http.serverHandler.ServeHTTP",
       "github.com/gin-gonic/gin.(*Engine).ServeHTTP", "github.com/gin-gonic/gin.(*Context).Next",
       "main.(*handlers).recommendation")


@pytest.mark.parametrize(("stack", "layer"), [
    (GIN + ("github.com/openai/openai-go/v3.(*ChatCompletionService).New", "encoding/json.Marshal",
            "runtime.mallocgc"), "HTTP client/SDK"),
    (("net/http.(*persistConn).readLoop", "bufio.(*Reader).Peek", "syscall.Syscall"), "HTTP client/SDK"),
    (GIN + ("main.pgStore.Summary", "github.com/jackc/pgx/v5.(*Conn).Query", "runtime.memmove"),
     "ORM/driver"),
    (GIN + ("strconv.ParseInt",), "app"),
    (GIN[:4] + ("github.com/gin-gonic/gin.(*Context).JSON",), "framework"),
    (GIN[:2] + ("net/http.(*response).finishRequest",), "server"),
    (("runtime.gcBgMarkWorker", "runtime.gcDrain"), "other"),
])
def test_go_frames_are_classified_from_the_leaf(stack, layer):
    assert sample_layer("go", stack) == layer


SERVER_JS = ("processTicksAndRejections (node:internal/process/task_queues)",
             "(anonymous) (node_app/server.js)")


@pytest.mark.parametrize(("stack", "layer"), [
    (SERVER_JS + ("create (node_modules/openai/resources/chat/completions.js)",
                  "fetch (node:internal/deps/undici/undici)", "Socket._writeGeneric (node:net)"),
     "HTTP client/SDK"),
    (SERVER_JS + ("query (node_modules/pg/lib/client.js)", "parse (node_modules/pg-protocol/dist/parser.js)"),
     "ORM/driver"),
    (("parserOnIncoming (node:_http_server)", "handle (node_modules/express/lib/application.js)",
      "handle (node_modules/router/index.js)"), "framework"),
    (SERVER_JS + ("end (node:_http_outgoing)", "Socket._writeGeneric (node:net)"), "server"),
    (SERVER_JS + ("stringify",), "app"),
    (("onStreamRead (node:internal/stream_base_commons)", "Readable.push (node:internal/streams/readable)"),
     "other"),
    (("(garbage collector)",), "other"),
])
def test_node_frames_are_classified_from_the_leaf(stack, layer):
    assert sample_layer("node", stack) == layer


def test_the_rules_name_only_known_layers_and_compile():
    for language, rules in LAYER_RULES.items():
        assert {layer for layer, _ in rules} <= set(LAYERS) - {"other"}, language
        for _, pattern in rules:
            re.compile(pattern)
    assert set(LAYER_RULES) == set(profile.LANGUAGES.values())


def test_layer_samples_count_every_layer_in_order():
    counts = layer_samples("go", {GIN: 3, ("runtime.mcall",): 1})
    assert list(counts) == list(LAYERS)
    assert counts == {**dict.fromkeys(LAYERS, 0), "app": 3, "other": 1}


# --- folding each tool's output -------------------------------------------------------------------

def test_py_spy_speedscope_folds_without_the_process_frame_and_with_short_paths():
    stacks = fold_speedscope(fixture("profile_pyspy.speedscope.json"))
    root = ("<module> (.venv/bin/uvicorn)", "asyncio_run (uvicorn/_compat.py)",
            "Runner.run (python3.11/asyncio/runners.py)")
    app = root + ("recommendation (fastapi_app/async_app.py)",)
    assert stacks == {
        root: 1,
        app + ("AsyncCompletions.create (openai/resources/chat/completions/completions.py)",
               "loads (python3.11/json/__init__.py)"): 2,
        app + ("AsyncConnection.execute (sqlalchemy/ext/asyncio/engine.py)",): 1,
        ("(no Python frame)",): 1,  # a thread busy in C code: "other"
    }
    assert layer_samples("python", stacks) == {**dict.fromkeys(LAYERS, 0), "server": 1,
                                                "HTTP client/SDK": 2, "ORM/driver": 1, "other": 1}


def test_v8_cpuprofile_folds_without_idle_samples_or_the_hooks_own():
    stacks = fold_cpuprofile(fixture("profile_node.cpuprofile"))
    ticks = SERVER_JS
    assert stacks == {
        ("(program)",): 1, ("(garbage collector)",): 1, ticks: 1,
        ticks + ("query (node_modules/pg/lib/client.js)",): 1,
        ticks + ("fetch (node:internal/deps/undici/undici)",): 2,
        ("parserOnIncoming (node:_http_server)", "handle (node_modules/express/lib/application.js)"): 1,
    }
    assert layer_samples("node", stacks) == {"server": 0, "framework": 1, "ORM/driver": 1,
                                              "HTTP client/SDK": 2, "app": 1, "other": 2}


def test_pprof_traces_fold_into_samples_at_100_hz():
    stacks = fold_pprof_traces((DATA / "profile_go_traces.txt").read_text())
    assert sum(stacks.values()) == 6  # 60 ms at 10 ms a sample
    json_in_sdk = next(s for s in stacks if s[-1] == "encoding/json.(*decodeState).object")
    assert stacks[json_in_sdk] == 3 and json_in_sdk[0] == "net/http.(*conn).serve"
    assert "encoding/json.(*decodeState).value" in json_in_sdk  # "(inline)" dropped
    assert layer_samples("go", stacks) == {**dict.fromkeys(LAYERS, 0), "HTTP client/SDK": 3,
                                           "other": 2, "ORM/driver": 1}


def test_folded_stacks_round_trip(tmp_path):
    stacks = fold_speedscope(fixture("profile_pyspy.speedscope.json"))
    write_folded(tmp_path / "x.folded", stacks)
    assert read_folded(tmp_path / "x.folded") == stacks
    first = (tmp_path / "x.folded").read_text().splitlines()[0]
    assert first.endswith(" 2") and ";" in first  # most samples first


def test_the_window_watch_fires_once_when_the_mark_is_written(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    fired = []
    watch = WindowWatch(ledger, lambda: fired.append(1))
    watch()  # no ledger yet
    with ledger.open("w", buffering=1) as fh:
        fh.write('{"mark": "start", "t": 1.0}\n')
        fh.write('{"n": "/recommendation/[id]", "t0": 1.1, "ms": 5, "ok": true}\n')
        watch()
        fh.write('{"mark": "win')  # half a line: not read yet
        watch()
        assert not fired
        fh.write('dow", "t": 2.0, "steady": true}\n')
        watch()
        fh.write('{"mark": "drain", "t": 3.0}\n')
        watch()
    assert fired == [1] and watch.seen


# --- the run's entry and its report ----------------------------------------------------------------

def profile_run(tmp_path: Path) -> Run:
    run = Run.model_validate_json((DATA / "results_quick_all.json").read_text())
    row = next(r for r in run.results if r.target == "fastapi-async" and r.users == 100)
    run.results = [row]
    run.capacity, run.claims = [], []
    run.scenario.name = "profile"
    stacks = fold_speedscope(fixture("profile_pyspy.speedscope.json"))
    write_folded(tmp_path / "profile-fastapi-async.folded", stacks)
    counts = layer_samples("python", stacks)
    run.profiles = [Profile(target="fastapi-async", users=100, language="python", tool="py-spy 0.4.3",
                            rate_hz=100, window_s=20, samples=5, layer_samples=counts,
                            layers={k: 100 * n / 5 for k, n in counts.items()},
                            cpu_ms_per_request=2.5, files=["profile-fastapi-async.speedscope.json"],
                            folded="profile-fastapi-async.folded", flame_graph="flame-fastapi-async.svg")]
    run.save(tmp_path)
    return run


def test_the_report_shows_where_the_cpu_goes(tmp_path):
    profile_run(tmp_path)
    write_reports(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "## Where the CPU goes" in md and "### fastapi-async @ 100 users" in md
    # each layer's share, and its CPU ms per request (share x the row's 2.5 ms)
    assert "| HTTP client/SDK | 40.0 % | 1.00 | 2 |" in md
    assert "| all | 100 % | 2.50 | 5 |" in md
    assert "[profile-fastapi-async.speedscope.json](profile-fastapi-async.speedscope.json)" in md
    html = (tmp_path / "report.html").read_text()
    assert 'id="chart-flame-fastapi-async"' in html and "<svg" in html
    assert (tmp_path / "flame-fastapi-async.svg").read_text().startswith("<svg")
    # no claims are judged on a profile run
    from bench.report import finalize
    assert not finalize(tmp_path).claims


def test_a_flame_graph_whose_stacks_are_gone_says_so(tmp_path):
    profile_run(tmp_path)
    (tmp_path / "profile-fastapi-async.folded").unlink()
    write_reports(tmp_path)
    assert "No folded stacks (profile-fastapi-async.folded)" in (tmp_path / "report.html").read_text()


def test_bench_report_re_renders_a_profile_run_and_older_files_load(tmp_path):
    from bench import cli
    profile_run(tmp_path)
    result = CliRunner().invoke(cli.app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "where the CPU goes" in result.output and "HTTP client/SDK" in result.output
    older = json.loads((DATA / "results_quick_all.json").read_text())
    assert "profiles" not in older and Run.model_validate(older).profiles == []


@pytest.mark.parametrize(("target", "message"), [
    ("nosuch", "unknown target(s): nosuch"),
    ("rails-puma", "no profiler for rails (rails-puma)"),
    ("go-gin,rails-puma", "no profiler for rails (rails-puma)"),  # checked before anything runs
    (",", "name at least one target"),
])
def test_a_target_that_cannot_be_profiled_is_a_clear_error(target, message):
    from bench import cli
    result = CliRunner().invoke(cli.app, ["profile", target])
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in result.output


def test_py_spy_stopped_early_writes_what_it_sampled_and_is_gone(tmp_path):
    """Ctrl-C's path: close() stops py-spy (SIGINT) mid-recording; it leaves its file, no process."""
    sleeper = spawn("sleeper", [sys.executable, "-c", "while True: sum(range(10000))"])
    (tmp_path / "raw").mkdir()
    spy = PySpy(tmp_path / "profile-x", 100)
    try:
        spy.attach(sleeper.pid)
        spy.start(60)
        time.sleep(2)
        spy.close()
        assert not spy.proc.alive()
        assert fold_speedscope(json.loads(spy.files[0].read_text()))
    finally:
        sleeper.stop()
        spy.close()


# --- one short live profile per language -----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("target", "users", "llm_ms", "busy"), [
    ("fastapi-async", 10, 200, "HTTP client/SDK"),
    ("go-gin", 50, 50, "HTTP client/SDK"),
    ("node-express", 20, 200, "HTTP client/SDK"),
])
def test_a_short_live_profile(target, users, llm_ms, busy, lab, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", lab.database_url)  # reuse the session's infra
    monkeypatch.setenv("UPSTREAM_URL", lab.upstream_url)
    opts = profile.ProfileOptions(targets=[manifest.load_targets()[target]], users=users, duration_s=3,
                                  llm_ms=llm_ms, results_dir=tmp_path)
    run_dir = profile.run_profile(opts, run_id="p")
    run = Run.load(run_dir)
    assert not run.skipped, run.skipped
    (row,) = run.results
    (p,) = run.profiles
    assert row.requests > 0 and row.failures == 0 and row.cpu_ms_per_request
    assert p.samples >= 10 and sum(p.layer_samples.values()) == p.samples
    assert sum(p.layers.values()) == pytest.approx(100, abs=0.5)
    assert p.layers[busy] > 0, p.layers
    assert all((run_dir / f).exists() for f in [*p.files, p.folded])
    assert write_reports(run_dir) and (run_dir / p.flame_graph).exists()

