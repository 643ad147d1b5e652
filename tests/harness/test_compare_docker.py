"""`bench compare --docker` against recorded docker output (no engine runs on our machines).

The fake runner answers each docker command with output recorded from the documented formats
(tests/docker/data/); the target itself runs natively on its manifest port, where compose would
publish it, so Locust and the experiments hit a real server.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import pytest

from bench import docker, manifest
from bench.compare import CompareOptions, run_compare
from bench.compose import HARNESS_PROJECT
from bench.procs import port_is_free
from bench.results import Run
from bench.targets import running

DATA = Path(__file__).parent.parent / "docker" / "data"


class RecordedDocker:
    """Replays `docker stats` lines in order; records every argv it was asked to run."""

    def __init__(self, stats_file: Path, ps_file: Path):
        self.stats = stats_file.read_text().splitlines()
        self.ps = ps_file.read_text()
        self.calls: list[list[str]] = []

    def __call__(self, argv) -> str:
        argv = list(argv)
        self.calls.append(argv)
        if argv[:2] == ["docker", "stats"]:
            line = self.stats[min(len(self.calls) % len(self.stats), len(self.stats) - 1)]
            return line + "\n"
        if "ps" in argv:
            return self.ps
        if "port" in argv:  # the harness's project publishes on ephemeral ports; the target is here
            return f"127.0.0.1:{argv[-1]}\n"
        return ""  # version, info, up, rm, down: success, no output


@pytest.mark.slow
def test_compare_docker_uses_compose_and_docker_stats(lab, tmp_path, monkeypatch):
    target = manifest.load_targets()["fastapi-async"]
    if not port_is_free(target.port):
        pytest.skip(f"port {target.port} (where compose would publish {target.name}) is busy")
    fake = RecordedDocker(DATA / "docker_stats_fastapi_async.jsonl", DATA / "compose_ps_lines.jsonl")
    for name in ("engine_problem", "running", "memory_mb", "compose_down"):
        monkeypatch.setattr(docker, name, functools.partial(getattr(docker, name), runner=fake))
    monkeypatch.setattr(docker, "StatsSampler", functools.partial(docker.StatsSampler, runner=fake))
    monkeypatch.setenv("DATABASE_URL", lab.database_url)
    monkeypatch.setenv("UPSTREAM_URL", lab.upstream_url)
    (tmp_path / "logs").mkdir()
    with running(target, lab, tmp_path / "logs", port=target.port, db_ms=50, llm_ms=200):
        run_dir = run_compare(CompareOptions(targets=[target], users=[2], duration_s=3, llm_ms=200,
                                             calibration=False, claims=False, docker=True,
                                             results_dir=tmp_path), run_id="d")
    run = Run.load(run_dir)
    assert [(r.target, r.users) for r in run.results] == [("fastapi-async", 1), ("fastapi-async", 2)]
    recorded_mb = []
    for line in fake.stats:  # the recording ends with a stopping container's "--" reading
        with contextlib.suppress(docker.DockerError):
            recorded_mb.append(docker.parse_stats(line)["mem_mb"])
    for r in run.results:
        assert r.requests > 0 and r.failures == 0
        # memory is the recorded cgroup working set, not this machine's process tree
        assert r.memory_mb.peak_pss in {round(mb, 1) for mb in recorded_mb}
        assert r.memory_mb.peak_pss == r.memory_mb.peak_rss == r.memory_mb.peak_uss
        assert r.processes == 1 and r.per_process == []
    compose_calls = [c for c in fake.calls if c[:2] == ["docker", "compose"] and c[2] != "version"]
    assert compose_calls and all(c[c.index("--project-name") + 1] == HARNESS_PROJECT for c in compose_calls)
    verbs = [next((w for w in ("up", "ps", "stats", "rm", "down") if w in c), c[1]) for c in fake.calls]
    assert verbs.index("up") < verbs.index("ps") < verbs.index("stats") < verbs.index("rm")
    assert verbs[-1] == "down"
    up = next(c for c in fake.calls if "up" in c)
    assert up[up.index("--profile"):up.index("--profile") + 2] == ["--profile", "fastapi"]
    assert "--wait" in up and up[-1] == "fastapi-async"

