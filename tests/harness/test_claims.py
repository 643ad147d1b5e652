"""Claim verdicts computed from recorded results (bench/claims.py, bench/claims.toml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import claims
from bench.results import Run

DATA = Path(__file__).parent / "data"


@pytest.fixture
def quick_run() -> Run:
    """A real `make compare` run: nine targets at 1 and 100 users, no experiments."""
    return Run.model_validate_json((DATA / "results_quick_all.json").read_text())


@pytest.fixture
def experiments_run() -> Run:
    """A real run with the claims' experiments, the flask-sync worker sweep and a cpu cell."""
    return Run.model_validate_json((DATA / "results_experiments.json").read_text())


def verdicts(run: Run) -> dict[str, str]:
    return {c.id: c.verdict for c in claims.evaluate(run)}


def by_id(run: Run, claim_id: str):
    return next(c for c in claims.evaluate(run) if c.id == claim_id)


def test_claims_file_is_well_formed():
    specs = claims.load_claims()
    ids = [s["id"] for s in specs]
    assert len(ids) == len(set(ids))
    for spec in specs:
        assert spec["rule"] in claims.RULES, spec["id"]
        assert spec["source"].endswith(".txt") and spec["quote"] and spec["check"]
    # the claims issue 4 names, at least
    assert {"fifth-request-queues", "flask-16-workers", "async-one-process-pool-15",
            "sync-worker-30mb", "async-process-50mb", "seed004-async-time-sleep",
            "seed004-async-asyncio-sleep", "seed004-def-time-sleep", "uvicorn-workers-4-fix",
            "threads-vs-processes-cpu", "goroutines-no-config"} <= set(ids)


def test_every_claim_gets_a_verdict_with_evidence(quick_run):
    for claim in claims.evaluate(quick_run):
        assert claim.verdict in ("holds", "partly", "fails", "not_run")
        assert claim.evidence


def test_verdicts_from_the_recorded_quick_run(quick_run):
    got = verdicts(quick_run)
    assert got["async-one-process-pool-15"] == "holds"  # 171.7 rps = 0.96 of its ceiling
    assert got["sync-worker-30mb"] == "fails"  # 67 MB PSS per worker
    assert got["workers-cost-memory"] == "holds"
    assert got["async-blocking-blocks-all"] == "holds"  # canary 3.9 s vs 9 ms
    assert got["uvicorn-workers-4-fix"] == "partly"  # 4x the blocking app, 0.04x of async
    assert got["goroutines-no-config"] == "partly"  # the pgx pool had to be raised
    # no experiments or sweeps in that run: said so, with the command that would measure it
    assert got["fifth-request-queues"] == "not_run"
    assert "--set workers=" in by_id(quick_run, "flask-16-workers").evidence


def test_evidence_carries_the_numbers(quick_run):
    evidence = by_id(quick_run, "sync-worker-30mb").evidence
    assert "67 MB" in evidence and "~30 MB" in evidence and "2.2x" in evidence


def test_verdicts_follow_the_data(quick_run):
    fast = next(r for r in quick_run.results if r.target == "fastapi-async" and r.users == 100)
    fast.efficiency = 0.5
    assert verdicts(quick_run)["async-one-process-pool-15"] == "fails"
    fast.efficiency = 0.95
    fast.flags = ["machine-cpu-bound (95% of all cores)"]
    claim = by_id(quick_run, "async-one-process-pool-15")
    assert claim.verdict == "partly" and "machine-cpu-bound" in claim.evidence
    flask = next(r for r in quick_run.results if r.target == "flask-sync" and r.users == 100)
    for proc in flask.per_process:
        proc.peak_pss = 31.0
    assert verdicts(quick_run)["sync-worker-30mb"] == "holds"


def test_verdicts_from_experiments(experiments_run):
    got = verdicts(experiments_run)
    assert got["fifth-request-queues"] == "holds"  # 0.48 x4 then 0.93 s
    assert got["async-serves-five"] == "holds"
    assert got["seed004-async-time-sleep"] == "holds"  # ~1.0 s vs ~1.1 claimed
    assert got["seed004-async-asyncio-sleep"] == "fails"  # ~0.11 s: each request sleeps 0.1 s
    assert got["seed004-def-time-sleep"] == "holds"
    assert got["flask-16-workers"] == "partly"  # 16 workers serve ~15% of the demand
    assert got["pubsub-listen-blocks"] == "holds"


