"""Seed 003 against the real fastapi-async target: blocking `listen()` vs `redis.asyncio`.

3 SSE listeners, each held open for 1.5 s, while /healthz is timed on the same process. The seed
says the blocking streams run one after another and stall everything else; the async ones overlap.
Ratios with wide margins, not absolute times: the box has 2 cores and other work running.
"""

from __future__ import annotations

import pytest

from bench import manifest, pubsub_probe
from bench.targets import running

LISTENERS, HOLD_S = 3, 1.5


@pytest.fixture(scope="module")
def measured(lab, tmp_path_factory) -> dict:
    if not lab.redis_url:
        pytest.skip(f"no Redis: {lab.redis_unavailable}")
    target = manifest.load_targets()["fastapi-async"]
    with running(target, lab, tmp_path_factory.mktemp("pubsub")) as (resolved, _):
        return pubsub_probe.measure(resolved.base_url, lab.redis_url, listeners=LISTENERS, hold_s=HOLD_S)


def test_blocking_listeners_run_one_after_another(measured: dict) -> None:
    assert measured["blocking_total_s"] >= 1.8 * measured["async_total_s"], measured
    assert measured["blocking_total_s"] >= 0.8 * LISTENERS * HOLD_S, measured  # ~ listeners x hold
    # The last "user" waited for the others before its stream even started.
    assert measured["blocking_last_start_s"] >= 0.8 * (LISTENERS - 1) * HOLD_S, measured


def test_async_listeners_overlap(measured: dict) -> None:
    assert measured["async_total_s"] < 0.6 * LISTENERS * HOLD_S, measured  # ~ hold
    assert measured["async_last_start_s"] < 0.5 * HOLD_S, measured


def test_blocking_listeners_starve_healthz(measured: dict) -> None:
    assert measured["blocking_healthz_ms"] >= 0.8 * 1000 * HOLD_S, measured  # waited a whole stream
    assert measured["blocking_healthz_ms"] >= 10 * measured["async_healthz_ms"], measured


def test_polling_fix_overlaps_but_still_blocks_the_loop(measured: dict) -> None:
    # The seed's fix: streams interleave, yet each sync get_message(timeout=0.1) holds the loop.
    assert measured["polling_total_s"] < 0.6 * measured["blocking_total_s"], measured
    assert measured["polling_healthz_p50_ms"] > 2 * measured["async_healthz_p50_ms"], measured
