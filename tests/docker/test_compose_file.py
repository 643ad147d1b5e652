"""docker-compose.yml, checked statically (no engine runs here): generated from the manifests,
valid against the compose-spec schema, dependencies defined and healthy, parity with targets.toml."""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from bench import compose, docker, infra, manifest
from bench.manifest import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
TARGETS = manifest.load_targets()
DOC = yaml.safe_load(compose.COMPOSE_FILE.read_text())
SERVICES = DOC["services"]


def test_committed_file_is_generated_from_manifests():
    assert compose.COMPOSE_FILE.read_text() == compose.render_compose(), (
        f"docker-compose.yml is out of date with the manifests: run `{compose.REGENERATE}`")


def test_rendered_yaml_reads_back_as_the_document():
    assert yaml.safe_load(compose.render_compose()) == compose.compose_document()


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    # Builtin schemas ship inside check-jsonschema: no network needed.
    return subprocess.run([str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, check=False, timeout=120)


def test_valid_against_compose_spec_schema():
    done = check_jsonschema(compose.COMPOSE_FILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_check_rejects_a_broken_file(tmp_path):
    broken = {**DOC, "services": {**SERVICES, "upstream": {**SERVICES["upstream"], "bogus": 1}}}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert check_jsonschema(path).returncode != 0


def test_docker_compose_config_accepts_it():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        why = (probe.stderr or probe.stdout).strip().splitlines()
        pytest.skip(f"no docker compose plugin ({why[0] if why else probe.returncode})")
    # `config` is client-side: it needs no engine.
    done = subprocess.run([docker, "compose", "--file", str(compose.COMPOSE_FILE), "--profile", "all",
                           "config", "--quiet"], capture_output=True, text=True, check=False,
                          cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr


def test_services_are_the_targets_plus_the_fixed_part():
    assert set(SERVICES) == set(TARGETS) | set(compose.FIXED_SERVICES)


def test_every_dependency_is_defined_and_waited_on_by_health():
    for name, service in SERVICES.items():
        for dep, how in service.get("depends_on", {}).items():
            assert dep in SERVICES, f"{name} depends on undefined service {dep}"
            assert how == {"condition": "service_healthy"}, f"{name} → {dep}: {how}"
            assert "healthcheck" in SERVICES[dep], f"{name} waits for {dep}, which has no healthcheck"


def test_every_build_has_its_dockerfile():
    for name, service in SERVICES.items():
        if "build" in service:
            context = REPO_ROOT / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), name
        else:
            assert ":" in service["image"] and not service["image"].endswith(":latest"), name


@pytest.mark.parametrize("target", TARGETS.values(), ids=lambda t: t.name)
def test_target_service_matches_its_manifest(target):
    service = SERVICES[target.name]
    resolved = target.resolve(host="0.0.0.0")
    assert service["command"] == list(resolved.argv)
    assert service["ports"] == [f"{compose.PUBLISH_HOST}:${{LAB_HOST_PORT-{target.port}}}:{target.port}"]
    assert service["profiles"] == [target.framework, "all"]
    assert service["build"]["dockerfile"] == f"{target.manifest.parent.name}/Dockerfile"
    env = service["environment"]
    assert set(env) >= {*resolved.env, "DATABASE_URL", "UPSTREAM_URL", "TARGET_NAME"}
    assert {k: env[k] for k in resolved.env} == resolved.env
    assert env["TARGET_NAME"] == target.name
    assert {"postgres", "upstream"} <= set(service["depends_on"])
    assert f"/127.0.0.1/{target.port} " in service["healthcheck"]["test"][-1]
    assert "GET /readyz " in service["healthcheck"]["test"][-1]


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${VAR-default}`: the default only when VAR is unset (empty stays empty)."""
    return re.sub(r"\$\{(\w+)-([^}]*)\}", lambda m: env.get(m.group(1), m.group(2)), text)


def published_ports(env: dict[str, str]) -> list[str]:
    """host:host_port of every published port, as compose resolves it under `env`."""
    ports = [port for service in SERVICES.values() for port in service.get("ports", [])]
    return [interpolate(port, env).rsplit(":", 1)[0] for port in ports]


def test_published_ports_are_unique():
    # host:host_port:container_port; an empty host_port is an ephemeral one, the engine's choice
    published = published_ports({})
    fixed = [p for p in published if not p.endswith(":")]
    assert len(fixed) == len(set(fixed)) and len(fixed) == len(TARGETS) + 1  # + the web UI
    assert all(p.startswith("127.0.0.1:") for p in published)  # never beyond this machine


def test_the_harness_project_publishes_only_ephemeral_ports():
    """bench compare/faults --docker run beside the user's stack: none of its ports is fixed."""
    harness_env = dict(line.split("=", 1) for line in docker.HARNESS_ENV_FILE.read_text().splitlines()
                       if line and not line.startswith("#"))
    assert harness_env == {compose.HOST_PORT_ENV: "", compose.CGROUP_PREFIX_ENV: "concurrency_lab_bench"}
    assert all(p == "127.0.0.1:" for p in published_ports(harness_env))


@pytest.mark.parametrize("name", list(SERVICES))
def test_every_service_drops_its_capabilities_and_has_limits(name):
    service = SERVICES[name]
    assert service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges:true"]
    assert 64 <= service["pids_limit"] <= 4096
    assert service["mem_limit"].endswith("g") and int(service["mem_limit"][:-1]) >= 1
    assert service["restart"] in ("on-failure", "unless-stopped")


def test_postgres_pids_limit_holds_a_backend_per_connection():
    postgres = SERVICES["postgres"]
    max_connections = int(postgres["command"][postgres["command"].index("-c") + 1].split("=")[1])
    assert postgres["pids_limit"] > max_connections + 20  # + its own background processes


def _image_user(service: dict) -> str | None:
    """The USER of the service's Dockerfile (its last stage), or None when it starts as root."""
    if "build" not in service:
        return None
    text = (REPO_ROOT / service["build"]["context"] / service["build"]["dockerfile"]).read_text()
    users = re.findall(r"^USER\s+(\S+)", text.split("\nFROM ")[-1], re.MULTILINE)
    return users[-1] if users else None


@pytest.mark.parametrize("name", list(SERVICES))
def test_capabilities_come_back_only_where_an_entrypoint_starts_as_root(name):
    """A non-root USER from the start needs none; a root entrypoint that chowns and drops to its
    user (postgres, redis, locust's) gets only what compose.CAP_ADD lists for it."""
    service = SERVICES[name]
    user = _image_user(service)
    if user not in (None, "0", "root"):
        assert "cap_add" not in service, f"{name} runs as {user}: it needs no capability"
    else:
        assert service.get("cap_add") == compose.CAP_ADD[name]
        assert set(service["cap_add"]) <= {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"}


def test_the_standin_entrypoints_need_no_more_than_their_capabilities():
    """The stand-ins drop to their user with setpriv (SETUID, SETGID); postgres's chowns and chmods
    its data folder first (CHOWN, FOWNER, DAC_OVERRIDE to walk it), redis's chowns nothing."""
    postgres = (REPO_ROOT / "bench/standins/postgres/docker-entrypoint.sh").read_text()
    redis = (REPO_ROOT / "bench/standins/redis/docker-entrypoint.sh").read_text()
    assert "setpriv --reuid=postgres" in postgres and "chown -R" in postgres and "chmod 700" in postgres
    assert "setpriv --reuid=redis" in redis and "chown" not in redis and "chmod" not in redis
    assert {"SETUID", "SETGID"} <= set(compose.CAP_ADD["redis"])
    assert {"CHOWN", "FOWNER", "DAC_OVERRIDE", "SETUID", "SETGID"} == set(compose.CAP_ADD["postgres"])
    entry = (REPO_ROOT / "locust/docker-entrypoint.sh").read_text()
    # the session folder is made as its user, or made and handed to uid 10001 (CHOWN); no root left
    assert "setpriv --reuid=$uid" in entry and 'chown "$uid:$gid"' in entry and "--clear-groups" in entry
    assert {"CHOWN", "SETUID", "SETGID"} == set(compose.CAP_ADD["locust"])


def test_only_locusts_workers_restart_after_a_clean_exit():
    assert {name for name, s in SERVICES.items() if s["restart"] != "on-failure"} == {"locust-worker"}


def test_urls_point_at_the_compose_services():
    pg = SERVICES["postgres"]["environment"]
    for target in TARGETS.values():
        env = SERVICES[target.name]["environment"]
        db = urlsplit(env["DATABASE_URL"])
        assert (db.hostname, db.username, db.password, db.path) == (
            "postgres", pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], f"/{pg['POSTGRES_DB']}")
        assert urlsplit(env["UPSTREAM_URL"]).hostname == "upstream"
        assert f"/127.0.0.1/{urlsplit(env['UPSTREAM_URL']).port} " in (
            SERVICES["upstream"]["healthcheck"]["test"][-1])
        if "REDIS_URL" in env:
            assert urlsplit(env["REDIS_URL"]).hostname == "redis"
            assert "redis" in SERVICES[target.name]["depends_on"]


def test_postgres_is_seeded_and_fits_every_pool_at_once():
    postgres = SERVICES["postgres"]
    source, dest, mode = postgres["volumes"][0].split(":")
    assert (REPO_ROOT / source).resolve() == infra.INIT_SQL
    assert dest.startswith("/docker-entrypoint-initdb.d/") and mode == "ro"
    max_connections = int(postgres["command"][postgres["command"].index("-c") + 1].split("=")[1])
    assert sum(t.resolve().db_pool for t in TARGETS.values()) < max_connections


def test_locust_runs_in_every_profile_that_has_targets():
    profiles = {p for t in TARGETS.values() for p in (t.framework, "all")}
    for name in ("locust", "locust-worker"):
        assert set(SERVICES[name]["profiles"]) == profiles
    assert SERVICES["locust"]["ports"] == [f"{compose.PUBLISH_HOST}:${{LAB_HOST_PORT-8089}}:8089"]
    assert "--master" in SERVICES["locust"]["command"]
    worker = SERVICES["locust-worker"]["command"]
    assert "--worker" in worker and worker[worker.index("--master-host") + 1] == "locust"
    assert "ports" not in SERVICES["locust-worker"]  # so `--scale locust-worker=N` never collides


def test_no_container_gets_the_docker_socket():
    """The web UI reads the swarmed container's cgroup files, read-only; the socket would be control
    of the host's engine for anything that runs code in Locust."""
    for name, service in SERVICES.items():
        assert not any("docker.sock" in v for v in service.get("volumes", [])), name
    assert f"/sys/fs/cgroup:{compose.CGROUP_MOUNT}:ro" in SERVICES["locust"]["volumes"]
    env = SERVICES["locust"]["environment"]
    assert env["LOCUST_MEMORY_CGROUP"] == compose.CGROUP_MOUNT
    assert env["LOCUST_CGROUP_PREFIX"] == "${LAB_CGROUP_PREFIX-concurrency_lab}"
    for name in TARGETS:  # each under a parent named after it, where the web UI finds it
        assert SERVICES[name]["cgroup_parent"] == (
            f"${{LAB_CGROUP_PREFIX-concurrency_lab}}_{name.replace('-', '_')}.slice")
    harness = (REPO_ROOT / "bench" / "compose-harness.env").read_text()
    assert "LAB_CGROUP_PREFIX=concurrency_lab_bench" in harness  # never taken for the user's stack


class _Unready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def _run_probe(test: list[str], port: int) -> int:
    assert test[0] == "CMD"
    script = test[-1].replace("/127.0.0.1/9000 ", f"/127.0.0.1/{port} ")
    return subprocess.run([*test[1:-1], script], capture_output=True, timeout=10, check=False).returncode


def test_healthcheck_probe_works_without_curl(tmp_path):
    """The bash /dev/tcp probe, run here against the real upstream, a 503 server and a closed port."""
    test = SERVICES["upstream"]["healthcheck"]["test"]
    with infra.upstream(tmp_path) as (url, _):
        assert _run_probe(test, urlsplit(url).port) == 0
    server = http.server.HTTPServer(("127.0.0.1", 0), _Unready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert _run_probe(test, server.server_port) != 0
    finally:
        server.shutdown()
        server.server_close()
    assert _run_probe(test, server.server_port) != 0  # nothing listens there now
