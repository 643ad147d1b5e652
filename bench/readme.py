"""Put a run's headline table and claims into README.md, from a committed snapshot of the run.

`bench readme results/latest` copies the run's results.json to docs/latest-run.json and rewrites the
block between the markers below; a test re-renders the block from the snapshot and compares, so the
README's numbers are always the output of a command, never hand-edited.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bench.manifest import REPO_ROOT
from bench.report import TEMPLATES, fmt
from bench.results import Result, Run

README = REPO_ROOT / "README.md"
SNAPSHOT = REPO_ROOT / "docs" / "latest-run.json"
START, END = "<!-- latest-comparison:start -->", "<!-- latest-comparison:end -->"
BLOCK = re.compile(re.escape(START) + r"\n(.*?)" + re.escape(END), re.S)


def headline(run: Run) -> list[Result]:
    """Each target of the main scenario (default params) at its highest users level."""
    best: dict[str, Result] = {}
    for r in run.results:
        if r.scenario not in (run.scenario.name, "calibration"):
            continue
        key = r.target
        if key in best and best[key].params != r.params:
            continue  # a sweep cell: the first (default) params own the headline row
        if key not in best or r.users > best[key].users:
            best[key] = r
    return list(best.values())


def command_for(run: Run) -> str:
    quick = run.scenario.duration_s <= 15 and max((r.users for r in run.results), default=0) <= 100
    return "make compare" if quick else "make compare-full"


def render_block(run: Run) -> str:
    counts = Counter(c.verdict for c in run.claims)
    summary = ", ".join(f"{counts[v]} {v.replace('_', ' ')}" for v in ("holds", "partly", "fails",
                                                                        "not_run") if counts[v])
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                      keep_trailing_newline=True)
    env.globals["fmt"] = fmt
    return env.get_template("readme.md.j2").render(
        run=run, headline=headline(run), counts=summary, command=command_for(run))


def current_block(text: str) -> str:
    match = BLOCK.search(text)
    if not match:
        raise ValueError(f"README.md has no {START} ... {END} block")
    return match.group(1)


def update(run_dir: Path, readme: Path = README, snapshot: Path = SNAPSHOT) -> Run:
    run = Run.load(run_dir)
    shutil.copyfile(run_dir / "results.json", snapshot)
    text = readme.read_text()
    current_block(text)  # fail before writing anything if the markers are missing
    readme.write_text(BLOCK.sub(lambda _: f"{START}\n{render_block(run)}{END}", text))
    return run
