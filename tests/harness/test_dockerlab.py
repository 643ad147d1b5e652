"""bench/dockerlab.py without an engine: which images need stand-ins, the mirror and suite they are
built from, and that stopping touches only a daemon the lab recorded. The live path (engine,
compose plugin, stand-ins, the stack) is tests/docker/test_live.py."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

from bench import dockerlab


def test_base_images_skip_build_stages_and_scratch(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a/Dockerfile").write_text(
        "FROM golang:1.26.8-bookworm AS build\nRUN x\nFROM build AS test\nFROM debian:12.13-slim\n")
    (tmp_path / "b/Dockerfile").write_text(
        "FROM scratch\nfrom --platform=linux/amd64 python:3.11.15-slim-bookworm\n")
    tags = dockerlab.base_images([tmp_path / "a/Dockerfile", tmp_path / "b/Dockerfile"])
    assert tags[:3] == ["golang:1.26.8-bookworm", "debian:12.13-slim", "python:3.11.15-slim-bookworm"]
    assert tags[3:] == [dockerlab.POSTGRES_IMAGE, dockerlab.REDIS_IMAGE]


@pytest.mark.parametrize(("tag", "suite"), [("debian:12.13-slim", "bookworm"),
                                            ("python:3.11.15-slim-bookworm", "bookworm"),
                                            ("redis:7.0.15-trixie", "trixie")])
def test_suite_for(tag, suite):
    assert dockerlab._suite_for(tag) == suite


def test_suite_for_an_unknown_base_is_an_error():
    with pytest.raises(dockerlab.LabError, match="alpine"):
        dockerlab._suite_for("alpine:3.20")


def test_repository_names_the_recipe():
    assert dockerlab.repository("docker.io/library/postgres:18.6-bookworm") == "postgres"
    assert dockerlab.repository("redis:7.0.15-bookworm") == "redis"


def test_host_mirror_reads_both_apt_formats(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    assert dockerlab._host_mirror(tmp_path) == dockerlab.DEFAULT_MIRROR
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n")
    assert dockerlab._host_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text(
        "deb [signed-by=/k.gpg] http://proxy.example:3142/debian bookworm main\n")
    assert dockerlab._host_mirror(tmp_path) == "http://proxy.example:3142/debian"


def test_recipe_hash_follows_the_recipe_files():
    standin = dockerlab.STANDINS["redis"]
    assert standin.recipe_hash() == standin.recipe_hash()
    assert standin.recipe_hash() != dockerlab.STANDINS["postgres"].recipe_hash()


def test_stop_touches_no_process_the_lab_did_not_record(tmp_path, monkeypatch):
    record = tmp_path / "engine.json"
    monkeypatch.setattr(dockerlab, "ENGINE_RECORD", record)
    said: list[str] = []
    assert dockerlab.stop_engine(said.append) is False  # no record at all
    # A record naming a live process that is not a dockerd (here: a sleeping python) is ignored.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        proc = psutil.Process(sleeper.pid)
        record.write_text(json.dumps({"pid": sleeper.pid, "create_time": proc.create_time()}))
        assert dockerlab.stop_engine(said.append) is False
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert all("nothing stopped" in line for line in said)


def test_problem_reports_the_last_setup_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(dockerlab, "STATUS_FILE", tmp_path / "status.json")
    monkeypatch.setattr(dockerlab, "engine_problem", lambda: "a Docker engine is not available: x")
    assert dockerlab.problem() == "a Docker engine is not available: x"
    (tmp_path / "status.json").write_text(json.dumps({"ok": False, "detail": "needs root to run apt-get"}))
    assert dockerlab.problem() == "needs root to run apt-get"
    monkeypatch.setattr(dockerlab, "engine_problem", lambda: None)
    assert dockerlab.problem() is None


def test_debootstrap_uses_the_keyring_that_is_there(tmp_path):
    keyring = tmp_path / "debian-archive-keyring.gpg"
    keyring.write_bytes(b"keys")
    installed = []
    assert dockerlab.debian_keyring(installed.append, keyring) == keyring
    assert installed == []
    argv = dockerlab.debootstrap_argv("bookworm", tmp_path / "rootfs", "http://mirror/debian", keyring)
    assert argv[:2] == ["debootstrap", f"--keyring={keyring}"]
    assert argv[-3:] == ["bookworm", str(tmp_path / "rootfs"), "http://mirror/debian"]


def test_a_missing_keyring_is_installed_with_apt(tmp_path):
    keyring = tmp_path / "debian-archive-keyring.gpg"
    installed = []

    def install(package: str) -> None:
        installed.append(package)
        keyring.write_bytes(b"keys")

    assert dockerlab.debian_keyring(install, keyring) == keyring
    assert installed == ["debian-archive-keyring"]


def test_without_a_keyring_the_debian_stand_in_is_refused(tmp_path):
    keyring = tmp_path / "debian-archive-keyring.gpg"

    def no_apt(package: str) -> None:
        raise dockerlab.LabError("apt-get install failed: E: Unable to locate package")

    with pytest.raises(dockerlab.LabError, match="refusing to build the debian stand-in.*signatures"):
        dockerlab.debian_keyring(no_apt, keyring)
    with pytest.raises(dockerlab.LabError, match="is installed but .* is missing: refusing"):
        dockerlab.debian_keyring(lambda package: None, keyring)  # installed, yet not where expected
