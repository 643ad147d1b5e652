"""Every Dockerfile, checked statically: hadolint-clean, pinned bases, non-root, and its CMD equal to
the command the harness runs (first target of its manifest, the upstream's argv in bench/infra.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from bench import compose, infra, manifest
from bench.manifest import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
DOCKERFILES = sorted(REPO_ROOT.glob("*/Dockerfile"))
# `bench docker-lab`'s recipes for local stand-ins of the base images (no USER, CMD of their own).
STANDIN_DOCKERFILES = sorted((REPO_ROOT / "bench" / "standins").glob("*/Dockerfile"))
FIRST_TARGET: dict[str, manifest.Target] = {}  # framework folder → its manifest's first target
for _target in manifest.load_targets().values():
    FIRST_TARGET.setdefault(_target.manifest.parent.name, _target)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    pairs = []
    for line in text.splitlines():
        if line.strip():
            word, _, args = line.strip().partition(" ")
            pairs.append((word.upper(), args.strip()))
    return pairs


def cmd(path: Path) -> list[str]:
    cmds = [args for word, args in instructions(path) if word == "CMD"]
    return json.loads(cmds[-1])  # exec form, or json.loads fails (a shell-form CMD is a finding)


def ids(path: Path) -> str:
    return path.parent.name if path in DOCKERFILES else f"standin-{path.parent.name}"


def test_every_image_has_a_dockerfile():
    assert {p.parent.name for p in DOCKERFILES} == {*FIRST_TARGET, "upstream", "locust"}


@pytest.mark.parametrize("path", DOCKERFILES + STANDIN_DOCKERFILES, ids=ids)
def test_hadolint_clean(path):
    done = subprocess.run([str(VENV_BIN / "hadolint"), "--config", str(REPO_ROOT / ".hadolint.yaml"),
                           "--no-color", str(path)], capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


PRAGMA = re.compile(r"#\s*hadolint\s+(?:global\s+)?ignore=(.*)$")
RULE_LIST = re.compile(r"[A-Z]{2}\d{4}(?:\s*,\s*[A-Z]{2}\d{4})*")


def unexplained_config_ignores(text: str) -> list[str]:
    """Rules .hadolint.yaml ignores without a `# reason` on their own line."""
    config = yaml.safe_load(text) or {}
    assert isinstance(config.get("ignored"), list), ".hadolint.yaml must list `ignored:` (even [])"
    lines = text.splitlines()
    missing = []
    for rule in config["ignored"]:
        line = next((line for line in lines if re.search(rf"(?<![A-Z0-9]){rule}\b", line)
                     and not line.lstrip().startswith("#")), "")
        if not ("#" in line and line.split("#", 1)[1].strip()):
            missing.append(rule)
    return missing


def unexplained_inline_ignores(text: str) -> list[str]:
    """`# hadolint ignore=...` pragmas without a reason on the comment line right above them.

    The reason cannot share the pragma's line: hadolint then drops the whole pragma silently.
    """
    lines = text.splitlines()
    problems = []
    for n, line in enumerate(lines):
        match = PRAGMA.search(line.strip())
        if not match:
            continue
        if not RULE_LIST.fullmatch(match.group(1).strip()):
            problems.append(f"line {n + 1}: {line.strip()!r} is not a bare rule list (hadolint skips it)")
            continue
        above = lines[n - 1].strip() if n else ""
        if not (above.startswith("#") and above.lstrip("#").strip() and not PRAGMA.search(above)):
            problems.append(f"line {n + 1}: {line.strip()!r} has no reason on the comment line above")
    return problems


def test_hadolint_config_ignores_carry_a_reason():
    assert unexplained_config_ignores((REPO_ROOT / ".hadolint.yaml").read_text()) == []


@pytest.mark.parametrize("path", DOCKERFILES + STANDIN_DOCKERFILES, ids=ids)
def test_hadolint_inline_ignores_carry_a_reason(path):
    assert unexplained_inline_ignores(path.read_text()) == [], path


def test_the_ignore_checks_can_fail():
    assert unexplained_config_ignores("ignored:\n  - DL3008  # apt pins vary per arch\n  - DL3015\n") == [
        "DL3015"]
    assert unexplained_config_ignores("ignored: [DL3008]\n") == ["DL3008"]
    with pytest.raises(AssertionError, match="ignored"):
        unexplained_config_ignores("failure-threshold: style\n")
    assert unexplained_inline_ignores(
        "FROM x\n# distroless base: no apt to pin\n# hadolint ignore=DL3008, DL3015\nRUN a\n") == []
    bare, trailing, stacked = (unexplained_inline_ignores(text) for text in (
        "FROM x\nRUN a\n# hadolint ignore=DL3008\nRUN b\n",
        "FROM x\n# why\n# hadolint ignore=DL3008 because pins vary\nRUN b\n",
        "FROM x\n# hadolint ignore=DL3015\n# hadolint ignore=DL3008\nRUN b\n"))
    assert len(bare) == 1 and "no reason" in bare[0]
    assert len(trailing) == 1 and "not a bare rule list" in trailing[0]
    assert len(stacked) == 2


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids)
def test_base_images_are_pinned(path):
    stages: set[str] = set()
    for word, args in instructions(path):
        if word != "FROM":
            continue
        parts = args.split()
        image = next(p for p in parts if not p.startswith("--"))
        if len(parts) >= 3 and parts[-2].upper() == "AS":
            stages.add(parts[-1].lower())
        if image.lower() in stages:
            continue
        tag = image.split("@")[0].rpartition(":")[2] if ":" in image else ""
        assert re.match(r"\d+\.\d+", tag) and "latest" not in tag, f"{path}: unpinned base {image}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids)
def test_runs_as_non_root(path):
    """A non-root USER, or an entrypoint that drops to a non-root uid itself with no capability left
    (the Locust master makes its session folder first); tests/docker/test_live.py checks the running
    uid."""
    users = [args for word, args in instructions(path) if word == "USER"]
    if users:
        assert users[-1].split(":")[0] not in ("root", "0")
        return
    entrypoints = [json.loads(args) for word, args in instructions(path) if word == "ENTRYPOINT"]
    assert entrypoints, f"{path} has neither USER nor an entrypoint that drops privileges"
    script = (REPO_ROOT / entrypoints[-1][0]).read_text()
    assert re.search(r"uid=10001 gid=10001", script) and '[ "$(stat -c %u results)" != 0 ]' in script
    drop = r"setpriv --reuid=\$uid --regid=\$gid --clear-groups --inh-caps=-all --"
    assert re.search(drop, script) and 'exec $drop "$@"' in script, script


def test_every_base_image_has_a_stand_in_recipe():
    """`bench docker-lab` can build every image the lab starts from where no registry serves it."""
    from bench import dockerlab
    tags = dockerlab.base_images()
    assert {"postgres", "redis", "python", "debian", "golang"} <= {dockerlab.repository(t) for t in tags}
    for tag in tags:
        assert dockerlab.repository(tag) in dockerlab.STANDINS, tag
        dockerlab._suite_for(tag)  # every tag names the Debian suite its stand-in is built on
    assert {p.parent.name for p in STANDIN_DOCKERFILES} == set(dockerlab.STANDINS)


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids)
def test_pip_installs_are_pinned_and_cacheless(path):
    for word, args in instructions(path):
        if word == "RUN" and "pip install" in args:
            assert "-c constraints.txt" in args and "--no-cache-dir" in args, args
            assert not re.search(r"\[dev\]|requirements-dev|pytest|ruff", args), "dev deps in image"


@pytest.mark.parametrize("folder", sorted(FIRST_TARGET))
def test_cmd_is_the_first_targets_command(folder):
    first = FIRST_TARGET[folder]
    path = REPO_ROOT / folder / "Dockerfile"
    assert cmd(path) == list(first.resolve(host="0.0.0.0").argv), (
        f"{path}'s CMD must be {first.name}'s command from targets.toml (host 0.0.0.0)")
    exposed = {int(p.split("/")[0]) for word, args in instructions(path) if word == "EXPOSE"
               for p in args.split()}
    ports = {t.port for t in manifest.load_targets().values() if t.manifest.parent.name == folder}
    assert ports <= exposed


def test_upstream_cmd_is_the_harness_argv(monkeypatch, tmp_path):
    """bench/infra.py builds the upstream's argv inline: capture it by stubbing spawn."""
    captured: list[list[str]] = []

    def fake_spawn(name, argv, **kwargs):
        captured.append(list(argv))
        raise RuntimeError("captured")

    monkeypatch.setattr(infra, "spawn", fake_spawn)
    monkeypatch.setattr(infra, "free_port", lambda *a: compose.UPSTREAM_PORT)
    with pytest.raises(RuntimeError, match="captured"), infra.upstream(tmp_path):
        pass
    harness = [Path(captured[0][0]).name, *captured[0][1:]]
    harness[harness.index("--host") + 1] = "0.0.0.0"
    assert cmd(REPO_ROOT / "upstream" / "Dockerfile") == harness


