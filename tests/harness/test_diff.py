"""bench/diff.py: each cell's change between two recorded runs, judged against their spread."""

from __future__ import annotations

import subprocess
import sys

from rich.console import Console

from bench import diff
from bench.manifest import REPO_ROOT
from bench.results import Claim, Spread

DATA = REPO_ROOT / "tests" / "harness" / "data"
A, B = DATA / "results_quick_all.json", DATA / "results_quick_claims.json"


def test_cells_are_matched_by_target_params_workload_and_users():
    d = diff.diff(diff.load(A), diff.load(B))
    names = {diff.cell_name(c.a) for c in d.changes}
    assert "flask-sync @ 100 (recommendation, pool_size=1 workers=4)" in names
    assert all(diff.cell_key(c.a) == diff.cell_key(c.b) for c in d.changes)
    # B's worker sweep is another cell, not a change of flask-sync's
    only_b = {diff.cell_name(r) for r in d.only_b}
    assert "flask-sync @ 100 (recommendation, pool_size=1 workers=16)" in only_b
    assert not d.only_a


def test_a_change_is_judged_against_the_runs_spread():
    a, b = diff.load(A), diff.load(B)
    change = next(c for c in diff.diff(a, b).changes if diff.cell_name(c.a).startswith("django-async @ 100"))
    assert change.judgement.startswith("no spread")  # 90.7 -> 121.4 rps, each measured once
    change.a.spread = Spread(n=3, rps=(88.0, 93.0))
    change.b.spread = Spread(n=3, rps=(118.0, 124.0))
    assert change.judgement == "beyond the spread"
    change.b.spread = Spread(n=3, rps=(92.0, 124.0))
    assert change.judgement == "within the spread"
    change.b.spread = None  # one side measured once: its value against the other's range
    assert change.judgement == "beyond the spread"


def test_claims_whose_verdict_changed_are_listed():
    a, b = diff.load(A), diff.load(B)
    claim = Claim(id="c", source="000", text="t", verdict="holds", evidence="e")
    a.claims = [claim, claim.model_copy(update={"id": "same"})]
    b.claims = [claim.model_copy(update={"verdict": "fails", "evidence": "now"}),
                claim.model_copy(update={"id": "same"})]
    d = diff.diff(a, b)
    assert [(x.id, x.verdict, y.verdict) for x, y in d.claims] == [("c", "holds", "fails")]
    console = Console(width=250, record=True)
    for table in diff.diff_tables(d):
        console.print(table)
    text = console.export_text()
    assert "Claims whose verdict changed" in text and "only in B" in text and "+33.8 %" in text


def test_the_command_reads_two_runs_and_refuses_what_is_not_one(tmp_path):
    bench = [sys.executable, "-m", "bench.cli"]
    done = subprocess.run([*bench, "diff", str(A), str(B)], capture_output=True, text=True, timeout=60,
                          check=False, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "bench diff: 20261121-055150 → 20261121-081914" in done.stdout
    bad = subprocess.run([*bench, "diff", str(tmp_path), str(B)], capture_output=True, text=True,
                         timeout=60, check=False, cwd=REPO_ROOT)
    # the error box wraps at the terminal's width, and a long temporary path moves the break
    said = " ".join(part.strip("│ ") for part in bad.stderr.splitlines())
    assert bad.returncode == 2 and "neither a results file nor a run folder" in " ".join(said.split())
