from __future__ import annotations

import shutil
from pathlib import Path

from bench.report import console_table, render_markdown, write_reports
from bench.results import Run

DATA = Path(__file__).parent / "data"


def test_report_renders_recorded_run(tmp_path):
    shutil.copy(DATA / "results_recorded.json", tmp_path / "results.json")
    run = write_reports(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| flask-sync" in text and "| fastapi-async" in text
    assert "PSS" in text and "efficiency" in text
    # every result row appears in both tables
    assert text.count("| flask-sync") == 2 * sum(r.target == "flask-sync" for r in run.results)
    assert console_table(run).row_count == len(run.results)


def test_save_is_atomic_and_round_trips(tmp_path):
    run = Run.model_validate_json((DATA / "results_recorded.json").read_text())
    run.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    again = Run.load(tmp_path)
    assert again == run
    assert '"schema": 1' in (tmp_path / "results.json").read_text()
    assert render_markdown(again) == render_markdown(run)