def test_locust_image_pins_as_the_project_does():
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(d.split("==") for d in deps if "==" in d)
    runs = " ".join(args for word, args in instructions(REPO_ROOT / "locust" / "Dockerfile") if word == "RUN")
    installed = dict(re.findall(r"(?<!\S)([A-Za-z0-9_.-]+)==(\S+)", runs))
    assert "locust" in installed
    assert all(pins.get(name) == version for name, version in installed.items()), (installed, pins)
    master = compose.locust_command("--master", "--web-host", "0.0.0.0")
    assert cmd(REPO_ROOT / "locust" / "Dockerfile") == master


def test_locust_image_holds_every_targets_manifest():
    """The Host field's list and the Comparison tab resolve targets from the manifests in the image."""
    copied = {args.split()[0] for word, args in instructions(REPO_ROOT / "locust" / "Dockerfile")
              if word == "COPY"}
    manifests = {t.manifest.relative_to(REPO_ROOT).as_posix() for t in manifest.load_targets().values()}
    assert manifests <= copied, manifests - copied


def test_dockerignore_lets_every_copy_source_in():
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", ".dockerignore should be an allow-list"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for path in DOCKERFILES:
        for word, args in instructions(path):
            if word == "COPY" and "--from" not in args:
                for source in args.split()[:-1]:
                    assert source.split("/")[0] in allowed, f"{path}: {source} is ignored"
