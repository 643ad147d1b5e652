"""Generated blocks of README.md, each rendered from a committed snapshot.

- latest-comparison: `bench readme results/latest` copies the run's results.json to
  docs/latest-run.json and renders its headline table and claims;
- upstream-bench: `bench upstream-bench` writes docs/upstream-bench.json, and `bench readme`
  renders its figures;
- faults: `bench readme results/faults-<run>` copies a `bench faults` run's results.json to
  docs/faults-run.json and renders its faults table;
- capacity: `bench readme results/capacity-<run>` copies a `bench capacity` run's results.json to
  docs/capacity-run.json and renders its knees;
- profile: `bench readme results/profile-<run>` copies a `bench profile` run's results.json to
  docs/profile-run.json and its flame graphs to docs/img/, and renders its layer table.

Each block sits between `<!-- NAME:start -->` and `<!-- NAME:end -->`; a test re-renders every block
from its snapshot and compares, so the README's numbers are always the output of a command, never
hand-edited.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bench.manifest import REPO_ROOT
from bench.report import TEMPLATES, fmt
from bench.results import MIN_TAIL_SAMPLES, Result, Run, command_text, write_atomic
from bench.upstream_bench import SNAPSHOT as UPSTREAM_SNAPSHOT
from bench.upstream_bench import Snapshot

README = REPO_ROOT / "README.md"
SNAPSHOT = REPO_ROOT / "docs" / "latest-run.json"
FAULTS_SNAPSHOT = REPO_ROOT / "docs" / "faults-run.json"
CAPACITY_SNAPSHOT = REPO_ROOT / "docs" / "capacity-run.json"
PROFILE_SNAPSHOT = REPO_ROOT / "docs" / "profile-run.json"
IMAGES = REPO_ROOT / "docs" / "img"


@dataclass(frozen=True)
class Block:
    """A generated region of README.md, between its two marker comments."""
    name: str

    @property
    def start(self) -> str:
        return f"<!-- {self.name}:start -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.name}:end -->"

    def _pattern(self) -> re.Pattern[str]:
        return re.compile(re.escape(self.start) + r"\n(.*?)" + re.escape(self.end), re.S)

    def current(self, text: str) -> str:
        match = self._pattern().search(text)
        if not match:
            raise ValueError(f"README.md has no {self.start} ... {self.end} block")
        return match.group(1)

    def replace(self, text: str, body: str) -> str:
        self.current(text)  # fail before anything is written if the markers are missing
        return self._pattern().sub(lambda _: f"{self.start}\n{body}{self.end}", text)


COMPARISON = Block("latest-comparison")
UPSTREAM = Block("upstream-bench")
FAULTS = Block("faults")
CAPACITY = Block("capacity")
PROFILE = Block("profile")
START, END = COMPARISON.start, COMPARISON.end


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


def command_for(command: list[str] | None, make_target: str | None, program: str) -> str:
    """The recorded command as Markdown; older snapshots did not record it, and say so."""
    text = command_text(command, make_target)
    return f"`{text}`" if text else f"`{program}` (this older snapshot does not record its command line)"


def _render(template: str, **context) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                      keep_trailing_newline=True)
    env.globals["fmt"] = fmt
    return env.get_template(template).render(**context)


def render_block(run: Run) -> str:
    counts = Counter(c.verdict for c in run.claims)
    summary = ", ".join(f"{counts[v]} {v.replace('_', ' ')}" for v in ("holds", "partly", "fails",
                                                                        "not_testable", "not_run")
                        if counts[v])
    rows = headline(run)
    return _render("readme.md.j2", run=run, headline=rows, counts=summary, min_tail=MIN_TAIL_SAMPLES,
                   # a snapshot from before drained windows: Locust's censored percentiles, no mean
                   older=any(r.latency_ms.mean is None for r in rows),
                   command=command_for(run.command, run.make_target, "bench compare"))


def render_upstream_block(snap: Snapshot) -> str:
    return _render("readme_upstream.md.j2", snap=snap, r=snap.result,
                   command=command_for(snap.command, snap.make_target, "bench upstream-bench"))


def render_faults_block(run: Run) -> str:
    from bench.report import faults_context
    ctx = faults_context(run)
    return _render("readme_faults.md.j2", **ctx, command=command_for(run.command, run.make_target,
                                                                     "bench faults"))


def render_capacity_block(run: Run) -> str:
    from bench.report import CAPACITY_NOTE, capacity_table
    return _render("readme_capacity.md.j2", run=run, capacity=capacity_table(run), note=CAPACITY_NOTE,
                   command=command_for(run.command, run.make_target, "bench capacity"))


def update_capacity(run_dir: Path | None = None, readme: Path = README,
                    snapshot: Path = CAPACITY_SNAPSHOT) -> Run:
    """The capacity block from a `bench capacity` run (its results.json becomes the snapshot), or
    from the snapshot when no run is given."""
    if run_dir is not None:
        shutil.copyfile(run_dir / "results.json", snapshot)
    run = Run.model_validate_json(snapshot.read_text())
    write_atomic(readme, CAPACITY.replace(readme.read_text(), render_capacity_block(run)))
    return run


def render_profile_block(run: Run) -> str:
    from bench.report import PROFILE_NOTE, profile_summary, profile_table
    profiles = [(p, profile_summary(run, p), profile_table(p)) for p in run.profiles]
    return _render("readme_profile.md.j2", run=run, profiles=profiles, note=PROFILE_NOTE,
                   command=command_for(run.command, run.make_target, "bench profile"))


def update_profile(run_dir: Path | None = None, readme: Path = README, snapshot: Path = PROFILE_SNAPSHOT,
                   images: Path = IMAGES) -> Run:
    """The profile block from a `bench profile` run (its results.json becomes the snapshot, its flame
    graphs docs/img/'s), or from the snapshot when no run is given."""
    if run_dir is not None:
        shutil.copyfile(run_dir / "results.json", snapshot)
    run = Run.model_validate_json(snapshot.read_text())
    for p in run.profiles:
        if run_dir is not None and p.flame_graph and (run_dir / p.flame_graph).exists():
            shutil.copyfile(run_dir / p.flame_graph, images / p.flame_graph)
    write_atomic(readme, PROFILE.replace(readme.read_text(), render_profile_block(run)))
    return run


def update_faults(run_dir: Path | None = None, readme: Path = README,
                  snapshot: Path = FAULTS_SNAPSHOT) -> Run:
    """The faults block from a `bench faults` run (its results.json becomes the snapshot), or from
    the snapshot when no run is given."""
    if run_dir is not None:
        shutil.copyfile(run_dir / "results.json", snapshot)
    run = Run.model_validate_json(snapshot.read_text())
    write_atomic(readme, FAULTS.replace(readme.read_text(), render_faults_block(run)))
    return run


def current_block(text: str) -> str:
    return COMPARISON.current(text)


def update(run_dir: Path, readme: Path = README, snapshot: Path = SNAPSHOT) -> Run:
    """The latest-comparison block from a run; its results.json becomes the snapshot."""
    run = Run.load(run_dir)
    text = COMPARISON.replace(readme.read_text(), render_block(run))
    shutil.copyfile(run_dir / "results.json", snapshot)
    write_atomic(readme, text)
    return run


def update_upstream(readme: Path = README, snapshot: Path = UPSTREAM_SNAPSHOT) -> Snapshot:
    """The upstream-bench block from `bench upstream-bench`'s snapshot."""
    snap = Snapshot.load(snapshot)
    write_atomic(readme, UPSTREAM.replace(readme.read_text(), render_upstream_block(snap)))
    return snap
