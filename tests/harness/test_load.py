from __future__ import annotations

import shutil
from pathlib import Path

from bench.load import BACKSTOP_S, DRAIN_MAX_S, LoadSpec, ledger_path, locust_argv, read_stats

DATA = Path(__file__).parent / "data"


def test_read_stats_by_column_name():
    rows = read_stats(DATA / "locust_flask-sync_u100")
    rec = rows["/recommendation/[id]"]
    assert (rec.requests, rec.failures) == (60, 0)
    assert rec.rps > 6.9 and rec.p50 == 4500 and rec.max > 8000
    assert rows["/healthz"].requests == 1


def test_read_stats_survives_reordered_columns(tmp_path):
    src = (DATA / "locust_fastapi-async_u100_stats.csv").read_text().splitlines()
    header = src[0].split(",")
    order = list(reversed(range(len(header))))
    shuffled = [",".join(line.split(",")[i] for i in order) for line in src]
    (tmp_path / "x_stats.csv").write_text("\n".join(shuffled) + "\n")
    assert read_stats(tmp_path / "x") == read_stats(DATA / "locust_fastapi-async_u100")


def test_locust_argv_adds_the_canary_and_no_host_in_file(tmp_path):
    argv = locust_argv(LoadSpec(host="http://127.0.0.1:9", users=100, duration_s=20), tmp_path / "p")
    assert argv[argv.index("-u") + 1] == "101"  # 100 scenario users + the fixed-count canary
    assert argv[-2:] == ["RecommendationUser", "Canary"]
    assert "http://127.0.0.1:9" in argv
    assert shutil.which(argv[0])


def test_locust_argv_measures_a_window_between_warmup_and_drain(tmp_path):
    def opt(argv: list[str], name: str) -> str:
        return argv[argv.index(name) + 1]

    argv = locust_argv(LoadSpec(host="http://x", users=100, duration_s=15), tmp_path / "p")
    assert opt(argv, "--ledger") == str(ledger_path(tmp_path / "p")) == f"{tmp_path}/p_requests.jsonl"
    assert (opt(argv, "--window-s"), opt(argv, "--warmup-max-s"), opt(argv, "--drain-max-s")) == (
        "15", "15", f"{DRAIN_MAX_S:g}")
    # Locust's --run-time is only a backstop behind the locustfile's own stop after the drain
    assert opt(argv, "-t") == f"{15 + 15 + DRAIN_MAX_S + BACKSTOP_S:.0f}s"
    short = locust_argv(LoadSpec(host="http://x", users=3, duration_s=2, drain_max_s=1), tmp_path / "p")
    assert (opt(short, "--warmup-max-s"), opt(short, "--drain-max-s")) == ("5", "1")  # warm-up >= 5 s
