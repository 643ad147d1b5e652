"""README's generated blocks are the renderings of their committed snapshots."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import readme
from bench.results import Run
from bench.upstream_bench import Snapshot

STALE = "run `.venv/bin/bench readme` to regenerate it (it was edited by hand or is stale)"


def test_readme_block_is_generated_from_the_snapshot():
    run = Run.model_validate_json(readme.SNAPSHOT.read_text())
    assert readme.current_block(readme.README.read_text()) == readme.render_block(run), (
        f"README.md's latest-comparison block: {STALE}")
    assert run.claims, "the snapshot should carry the claims verdicts"


def test_upstream_block_is_generated_from_its_snapshot():
    snap = Snapshot.load(readme.UPSTREAM_SNAPSHOT)
    block = readme.UPSTREAM.current(readme.README.read_text())
    assert block == readme.render_upstream_block(snap), f"README.md's upstream-bench block: {STALE}"
    assert f"**{snap.result.rps:,.0f} req/s**" in block and snap.command  # measured, not typed


def test_update_rewrites_only_the_block(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(readme.SNAPSHOT, run_dir / "results.json")
    doc = tmp_path / "README.md"
    doc.write_text(f"# title\n\n{readme.START}\nold\n{readme.END}\n\ntail\n")
    readme.update(run_dir, readme=doc, snapshot=tmp_path / "snap.json")
    text = doc.read_text()
    assert text.startswith("# title\n\n") and text.endswith(f"{readme.END}\n\ntail\n")
    assert "\nold\n" not in text and "| calibration" in text
    assert (tmp_path / "snap.json").read_text() == readme.SNAPSHOT.read_text()


def test_update_upstream_rewrites_only_its_block(tmp_path):
    doc = tmp_path / "README.md"
    other = f"{readme.START}\nkept\n{readme.END}\n"
    doc.write_text(f"# t\n\n{readme.UPSTREAM.start}\n9,276 req/s\n{readme.UPSTREAM.end}\n\n{other}")
    readme.update_upstream(readme=doc, snapshot=readme.UPSTREAM_SNAPSHOT)
    text = doc.read_text()
    assert "9,276" not in text and text.endswith(f"{readme.UPSTREAM.end}\n\n{other}")
    assert readme.UPSTREAM.current(text) == readme.render_upstream_block(
        Snapshot.load(readme.UPSTREAM_SNAPSHOT))


OLDER = Path(__file__).parent / "data" / "results_quick_all.json"  # a run from before issue 11


def test_the_command_comes_from_the_record():
    run = Run.model_validate_json(OLDER.read_text())
    quick = run.model_copy(update={"command": ["bench", "compare", "--quick"], "make_target": "compare"})
    assert "produced by `make compare` on" in readme.render_block(quick)
    # without make, the command line itself; durations no longer decide anything
    direct = run.model_copy(update={"command": ["bench", "compare", "--users", "1,200"]})
    assert "produced by `bench compare --users 1,200` on" in readme.render_block(direct)
    assert "produced by `make" not in readme.render_block(direct)
    # an older results.json has no record: said so, nothing inferred
    assert run.command is None
    assert "produced by `bench compare` (this older snapshot does not record its command line)" in (
        readme.render_block(run))


def test_the_block_reports_w_and_the_samples_and_says_when_a_snapshot_is_censored():
    from tests.harness.test_report import drained_run

    older = readme.render_block(Run.model_validate_json(OLDER.read_text()))
    assert "| target | users | rps | n | mean ms | W ms | p50 ms | p95 ms |" in older
    assert "predates drained measurement windows" in older
    snapshot = readme.render_block(Run.model_validate_json(readme.SNAPSHOT.read_text()))
    assert "predates" not in snapshot  # docs/latest-run.json: a drained run, with its command
    assert "produced by `bench compare --quick" in snapshot and "--all-claims" in snapshot
    drained = readme.render_block(drained_run())
    assert "predates" not in drained
    assert "| fastapi-blocking ⚠ | 100 | 1.8 | 36 (12 unfinished) | 9246 | 55866 | 9250 | 14000 |" in drained
    assert "latency-censored (mean 9246 ms vs W = users / rps 55866 ms)" in drained


# The blocks generated from one kind of run each: (block, snapshot, renderer, program, rows(run)).
RUN_BLOCKS = {
    # a row per (target, fault) and one per target, each table with its header
    "faults": (readme.FAULTS, readme.FAULTS_SNAPSHOT, readme.render_faults_block, "bench faults",
               lambda run: len(run.faults) + 1 + len(run.fault_targets) + 1),
    "capacity": (readme.CAPACITY, readme.CAPACITY_SNAPSHOT, readme.render_capacity_block, "bench capacity",
                 lambda run: len(run.capacity) + 1),  # a row per knee, and the header
    "profile": (readme.PROFILE, readme.PROFILE_SNAPSHOT, readme.render_profile_block, "bench profile", None),
}


@pytest.mark.parametrize("name", RUN_BLOCKS)
def test_run_block_is_generated_from_its_snapshot(name):
    block_marks, snapshot, render, program, rows = RUN_BLOCKS[name]
    run = Run.model_validate_json(snapshot.read_text())
    block = block_marks.current(readme.README.read_text())
    assert block == render(run), f"README.md's {name} block: {STALE}"
    assert run.command  # measured, not typed
    assert readme.command_for(run.command, run.make_target, program) in block
    if rows:
        assert block.count("\n| ") == rows(run)


def test_profile_block_shows_flame_graphs_in_the_repo():
    run = Run.model_validate_json(readme.PROFILE_SNAPSHOT.read_text())
    block = readme.PROFILE.current(readme.README.read_text())
    assert run.profiles
    for p in run.profiles:
        assert p.flame_graph and (readme.IMAGES / p.flame_graph).read_text().startswith("<svg")
        assert f"](docs/img/{p.flame_graph})" in block


@pytest.mark.parametrize("name, update", [("faults", readme.update_faults),
                                          ("capacity", readme.update_capacity)])
def test_update_rewrites_only_its_block_and_keeps_the_snapshot(tmp_path, name, update):
    block_marks, snapshot = RUN_BLOCKS[name][:2]
    run_dir = tmp_path / f"{name}-run"
    run_dir.mkdir()
    shutil.copy(snapshot, run_dir / "results.json")
    doc = tmp_path / "README.md"
    doc.write_text(f"# t\n\n{block_marks.start}\nold\n{block_marks.end}\n\ntail\n")
    update(run_dir, readme=doc, snapshot=tmp_path / "snap.json")
    text = doc.read_text()
    assert "\nold\n" not in text and text.endswith(f"{block_marks.end}\n\ntail\n")
    assert (tmp_path / "snap.json").read_text() == snapshot.read_text()


def test_update_profile_rewrites_only_its_block_and_copies_the_flame_graph(tmp_path):
    run_dir = tmp_path / "profile-run"
    run_dir.mkdir()
    shutil.copy(readme.PROFILE_SNAPSHOT, run_dir / "results.json")
    run = Run.model_validate_json(readme.PROFILE_SNAPSHOT.read_text())
    for p in run.profiles:
        shutil.copy(readme.IMAGES / p.flame_graph, run_dir / p.flame_graph)
    doc, images = tmp_path / "README.md", tmp_path / "img"
    images.mkdir()
    doc.write_text(f"# t\n\n{readme.PROFILE.start}\nold\n{readme.PROFILE.end}\n\ntail\n")
    readme.update_profile(run_dir, readme=doc, snapshot=tmp_path / "snap.json", images=images)
    text = doc.read_text()
    assert "\nold\n" not in text and text.endswith(f"{readme.PROFILE.end}\n\ntail\n")
    assert "| HTTP client/SDK |" in text
    assert sorted(f.name for f in images.iterdir()) == sorted(p.flame_graph for p in run.profiles)


def test_the_claims_summary_counts_the_not_testable_verdicts():
    from bench.results import Claim
    run = Run.model_validate_json(readme.SNAPSHOT.read_text())
    run.claims = [*run.claims, Claim(id="x", source="004_a.txt", text="true parallelism",
                                     verdict="not_testable", evidence="not testable on 2 cores: ...")]
    block = readme.render_block(run)
    assert "1 not testable" in block and "| **not testable** |" in block