def test_failed_experiment_is_not_run_with_its_error(experiments_run):
    exp = next(e for e in experiments_run.experiments if e.id == "seed004-def-time-sleep")
    exp.error, exp.measured = "RuntimeError: 10 of 10 requests answered [503]", {}
    claim = by_id(experiments_run, "seed004-def-time-sleep")
    assert claim.verdict == "not_run" and "503" in claim.evidence


def test_approx_tolerance():
    assert claims._approx(30, 30) == "holds"
    assert claims._approx(44, 30) == "holds"
    assert claims._approx(55, 30) == "partly"
    assert claims._approx(67, 30) == "fails"
    assert claims._approx(0.11, 0.03) == "fails"


def test_a_full_quick_run_answers_every_claim():
    """`make compare` (bench compare --quick) runs every cell and experiment the claims need."""
    run = Run.model_validate_json((DATA / "results_quick_claims.json").read_text())
    got = verdicts(run)
    assert "not_run" not in got.values(), got
    assert got["threads-vs-processes-cpu"] == "holds"  # 0.95x with threads, 1.88x with processes
    assert got["pubsub-polling-fix"] == "fails"  # the 10th stream started after 2.3 s, not 0.1 s
    assert got["flask-16-workers"] == "partly"


def test_evidence_quotes_the_honest_latency_of_a_queueing_target(quick_run):
    # an older run: its p50 counted only the requests that finished, so the evidence quotes W
    evidence = by_id(quick_run, "def-runs-in-threadpool").evidence
    assert "W = users / rps 1459 ms (older run: its p50 1500 ms counted only" in evidence
    sweep = by_id(Run.model_validate_json((DATA / "results_quick_claims.json").read_text()),
                  "flask-16-workers").evidence
    assert "workers=4: 7.1 rps = 4% of the 179 rps 100 concurrent requests need, W 14006 ms" in sweep
    assert "p50" not in sweep
    # a drained run quotes its p50, with mean and W beside it
    from tests.harness.test_report import drained_run
    drained = drained_run()
    assert "p50 1459 ms (mean 1459 ms, W 1459 ms) vs L1" in by_id(drained, "def-runs-in-threadpool").evidence
    # ...unless it was flagged latency-censored: then W again
    pool = next(r for r in drained.results if r.target == "fastapi-threadpool" and r.users == 100)
    pool.latency_ms.p50, pool.latency_ms.mean = 700.0, 720.0
    pool.flags = ["latency-censored (mean 720 ms vs W = users / rps 1459 ms)"]
    evidence = by_id(drained, "def-runs-in-threadpool").evidence
    assert "W = users / rps 1459 ms (its p50 700 ms is latency-censored)" in evidence
    assert by_id(drained, "def-runs-in-threadpool").verdict == "partly"  # a flagged row never holds


def test_a_canary_p95_of_a_few_checks_does_not_decide(quick_run):
    blocking = next(r for r in quick_run.results if r.target == "fastapi-blocking" and r.users == 100)
    # 9 of 80 checks answered: most never came back, which is the evidence (not their p95)
    claim = by_id(quick_run, "async-blocking-blocks-all")
    assert claim.verdict == "holds" and "/healthz p95 n<20 (9 of 80 checks answered)" in claim.evidence
    # 45 of 80 answered, and a p95 of 12 checks: that p95 is no evidence of a blocked loop
    blocking.canary_expected, blocking.canary_answered, blocking.canary_p95_ms = 20, 12, 5000.0
    claim = by_id(quick_run, "async-blocking-blocks-all")
    assert claim.verdict == "partly" and "n<20 (12 of 20 checks answered)" in claim.evidence
    blocking.canary_answered = 40  # enough checks: the p95 counts again
    blocking.canary_expected = 80
    assert by_id(quick_run, "async-blocking-blocks-all").verdict == "holds"
    # a stalled loop may answer no check at all inside the window: still a reading, 0 of 80
    blocking.canary_answered, blocking.canary_p95_ms = 0, None
    claim = by_id(quick_run, "async-blocking-blocks-all")
    assert claim.verdict == "holds" and "n<20 (0 of 80 checks answered)" in claim.evidence
    assert blocking.canary_text() == "— (0/80 answered)"
