"""Run Locust headless against one target and read its CSV summary (by column name)."""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.manifest import REPO_ROOT
from bench.procs import Proc, spawn

LOCUSTFILE = REPO_ROOT / "locust" / "locustfile.py"
LOCUST = Path(sys.executable).parent / "locust"

# scenario -> (Locust user class, the stats row that carries its numbers)
SCENARIOS = {
    "recommendation": ("RecommendationUser", "/recommendation/[id]"),
    "stream": ("StreamUser", "/stream/[id]"),
    "cpu": ("CpuUser", "/cpu"),
    # Locust straight at the upstream: the load generator's own ceiling (target `calibration`).
    "calibration": ("CalibrationUser", "/v1/chat/completions"),
}
CANARY_ROW = "/healthz"
TTFT_ROW = "/stream first token"  # the locustfile's StreamUser reports time to first token here
CANARY_RATE = 4  # /healthz checks per second (locustfile's Canary)


@dataclass(frozen=True)
class LoadSpec:
    host: str
    users: int
    duration_s: float
    scenario: str = "recommendation"
    db_ms: int = 50
    llm_ms: int = 500
    tokens: int = 16
    cpu_n: int = 100000


@dataclass(frozen=True)
class RowStats:
    requests: int
    failures: int
    rps: float
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


def locust_argv(spec: LoadSpec, csv_prefix: Path) -> list[str]:
    user_class, _ = SCENARIOS[spec.scenario]
    total = spec.users + 1  # + the fixed-count canary
    return [
        str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-H", spec.host, "-u", str(total), "-r", str(total), "-t", f"{spec.duration_s:g}s",
        "--csv", str(csv_prefix), "--loglevel", "WARNING", "--exit-code-on-error", "0",
        "--db-ms", str(spec.db_ms), "--llm-ms", str(spec.llm_ms),
        "--tokens", str(spec.tokens), "--cpu-n", str(spec.cpu_n),
        user_class, "Canary",
    ]


def start_locust(spec: LoadSpec, csv_prefix: Path) -> Proc:
    return spawn("locust", locust_argv(spec, csv_prefix), cwd=REPO_ROOT,
                 log_path=csv_prefix.with_suffix(".log"))


def _num(value: str | None) -> float | None:
    if value in (None, "", "N/A"):
        return None
    return float(value)


def read_stats(csv_prefix: Path) -> dict[str, RowStats]:
    """Rows of `<prefix>_stats.csv` keyed by Name, parsed by column header (not position)."""
    path = Path(f"{csv_prefix}_stats.csv")
    rows: dict[str, RowStats] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            rows[row["Name"]] = RowStats(
                requests=int(row["Request Count"]), failures=int(row["Failure Count"]),
                rps=float(row["Requests/s"]), p50=_num(row.get("50%")), p95=_num(row.get("95%")),
                p99=_num(row.get("99%")), max=_num(row.get("Max Response Time")))
    return rows


def read_failures(csv_prefix: Path, limit: int = 5) -> list[str]:
    """The most frequent failure messages, for the report."""
    path = Path(f"{csv_prefix}_failures.csv")
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: -int(r["Occurrences"]))
    return [f"{r['Occurrences']}× {r['Name']}: {r['Error'][:160]}" for r in rows[:limit]]
