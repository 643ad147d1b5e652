"""README's latest-comparison block is the rendering of the committed run snapshot."""

from __future__ import annotations

import shutil

from bench import readme
from bench.results import Run


def test_readme_block_is_generated_from_the_snapshot():
    run = Run.model_validate_json(readme.SNAPSHOT.read_text())
    assert readme.current_block(readme.README.read_text()) == readme.render_block(run), (
        "README.md's latest-comparison block was edited by hand or is stale: "
        "run `.venv/bin/bench readme results/<run>` to regenerate it")
    assert run.claims, "the snapshot should carry the claims verdicts"


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
