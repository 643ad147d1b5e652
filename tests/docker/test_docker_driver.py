"""bench/docker.py against recorded docker output (tests/docker/data, hand-written from the
documented formats because no engine runs here): parsing, and the exact argv it runs."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from bench import docker, manifest
from bench.compose import COMPOSE_FILE, HARNESS_PROJECT, PROJECT
from bench.manifest import REPO_ROOT
from bench.probe import TreeSampler

DATA = Path(__file__).parent / "data"
COMPOSE = ["docker", "compose", "--project-name", HARNESS_PROJECT, "--project-directory", str(REPO_ROOT),
           "--file", str(COMPOSE_FILE), "--env-file", str(docker.HARNESS_ENV_FILE)]


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


class FakeDocker:
    """A runner that records every argv and answers from a script of outputs."""

    def __init__(self, *outputs: str | Exception) -> None:
        self.outputs = list(outputs)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        out = self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0]
        if isinstance(out, Exception):
            raise out
        return out


@pytest.mark.parametrize(("text", "expected"), [
    ("0B", 0), ("796KiB", 796 * 1024), ("796 KiB", 796 * 1024), ("84.12MiB", round(84.12 * 1024**2)),
    ("1.045GiB", round(1.045 * 1024**3)), ("512kB", 512_000), ("3.568 MB", 3_568_000), ("12B", 12),
])
def test_parse_size_reads_binary_and_decimal_units(text, expected):
    assert docker.parse_size(text) == expected


@pytest.mark.parametrize("text", ["--", "", "12 parsecs", "1.2.3MiB"])
def test_parse_size_rejects_junk(text):
    with pytest.raises(docker.DockerError):
        docker.parse_size(text)


def test_parse_stats_takes_the_working_set_not_the_limit():
    first, busy = lines("docker_stats_fastapi_async.jsonl")[:2]
    assert docker.parse_stats(first) == {"name": "concurrency-lab-fastapi-async-1",
                                         "mem_mb": pytest.approx(84.12), "cpu_pct": 0.12, "pids": 4}
    assert docker.parse_stats(busy)["cpu_pct"] == 61.37
    big, tiny = (docker.parse_stats(line) for line in lines("docker_stats_flask_sync.jsonl"))
    assert big["mem_mb"] == pytest.approx(1.045 * 1024) and big["cpu_pct"] == 203.41  # > 1 core
    assert tiny["mem_mb"] == pytest.approx(796 / 1024)


def test_parse_stats_rejects_a_stopping_container():
    with pytest.raises(docker.DockerError):
        docker.parse_stats(lines("docker_stats_fastapi_async.jsonl")[-1])


def test_stats_runs_docker_stats_once_without_streaming():
    fake = FakeDocker(lines("docker_stats_fastapi_async.jsonl")[0] + "\n")
    assert docker.memory_mb("concurrency-lab-fastapi-async-1", fake) == {
        "rss": pytest.approx(84.12), "pss": pytest.approx(84.12), "uss": pytest.approx(84.12)}
    assert fake.calls == [["docker", "stats", "--no-stream", "--format", "{{json .}}",
                           "concurrency-lab-fastapi-async-1"]]


@pytest.mark.parametrize("name", ["compose_ps_lines.jsonl", "compose_ps_array.json"])
def test_parse_ps_reads_both_compose_formats(name):
    rows = docker.parse_ps((DATA / name).read_text())
    assert len(rows) == 2
    assert rows[0]["Service"] == "fastapi-async" and rows[0]["State"] == "running"


def test_parse_ps_of_nothing_is_empty():
    assert docker.parse_ps("") == [] and docker.parse_ps("[]\n") == []


def test_container_for_finds_the_running_container():
    fake = FakeDocker((DATA / "compose_ps_lines.jsonl").read_text())
    assert docker.container_for("fastapi-async", fake) == "concurrency-lab-fastapi-async-1"
    assert fake.calls == [[*COMPOSE, "ps", "--format", "json", "fastapi-async"]]


def test_container_for_says_when_the_service_is_not_running():
    fake = FakeDocker((DATA / "compose_ps_array.json").read_text())
    with pytest.raises(docker.DockerError, match="fastapi-blocking is not running.*exited"):
        docker.container_for("fastapi-blocking", fake)


def test_compose_commands_run_the_exact_argv():
    fake = FakeDocker("")
    docker.compose_up(["fastapi-async"], ["fastapi"], runner=fake)
    docker.compose_up(["go-gin"], build=False, wait_timeout_s=60, runner=fake)
    docker.compose_stop(["fastapi-async"], runner=fake)
    docker.compose_down(runner=fake)
    assert fake.calls == [
        [*COMPOSE, "--profile", "fastapi", "up", "--detach", "--wait", "--wait-timeout", "300", "--build",
         "fastapi-async"],
        [*COMPOSE, "up", "--detach", "--wait", "--wait-timeout", "60", "go-gin"],
        [*COMPOSE, "rm", "--stop", "--force", "fastapi-async"],
        [*COMPOSE, "--profile", "all", "down", "--volumes", "--remove-orphans"],
    ]


def test_running_starts_waits_and_removes_the_target():
    fake = FakeDocker("", "127.0.0.1:32771\n", (DATA / "compose_ps_lines.jsonl").read_text(), "")
    target = manifest.load_targets()["fastapi-async"]
    with docker.running(target, runner=fake) as (base_url, container):
        # the harness's project publishes on an ephemeral port: compose says which
        assert (base_url, container) == ("http://127.0.0.1:32771", "concurrency-lab-fastapi-async-1")
        assert len(fake.calls) == 3
    assert all(call[:len(COMPOSE)] == COMPOSE for call in fake.calls)
    assert [call[len(COMPOSE):] for call in fake.calls] == [
        ["--profile", "fastapi", "up", "--detach", "--wait", "--wait-timeout", "300", "--build",
         "fastapi-async"],
        ["port", "fastapi-async", "8021"],
        ["ps", "--format", "json", "fastapi-async"],
        ["rm", "--stop", "--force", "fastapi-async"],
    ]


def test_the_harness_never_names_the_users_project():
    """`bench compare --docker` and `bench faults --docker` run their own project (whose `down
    --volumes` cannot remove the user's stack or its database); the user's form has no env file."""
    assert HARNESS_PROJECT != PROJECT
    fake = FakeDocker("127.0.0.1:5\n")
    docker.compose_up(["postgres"], runner=fake)
    docker.compose_stop(["postgres"], runner=fake)
    docker.compose_down(runner=fake)
    docker.published_url("postgres", 5432, "postgresql", runner=fake)
    with pytest.raises(docker.DockerError):
        docker.container_for("postgres", runner=fake)
    for call in fake.calls:
        assert call[call.index("--project-name") + 1] == HARNESS_PROJECT
        assert call[call.index("--env-file") + 1] == str(docker.HARNESS_ENV_FILE)
    user = docker.compose_argv("ps", project=PROJECT)
    assert user[user.index("--project-name") + 1] == PROJECT and "--env-file" not in user


def test_engine_problem_names_what_is_missing():
    assert docker.engine_problem(FakeDocker("Docker Compose version v2.40.3\n")) is None
    no_plugin = FakeDocker(docker.DockerError("docker compose version exited 1: unknown command"))
    assert "compose plugin" in docker.engine_problem(no_plugin)
    no_engine = FakeDocker("Docker Compose version v2.40.3\n",
                           docker.DockerError("Cannot connect to the Docker daemon"))
    assert "Docker engine" in docker.engine_problem(no_engine)
    assert no_engine.calls[1] == ["docker", "info", "--format", "{{.ServerVersion}}"]


def test_run_turns_failures_into_docker_errors():
    assert docker.run([sys.executable, "-c", "print('ok')"]) == "ok\n"
    with pytest.raises(docker.DockerError, match="exited 3: boom"):
        docker.run([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
    with pytest.raises(docker.DockerError):
        docker.run(["/nonexistent/docker", "stats"])


def test_sampler_keeps_the_peak_working_set_and_mean_cpu():
    recorded = lines("docker_stats_fastapi_async.jsonl")
    readings, stopping = recorded[:-1], recorded[-1]
    served = threading.Event()

    def runner(argv: Sequence[str]) -> str:
        if readings:
            return readings.pop(0)
        served.set()
        return stopping  # then the container stops: those readings are skipped

    with docker.StatsSampler("concurrency-lab-fastapi-async-1", interval=0.01, runner=runner) as s:
        assert served.wait(10)
    assert len(s.samples) == 4
    assert s.peak == {"rss": pytest.approx(92.61), "pss": pytest.approx(92.61),
                      "uss": pytest.approx(92.61)}
    assert s.cpu_pct() == pytest.approx((0.12 + 61.37 + 66.02 + 64.5) / 4)
    assert s.cpu_seconds() == pytest.approx(s.cpu_pct() / 100 * s.elapsed)
    assert s.max_process_cpu_pct() is None and s.max_pids == 6


def test_sampler_can_stand_in_for_the_tree_sampler():
    tree = TreeSampler(pid=1)
    stats = docker.StatsSampler("c", runner=FakeDocker(""))
    assert stats.peak.keys() == tree.peak.keys()
    for attr in ("samples", "procs", "cpu_pct", "cpu_seconds", "max_process_cpu_pct", "__enter__",
                 "__exit__"):
        assert hasattr(stats, attr), attr
