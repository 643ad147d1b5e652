"""report.html in a real browser: tables present, every chart drawn with a size, page not blank."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from bench.report import write_reports
from bench.results import Run
from tests import browser
from tests.harness.test_report import DATA, constructed_run

pytestmark = pytest.mark.skipif(browser.missing() is not None, reason=browser.missing() or "")
WIDTH = 1280


@pytest.fixture(scope="module")
def driver():
    with browser.chromium_driver(width=WIDTH, height=900) as d:
        yield d


def recorded(run_dir: Path) -> Run:
    shutil.copy(DATA / "results_quick_all.json", run_dir / "results.json")
    return write_reports(run_dir)


def constructed(run_dir: Path) -> Run:
    constructed_run().save(run_dir)
    return write_reports(run_dir)


@pytest.mark.parametrize(("make", "charts", "tables"), [
    (recorded, {"throughput", "memory", "rps-memory", "latency"},
     {"targets", "throughput", "resources", "per-process"}),
    (constructed, {"throughput", "memory", "rps-memory", "latency", "sweep-workers"},
     {"targets", "throughput", "calibration", "resources", "per-process", "experiments", "claims"}),
], ids=["recorded", "constructed"])
def test_report_html_in_chromium(driver, tmp_path, make, charts, tables):
    run = make(tmp_path)
    browser.set_viewport(driver, WIDTH, 900)  # the previous case grew it for its screenshot
    driver.get((tmp_path / "report.html").as_uri())
    assert driver.title == f"Concurrency Lab — run {run.run_id}"

    js = driver.execute_script
    for kind in tables:
        assert js(f"return document.querySelectorAll('table.{kind} tbody tr').length") > 0, kind
    assert js("return document.querySelectorAll('table.throughput tbody tr').length") == len(run.results)

    drawn = js("""return [...document.querySelectorAll('figure.chart')].filter(f => f.querySelector('svg'))
                  .map(f => { const r = f.querySelector('svg').getBoundingClientRect();
                              return [f.id, r.width, r.height]; })""")
    assert {key.removeprefix("chart-") for key, _, _ in drawn} == charts
    for key, width, height in drawn:
        assert width > 300 and height > 150, (key, width, height)
    assert js("return document.querySelectorAll('.chart-error').length") == 0
    if "sweep-workers" not in charts:
        assert "Not in this run" in js("return document.querySelector('#chart-sweep').textContent")

    png = browser.full_page_png(driver)
    (tmp_path / "report.png").write_bytes(png)
    pixels = image.imread(io.BytesIO(png))
    page_height = js("return document.documentElement.scrollHeight")
    assert pixels.shape[:2] == (min(page_height, browser.MAX_SCREENSHOT_HEIGHT), WIDTH)
    rgb = (pixels[..., :3] * 255).astype(np.uint32).reshape(-1, 3)
    colours = np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2])
    assert len(colours) > 200  # text, tables and coloured charts, not a blank page
    assert (rgb < 200).any(axis=1).mean() > 0.02  # some of it is ink, not all background
