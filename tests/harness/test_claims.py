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


# Seed-003 claims whose experiments postdate results_quick_claims.json; results_seed003_quick.json
# (bench compare --targets fastapi-async --quick) answers them.
SEED003_LATER = {"pubsub-blocking-10-wait", "pubsub-sequential-45s", "pubsub-concurrent-30s",
                 "get-message-timeout-10-blocks", "get-message-timeout-0.1-safe",
                 "pubsub-blocking-low-cpu", "pubsub-thousands-of-streams"}


def test_a_full_quick_run_answers_every_claim():
    """`make compare` (bench compare --quick) runs every cell and experiment the claims need."""
    run = Run.model_validate_json((DATA / "results_quick_claims.json").read_text())
    got = verdicts(run)
    assert {v for k, v in got.items() if k not in SEED003_LATER} <= {"holds", "partly", "fails"}, got
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


# --- seed 003's pub/sub claims, on constructed runs (numbers from a live --quick run) -------------

def seed003_run(**measured: dict) -> Run:
    """A run holding only seed-003 experiments: id -> measured numbers."""
    from bench.results import Experiment, Machine, Scenario
    return Run(run_id="seed003", started_at="2025-01-01T00:00:00+00:00",
               machine=Machine(cpus=2, mem_gb=24, python="3.12"), scenario=Scenario(),
               experiments=[Experiment(id=exp_id, target="fastapi-async", description=exp_id,
                                       measured=m) for exp_id, m in measured.items()])


BLOCKING_10 = {"listeners": 10, "hold_s": 0.5, "blocking_total_s": 5.352, "blocking_mean_wait_s": 2.561,
               "blocking_waits_s": [0.286, 0.792, 1.299, 1.803, 2.309, 2.813, 3.319, 3.824, 4.329, 4.839],
               "blocking_healthz_ms": 5005.6, "blocking_cpu_pct": 5.0, "async_total_s": 0.664,
               "async_mean_wait_s": 0.126, "async_healthz_ms": 6.9, "async_cpu_pct": 8.7}
TIMELINE = {"scale": 0.1, "listeners": 3, "holds_s": [3.0, 1.0, 0.5], "stagger_s": 0.05,
            "blocking_total_s": 4.542, "blocking_waits_s": [0.009, 2.969, 3.937],
            "blocking_healthz_ms": 3962.4,
            "polling_total_s": 3.015, "polling_waits_s": [0.009, 0.063, 0.222], "polling_healthz_ms": 155.3,
            "async_total_s": 3.017, "async_waits_s": [0.011, 0.016, 0.021], "async_healthz_ms": 8.5}
POLL_TIMEOUT = {"poll_timeouts_s": [0.1, 1.0, 10.0], "listeners": 1,
                "t0.1_healthz_ms": 64.8, "t0.1_healthz_p50_ms": 60.4, "t0.1_healthz_n": 9,
                "t1_healthz_ms": 936.8, "t1_healthz_p50_ms": 695.3, "t1_healthz_n": 2,
                "t10_healthz_ms": 9947.0, "t10_healthz_p50_ms": 5200.3, "t10_healthz_n": 2}
POLLING_10 = {"listeners": 10, "hold_s": 1.0, "polling_total_s": 3.232, "polling_last_start_s": 2.23,
              "polling_healthz_ms": 2300.9, "polling_healthz_p50_ms": 56.0, "polling_healthz_n": 8}
MANY = {"listeners": 100, "hold_s": 1.0,
        "async_last_start_s": 0.656, "async_started": 100, "async_ended": 100, "async_delivery_ms": 331.8,
        "async_delivery_p50_ms": 278.1, "async_healthz_ms": 45.9, "async_cpu_pct": 23.9,
        "async_peak_pss_mb": 96.7,
        "polling_last_start_s": 10.854, "polling_started": 100, "polling_ended": 100,
        "polling_delivery_ms": 9645.9, "polling_delivery_p50_ms": 4118.1, "polling_healthz_ms": 10701.3,
        "polling_cpu_pct": 5.4, "polling_peak_pss_mb": 97.6}


def seed003_claim(claim_id: str, **measured: dict):
    return by_id(seed003_run(**measured), claim_id)


