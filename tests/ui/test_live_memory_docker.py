"""The web UI memory tab's compose source, against a fake Docker Engine on a Unix socket.

No Docker engine runs here, so a tiny stand-in answers the two Engine API calls live_memory.py
makes (find the host's compose service, read its stats); Locust's own /memory and /stats/requests
must then carry the working set that `docker stats` would show.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socketserver
import tempfile
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from bench.load import LOCUSTFILE
from bench.manifest import REPO_ROOT
from bench.procs import free_port, spawn, wait_http
from bench.up import LOCUST

MB = 1024 * 1024
STATS = {"memory_stats": {"usage": 300 * MB, "limit": 1024 * MB, "stats": {"inactive_file": 100 * MB}},
         "pids_stats": {"current": 3}}


class FakeEngine(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the stdlib handler's naming
        url = urlparse(self.path)
        if url.path == "/containers/json":
            wanted = json.loads(parse_qs(url.query)["filters"][0])["label"]
            body = [{"Id": "c0ffee"}] if wanted == ["com.docker.compose.service=fastapi-async"] else []
        elif url.path == "/containers/c0ffee/stats":
            body = STATS
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # a Unix socket has no client address to log
        pass


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def docker_socket():
    folder = tempfile.mkdtemp(prefix="engine-")  # short: Unix socket paths are limited to 108 bytes
    path = os.path.join(folder, "docker.sock")
    server = UnixHTTPServer(path, FakeEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        shutil.rmtree(folder, ignore_errors=True)


def test_memory_tab_reads_the_compose_service_from_the_docker_engine(docker_socket, tmp_path):
    port = free_port()
    argv = [str(LOCUST), "-f", str(LOCUSTFILE), "--web-host", "127.0.0.1", "--web-port", str(port),
            "-H", "http://fastapi-async:8021", "--memory-container", "auto",
            "RecommendationUser", "Canary"]
    env = {**os.environ, "DOCKER_HOST": f"unix://{docker_socket}"}
    locust = spawn("locust-docker-memory", argv, env=env, cwd=REPO_ROOT,
                   log_path=Path(tmp_path) / "locust.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/memory", locust, timeout=30, ok=lambda r: "working_set_mb" in r.json())
        memory = httpx.get(f"{url}/memory", timeout=10).json()
        assert memory["mode"] == "docker"
        assert memory["source"] == "fastapi-async"
        assert (memory["working_set_mb"], memory["usage_mb"], memory["limit_mb"]) == (200, 300, 1024)
        assert memory["processes"] == 3
        stats = httpx.get(f"{url}/stats/requests", timeout=10).json()
        assert stats["extended_stats"][0]["key"] == "memory"
        assert stats["extended_stats"][0]["data"][0]["working_set_mb"] == 200
        assert '"Working set MiB"' in httpx.get(url, timeout=10).text
    finally:
        locust.stop()
