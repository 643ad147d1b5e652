"""Bare variants (bare_of in targets.toml) and bench/bare.py: the framework's memory vs the app's."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
import pytest

from bench import bare, manifest
from bench.manifest import ManifestError
from bench.targets import TargetUnavailable, running

BARE = manifest.bare_targets()
MAINS = manifest.load_targets()


# --- the manifests -----------------------------------------------------------------------------

def test_one_bare_variant_per_framework_kept_out_of_the_benchmark_targets():
    assert sorted(BARE) == ["django-bare", "fastapi-bare", "flask-bare", "go-gin-bare",
                            "node-express-bare", "rails-puma-bare"]
    assert not set(BARE) & set(MAINS)
    assert {t.framework for t in BARE.values()} == {t.framework for t in MAINS.values()}
    assert all(t.bare for t in BARE.values()) and not any(t.bare for t in MAINS.values())
    # The contract suite parametrises over load_targets(): no bare variant among them.
    from tests.conftest import ALL_TARGETS
    assert not any(t.bare for t in ALL_TARGETS)


def test_bare_ports_clash_with_nothing():
    ports = [t.port for t in [*MAINS.values(), *BARE.values()]]
    assert len(ports) == len(set(ports))


@pytest.mark.parametrize("name", BARE)
def test_bare_variant_runs_its_targets_server_the_same_way(name):
    """Same server, worker class, worker count, config file and flags: only the app differs."""
    variant = BARE[name]
    main = MAINS[variant.bare_of]
    assert bare.bare_variant(main) is variant
    b, m = variant.resolve(port=1), main.resolve(port=1)
    differing = [(x, y) for x, y in zip(b.argv, m.argv, strict=False) if x != y]
    extra = m.argv[len(b.argv):]
    assert len(differing) == 1, differing
    # go-gin's only extra argument would be -client; none of the targets named here has one.
    assert not extra
    assert (b.processes, b.capacity, b.db_pool) == (m.processes, m.capacity, 0)
    assert "bare" in b.model
    assert "{" not in b.model


def test_select_explains_a_bare_name():
    with pytest.raises(ManifestError, match="flask-bare: bare context variant"):
        manifest.select(["flask-bare"])


def test_bare_of_must_name_a_target_of_the_same_framework(tmp_path):
    folder = tmp_path / "flask_app"
    folder.mkdir()
    (folder / "targets.toml").write_text(textwrap.dedent("""
        [[targets]]
        name = "a"
        framework = "flask"
        model = "m"
        port = 1
        command = ["x"]

        [[targets]]
        name = "a-bare"
        framework = "flask"
        bare_of = "nope"
        model = "m"
        port = 2
        command = ["x"]
    """))
    with pytest.raises(ManifestError, match="a-bare: bare_of = 'nope'"):
        manifest.load_targets(tmp_path)
    (folder / "targets.toml").write_text((folder / "targets.toml").read_text().replace('"nope"', '"a"'))
    manifest._load_all.cache_clear()
    assert list(manifest.load_targets(tmp_path)) == ["a"]
    assert list(manifest.bare_targets(tmp_path)) == ["a-bare"]


# --- the reading ---------------------------------------------------------------------------------

def test_summarize_takes_the_median_worker_and_tree_totals():
    readings = [(False, {"pss": 10.0, "uss": 8.0, "rss": 20.0}),      # gunicorn master
                *[(True, {"pss": p, "uss": p - 2, "rss": p + 15}) for p in (20.0, 21.0, 30.0, 22.0)]]
    assert bare.summarize(readings) == {
        "processes": 5, "workers": 4, "pss": 103.0, "uss": 93.0, "rss": 173.0,
        "worker_pss": 21.5, "worker_uss": 19.5, "worker_rss": 36.5}
    assert list(bare.summarize(readings)) == list(bare.KEYS)
    assert bare.summarize([])["worker_pss"] == 0.0


def test_idle_memory_a_single_process_is_its_own_worker():
    got = bare.idle_memory(_spawn_sleeper(children=0))
    assert (got["processes"], got["workers"]) == (1, 1)
    assert got["worker_pss"] == got["pss"] > 0 and got["rss"] >= got["pss"] >= got["uss"] > 0


def test_idle_memory_children_are_the_workers():
    got = bare.idle_memory(_spawn_sleeper(children=2))
    assert (got["processes"], got["workers"]) == (3, 2)
    assert got["pss"] > got["worker_pss"] > 0


_procs: list[subprocess.Popen] = []


def _spawn_sleeper(children: int) -> int:
    """A python process that forks `children` children, all of which sleep (stopped at teardown)."""
    code = textwrap.dedent(f"""
        import os, sys, time
        for _ in range({children}):
            if os.fork() == 0:
                time.sleep(30); os._exit(0)
        print("up", flush=True)
        time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    _procs.append(proc)
    assert proc.stdout.readline().strip() == "up"
    return proc.pid


@pytest.fixture(autouse=True)
def _stop_sleepers():
    yield
    import os
    import signal
    while _procs:
        proc = _procs.pop()
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is exactly what it forked
        proc.wait()
        proc.stdout.close()


# --- live: start each bare variant and its target --------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", BARE)
def test_bare_variant_serves_health_and_costs_less_per_worker_than_its_app(name, lab, tmp_path):
    variant = BARE[name]
    main = MAINS[variant.bare_of]
    try:
        with running(variant, lab, tmp_path) as (resolved, _), \
                httpx.Client(base_url=resolved.base_url, timeout=10) as client:
            health, ready = client.get("/healthz"), client.get("/readyz")
            missing = client.get("/recommendation/1")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert ready.status_code == 200
        assert missing.status_code == 404  # no app routes in a bare variant
        got = bare.measure_idle(variant, lab, tmp_path)
        full = bare.measure_idle(main, lab, tmp_path)
    except TargetUnavailable as why:
        pytest.skip(f"{name} cannot run here: {why}")
    expected = main.resolve()
    assert got["processes"] == full["processes"] == expected.processes
    assert got["workers"] == full["workers"]
    assert 0 < got["worker_pss"] < full["worker_pss"], (got, full)
    assert got["pss"] < full["pss"], (got, full)