def test_blocking_10_queue_wait():
    claim = seed003_claim("pubsub-blocking-10-wait", **{"seed003-blocking-10": BLOCKING_10})
    # mean 2.56 s = 5.1 x 0.5 s streams vs a queue's 4.5 x: the seed's 15 s at its 3.33 s streams
    assert claim.verdict == "holds"
    assert "mean 2.56 s = 5.12 x the stream length" in claim.evidence
    assert "3.33 s streams, where these waits give 17.1 s" in claim.evidence
    # the full run holds the streams 10/3 s: the mean is compared with 15 s directly
    full = {**BLOCKING_10, "hold_s": 3.333, "blocking_mean_wait_s": 15.4,
            "blocking_waits_s": [0.3 + 3.333 * k for k in range(10)]}
    claim = seed003_claim("pubsub-blocking-10-wait", **{"seed003-blocking-10": full})
    assert claim.verdict == "holds" and "mean 15.4 s vs 15 s claimed" in claim.evidence
    # streams that overlap (no queue) fail it; a first stream that waited makes it partly
    overlap = {**BLOCKING_10, "blocking_mean_wait_s": 0.13, "blocking_waits_s": [0.13] * 10}
    assert seed003_claim("pubsub-blocking-10-wait", **{"seed003-blocking-10": overlap}).verdict == "fails"
    late = {**BLOCKING_10, "blocking_waits_s": [0.9, *BLOCKING_10["blocking_waits_s"][1:]]}
    assert seed003_claim("pubsub-blocking-10-wait", **{"seed003-blocking-10": late}).verdict == "partly"


def test_timeline_sequential_and_concurrent():
    exps = {"seed003-timeline": TIMELINE}
    blocking = seed003_claim("pubsub-sequential-45s", **exps)
    assert blocking.verdict == "holds"  # 45.4 s total, waits 0.1 / 29.7 / 39.4 s at the seed's scale
    assert "total 4.54 s = 45.4 s at the seed's scale vs 45 s claimed" in blocking.evidence
    assert "i.e. 0.01 s (unscaled), 29.7 s, 39.4 s vs 0, 30, 40 s claimed" in blocking.evidence
    polling = seed003_claim("pubsub-concurrent-30s", **exps)
    assert polling.verdict == "holds" and "async beside it: total 3.02 s" in polling.evidence
    # a form that queued them would not be "30 seconds, 0 seconds of waiting"
    queued = {**TIMELINE, "polling_total_s": 4.5, "polling_waits_s": [0.0, 3.0, 4.0]}
    assert seed003_claim("pubsub-concurrent-30s", **{"seed003-timeline": queued}).verdict == "fails"
    # the right total but a user waiting 0.8 s: partly
    slow_start = {**TIMELINE, "polling_waits_s": [0.0, 0.1, 0.8]}
    assert seed003_claim("pubsub-concurrent-30s", **{"seed003-timeline": slow_start}).verdict == "partly"


def test_get_message_timeout_sweep():
    exps = {"seed003-poll-timeout": POLL_TIMEOUT, "seed003-polling-10": POLLING_10}
    ten = seed003_claim("get-message-timeout-10-blocks", **exps)
    assert ten.verdict == "holds" and "held 9.95 s vs 10 s claimed" in ten.evidence
    assert "timeout=1: slowest 937 ms (p50 695 ms, n=2)" in ten.evidence
    safe = seed003_claim("get-message-timeout-0.1-safe", **exps)
    # one call: 65 ms, within the 100 ms; the seed's 10 streams: 2.3 s
    assert safe.verdict == "partly"
    assert "at most 65 ms" in safe.evidence and "at most 2301 ms" in safe.evidence
    assert seed003_claim("get-message-timeout-0.1-safe", **{
        **exps, "seed003-polling-10": {**POLLING_10, "polling_healthz_ms": 120.0}}).verdict == "holds"
    # a sweep without the claimed timeout: not run, with the sweep it had
    short = {**POLL_TIMEOUT, "poll_timeouts_s": [0.1, 1.0]}
    del short["t10_healthz_ms"]
    claim = seed003_claim("get-message-timeout-10-blocks", **{"seed003-poll-timeout": short})
    assert claim.verdict == "not_run" and "0.1, 1 s" in claim.evidence


def test_blocking_low_cpu():
    claim = seed003_claim("pubsub-blocking-low-cpu", **{"seed003-blocking-10": BLOCKING_10})
    assert claim.verdict == "holds"
    assert "used 5.0% of one core while /healthz waited up to 5006 ms" in claim.evidence
    busy = {**BLOCKING_10, "blocking_cpu_pct": 97.0}
    assert seed003_claim("pubsub-blocking-low-cpu", **{"seed003-blocking-10": busy}).verdict == "partly"
    no_pid = {k: v for k, v in BLOCKING_10.items() if k != "blocking_cpu_pct"}
    claim = seed003_claim("pubsub-blocking-low-cpu", **{"seed003-blocking-10": no_pid})
    assert claim.verdict == "not_run" and "pid=" in claim.evidence


