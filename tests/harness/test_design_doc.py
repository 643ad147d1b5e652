"""docs/DESIGN.md is what code and manifests point to: every pointer names one of its sections."""

from __future__ import annotations

import re
import subprocess

from bench.manifest import REPO_ROOT

DESIGN = REPO_ROOT / "docs" / "DESIGN.md"
# "docs/DESIGN.md, Fairness rules" or "docs/DESIGN.md (Targets and their manifests)"
SOURCES = {".py", ".go", ".toml", ".sql", ".md", ".yml", ".yaml", ".j2"}
POINTER = re.compile(r"DESIGN\.md(?:, |\s\()([A-Z][A-Za-z ]*[a-z])")


def headings() -> list[str]:
    return [line.lstrip("#").strip() for line in DESIGN.read_text().splitlines() if line.startswith("#")]


def pointers() -> list[tuple[str, str]]:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in files:
        path = REPO_ROOT / name
        if path.suffix not in SOURCES or not path.is_file():
            continue
        for match in POINTER.finditer(path.read_text(errors="replace")):
            found.append((name, match.group(1)))
    return found


def test_every_pointer_names_a_section():
    sections = headings()
    found = pointers()
    assert len(found) >= 5, found  # the manifests, metrics, init.sql, ... point here
    missing = [(name, what) for name, what in found if not any(h.startswith(what) for h in sections)]
    assert not missing, f"pointers to sections docs/DESIGN.md does not have: {missing}"
