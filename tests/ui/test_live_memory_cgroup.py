"""The web UI memory tab's compose source: a container's cgroup files, on CONSTRUCTED cgroup trees.

Under compose the Locust master reads the swarmed service's container from the host's cgroup tree,
mounted read-only (locust/live_memory.py, CgroupSource; no Docker socket). Here the trees are
folders holding the files a kernel would show, v1 nested under a daemon's own memory cgroup as on
this machine, and v2; Locust's own /memory and /stats/requests must then carry the working set that
`docker stats` would show. tests/docker/test_live.py reads a real container's.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from bench.compose import CGROUP_PREFIX, cgroup_parent
from bench.load import LOCUSTFILE
from bench.manifest import REPO_ROOT
from bench.procs import free_port, spawn, wait_http
from bench.up import LOCUST

MB = 1024 * 1024
CONTAINER = "0c0ffee5"


def write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def v1_tree(root: Path, service: str) -> None:
    """cgroup v1: the memory controller nested under the daemon's own cgroup (a daemon in a
    container), cpuacct and pids at the top; another service's slice beside it."""
    name = cgroup_parent(service).replace(f"${{LAB_CGROUP_PREFIX-{CGROUP_PREFIX}}}", CGROUP_PREFIX)
    write(root / "memory" / "process_api" / "abc" / name / CONTAINER, {
        "memory.usage_in_bytes": str(300 * MB), "memory.limit_in_bytes": str(1024 * MB),
        "memory.stat": f"cache {150 * MB}\ntotal_inactive_file {100 * MB}\n"})
    write(root / "cpuacct" / name / CONTAINER, {"cpuacct.usage": str(7_500_000_000)})
    write(root / "pids" / name / CONTAINER, {"pids.current": "3"})
    write(root / "memory" / f"{CGROUP_PREFIX}_django_sync.slice" / "beef", {"memory.usage_in_bytes": "1"})


def v2_tree(root: Path, service: str) -> None:
    name = f"{CGROUP_PREFIX}_{service.replace('-', '_')}.slice"
    write(root, {"cgroup.controllers": "cpu memory pids\n"})
    write(root / name / f"docker-{CONTAINER}.scope", {
        "memory.current": str(300 * MB), "memory.max": "max", "pids.current": "3",
        "memory.stat": f"anon {180 * MB}\ninactive_file {100 * MB}\n",
        "cpu.stat": "usage_usec 7500000\nuser_usec 5000000\n"})


@pytest.mark.parametrize("tree, limit", [(v1_tree, 1024), (v2_tree, None)])
def test_memory_tab_reads_the_compose_services_container_from_its_cgroup(tree, limit, tmp_path):
    root = tmp_path / "cgroup"
    tree(root, "fastapi-async")
    port = free_port()
    argv = [str(LOCUST), "-f", str(LOCUSTFILE), "--web-host", "127.0.0.1", "--web-port", str(port),
            "-H", "http://fastapi-async:8021", "--memory-cgroup", str(root),
            "--session-dir", str(tmp_path / "session"), "RecommendationUser", "Canary"]
    locust = spawn("locust-cgroup-memory", argv, env=dict(os.environ), cwd=REPO_ROOT,
                   log_path=tmp_path / "locust.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/memory", locust, timeout=30, ok=lambda r: "working_set_mb" in r.json())
        memory = httpx.get(f"{url}/memory", timeout=10).json()
        assert memory["mode"] == "docker" and memory["source"] == "fastapi-async"
        assert (memory["working_set_mb"], memory["usage_mb"], memory["limit_mb"]) == (200, 300, limit)
        assert memory["processes"] == 3
        stats = httpx.get(f"{url}/stats/requests", timeout=10).json()
        assert stats["extended_stats"][0]["data"][0]["working_set_mb"] == 200
        assert '"Working set MiB"' in httpx.get(url, timeout=10).text
    finally:
        locust.stop()


def test_a_service_with_no_container_says_so(tmp_path):
    root = tmp_path / "cgroup"
    v1_tree(root, "fastapi-async")
    port = free_port()
    argv = [str(LOCUST), "-f", str(LOCUSTFILE), "--web-host", "127.0.0.1", "--web-port", str(port),
            "-H", "http://go-gin:8031", "--memory-cgroup", str(root), "--session-dir",
            str(tmp_path / "session"), "RecommendationUser", "Canary"]
    locust = spawn("locust-cgroup-memory", argv, env=dict(os.environ), cwd=REPO_ROOT,
                   log_path=tmp_path / "locust.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/memory", locust, timeout=30, ok=lambda r: r.json().get("source") != "starting")
        memory = httpx.get(f"{url}/memory", timeout=10).json()
        assert memory["source"] == f"go-gin: no container under cgroup {CGROUP_PREFIX}_go_gin.slice"
        assert "working_set_mb" not in memory
    finally:
        locust.stop()