def test_thousands_of_streams():
    claim = seed003_claim("pubsub-thousands-of-streams", **{"seed003-many": MANY})
    assert claim.verdict == "fails"  # 100 polling streams: 10.9 s to start them, stop words 9.6 s late
    assert "polling: 100/100 started (all within 10.85 s)" in claim.evidence
    assert "async: 100/100 started (all within 0.66 s)" in claim.evidence
    assert "Not served at 100 already" in claim.evidence
    # served at 100: thousands still unmeasured -> partly; served at 1,000 -> holds
    fine = {**MANY, "polling_last_start_s": 0.9, "polling_delivery_ms": 400.0, "polling_healthz_ms": 150.0}
    claim = seed003_claim("pubsub-thousands-of-streams", **{"seed003-many": fine})
    assert claim.verdict == "partly" and "1,000 not measured" in claim.evidence
    big = {**fine, "listeners": 1000, "polling_started": 1000, "polling_ended": 1000}
    assert seed003_claim("pubsub-thousands-of-streams", **{"seed003-many": big}).verdict == "holds"
    # streams still open at the budget are counted: not served
    cut = {**big, "polling_ended": 400, "polling_last_start_s": None, "polling_healthz_censored": 1}
    claim = seed003_claim("pubsub-thousands-of-streams", **{"seed003-many": cut})
    assert claim.verdict == "fails" and "400/1000 got their stop word" in claim.evidence
    assert "(still waiting at the end)" in claim.evidence


def test_failed_seed003_experiment_is_not_run():
    run = seed003_run(**{"seed003-many": {}})
    run.experiments[0].error = "RuntimeError: 3 of 100 polling streams failed"
    claim = by_id(run, "pubsub-thousands-of-streams")
    assert claim.verdict == "not_run" and "3 of 100" in claim.evidence


def test_a_quick_run_answers_every_seed003_claim():
    """A real `bench compare --targets fastapi-async --quick` with every seed-003 experiment."""
    run = Run.model_validate_json((DATA / "results_seed003_quick.json").read_text())
    got = {c.id: c.verdict for c in claims.evaluate(run) if c.source.startswith("003_")}
    assert set(got) >= SEED003_LATER and "not_run" not in got.values(), got
    assert got == {"pubsub-listen-blocks": "holds", "pubsub-polling-fix": "fails",
                   "pubsub-blocking-10-wait": "holds",  # mean 2.31 s = 4.62 x 0.5 s streams
                   "pubsub-sequential-45s": "holds",  # 45.3 s at scale, waits 0.1 / 29.7 / 39.3 s
                   "pubsub-concurrent-30s": "holds",  # 30.1 s, waits 0.01 / 0.06 / 0.22 s
                   "get-message-timeout-10-blocks": "holds",  # loop held 9.96 s
                   "get-message-timeout-0.1-safe": "partly",  # 62 ms alone, 1004 ms with 10 streams
                   "pubsub-blocking-low-cpu": "holds",  # 0.8% of a core, /healthz 5 s
                   "pubsub-thousands-of-streams": "fails"}  # 100 polling streams: 10.7 s to start


def test_thousands_of_streams_full_run():
    """The full run's 1,000 streams (measured live): redis.asyncio serves them, the polling fix
    needs 108 s to start them all and 556 hit the route's 60 s timeout first."""
    full = {"listeners": 1000, "hold_s": 1.0,
            "async_last_start_s": 6.679, "async_started": 1000, "async_ended": 1000,
            "async_delivery_ms": 2956.7, "async_delivery_p50_ms": 2613.8, "async_healthz_ms": 469.4,
            "async_cpu_pct": 47.5, "async_peak_pss_mb": 140.3,
            "polling_last_start_s": 107.942, "polling_started": 1000, "polling_ended": 444,
            "polling_timed_out": 556, "polling_delivery_ms": 44715.4, "polling_delivery_p50_ms": 22381.8,
            "polling_healthz_ms": 105215.2, "polling_cpu_pct": 5.3, "polling_peak_pss_mb": 141.2}
    claim = seed003_claim("pubsub-thousands-of-streams", **{"seed003-many": full})
    assert claim.verdict == "fails"
    assert "556 ended by the route's timeout before their stop word" in claim.evidence
    assert "async: 1000/1000 started (all within 6.68 s)" in claim.evidence
    assert "Not served at 1000 (bars: start within 13.4 s" in claim.evidence
