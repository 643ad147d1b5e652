"""Verdicts on the seeds' claims, computed from a run's results (bench/claims.toml lists them).

Each claim names a rule below and gives it its thresholds (claims.toml says why each). A rule reads
the run's results and experiments and returns a verdict with the numbers behind it: holds, partly,
fails, not_run when the run lacks what it needs (the evidence then says what would measure it), or
not_testable when this machine cannot show the effect at the seed's scale. The rows a rule reads
are recorded as the claim's `rests_on`, each as the claim's subject or a baseline; `judge` lets no
claim hold on a flagged subject row (CPU-, Locust-, failure-limited or latency-censored), naming
the flag, and turns a claim whose measurement does not exist yet (`missing`) into not_run.
"""

from __future__ import annotations

import contextlib
import statistics
import tomllib
from collections.abc import Callable
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from rich.table import Table

from bench import manifest
from bench.metrics import MIB_PER_MB
from bench.results import MIN_TAIL_SAMPLES, Claim, Experiment, Result, RowRef, Run

CLAIMS_FILE = Path(__file__).with_name("claims.toml")


class NotRun(Exception):
    """The run has no data for this rule; the message says what would measure it."""


@lru_cache
def load_claims() -> list[dict]:
    return tomllib.loads(CLAIMS_FILE.read_text())["claims"]


class Judgement(NamedTuple):
    verdict: str
    evidence: str
    rests_on: list[RowRef]


# The rows and experiments the rule being judged has read (find, get_experiment record them).
_READ: ContextVar[list[RowRef] | None] = ContextVar("claims_read", default=None)


def judge(run: Run, spec: dict) -> Judgement:
    """The claim's rule on `run`, then the rule every claim shares: a flagged subject row (one the
    claim's `expected_flags` does not name) cannot let it hold."""
    token = _READ.set([])
    try:
        verdict, evidence = RULES[spec["rule"]](run, **spec.get("args", {})) if "rule" in spec else (
            "not_run", "")
    except NotRun as why:
        verdict, evidence = "not_run", str(why)
    finally:
        read = _READ.get() or []
        _READ.reset(token)
    if "missing" in spec:  # a fair judgement needs a measurement no command makes yet
        return Judgement("not_run", _missing(spec["missing"], verdict, evidence), read)
    verdict, evidence = _flagged_subject(verdict, evidence, read, spec.get("expected_flags", []))
    return Judgement(verdict, evidence, read)


def _missing(missing: str, verdict: str, evidence: str) -> str:
    """The claim's `missing` measurement first; what the run has instead, as context only."""
    text = f"not judged: it needs {missing}"
    if evidence and verdict != "not_run":
        text += f". Measured instead (a stand-in, not the sentence's case): {evidence}"
    return text


def _flagged_subject(verdict: str, evidence: str, read: list[RowRef],
                     expected: list[str]) -> tuple[str, str]:
    """A subject row whose measurement is in doubt (its flags) cannot carry a "holds"."""
    doubtful = [(ref, [f for f in ref.flag_names() if f not in expected])
                for ref in read if ref.role == "subject"]
    doubtful = [(ref, flags) for ref, flags in doubtful if flags]
    if verdict != "holds" or not doubtful:
        return verdict, evidence
    named = "; ".join(f"{ref.target} at {ref.users} users is flagged {', '.join(flags)}"
                      for ref, flags in doubtful)
    return "partly", evidence + f". Cannot hold on a flagged subject row: {named}"


def evaluate(run: Run) -> list[Claim]:
    """Each claim's verdict on the run's rows (the medians of a repeated run), and on each repeat."""
    claims = []
    repeats = run.repeat_runs()
    for spec in load_claims():
        verdict, evidence, read = judge(run, spec)
        claims.append(Claim(id=spec["id"], source=spec["source"], text=spec["quote"], check=spec["check"],
                            verdict=verdict, evidence=evidence, rests_on=read,
                            repeat_verdicts=[judge(r, spec).verdict for r in repeats] or None))
    return claims


def _record(ref: RowRef) -> None:
    """Note a row the rule read; a row read again as the subject becomes the subject."""
    read = _READ.get()
    if read is None:  # a rule called outside judge (tests call some directly)
        return
    for i, known in enumerate(read):
        if known.model_copy(update={"role": ref.role}) == ref:
            if ref.role == "subject":
                read[i] = ref
            return
    read.append(ref)


def _ref(r: Result, role: str) -> RowRef:
    workload = None if r.db_ms is None else (r.db_ms, r.llm_ms or 0)
    return RowRef(role=role, target=r.target, scenario=r.scenario, params=dict(r.params), users=r.users,
                  workload=workload, runtime=r.runtime, flags=list(r.flags))


def subject(*rows: Result) -> Result:
    """Mark the rows the sentence speaks of (their flags decide whether it can hold); the first."""
    for r in rows:
        _record(_ref(r, "subject"))
    return rows[0]


VERDICT_STYLE = {"holds": "green", "partly": "yellow", "fails": "red", "not_run": "dim",
                 "not_testable": "dim"}


def claims_table(run: Run) -> Table:
    table = Table(title="Claims from the seeds", expand=False)
    table.add_column("claim", max_width=60)
    table.add_column("source", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("evidence", max_width=90)
    for c in run.claims:
        style = VERDICT_STYLE[c.verdict]
        table.add_row(c.text, c.source[:3], f"[{style}]{c.verdict_text()}[/]", c.evidence)
    return table


# --- finding results --------------------------------------------------------------------------

def _defaults(target: str) -> dict[str, int]:
    known = manifest.load_targets()
    return dict(known[target].params) if target in known else {}


def find(run: Run, target: str, users: int | None = None, scenario: str = "recommendation",
         workload: tuple[int, int] | None = None, **params: int) -> Result:
    """The result of `target` at `users` (default: its highest level) with these params
    (default: the manifest's defaults, i.e. not a sweep cell), under the run's workload or the
    (db_ms, llm_ms) given."""
    wanted = {**_defaults(target), **params}
    got = None if workload is None else tuple(workload)
    rows = [r for r in run.results if r.target == target and r.scenario == scenario
            and (None if r.db_ms is None else (r.db_ms, r.llm_ms)) == got
            and all(r.params.get(k) == v for k, v in wanted.items())]
    if users is not None:
        rows = [r for r in rows if r.users == users]
    if not rows:
        at = f" at {users} users" if users else ""
        extra = "".join(f" {k}={v}" for k, v in params.items())
        extra += f" (db_ms={workload[0]}, llm_ms={workload[1]})" if workload else ""
        hint = (" (make compare-full or make compare-claims measures it)"
                if workload or set(params) - {"workers"} else "")
        raise NotRun(f"no {scenario} result for {target}{extra}{at} in this run{hint}")
    found = max(rows, key=lambda r: r.users)
    _record(_ref(found, "baseline"))
    return found


def l1_ms(run: Run, target: str, scenario: str = "recommendation",
          workload: tuple[int, int] | None = None, **params: int) -> float:
    one = find(run, target, 1, scenario, workload, **params)
    if not one.latency_ms.p50:
        raise NotRun(f"{target} has no 1-user latency in this run")
    return one.latency_ms.p50


def get_experiment(run: Run, exp_id: str, target: str | None = None, role: str = "subject") -> Experiment:
    for exp in run.experiments:
        if exp.id == exp_id and (target is None or exp.target == target):
            if exp.error:
                raise NotRun(f"experiment {exp_id} on {exp.target} failed: {exp.error}")
            _record(RowRef(role=role, target=exp.target, scenario="experiment", params=dict(exp.params),
                           experiment=exp.id))
            return exp
    on = f" on {target}" if target else ""
    from bench import experiments  # the plan says which experiments a plain --quick run leaves out
    costly = any(spec.id == exp_id and spec.costly for specs in experiments.PLAN.values() for spec in specs)
    raise NotRun(f"experiment {exp_id}{on} not in this run " + (
        "(make compare-full or make compare-claims runs it)" if costly else
        "(bench compare runs it with the target's default settings)"))


def flagged(*results: Result) -> str:
    notes = [f"{r.target} flagged: {'; '.join(r.flags)}" for r in results if r.flags]
    return f" ({'. '.join(notes)})" if notes else ""


def worker_pss(result: Result) -> list[float]:
    return [p.peak_pss for p in result.per_process if p.role == "worker"]


def _canary(r: Result) -> str:
    """The canary's p95 (only when it rests on enough checks) and how many checks it rests on."""
    p95 = r.canary_p95_trusted()
    figure = f"{p95:.0f} ms" if p95 is not None else f"n<{MIN_TAIL_SAMPLES}"
    if r.canary_expected:
        return f"{figure} ({r.canary_answered or 0} of {r.canary_expected} checks answered)"
    return figure + (f" (n={r.canary_n})" if r.canary_n is not None else "")


def canary_stalled(r: Result) -> bool:
    """Fewer than half of the /healthz checks came back: the server could not answer them."""
    return bool(r.canary_expected) and (r.canary_answered or 0) < r.canary_expected / 2


def drained(r: Result) -> bool:
    """Its percentiles count every request started in the window, and agree with W."""
    return r.latency_ms.mean is not None and not any(f.startswith("latency-censored") for f in r.flags)


def _latency(r: Result) -> str:
    """The honest latency of a row for evidence. A p50 only where it is drained (not censored);
    else W = users / rps (Little's law), the mean wait of a closed loop with no think time."""
    w, p50 = r.w_ms(), r.latency_ms.p50
    if drained(r) and p50 is not None:
        return f"p50 {p50:.0f} ms (mean {r.latency_ms.mean:.0f} ms, W {w or 0:.0f} ms)"
    if w is None:
        return "no request served"
    if p50 is None:
        return f"W = users / rps {w:.0f} ms"
    why = (f"its p50 {p50:.0f} ms is latency-censored" if r.latency_ms.mean is not None
           else f"older run: its p50 {p50:.0f} ms counted only the requests that finished in the window")
    return f"W = users / rps {w:.0f} ms ({why})"


def _latency_short(r: Result) -> str:
    """`_latency` in a few words, for lists of rows."""
    if drained(r) and r.latency_ms.p50 is not None:
        return f"p50 {r.latency_ms.p50:.0f} ms"
    w = r.w_ms()
    return f"W {w:.0f} ms" if w is not None else "nothing served"


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


# --- rules ------------------------------------------------------------------------------------

def fifth_request_waits(run: Run, target: str, holds_ratio: float, partly_ratio: float) -> tuple[str, str]:
    m = get_experiment(run, "fifth-request", target).measured
    ratio, lat = m["fifth_over_others"], m["latencies_s"]
    evidence = (f"{target}: latencies {', '.join(f'{x:.2f}' for x in lat)} s; the 5th took "
                f"{ratio:.1f}x the median of the first four")
    verdict = "holds" if ratio >= holds_ratio else "partly" if ratio >= partly_ratio else "fails"
    return verdict, evidence


def burst_concurrent(run: Run, target: str, holds_ratio: float, partly_ratio: float) -> tuple[str, str]:
    m = get_experiment(run, "fifth-request", target).measured
    ratio, lat = m["fifth_over_others"], m["latencies_s"]
    evidence = (f"{target}: latencies {', '.join(f'{x:.2f}' for x in lat)} s (one request "
                f"{m['request_s']:.2f} s of waiting); slowest/median of the others {ratio:.2f}x")
    verdict = "holds" if ratio <= holds_ratio else "partly" if ratio < partly_ratio else "fails"
    return verdict, evidence


def workers_needed(run: Run, target: str, users: int, claimed_workers: int, serve_share: float,
                   grew_ratio: float, workload: list[int] | None = None) -> tuple[str, str]:
    load = tuple(workload) if workload else None
    try:  # L1 (one user) does not depend on the worker count: the default's, else the claim's cell
        l1 = l1_ms(run, target, workload=load) / 1000
    except NotRun:
        l1 = l1_ms(run, target, workload=load, workers=claimed_workers) / 1000
    demand = users / l1  # what `users` concurrent requests ask for, if none waited
    rows = sorted((r for r in run.results if r.target == target and r.users == users
                   and r.scenario == "recommendation" and "workers" in r.params
                   and (None if r.db_ms is None else (r.db_ms, r.llm_ms)) == load),
                  key=lambda r: r.params["workers"])
    swept = [r for r in rows if r.params["workers"] >= claimed_workers]
    on = f" (db_ms={load[0]}, llm_ms={load[1]})" if load else ""
    if not swept:
        raise NotRun(f"no {target} result with workers >= {claimed_workers} at {users} users{on}: "
                     f"run bench compare --targets {target} --set workers=4,8,16,32")
    parts = [f"workers={r.params['workers']}: {r.rps:.1f} rps = {100 * r.rps / demand:.0f}% of the "
             f"{demand:.0f} rps {users} concurrent requests need, {_latency_short(r)}"
             for r in rows]
    for r in rows:
        _record(_ref(r, "baseline"))
    at_claim = subject(swept[0])
    per_worker = statistics.median(worker_pss(at_claim) or [0])
    evidence = (f"{'DB-bound workload' + on + ': ' if load else ''}L1 {l1 * 1000:.0f} ms; "
                + "; ".join(parts) +
                (" (W = users / rps, Little's law: the mean wait, queue included)"
                 if not all(drained(r) for r in rows) else "") +
                f". Each sync worker serves one request at a time, so {users} concurrent requests "
                f"need ~{users} workers (~{users * per_worker / 1024:.1f} GiB PSS at "
                f"{per_worker:.0f} MiB each)" + flagged(at_claim))
    return _workers_verdict(rows, at_claim, claimed_workers, demand, serve_share, grew_ratio, evidence)


def _workers_verdict(rows: list[Result], at_claim: Result, claimed: int, demand: float,
                     serve_share: float, grew_ratio: float, evidence: str) -> tuple[str, str]:
    """"Needs N+ workers to handle it": false if fewer already handle it, or if more workers do not
    raise throughput (the workers are not the limit); a lower bound short of the need if N do not."""
    fewer = [r for r in rows if r.params["workers"] < claimed and r.rps >= serve_share * demand]
    if fewer:
        less = fewer[0]
        return "fails", evidence + (f". {less.params['workers']} workers already serve "
                                    f"{100 * less.rps / demand:.0f}% of it: {claimed}+ overstates the need")
    # with one row, the workers cap it when each serves one request at a time (efficiency near 1)
    grew = (rows[-1].rps > grew_ratio * rows[0].rps if len(rows) >= 2
            else (at_claim.efficiency or 0) >= serve_share)
    if not grew:
        return "fails", evidence + ". More workers do not raise its throughput: they are not what limits it"
    if at_claim.rps >= serve_share * demand:
        return "holds", evidence
    return "partly", evidence + (f". {at_claim.params['workers']} workers serve "
                                 f"{100 * at_claim.rps / demand:.0f}%: {claimed}+ is a lower bound, "
                                 "short of the need")


def same_load_as(run: Run, target: str, reference: str, reference_params: dict[str, int], users: int,
                 workload: list[int], seed_db_ms: int, same_share: float,
                 serve_share: float) -> tuple[str, str]:
    """Seed 001's async side on a DB-bound load: 1 process and a pool of 15 against 16 workers.
    "Handles the same load": it serves what `users` concurrent requests ask for (users / L1), as
    the workers do, in less memory. Matching 16 workers that both leave most of it waiting is not
    handling it: the pool's ceiling (connections / L1) says why."""
    load = tuple(workload)
    a = subject(find(run, target, users, workload=load))
    ref = find(run, reference, users, workload=load, **reference_params)
    l1 = l1_ms(run, target, workload=load)
    demand = users / (l1 / 1000)
    ref_text = " ".join(f"{k}={v}" for k, v in reference_params.items())
    evidence = (f"DB-bound workload (db_ms={load[0]}, llm_ms={load[1]}) at {users} users: {target} "
                f"({a.processes} process, DB pool {a.db_pool}) {a.rps:.1f} rps ({_latency_short(a)}, "
                f"{a.memory_mb.peak_pss or 0:.0f} MiB PSS) vs {reference} {ref_text} {ref.rps:.1f} rps "
                f"({_latency_short(ref)}, {ref.memory_mb.peak_pss or 0:.0f} MiB): "
                f"{a.rps / ref.rps if ref.rps else 0:.2f}x. They serve "
                f"{100 * a.rps / demand:.0f}% / {100 * ref.rps / demand:.0f}% of the {demand:.0f} rps "
                f"that {users} concurrent requests ask for"
                + _ceiling_note(a, demand, load[0], seed_db_ms) + flagged(a, ref))
    handles = a.rps >= serve_share * demand and not a.failures
    same = a.rps >= same_share * ref.rps and not a.failures
    lighter = (a.memory_mb.peak_pss or 0) < (ref.memory_mb.peak_pss or 0)
    if handles and same and lighter:
        return "holds", evidence
    return ("partly" if same and lighter else "fails"), evidence


def _ceiling_note(r: Result, demand: float, db_ms: int, seed_db_ms: int | None) -> str:
    """Where the model's own ceiling is below what the users ask for: what caps it (the DB pool, a
    connection held for each query, or the worker/thread count), and, for a DB pool, why the cell's
    query length does not change the share it serves."""
    if not r.ceiling_rps or r.ceiling_rps >= 0.95 * demand:
        return ""
    pool_cap = r.db_pool / (db_ms / 1000) if r.db_pool and db_ms else None
    if pool_cap is not None and pool_cap <= 1.01 * r.ceiling_rps:
        text = (f"; its DB pool caps it: {r.db_pool} connections held {db_ms} ms each allow "
                f"{pool_cap:.0f} rps, {100 * pool_cap / demand:.0f}% of what they ask for")
        if seed_db_ms and db_ms != seed_db_ms:
            text += (f" (the cell's query takes {db_ms} ms where the seed's takes {seed_db_ms} ms: a pool "
                     "serves the same share of a closed loop whatever the query's length)")
        return text
    return (f"; its {r.capacity} workers or threads cap it at {r.ceiling_rps:.0f} rps, "
            f"{100 * r.ceiling_rps / demand:.0f}% of what they ask for")


def handles_load(run: Run, target: str, users: int, holds_share: float, partly_share: float,
                 processes: int | None = None, db_pool: int | None = None,
                 workload: list[int] | None = None, seed_db_ms: int | None = None) -> tuple[str, str]:
    """"Handles the load": serves what `users` concurrent requests ask for (users / L1), not its own
    ceiling, which a small pool or worker count lowers to whatever it serves."""
    load = tuple(workload) if workload else None
    r = subject(find(run, target, users, workload=load))
    l1 = l1_ms(run, target, workload=load)
    demand = users / (l1 / 1000)
    share = r.rps / demand
    shape = []
    if processes is not None:
        shape.append(f"{r.processes} process{'es' if r.processes != 1 else ''}")
    if db_pool is not None:
        shape.append(f"DB pool {r.db_pool}")
    on = f"DB-bound workload (db_ms={load[0]}, llm_ms={load[1]}): " if load else ""
    evidence = (f"{on}{target} at {users} users{' (' + ', '.join(shape) + ')' if shape else ''}: "
                f"{r.rps:.1f} rps = {100 * share:.0f}% of the {demand:.0f} rps {users} concurrent requests "
                f"ask for (users / L1 {l1:.0f} ms), {_latency(r)}, {r.failures} failures"
                + _ceiling_note(r, demand, load[0] if load else run.scenario.db_ms, seed_db_ms) + flagged(r))
    matches = ((processes is None or r.processes == processes)
               and (db_pool is None or r.db_pool == db_pool))
    if share >= holds_share and matches and not r.failures:
        return "holds", evidence
    return ("partly" if share >= partly_share else "fails"), evidence


def _within(measured: float, claimed: float, tol: float) -> str:
    """holds within claimed / tol .. claimed x tol, partly within twice that band's width (a "~X"
    with tol 1.5 is partly right within a factor of 2)."""
    ratio = measured / claimed
    if 1 / tol <= ratio <= tol:
        return "holds"
    wide = 1 + 2 * (tol - 1)
    return "partly" if 1 / wide <= ratio <= wide else "fails"


def approx_mb(run: Run, target: str, users: int, of: str, mb: float, tolerance: float) -> tuple[str, str]:
    r = subject(find(run, target, users))
    if of == "worker":
        workers = [p for p in r.per_process if p.role == "worker"]
        if not workers:
            raise NotRun(f"no per-worker memory for {target}")
        pss = statistics.median(p.peak_pss for p in workers)
        uss = statistics.median(p.peak_uss for p in workers)
        rss = statistics.median(p.peak_rss for p in workers)
        what = f"{target}: median of {len(workers)} workers"
    else:
        if r.memory_mb.peak_pss is None:
            raise NotRun(f"no memory reading for {target}")
        pss, uss, rss = r.memory_mb.peak_pss, r.memory_mb.peak_uss or 0, r.memory_mb.peak_rss or 0
        what = f"{target}: {r.processes} process{'es' if r.processes != 1 else ''}"
    claimed = mb * MIB_PER_MB  # the seed's MB (10^6 bytes) in the samplers' MiB
    evidence = (f"{what} at {users} users: peak PSS {pss:.0f} MiB (USS {uss:.0f}, RSS {rss:.0f}) "
                f"vs ~{mb:g} MB claimed ({claimed:.1f} MiB) = {pss / claimed:.2f}x"
                + _idle_context(run, target, of, claimed))
    return _within(pss, claimed, tolerance), evidence


def _idle_context(run: Run, target: str, of: str, claimed: float) -> str:
    """The framework's own cost beside the app's: idle PSS of the target and its bare variant."""
    pair = next((i for i in run.idle if i.target == target), None)
    if pair is None:
        return ""
    key, unit = ("worker_pss", "per worker") if of == "worker" else ("pss", "in all")
    app, bare = pair.app.get(key), pair.framework.get(key)
    if not app or not bare:
        return ""
    return (f". Idle, {unit}: the app {app:.0f} MiB, the framework alone ({pair.bare}, a hello-world "
            f"under the same server) {bare:.0f} MiB = {bare / claimed:.2f}x the claim: the rest "
            f"({app - bare:.0f} MiB) is what the app imports (SDKs, ORM, settings)")


def approx_seconds(run: Run, experiment_id: str, seconds: float, tolerance: float,
                   floor_s: float | None = None, serial_experiment: str | None = None,
                   serial_factor: float | None = None) -> tuple[str, str]:
    """A burst's wall time vs the seed's "~X s". `floor_s`: no answer can come sooner (each request
    itself waits that long); a claimed X below it is impossible, so the figure never holds and the
    verdict turns on what the seed meant by it: concurrency, i.e. the wall time near the floor,
    far below `serial_experiment`'s (the same burst, served one at a time)."""
    exp = get_experiment(run, experiment_id)
    wall = exp.measured["wall_s"]
    evidence = (f"{exp.target}: {exp.description}: {_s(wall)} wall (slowest request "
                f"{_s(exp.measured['slowest_s'])}) vs ~{seconds:g} s claimed = {wall / seconds:.2f}x")
    if floor_s is None or seconds >= floor_s:
        return _within(wall, seconds, tolerance), evidence
    evidence += (f". The claimed {seconds:g} s is impossible: shorter than the {floor_s:g} s every "
                 "request sleeps")
    if serial_experiment is None:
        return "fails", evidence
    serial = get_experiment(run, serial_experiment, role="baseline").measured["wall_s"]
    concurrent = _within(wall, floor_s, tolerance) == "holds" and serial >= (serial_factor or 0) * wall
    evidence += (f"; the concurrency {'holds' if concurrent else 'does not hold'}: {_s(wall)} = "
                 f"{wall / floor_s:.2f}x one sleep, vs {_s(serial)} for the same burst served one at "
                 f"a time ({serial_experiment}, {serial / wall:.1f}x)")
    return ("partly" if concurrent else "fails"), evidence


def more_memory(run: Run, users: int, heavy: list[str], light: str) -> tuple[str, str]:
    ref = find(run, light, users)
    rows = []
    for name in heavy:
        try:
            rows.append(find(run, name, users))
        except NotRun:
            continue
    if not rows or ref.memory_mb.peak_pss is None:
        raise NotRun(f"needs {light} and one of {', '.join(heavy)} at {users} users")
    subject(*rows)
    parts = [f"{r.target} ({r.processes} processes) {r.memory_mb.peak_pss or 0:.0f} MiB PSS "
             f"= {(r.memory_mb.peak_pss or 0) / ref.memory_mb.peak_pss:.2f}x" for r in rows]
    evidence = (f"at {users} users: {light} (1 process) {ref.memory_mb.peak_pss:.0f} MiB PSS; "
                + "; ".join(parts) + f"; while serving {ref.rps:.0f} vs "
                + ", ".join(f"{r.rps:.0f}" for r in rows) + " rps")
    heavier = [r for r in rows if (r.memory_mb.peak_pss or 0) > ref.memory_mb.peak_pss]
    return ("holds" if len(heavier) == len(rows) else "partly" if heavier else "fails"), evidence


def blocks_everything(run: Run, target: str, reference: str, users: int, canary_factor: float,
                      serial_factor: float) -> tuple[str, str]:
    bad, good = subject(find(run, target, users)), find(run, reference, users)
    # A stalled target may answer no check at all in the window: that is a reading (0 of N).
    if (bad.canary_p95_ms is None and not bad.canary_expected) or good.canary_p95_ms is None:
        raise NotRun("no canary readings")
    evidence = (f"at {users} users: {target} {bad.rps:.1f} rps, /healthz p95 {_canary(bad)}; "
                f"{reference} {good.rps:.1f} rps, /healthz p95 {_canary(good)}")
    # A p95 of a few checks proves nothing; most checks never coming back does.
    bad_p95, good_p95 = bad.canary_p95_trusted(), good.canary_p95_trusted()
    slow_canary = canary_stalled(bad) or (bad_p95 is not None and good_p95 is not None
                                          and bad_p95 >= canary_factor * max(good_p95, 1))
    serial = bad.rps <= serial_factor * 1000 / l1_ms(run, target)  # about one request at a time
    return ("holds" if slow_canary and serial else "partly" if slow_canary or serial
            else "fails"), evidence + flagged(bad, good)


def workers_fix(run: Run, fixed: str, broken: str, reference: str, users: int, serve_share: float,
                responsive_ms: float, relief_min: float, memory_min: float) -> tuple[str, str]:
    """Seed 000's option 4, judged against the problem it is listed for, "Other requests wait during
    recommendation generation": the workers fix it when the load is served (its share of users / L1)
    and other requests (/healthz) are answered meanwhile; they relieve it when they only run more
    requests at once than the one process. "Uses more memory": peak PSS against the one process's."""
    f, b, ref = subject(find(run, fixed, users)), find(run, broken, users), find(run, reference, users)
    demand = users / (l1_ms(run, fixed) / 1000)
    served, speedup = f.rps / demand, (f.rps / b.rps if b.rps else float("inf"))
    mem = (f.memory_mb.peak_pss or 0) / (b.memory_mb.peak_pss or 1)
    fixes = served >= serve_share and _responsive(f, responsive_ms) and not f.failures
    evidence = (f"at {users} users: {fixed} {f.rps:.1f} rps = {100 * served:.0f}% of the {demand:.0f} rps "
                f"they ask for ({speedup:.2f}x {broken}'s {b.rps:.1f}), {_latency_short(f)}, /healthz p95 "
                f"{_canary(f)}: other requests {'are answered' if fixes else 'still wait'}; "
                f"{f.memory_mb.peak_pss or 0:.0f} MiB PSS ({mem:.2f}x). For context, {reference} "
                f"{ref.rps:.1f} rps at {ref.memory_mb.peak_pss or 0:.0f} MiB" + flagged(f, b))
    if speedup < relief_min:
        return "fails", evidence
    return ("holds" if fixes and mem >= memory_min else "partly"), evidence


def threads_vs_processes(run: Run, threads: str, processes: str, flat_max: float,
                         scale_min: float) -> tuple[str, str]:
    def speedup(name: str) -> tuple[float, Result, Result]:
        one, many = find(run, name, 1, "cpu"), find(run, name, None, "cpu")
        if many.users == 1:
            raise NotRun(f"{name} has only a 1-user cpu result")
        return (many.rps / one.rps if one.rps else 0), one, subject(many)

    t, t1, tn = speedup(threads)
    p, p1, pn = speedup(processes)
    cores = run.machine.cpus
    evidence = (f"/cpu 1 -> {tn.users} users: {threads} {t1.rps:.1f} -> {tn.rps:.1f} rps "
                f"({t:.2f}x, process tree at {tn.cpu_pct.target or 0:.0f}% of a core); {processes} "
                f"{p1.rps:.1f} -> {pn.rps:.1f} rps ({p:.2f}x, {pn.cpu_pct.target or 0:.0f}% of a core) "
                f"on {cores} cores shared with Locust (CPU-bound by design: flags expected)")
    threads_flat, processes_scale = t <= flat_max, p >= scale_min
    return ("holds" if threads_flat and processes_scale else
            "partly" if threads_flat or processes_scale else "fails"), evidence


def goroutines(run: Run, target: str, users: int, driver_default_pool: str,
               efficiency_min: float) -> tuple[str, str]:
    r = subject(find(run, target, users))
    default_pool = manifest.evaluate(driver_default_pool.replace("cpus", str(run.machine.cpus)), {})
    evidence = (f"{target} at {users} users, 1 process, no worker/thread setting: {r.rps:.1f} rps = "
                f"{r.efficiency or 0:.2f} of its ceiling, {_latency(r)}" + flagged(r))
    if not (r.db_pool and default_pool and r.db_pool > default_pool):
        return ("holds" if (r.efficiency or 0) >= efficiency_min else "fails"), evidence
    cores = run.machine.cpus
    here = (f"{driver_default_pool} = {default_pool} on this {cores}-core machine; the default grows "
            "with the cores, so a bigger machine moves this limit, it does not remove it")
    try:  # measured with the driver's default pool (bench compare runs that cell for this claim)
        d = subject(find(run, target, users, pool_size=default_pool))
    except NotRun:
        capped = default_pool / (run.scenario.db_ms / 1000) if run.scenario.db_ms else None
        evidence += (f". But the pgx pool was raised to {r.db_pool}: its default ({here}) would cap it "
                     f"at {capped:.0f} rps at "
                     f"db_ms={run.scenario.db_ms} (computed: no pool_size={default_pool} cell in this run)")
        return ("partly" if (r.efficiency or 0) >= efficiency_min else "fails"), evidence
    evidence += (f". With pgx's default pool ({here}): "
                 f"{d.rps:.1f} rps = {d.rps / r.rps if r.rps else 0:.2f}x, {_latency_short(d)}: "
                 f"the goroutines need no setting, the connection pool does" + flagged(d))
    config_needed = d.rps < efficiency_min * r.rps
    if (r.efficiency or 0) >= efficiency_min:
        return ("partly" if config_needed else "holds"), evidence
    return "fails", evidence


def pubsub_blocks(run: Run, experiment_id: str, total_factor: float, canary_factor: float) -> tuple[str, str]:
    exp = get_experiment(run, experiment_id)
    m = exp.measured
    ratio = m["blocking_total_s"] / m["async_total_s"]
    canary = m["blocking_healthz_ms"] / max(m["async_healthz_ms"], 0.1)
    evidence = (f"{exp.target}: {exp.description}: blocking total {_s(m['blocking_total_s'])} vs "
                f"async {_s(m['async_total_s'])} ({ratio:.1f}x); /healthz meanwhile "
                f"{m['blocking_healthz_ms']:.0f} ms vs {m['async_healthz_ms']:.0f} ms")
    slower, stalled = ratio >= total_factor, canary >= canary_factor
    return ("holds" if slower and stalled else "partly" if slower or stalled else "fails"), evidence


def pubsub_polling(run: Run, experiment_id: str, start_within_s: float,
                   mean_wait_max_s: float) -> tuple[str, str]:
    """The seed's two figures for its fix: "All start within 100ms" (the last stream's start) and
    "Average wait time: <0.1 seconds" (the mean of the streams' waits)."""
    exp = get_experiment(run, experiment_id)
    m = exp.measured
    last, mean = m["polling_last_start_s"], m.get("polling_mean_wait_s")
    if mean is None:
        raise NotRun(f"experiment {experiment_id} has no mean wait (an older run: its last start only)")
    evidence = (f"{exp.target}: {exp.description}: the last of {m['listeners']} streams started after "
                f"{_s(last)} (claimed: all within {start_within_s:g} s), their mean wait {_s(mean)} "
                f"(claimed: under {mean_wait_max_s:g} s); /healthz meanwhile p50 "
                f"{m['polling_healthz_p50_ms']:.0f} ms, slowest {m['polling_healthz_ms']:.0f} ms. "
                "Each idle sync get_message() still blocks the loop for up to its 0.1 s timeout")
    parts = [last <= start_within_s, mean < mean_wait_max_s]
    return ("holds" if all(parts) else "partly" if any(parts) else "fails"), evidence


def truly_concurrent(run: Run, target: str, blocking: str, users: int, efficiency_min: float,
                     ratio_min: float) -> tuple[str, str]:
    """Async libraries throughout vs the same app with sync libraries in `async def`."""
    a, b = subject(find(run, target, users)), find(run, blocking, users)
    ratio = a.rps / b.rps if b.rps else float("inf")
    evidence = (f"at {users} users: {target} {a.rps:.1f} rps = {a.efficiency or 0:.2f} of its ceiling "
                f"({users} in flight / L1), {_latency(a)}; {blocking} {b.rps:.1f} rps, "
                f"{_latency(b)}: {ratio:.1f}x" + flagged(a, b))
    concurrent = (a.efficiency or 0) >= efficiency_min and not a.failures
    if concurrent and ratio >= ratio_min:
        return "holds", evidence
    return ("partly" if ratio >= ratio_min or concurrent else "fails"), evidence


def async_alternative(run: Run, target: str, sync: str, users: int, ratio_min: float,
                      efficiency_min: float) -> tuple[str, str]:
    """Seed 000's "Quart is an async Flask alternative": Flask's API on one event loop serves the load
    4 sync workers queue, in less memory."""
    a, s = subject(find(run, target, users)), find(run, sync, users)
    ratio = a.rps / s.rps if s.rps else float("inf")
    a_mb, s_mb = a.memory_mb.peak_pss or 0, s.memory_mb.peak_pss or 0
    evidence = (f"at {users} users: {target} ({a.processes} process) {a.rps:.1f} rps = "
                f"{a.efficiency or 0:.2f} of its ceiling, {_latency(a)}, {a_mb:.0f} MiB PSS; {sync} "
                f"({s.processes} processes) {s.rps:.1f} rps, {_latency(s)}, {s_mb:.0f} MiB PSS: "
                f"{ratio:.1f}x the rps" + flagged(a, s))
    serves = ratio >= ratio_min and (a.efficiency or 0) >= efficiency_min and not a.failures
    return ("holds" if serves and a_mb <= s_mb else "partly" if ratio >= ratio_min else "fails"), evidence


def no_added_concurrency(run: Run, target: str, sync: str, users: int, same_tolerance: float,
                         partly_max: float) -> tuple[str, str]:
    """Seed 000: Flask has "No built-in async support". Flask 2.0+ does run `async def` views
    (`target` is the app with them), each on an event loop made for that request, so a worker still
    serves one request at a time. The letter of the sentence fails where the views answer; its
    effect, no concurrency from them, is measured against the sync views."""
    a, s = subject(find(run, target, users)), find(run, sync, users)
    ratio = a.rps / s.rps if s.rps else 0
    runs = a.rps > 0 and a.failures <= 0.01 * (a.requests or 1)
    evidence = (f"at {users} users, both with {s.processes - 1} gunicorn sync workers: {target} "
                f"{a.rps:.1f} rps ({_latency_short(a)}, {a.cpu_ms_per_request or 0:.1f} ms CPU per "
                f"request, {a.failures} failures), {sync} {s.rps:.1f} rps ({_latency_short(s)}, "
                f"{s.cpu_ms_per_request or 0:.1f} ms CPU): {ratio:.2f}x" + flagged(a, s))
    if not runs:
        return "holds", evidence + ": Flask's async views did not serve"
    if ratio >= partly_max:
        return "fails", evidence + ": the async views added concurrency"
    same = 1 / same_tolerance <= ratio <= same_tolerance
    return "partly", evidence + (". Flask does support async def views, built in since 2.0 (they served "
                                 "without failures)" + ("; they add no concurrency: a worker still "
                                                        "serves one request at a time" if same else ""))


def most_efficient(run: Run, target: str, users: int) -> tuple[str, str]:
    """Memory and CPU per request of one target against every other framework target."""
    me = subject(find(run, target, users))
    others = [r for r in run.results if r.users == users and r.scenario == "recommendation"
              and r.target != target and r.db_ms is None and r.runtime == me.runtime
              and r.framework not in ("locust", me.framework) and r.rps > 0
              and r.params == _defaults(r.target)]
    if not others or me.memory_mb.peak_pss is None or me.cpu_ms_per_request is None:
        raise NotRun(f"needs {target} and other frameworks at {users} users, with memory and CPU")
    for r in others:
        _record(_ref(r, "baseline"))
    mem_best = min(others, key=lambda r: r.memory_mb.peak_pss or float("inf"))
    cpu_best = min(others, key=lambda r: r.cpu_ms_per_request or float("inf"))
    lighter = (me.memory_mb.peak_pss or 0) < (mem_best.memory_mb.peak_pss or 0)
    cheaper = me.cpu_ms_per_request < (cpu_best.cpu_ms_per_request or 0)
    evidence = (f"at {users} users: {target} {me.memory_mb.peak_pss:.0f} MiB PSS, "
                f"{me.cpu_ms_per_request:.2f} CPU ms per request, {me.rps:.0f} rps; the lightest other "
                f"target {mem_best.target} {mem_best.memory_mb.peak_pss or 0:.0f} MiB "
                f"({(mem_best.memory_mb.peak_pss or 0) / me.memory_mb.peak_pss:.2f}x), the cheapest in "
                f"CPU {cpu_best.target} {cpu_best.cpu_ms_per_request or 0:.2f} ms "
                f"({(cpu_best.cpu_ms_per_request or 0) / me.cpu_ms_per_request:.2f}x), of "
                f"{len(others)} targets of other frameworks" + flagged(me))
    return ("holds" if lighter and cheaper else "partly" if lighter or cheaper else "fails"), evidence


def _threads(r: Result) -> int | None:
    counts = [p.threads for p in r.per_process if p.threads is not None]
    return sum(counts) if counts else None


def _thread_levels(run: Run, target: str, levels: list[int], role: str) -> dict[int, Result]:
    """The target's rows with thread counts at each users level the run has."""
    rows = {}
    for users in levels:
        with contextlib.suppress(NotRun):
            r = find(run, target, users)
            if _threads(r) is not None and r.users == users:
                rows[users] = subject(r) if role == "subject" else r
    return rows


def no_extra_threads(run: Run, target: str, levels: list[int], others: list[str],
                     growth_max: float) -> tuple[str, str]:
    """Seed 001: "a single thread in a single process ... No extra processes, no extra threads".
    Its point is the async model's against "1 thread per request": the thread count does not grow
    with the requests in flight. Counted: the most OS threads the tree had at once, per users level;
    judged on the slope across the levels the run has (a fixed few are a library's helpers)."""
    rows = _thread_levels(run, target, levels, "subject")
    if len(rows) < 2:
        raise NotRun(f"needs thread counts of {target} at two or more of {levels} users (the run has "
                     f"{sorted(rows) or 'none'}; measured natively since issue 11)")
    low, top = min(rows), max(rows)
    slope = (_threads(rows[top]) - _threads(rows[low])) / (top - low)
    processes = {r.processes for r in rows.values()}
    evidence = (f"{target}: " + _thread_text(rows) + f": {slope:+.3f} threads per added user"
                + "".join(f"; {name}: {_thread_text(_thread_levels(run, name, levels, 'baseline'))}"
                          for name in others if _thread_levels(run, name, levels, "baseline"))
                + f". The fixed {_threads(rows[low])} are the loop's and its libraries' helpers "
                  "(the default executor, the driver's), not one per request")
    if slope > growth_max or processes != {1}:
        return "fails", evidence
    absent = [u for u in levels if u not in rows]
    if absent:
        return "partly", evidence + (f". Flat from {low} to {top} users; not measured at "
                                     f"{', '.join(map(str, absent))} (the seed's 100s of requests)")
    return "holds", evidence


def _thread_text(rows: dict[int, Result]) -> str:
    return ", ".join(f"{_threads(r)} threads in {r.processes} process{'es' if r.processes != 1 else ''} "
                     f"at {u} user{'s' if u != 1 else ''}" for u, r in sorted(rows.items()))


def _responsive(r: Result, responsive_ms: float) -> bool:
    """Other requests were answered meanwhile: a trusted /healthz p95 under the bar, most checks back."""
    p95 = r.canary_p95_trusted()
    return p95 is not None and p95 < responsive_ms and not canary_stalled(r)


def threadpool_concurrency(run: Run, target: str, io_users: int, responsive_ms: float,
                           limit_band: list[float], thread_counts: list[int], min_cores: int,
                           scale_min: float) -> tuple[str, str]:
    """Seed 004 on CPU-bound `def predict` in FastAPI's thread pool: "handles concurrency. Limited by
    thread count." Concurrency, not a speed-up: other requests are served while the CPU-bound ones
    run, and the threads cap the requests in service. The cap shows on I/O-bound requests; on
    CPU-bound ones it shows only where threads run in parallel, which needs cores to spare."""
    cpu = subject(find(run, target, None, "cpu"))
    io = subject(find(run, target, io_users))
    threads = io.capacity or io.params.get("threads") or 0
    l1 = l1_ms(run, target)
    cap = io.rps * l1 / 1000 / threads if threads else 0  # requests in service per thread
    concurrent = _responsive(cpu, responsive_ms) and not cpu.failures
    limited = threads < io_users and limit_band[0] <= cap <= limit_band[1]
    evidence = (f"{target} (def handlers, {threads} threads, 1 process): while {cpu.users} CPU-bound /cpu "
                f"requests ran, /healthz p95 {_canary(cpu)} ({'answered' if concurrent else 'not answered'}"
                f" within {responsive_ms:g} ms); at {io_users} I/O-bound users {io.rps:.1f} rps = "
                f"{cap:.2f} requests in service per thread (L1 {l1:.0f} ms): "
                f"{'the threads are the limit' if limited else 'not the thread count'}")
    if not (concurrent and limited):
        return "fails", evidence
    return _cpu_thread_limit(run, target, thread_counts, min_cores, scale_min, evidence)


def _cpu_thread_limit(run: Run, target: str, thread_counts: list[int], min_cores: int, scale_min: float,
                      evidence: str) -> tuple[str, str]:
    """The thread count as the limit of CPU-bound work: rps grows from 1 thread to 2 (threads in
    parallel), which only a machine with cores beside the load generator's can show."""
    cores = run.machine.cpus
    if cores < min_cores:
        return "not_testable", (f"not testable on {cores} cores: for CPU-bound work a thread count limits "
                                "throughput only where threads run in parallel (GIL-releasing inference), "
                                f"and {cores} cores shared with the load generator cannot tell 2 threads "
                                f"from {max(thread_counts)}. Judged here: {evidence}. No CPU speed-up is "
                                "asked of it: the seed promises concurrency, not parallelism")
    try:
        rows = {n: subject(find(run, target, None, "cpu", threads=n)) for n in thread_counts}
    except NotRun:
        counts = ",".join(map(str, thread_counts))
        raise NotRun(f"needs {target} in the cpu scenario with threads={counts} (no bench compare cell "
                     f"measures it yet; bench compare --targets {target} --scenario cpu --set "
                     f"threads={counts} would). {evidence}") from None
    fewest, next_ = sorted(rows)[:2]
    grew = rows[next_].rps / rows[fewest].rps if rows[fewest].rps else 0
    evidence += ("; cpu scenario by thread count: " + ", ".join(
        f"threads={n} {r.rps:.1f} rps" for n, r in rows.items())
        + f" ({grew:.2f}x from {fewest} thread{'s' if fewest > 1 else ''} to {next_})")
    return ("holds" if grew >= scale_min else "partly"), evidence


def process_pool_cpu(run: Run, target: str, threads: str, processes: str, responsive_ms: float,
                     scale_min: float) -> tuple[str, str]:
    """Seed 002's "offload heavy CPU to a process pool": /cpu scales from 1 user to one per core as
    worker processes do, and the event loop answers /healthz meanwhile, which threads sharing one
    GIL cannot promise."""
    def cpu_rows(name: str) -> tuple[Result, Result, float]:
        one, many = find(run, name, 1, "cpu"), find(run, name, None, "cpu")
        if many.users == 1:
            raise NotRun(f"{name} has only a 1-user cpu result")
        return one, many, (many.rps / one.rps if one.rps else 0)

    def canary(r: Result) -> str:
        return f"/healthz p95 {_canary(r)}"

    p1, pn, pool = cpu_rows(target)
    subject(pn)
    evidence = (f"/cpu 1 -> {pn.users} users on {run.machine.cpus} cores: {target} "
                f"({pn.params.get('cpu_processes')} pool processes) {p1.rps:.1f} -> {pn.rps:.1f} rps "
                f"({pool:.2f}x), {canary(pn)}")
    for name in (processes, threads):
        with contextlib.suppress(NotRun):
            _, other_n, other = cpu_rows(name)
            evidence += f"; {name} {other:.2f}x, {canary(other_n)}"
    p95 = pn.canary_p95_trusted()
    responsive = p95 is not None and p95 < responsive_ms and not canary_stalled(pn)
    scales = pool >= scale_min
    evidence += f" (responsive: /healthz p95 under {responsive_ms:.0f} ms; scaling: >= {scale_min:g}x)"
    return ("holds" if scales and responsive else "partly" if scales or responsive else "fails"), evidence


def _memory_parts(r: Result) -> str:
    """The whole system's peak PSS, each part separately (web, workers, Redis) where measured."""
    parts = r.memory_parts()
    return " + ".join(f"{name} {mb:.0f}" for name, mb in parts.items()) + " MiB" if parts else "no memory"


def _system_mb(r: Result) -> float:
    return sum(r.memory_parts().values())


def _sync_answers(run: Run, target: str, users: int) -> Result:
    """A target answering the job's request synchronously: its jobs row (--jobs-endpoint sync), else
    its recommendation row, the same request under the same workload."""
    try:
        return find(run, target, users, "jobs")
    except NotRun:
        return find(run, target, users)


def jobs_fix(run: Run, target: str, users: int, reference: str, before: str, responsive_ms: float,
             serve_share: float) -> tuple[str, str]:
    """Seed 000's job fixes, against its problem, "Other requests wait during recommendation
    generation". A fix answers other requests meanwhile (/healthz) AND still delivers the
    recommendations: the jobs complete at the rate `users` ask for (users / the time to result at
    1 user), so the time to result stays near one job's own. In a closed loop the two are one figure
    (W / L1 = demand / rps): a queue that keeps the web responsive while jobs wait in it has moved
    the wait, not removed it. The job's own ceiling (workers / L1) is context: it is what the fix
    chose, so judging against it would be circular."""
    jobs = subject(find(run, target, users, "jobs"))
    l1 = l1_ms(run, target, "jobs")
    demand = users / (l1 / 1000)
    served = jobs.rps / demand
    responsive = _responsive(jobs, responsive_ms)
    delivers = served >= serve_share and not jobs.failures
    evidence = (_jobs_evidence(jobs, l1, demand, target, users)
                + _fixes_beside(run, users, jobs, reference, before))
    evidence += (f" (responsive: /healthz p95 under {responsive_ms:g} ms; delivers: >= "
                 f"{100 * serve_share:.0f}% of the jobs asked for)") + flagged(jobs)
    return ("holds" if delivers and responsive else "partly" if delivers or responsive else "fails"), evidence


def _jobs_evidence(jobs: Result, l1: float, demand: float, target: str, users: int) -> str:
    per_worker = (f", {jobs.rps / jobs.params['celery_workers']:.1f} jobs/s per worker process"
                  if "celery_workers" in jobs.params else "")
    per_mb = jobs.rps / _system_mb(jobs) if _system_mb(jobs) else 0
    w = jobs.w_ms()
    return (f"{target} at {users} users: {jobs.rps:.1f} jobs completed/s = {100 * jobs.rps / demand:.0f}% of "
            f"the {demand:.0f}/s they ask for (time to result at 1 user {l1:.0f} ms; its own ceiling "
            f"{jobs.ceiling_rps or 0:.1f}/s){per_worker}, {per_mb * 1024:.0f} jobs/s per GiB of "
            f"{_memory_parts(jobs)}; time to result {_latency(jobs)}"
            + (f" = {w / l1:.1f}x one job's" if w else "") + f"; /healthz p95 {_canary(jobs)}; "
            f"{jobs.failures} failures")


def _fixes_beside(run: Run, users: int, jobs: Result, reference: str, before: str) -> str:
    """The async fix and the app before the fix, each answering the same request synchronously."""
    text = ""
    for name, what in ((reference, "the async fix"), (before, "before the fix")):
        with contextlib.suppress(NotRun):
            other = _sync_answers(run, name, users)
            text += (f". {what}, {name} answering synchronously: {other.rps:.1f}/s"
                     f" (this fix completes {jobs.rps / other.rps if other.rps else 0:.2f}x that), "
                     f"{_latency_short(other)}, /healthz p95 {_canary(other)}, {_memory_parts(other)}")
    return text


def queue_overhead(run: Run, target: str, llm_ms: int, share_max: float) -> tuple[str, str]:
    """Seed 004's "best for models taking >1 second": what the queue itself adds to a job (hand-over,
    worker pick-up, polling every 100 ms) is a small share of a 1 s job, a larger one of a short one."""
    db_ms, run_llm = run.scenario.db_ms, run.scenario.llm_ms

    def share(workload: tuple[int, int] | None, work_ms: float) -> tuple[float, float]:
        r = subject(find(run, target, 1, "jobs", workload))
        if not r.latency_ms.p50:
            raise NotRun(f"{target} answered no job at 1 user")
        return (r.latency_ms.p50 - work_ms) / r.latency_ms.p50, r.latency_ms.p50

    slow, slow_p50 = share((db_ms, llm_ms), db_ms + llm_ms)
    evidence = (f"{target}, 1 user: time to result p50 {slow_p50:.0f} ms for {db_ms + llm_ms} ms of work: "
                f"{slow * 100:.0f} % is the queue's")
    short = None
    with contextlib.suppress(NotRun):
        short, short_p50 = share(None, db_ms + run_llm)
        evidence += (f"; for the {db_ms + run_llm} ms job of the run's workload {short_p50:.0f} ms, "
                     f"{short * 100:.0f} % the queue's")
    small = slow <= share_max
    evidence += f" (small: <= {share_max * 100:.0f} %)"
    if not small:
        return "fails", evidence
    # ">1 second" draws a line: below it the queue's cost is no longer small
    return ("holds" if short is not None and short > share_max else "partly"), evidence


def workers_match_cores(run: Run, target: str, plateau_share: float, exhaustion_share: float,
                        param: str = "workers") -> tuple[str, str]:
    """Seed 004: "Too many workers | Memory exhaustion | Workers ≤ CPU cores": past the cores, more
    workers buy no throughput (CPU-bound), and what too many of them cost is the machine's memory
    running out, not merely memory that grows: judged at the sweep's most workers, with how many
    the machine would hold at the measured cost per worker."""
    cpu = [r for r in run.results if r.target == target and r.scenario == "cpu" and param in r.params]
    top = max((r.users for r in cpu), default=0)  # the sweep's level (the default cell stops lower)
    rows = sorted((r for r in cpu if r.users == top and top > 1), key=lambda r: r.params[param])
    counts = sorted({r.params[param] for r in rows})
    cores = run.machine.cpus
    if len(counts) < 3 or max(counts) <= cores:
        raise NotRun(f"needs a cpu-scenario sweep of {target} {param} past the {cores} cores "
                     f"(make compare-full runs {param}=1,2,4,8)")
    subject(*rows)
    best = max(rows, key=lambda r: r.rps)
    at_cores = min((r for r in rows if r.params[param] >= cores), key=lambda r: r.params[param])
    most = rows[-1]
    parts = [f"{param}={r.params[param]}: {r.rps:.1f} rps, {r.memory_mb.peak_pss or 0:.0f} MiB PSS"
             for r in rows]
    evidence = (f"{target}, CPU-bound /cpu at {most.users} users on {cores} cores (Locust shares "
                f"them): " + "; ".join(parts) + f". Past {at_cores.params[param]} workers: "
                f"{most.rps / at_cores.rps if at_cores.rps else 0:.2f}x the rps for "
                f"{(most.memory_mb.peak_pss or 0) / (at_cores.memory_mb.peak_pss or 1):.2f}x the memory"
                + _exhaustion(run, at_cores, most, param))
    plateau = at_cores.rps >= plateau_share * best.rps and most.rps * plateau_share <= at_cores.rps
    exhausted = (most.memory_mb.peak_pss or 0) >= exhaustion_share * _machine_mib(run)
    return ("holds" if plateau and exhausted else "partly" if plateau else "fails"), evidence


def _machine_mib(run: Run) -> float:
    return run.machine.mem_gb * 1e9 / 2**20


def _exhaustion(run: Run, at_cores: Result, most: Result, param: str) -> str:
    """The memory of the most workers against the machine's, and the count that would exhaust it."""
    total, high = _machine_mib(run), most.memory_mb.peak_pss or 0
    extra = most.params[param] - at_cores.params[param]
    per = (high - (at_cores.memory_mb.peak_pss or 0)) / extra if extra else 0
    text = (f"; {most.params[param]} workers use {100 * high / total:.1f}% of the machine's "
            f"{run.machine.mem_gb:g} GB")
    if per > 0:
        fill = most.params[param] + (total - high) / per
        text += f": at {per:.0f} MiB per added worker, ~{fill:.0f} would fill it"
    return text


# --- seeds 002 and 004: event loop, threadpool, GIL (bench/experiments.py's bursts) -----------

def _ms(ms: float | None) -> str:
    if ms is None:
        return "no answer"
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def _form(m: dict, form: str) -> str:
    """One burst form of a canary experiment: its wall time and how /healthz fared meanwhile."""
    return (f"{form} {_s(m[f'{form}_wall_s'])} wall, /healthz meanwhile p50 "
            f"{_ms(m[f'{form}_canary_p50_ms'])}, max {_ms(m[f'{form}_canary_max_ms'])} "
            f"({m[f'{form}_canary_n']} checks)")


def _forms(exp: Experiment, forms: list[str]) -> str:
    m = exp.measured
    return (f"{exp.target}: {exp.description}: " + "; ".join(_form(m, f) for f in forms)
            + f" (/healthz alone: p50 {_ms(m['idle_canary_p50_ms'])})")


def await_max_not_sum(run: Run, experiment_id: str, holds_share: float,
                      partly_share: float) -> tuple[str, str]:
    exp = get_experiment(run, experiment_id)
    m = exp.measured
    wall, longest, total = m["wall_s"], m["max_s"], m["sum_s"]
    evidence = (f"{exp.target}: {exp.description}: {_s(wall)} per request (median of "
                f"{len(m['walls_s'])}; server-side {_s(m['server_s'])}) vs the longest wait "
                f"{_s(longest)} and their sum {_s(total)}: {wall / longest:.2f}x the longest")
    return ("holds" if wall <= longest + holds_share * (total - longest) else
            "partly" if wall < partly_share * total else "fails"), evidence


def loop_kept_free(run: Run, experiment_id: str, offloaded: list[str], blocking: str, freed_factor: float,
                   partly_factor: float, serial_factor: float | None = None,
                   min_checks: int | None = None) -> tuple[str, str]:
    """The offloaded forms keep /healthz fast where the blocking form does not (canary p50s);
    `serial`: the blocking form must also serve the burst one request at a time."""
    exp = get_experiment(run, experiment_id)
    m = exp.measured
    freed = m[f"{blocking}_canary_p50_ms"] / max(max(m[f"{f}_canary_p50_ms"] for f in offloaded), 0.1)
    evidence = (_forms(exp, [*offloaded, blocking])
                + f". /healthz p50 while {blocking} runs: {freed:.1f}x the offloaded forms'")
    _enough_checks(m, [*offloaded, blocking], min_checks, evidence)
    loop_freed = freed >= freed_factor
    if serial_factor is None:
        return ("holds" if loop_freed else "partly" if freed >= partly_factor else "fails"), evidence
    slower = m[f"{blocking}_wall_s"] / max(m[f"{f}_wall_s"] for f in offloaded)
    evidence += f"; the {blocking} burst took {slower:.1f}x as long"
    serialised = slower >= serial_factor
    return ("holds" if loop_freed and serialised else "partly" if loop_freed or serialised
            else "fails"), evidence


def cpu_holds_loop(run: Run, experiment_id: str, inline: str, offloaded: str, held_min: float,
                   spared_max: float) -> tuple[str, str]:
    """CPU work inside `async def` holds the loop for all of it: /healthz waits ~the whole work."""
    exp = get_experiment(run, experiment_id)
    m = exp.measured
    work_ms = 1000 * m["cpu_s"] * m["requests"]
    held = m[f"{inline}_canary_max_ms"] / work_ms
    spared = m[f"{offloaded}_canary_max_ms"] / m[f"{inline}_canary_max_ms"]
    evidence = (_forms(exp, [offloaded, inline]) + f". While {inline} ran, /healthz waited up to "
                f"{held:.2f}x its {work_ms:.0f} ms of CPU work; offloaded, {spared:.2f}x of that")
    return ("holds" if held >= held_min and spared <= spared_max else "partly" if held >= held_min
            else "fails"), evidence


def loop_blocked(run: Run, experiment_id: str, target: str, work_share: float, idle_factor: float,
                 partly_idle_factor: float) -> tuple[str, str]:
    """A blocking call on a single event loop blocks every request: during a burst of CPU-bound
    requests each /healthz check waits for the work in progress (p50 >= half of one request's CPU
    time, >= 10x idle), where an offloaded call would leave it near its idle time."""
    m = get_experiment(run, experiment_id, target).measured
    one_ms, p50, idle = 1000 * m["cpu_s"], m["cpu_canary_p50_ms"], max(m["idle_canary_p50_ms"], 0.1)
    evidence = (f"{target}: {m['requests']} concurrent /cpu requests of {one_ms:.0f} ms of JavaScript "
                f"each (burst {_s(m['cpu_wall_s'])}): /healthz meanwhile p50 {_ms(p50)} "
                f"({p50 / one_ms:.2f}x one request's work, {p50 / idle:.0f}x its {_ms(idle)} idle), "
                f"max {_ms(m['cpu_canary_max_ms'])}, n = {m['cpu_canary_n']}")
    waits = p50 >= work_share * one_ms
    return ("holds" if waits and p50 >= idle_factor * idle else "partly" if p50 >= partly_idle_factor * idle
            else "fails"), evidence


def thread_per_request(run: Run, target: str, users: int, holds_band: list[float],
                       partly_band: list[float]) -> tuple[str, str]:
    """Each request holds one of workers x threads from start to end: at `users` well above that,
    throughput is capacity / L1 (every thread busy, none serving two) and the rest wait."""
    r = subject(find(run, target, users))
    l1 = l1_ms(run, target)
    per_thread = r.rps * l1 / 1000 / r.capacity  # requests in service per thread
    evidence = (f"{target} at {users} users ({r.processes} processes, {r.capacity} threads in all): "
                f"{r.rps:.1f} rps = {per_thread:.2f} requests in service per thread (L1 {l1:.0f} ms), "
                f"{_latency(r)}: {users - r.capacity} users wait for a thread, {r.failures} failures"
                + flagged(r))
    if holds_band[0] <= per_thread <= holds_band[1] and not r.failures:
        return "holds", evidence
    return ("partly" if partly_band[0] <= per_thread <= partly_band[1] else "fails"), evidence


def _enough_checks(m: dict, forms: list[str], min_checks: int | None, evidence: str) -> None:
    """A /healthz p50 of a few checks decides nothing: each form needs `min_checks` of them."""
    few = {f: m[f"{f}_canary_n"] for f in forms if min_checks and m[f"{f}_canary_n"] < min_checks}
    if few:
        raise NotRun(f"needs >= {min_checks} /healthz checks per form (this burst took "
                     + ", ".join(f"{n} with {f}" for f, n in few.items())
                     + "; a longer burst of the same requests would take more). Measured: " + evidence)


def light_cpu_def(run: Run, experiment_id: str, form: str, reference: str,
                  cost_max: float, min_checks: int | None = None) -> tuple[str, str]:
    """Light CPU work in `def`: the burst costs no more than running it inline (throughput), and
    other requests wait less than one such request takes (/healthz p50 <= its CPU time)."""
    exp = get_experiment(run, experiment_id)
    m = exp.measured
    cpu_ms, n = 1000 * m["cpu_s"], m["requests"]
    cost = m[f"{form}_wall_s"] / m[f"{reference}_wall_s"]
    fast = m[f"{form}_canary_p50_ms"] <= cpu_ms
    evidence = (_forms(exp, [form, reference])
                + f". {n} x {cpu_ms:.0f} ms of CPU = {n * cpu_ms / 1000:.2f} s on one core (one GIL): "
                f"{form} took {cost:.2f}x {reference}'s wall; /healthz p50 "
                f"{'within' if fast else 'above'} one request's {cpu_ms:.0f} ms of CPU")
    _enough_checks(m, [form, reference], min_checks, evidence)
    cheap = cost <= cost_max
    return ("holds" if cheap and fast else "partly" if cheap or fast else "fails"), evidence


def heavy_cpu_workers(run: Run, experiment_id: str, workers: str, control: str, single: list[str],
                      scale_min: float, flat_max: float, min_cores: int, per_core: int,
                      min_repeats: int) -> tuple[str, str]:
    """Heavy CPU requests run in parallel on worker processes. Each speed-up (all at once over one
    after another) is read against the control's in the same run: one event loop, which cannot run
    two at once, so whatever it "gains" is the machine and the client, not parallelism."""
    def speedup(target: str, role: str) -> tuple[float, dict, str]:
        m = get_experiment(run, experiment_id, target, role).measured
        return m["cpu_speedup"], m, (f"{target} {m['cpu_speedup']:.2f}x ({m['concurrent']} requests: "
                                     f"{_s(m['cpu_serial_s'])} one after another, {_s(m['cpu_concurrent_s'])}"
                                     " at once)")
    w, wm, wtext = speedup(workers, "subject")
    c, _, ctext = speedup(control, "baseline")
    others = [speedup(t, "baseline") for t in single]
    rel = w / c if c else 0
    evidence = (f"/cpu, {wm['cpu_one_s'] * 1000:.0f} ms of pure Python per request on {wm['cores']} "
                f"cores; all at once over one after another: {wtext}; "
                + "; ".join(text for _, _, text in others) + f"; the one-loop control {ctext}: the "
                f"workers' speed-up is {rel:.2f}x the control's. Workers here are gunicorn sync "
                "processes (flask-sync): the seed's uvicorn --workers is not measured")
    if wm["cpu_one_s"] < 0.05:
        evidence += f". Note: {wm['cpu_one_s'] * 1000:.0f} ms is below the seed's 50 ms for heavy"
    missing = _heavy_cpu_missing(wm, per_core, min_repeats)
    if wm["cores"] < min_cores:
        return "not_testable", (f"not testable on {wm['cores']} cores: the load generator shares them "
                                f"with the workers, and the control, which cannot run two requests at "
                                f"once, moved {c:.2f}x. {evidence}. A fair test needs {min_cores}+ cores "
                                f"with the client on others" + (f", and {missing}" if missing else ""))
    if missing:
        raise NotRun(f"needs {missing}. {evidence}")
    scales = rel >= scale_min
    flat = all(s / c <= flat_max for s, _, _ in others) if c else False
    return ("holds" if scales and flat else "partly" if scales else "fails"), evidence


def _heavy_cpu_missing(m: dict, per_core: int, min_repeats: int) -> str:
    """What the burst lacks for a fair reading: enough requests per core, enough repeats."""
    gaps = []
    if m["concurrent"] < per_core * m["cores"]:
        gaps.append(f">= {per_core} requests per core (it sent {m['concurrent']} on {m['cores']} cores)")
    repeats = m.get("repeats")
    if repeats is None or repeats < min_repeats:
        gaps.append(f">= {min_repeats} repeats of the burst (it records "
                    f"{'none' if repeats is None else repeats})")
    return " and ".join(gaps)


def gil_bound(run: Run, experiment_id: str, flat_max: float, numpy_min: float) -> tuple[str, str]:
    """CPU work on threads of one process: pure Python stays at ~1x (the GIL); numpy, which
    releases the GIL in its compiled loops, scales with the cores."""
    exp = get_experiment(run, experiment_id)
    m = exp.measured
    py, np_ = m["python_speedup"], m["numpy_speedup"]
    evidence = (f"{exp.target}: {exp.description} on {m['cores']} cores: pure Python "
                f"{m['python_one_s'] * 1000:.0f} ms each, {_s(m['python_serial_s'])} -> "
                f"{_s(m['python_concurrent_s'])} ({py:.2f}x); numpy {m['numpy_one_s'] * 1000:.0f} ms "
                f"each, {_s(m['numpy_serial_s'])} -> {_s(m['numpy_concurrent_s'])} ({np_:.2f}x)")
    if py > flat_max:
        return "fails", evidence + ": pure Python ran in parallel on threads"
    if np_ >= numpy_min:
        return "partly", evidence + (": GIL-bound for pure-Python math, but not for numpy, which "
                                     "releases the GIL: threads do run it in parallel")
    return "holds", evidence + ": neither ran in parallel on threads"


def single_request_hides(run: Run, target: str, reference: str, users: int, alike_max: float,
                         apart_min: float, partly_apart: float) -> tuple[str, str]:
    """Two targets alike at 1 user (L1) but far apart under load."""
    l1_t, l1_r = l1_ms(run, target), l1_ms(run, reference)
    bad, good = subject(find(run, target, users)), find(run, reference, users)
    alike = max(l1_t, l1_r) / min(l1_t, l1_r)
    apart = good.rps / bad.rps if bad.rps else float("inf")
    evidence = (f"1 user (L1, p50): {target} {l1_t:.0f} ms vs {reference} {l1_r:.0f} ms "
                f"({alike:.2f}x apart); {users} users: {target} {bad.rps:.1f} rps vs {reference} "
                f"{good.rps:.1f} rps ({apart:.0f}x)" + flagged(bad, good))
    if apart < partly_apart:
        return "fails", evidence
    return ("holds" if alike <= alike_max and apart >= apart_min else "partly"), evidence



def _combine(verdicts: list[str]) -> str:
    """All parts hold -> holds; more parts fail than hold -> fails; else partly."""
    if all(v == "holds" for v in verdicts):
        return "holds"
    return "fails" if verdicts.count("fails") > verdicts.count("holds") else "partly"


def _waits(waits: list[float]) -> str:
    return ", ".join(f"{w:.2f}" for w in waits) + " s"


def pubsub_queue_wait(run: Run, experiment_id: str, claimed_mean_wait_s: float, tolerance: float,
                      zero_wait_s: float, form: str = "blocking") -> tuple[str, str]:
    """N streams opened at once on a form that serves one at a time: stream k waits k x hold, so
    the mean wait is (N - 1) / 2 x hold. The seed states the mean (15 s for 10 streams) but not
    the stream length; 15 s is that queue with streams of 15 / 4.5 = 3.33 s. The rule checks the
    queue at the measured hold and quotes the mean it implies at the seed's stream length."""
    exp = get_experiment(run, experiment_id)
    m = exp.measured
    n, hold = m["listeners"], m["hold_s"]
    waits, mean = m.get(f"{form}_waits_s"), m[f"{form}_mean_wait_s"]
    if not waits or mean is None:
        raise NotRun(f"experiment {experiment_id} has no per-stream waits for {form}")
    queue = (n - 1) / 2 * hold  # the mean wait of a queue served one stream at a time
    seed_hold = claimed_mean_wait_s / ((n - 1) / 2)
    at_seed = mean * seed_hold / hold
    first = min(waits)
    evidence = (f"{exp.target}: {n} streams of {hold:.2f} s opened at once on {form}: waits "
                f"{_waits(sorted(waits))} (first {first:.2f} s), mean {mean:.2f} s = "
                f"{mean / hold:.2f} x the stream length (a one-at-a-time queue: {(n - 1) / 2:g} x); "
                f"total {_s(m[f'{form}_total_s'])}, /healthz slowest {_ms(m.get(f'{form}_healthz_ms'))}")
    if abs(hold - seed_hold) / seed_hold < 0.05:
        evidence += (f". Streams as long as the seed's implied {seed_hold:.2f} s: mean {mean:.1f} s "
                     f"vs {claimed_mean_wait_s:g} s claimed")
    else:
        evidence += (f". The seed does not state its stream length; its {claimed_mean_wait_s:g} s is this "
                     f"queue with {seed_hold:.2f} s streams, where these waits give {at_seed:.1f} s")
    async_mean = m.get("async_mean_wait_s")
    if async_mean is not None and form != "async":
        evidence += f"; redis.asyncio beside it: mean wait {async_mean:.2f} s"
    verdict = _within(mean, queue, tolerance)
    if first > zero_wait_s:  # "Stream 1: Starts immediately"
        verdict = "partly" if verdict == "holds" else verdict
    return verdict, evidence


def pubsub_timeline(run: Run, experiment_id: str, form: str, claimed_total_s: float,
                    claimed_waits_s: list[float], tolerance: float, zero_wait_s: float,
                    reference: str | None = None) -> tuple[str, str]:
    """The seed's timeline (requests of 30, 10 and 5 s, opened one after another), run at `scale`:
    the total and each user's wait, scaled back up, against the seed's (within `tolerance`). A
    claimed wait of 0 is not scaled: it holds when the stream started within `zero_wait_s`."""
    exp = get_experiment(run, experiment_id)
    m = exp.measured
    scale, waits, total = m["scale"], m.get(f"{form}_waits_s"), m[f"{form}_total_s"]
    if not waits or total is None:
        raise NotRun(f"experiment {experiment_id} has no {form} timeline")
    parts = [_within(total / scale, claimed_total_s, tolerance)]
    for got, claimed in zip(waits, claimed_waits_s, strict=True):
        parts.append(_within(got / scale, claimed, tolerance) if claimed else
                     "holds" if got <= zero_wait_s else "partly" if got <= 2 * zero_wait_s else "fails")
    holds = ", ".join(f"{h:g}" for h in m["holds_s"])
    # A claimed 0 is compared unscaled (a wait that does not grow with the streams' length).
    at_scale = ", ".join(f"{w / scale:.1f} s" if c else f"{w:.2f} s (unscaled)"
                         for w, c in zip(waits, claimed_waits_s, strict=True))
    evidence = (f"{exp.target}: {form}, requests of {holds} s (the seed's x {scale:g}) opened "
                f"{m.get('stagger_s', 0):g} s apart: total {_s(total)} = {total / scale:.1f} s at the "
                f"seed's scale vs {claimed_total_s:g} s claimed; user waits {_waits(waits)}, i.e. "
                f"{at_scale} vs " + ", ".join(f"{w:g}" for w in claimed_waits_s) + " s claimed"
                + (f" (a claimed 0 holds within {zero_wait_s:g} s)" if 0 in claimed_waits_s else "")
                + f"; /healthz slowest {_ms(m.get(f'{form}_healthz_ms'))}")
    if reference and m.get(f"{reference}_total_s") is not None:
        evidence += (f". {reference} beside it: total {_s(m[f'{reference}_total_s'])}, waits "
                     f"{_waits(m[f'{reference}_waits_s'])}, /healthz slowest "
                     f"{_ms(m.get(f'{reference}_healthz_ms'))}")
    return _combine(parts), evidence


def _poll_point(m: dict, timeout_s: float) -> tuple[float, float | None, int]:
    key = f"t{timeout_s:g}"
    if m.get(f"{key}_healthz_ms") is None:
        raise NotRun(f"get_message(timeout={timeout_s:g}) was not in the sweep "
                     f"({', '.join(f'{t:g}' for t in m.get('poll_timeouts_s', []))} s)")
    return m[f"{key}_healthz_ms"], m.get(f"{key}_healthz_p50_ms"), m.get(f"{key}_healthz_n") or 0


def _sweep(m: dict) -> str:
    points = []
    for t in m.get("poll_timeouts_s", []):
        slowest, p50, n = _poll_point(m, t)
        points.append(f"timeout={t:g}: slowest {_ms(slowest)} (p50 {_ms(p50)}, n={n})")
    return "; ".join(points)


def pubsub_poll_blocks(run: Run, experiment_id: str, timeout_s: float, claimed_block_s: float,
                       tolerance: float) -> tuple[str, str]:
    """One stream on the polling form with get_message(timeout=T): the slowest /healthz meanwhile
    is how long one call held the event loop."""
    exp = get_experiment(run, experiment_id)
    slowest, _, _ = _poll_point(exp.measured, timeout_s)
    evidence = (f"{exp.target}: 1 stream, sync get_message(timeout=T) + asyncio.sleep(0.01), /healthz "
                f"timed meanwhile: {_sweep(exp.measured)}. At timeout={timeout_s:g} the loop was held "
                f"{slowest / 1000:.2f} s vs {claimed_block_s:g} s claimed")
    return _within(slowest / 1000, claimed_block_s, tolerance), evidence


def pubsub_short_timeout(run: Run, experiment_id: str, timeout_s: float, claimed_max_ms: float,
                         many_experiment_id: str, tolerance: float) -> tuple[str, str]:
    """"timeout=0.1  # Max 100ms": true of one call (1 stream), but every idle stream's call holds
    the loop in turn, so with the seed's 10 streams a request can wait for all of them."""
    exp = get_experiment(run, experiment_id)
    one, p50, _ = _poll_point(exp.measured, timeout_s)
    many = get_experiment(run, many_experiment_id)
    mm = many.measured
    n, many_ms = mm["listeners"], mm["polling_healthz_ms"]
    evidence = (f"{exp.target}: with 1 stream on get_message(timeout={timeout_s:g}) /healthz waited at "
                f"most {_ms(one)} (p50 {_ms(p50)}) vs {claimed_max_ms:g} ms claimed; with the seed's "
                f"{n} streams ({many_experiment_id}) at most {_ms(many_ms)} (p50 "
                f"{_ms(mm.get('polling_healthz_p50_ms'))}): each idle stream's call holds the loop "
                f"in turn, up to {n} x {timeout_s:g} s = {n * timeout_s:g} s a round")
    one_ok = one <= tolerance * claimed_max_ms
    many_ok = many_ms is not None and many_ms <= tolerance * claimed_max_ms
    return ("holds" if one_ok and many_ok else "partly" if one_ok else "fails"), evidence


def pubsub_low_cpu(run: Run, experiment_id: str, form: str, reference: str, max_cpu_pct: float,
                   slow_ms: float, slow_factor: float) -> tuple[str, str]:
    """The seed's symptom of blocking, "low CPU usage but requests are slow": the target's CPU
    while the blocking streams held its loop, against how long /healthz and the streams waited."""
    exp = get_experiment(run, experiment_id)
    m = exp.measured
    cpu = m.get(f"{form}_cpu_pct")
    if cpu is None:
        raise NotRun(f"experiment {experiment_id} did not read the target's CPU (no PID: pass pid= "
                     "in the experiment context, or run the target as a local process)")
    slow, ref = m.get(f"{form}_healthz_ms"), m.get(f"{reference}_healthz_ms")
    wait, ref_cpu = m[f"{form}_mean_wait_s"], m.get(f"{reference}_cpu_pct") or 0
    evidence = (f"{exp.target}: {m['listeners']} streams on {form}: the target used {cpu:.1f}% of one "
                f"core while /healthz waited up to {_ms(slow)} and the streams {wait:.2f} s on average "
                f"before starting; {reference} with the same streams: {ref_cpu:.1f}% of a core, "
                f"/healthz slowest {_ms(ref)}")
    low = cpu <= max_cpu_pct
    is_slow = slow is not None and slow >= slow_ms and (ref is None or slow >= slow_factor * max(ref, 1))
    return ("holds" if low and is_slow else "partly" if low or is_slow else "fails"), evidence


def pubsub_many_streams(run: Run, experiment_id: str, form: str, reference: str, claimed_streams: int,
                        start_within_s: float, within_ms: float, reference_factor: float) -> tuple[str, str]:
    """N streams at once: served when every stream started within `start_within_s`, every stop
    word arrived within `within_ms` and /healthz answered within `within_ms` (each bar at least
    `reference_factor` x what the reference form reached on the same machine, which is what the
    box itself allows)."""
    exp = get_experiment(run, experiment_id)
    m = exp.measured
    n = m["listeners"]

    def figures(f: str) -> str:
        started = m[f"{f}_last_start_s"]
        return (f"{f}: {m[f'{f}_started']}/{n} started"
                + (f" (all within {_s(started)})" if started is not None else "")
                + f", {m[f'{f}_ended']}/{n} got their stop word (slowest after "
                + f"{_ms(m.get(f'{f}_delivery_ms'))}, p50 {_ms(m.get(f'{f}_delivery_p50_ms'))}), "
                + f"/healthz slowest {_ms(m.get(f'{f}_healthz_ms'))}"
                + (" (still waiting at the end)" if m.get(f"{f}_healthz_censored") else "")
                + (f", {m[f'{f}_timed_out']} ended by the route's timeout before their stop word"
                   if m.get(f"{f}_timed_out") else "")
                + (f", {m[f'{f}_cpu_pct']:.0f}% of a core, peak {m[f'{f}_peak_pss_mb']:.0f} MiB PSS"
                   if m.get(f"{f}_cpu_pct") is not None else ""))

    def bar(key: str, floor: float) -> float:
        ref = m.get(f"{reference}_{key}")
        return max(floor, reference_factor * ref) if ref is not None else floor

    start, delivery, healthz = (m[f"{form}_last_start_s"], m.get(f"{form}_delivery_ms"),
                                m.get(f"{form}_healthz_ms"))
    served = (m[f"{form}_ended"] == n and start is not None and start <= bar("last_start_s", start_within_s)
              and delivery is not None and delivery <= bar("delivery_ms", within_ms)
              and healthz is not None and healthz <= bar("healthz_ms", within_ms))
    evidence = (f"{exp.target}, {n} streams at once, each held {m['hold_s']:g} s: {figures(form)}; "
                f"{figures(reference)}")
    if served:
        if n >= claimed_streams:
            return "holds", evidence
        return "partly", evidence + (f". Served at {n}; {claimed_streams:,} not measured in this run "
                                     "(the full bench compare runs 1,000)")
    already = " already" if n < claimed_streams else ""
    bars = (f"start within {bar('last_start_s', start_within_s):.1f} s, stop word and /healthz within "
            f"{bar('delivery_ms', within_ms):.0f} / {bar('healthz_ms', within_ms):.0f} ms")
    return "fails", evidence + f". Not served at {n}{already} (bars: {bars})"


# --- the seeds' remaining statements -------------------------------------------------------------

def sync_core_threads(run: Run, target: str, reference: str, levels: list[int], growth_min: float,
                      flat_max: float) -> tuple[str, str]:
    """Seed 000 on Django: "Has async support (Django 3.1+), but most codebase is still synchronous".
    The async ORM and the request signals run Django's sync code through sync_to_async, a thread
    per request's DB work: the async app's thread count grows with the requests in flight, where an
    async-through app's (`reference`) stays flat."""
    rows = _thread_levels(run, target, levels, "subject")
    if len(rows) < 2:
        raise NotRun(f"needs thread counts of {target} at two of {levels} users (the run has "
                     f"{sorted(rows) or 'none'})")
    slope = _slope(rows)
    ref = _thread_levels(run, reference, levels, "baseline")
    evidence = (f"{target} (async views, the async ORM API): {_thread_text(rows)}: {slope:+.2f} threads per "
                f"added user" + (f"; {reference}: {_thread_text(ref)}: {_slope(ref):+.2f}" if len(ref) > 1
                                 else "") + ". The async ORM runs the sync ORM in a thread per request "
                "(sync_to_async)")
    return ("holds" if slope >= growth_min else "partly" if slope > flat_max else "fails"), evidence


def _slope(rows: dict[int, Result]) -> float:
    low, top = min(rows), max(rows)
    return (_threads(rows[top]) - _threads(rows[low])) / (top - low) if top > low else 0.0


def fix_ranking(run: Run, fixes: list[str], synchronous: list[str], users: int, responsive_ms: float,
                tie_factor: float) -> tuple[str, str]:
    """Seed 000's options in its order, "Quick Fix", "Better Fix", "Production Fix": each later one
    at least as good as each earlier one on the problem they fix (other requests wait while
    recommendations are generated): the share of what the users ask for that each delivers (for a
    job fix, jobs completed; in a closed loop, one job's time over the time to result), with
    /healthz beside it. Within `tie_factor` counts as as good."""
    scored = [_fix_score(run, name, name in synchronous, users, responsive_ms) for name in fixes]
    pairs = [(a, b) for i, a in enumerate(scored) for b in scored[i + 1:]]
    agree = [b[1] * tie_factor >= a[1] for a, b in pairs]
    evidence = ("in the seed's order, at " + f"{users} users: " + "; ".join(text for _, _, text in scored)
                + ". " + "; ".join(f"{b[0]} {'>=' if ok else '<'} {a[0]}" for (a, b), ok in zip(pairs, agree,
                                                                                          strict=True))
                + " (the lab measures throughput, time to result and /healthz; a queue's durability "
                  "and retries are not measured)")
    if all(agree):
        return "holds", evidence
    return ("fails" if agree.count(False) > agree.count(True) else "partly"), evidence


def _fix_score(run: Run, name: str, synchronous: bool, users: int,
               responsive_ms: float) -> tuple[str, float, str]:
    scenario = "recommendation" if synchronous else "jobs"
    r = subject(find(run, name, users, scenario))
    l1 = l1_ms(run, name, scenario)
    share = r.rps * l1 / 1000 / users
    how = "answering synchronously" if synchronous else "jobs"
    return name, share, (f"{name} ({how}) {100 * share:.0f}% of what is asked, /healthz p95 {_canary(r)}"
                         f"{'' if _responsive(r, responsive_ms) else ' (not responsive)'}, "
                         f"{_system_mb(r):.0f} MiB")


def idle_while_waiting(run: Run, target: str, users: int, params: dict[str, int], workload: list[int],
                       idle_min: float) -> tuple[str, str]:
    """Seed 001: "4 threads are just sitting idle waiting for Postgres ... While a thread waits for
    Postgres, it does nothing - it just holds RAM." On the DB-bound cell: the share of each
    request's time its worker spends on the CPU (CPU ms per request over L1), and the memory each
    worker holds meanwhile."""
    load = tuple(workload)
    r = subject(find(run, target, users, workload=load, **params))
    l1 = l1_ms(run, target, workload=load, **params)
    if r.cpu_ms_per_request is None:
        raise NotRun(f"no CPU per request for {target} on the DB-bound cell")
    idle = 1 - r.cpu_ms_per_request / l1
    held = statistics.median(worker_pss(r) or [0])
    evidence = (f"DB-bound workload (db_ms={load[0]}, llm_ms={load[1]}): {target} "
                + " ".join(f"{k}={v}" for k, v in params.items()) + f" at {users} users: "
                f"{r.cpu_ms_per_request:.1f} ms of CPU per request of L1 {l1:.0f} ms, so each worker is idle "
                f"{100 * idle:.0f}% of a request's time, holding {held:.0f} MiB PSS (median worker)")
    return ("holds" if idle >= idle_min else "fails"), evidence


def async_low_overhead(run: Run, target: str, threads: str, users: int,
                       serve_share: float) -> tuple[str, str]:
    """Seed 002: "Async excels at I/O concurrency with low overhead", beside threading: the async app
    serves what `users` I/O-bound requests ask for, for less CPU per request and less memory per
    request in flight than the thread-pool app at the same load."""
    a, t = subject(find(run, target, users)), find(run, threads, users)
    share = a.rps * l1_ms(run, target) / 1000 / users
    a_mb, t_mb = a.mb_per_request_in_flight(), t.mb_per_request_in_flight()
    if a.cpu_ms_per_request is None or t.cpu_ms_per_request is None or a_mb is None or t_mb is None:
        raise NotRun(f"needs CPU per request and idle and peak memory of {target} and {threads}")
    evidence = (f"at {users} I/O-bound users: {target} {a.rps:.1f} rps = {100 * share:.0f}% of what they "
                f"ask for, {a.cpu_ms_per_request:.2f} CPU ms per request, {a_mb:.3f} MiB per request in "
                f"flight; {threads} {t.rps:.1f} rps, {t.cpu_ms_per_request:.2f} CPU ms, {t_mb:.3f} MiB"
                + flagged(a))
    if share < serve_share or a.failures:
        return "fails", evidence
    lower = a.cpu_ms_per_request <= t.cpu_ms_per_request and a_mb <= t_mb
    return ("holds" if lower else "partly"), evidence


def pubsub_realtime(run: Run, experiment_id: str, form: str, reference: str,
                    within_ms: float) -> tuple[str, str]:
    """Seed 003: "All three receive chunks in real-time!" on the fix: every stream got its messages
    within `within_ms` of their publication (the slowest delivery), all streams to their end."""
    m = get_experiment(run, experiment_id).measured
    n, ended = m["listeners"], m.get(f"{form}_ended")
    slowest, p50 = m.get(f"{form}_delivery_ms"), m.get(f"{form}_delivery_p50_ms")
    if slowest is None or p50 is None:
        raise NotRun(f"experiment {experiment_id} has no delivery times for {form}")
    evidence = (f"{n} streams on {form} (the seed's timeline, scaled): {ended}/{n} to their end, "
                f"messages delivered p50 {_ms(p50)}, slowest {_ms(slowest)} after publication; "
                f"{reference} beside it: p50 {_ms(m.get(f'{reference}_delivery_p50_ms'))}, slowest "
                f"{_ms(m.get(f'{reference}_delivery_ms'))}")
    if ended == n and slowest <= within_ms:
        return "holds", evidence
    return ("partly" if ended == n and p50 <= within_ms else "fails"), evidence


def own_thread(run: Run, target: str, levels: list[int], band: list[float]) -> tuple[str, str]:
    """Seed 004 on `def` handlers: "Each request gets its own thread". From 1 user to the top level
    the thread count grows by one per request in service, up to the pool's size, and each of those
    threads serves one request at a time (requests in service per thread = rps x L1 / threads)."""
    rows = _thread_levels(run, target, levels, "subject")
    if len(rows) < 2:
        raise NotRun(f"needs thread counts of {target} at two of {levels} users")
    low, top = min(rows), max(rows)
    pool = rows[top].capacity or rows[top].params.get("threads") or top
    expected = min(top, pool) - min(low, pool)
    grew = (_threads(rows[top]) - _threads(rows[low])) / expected if expected else 0
    per_thread = rows[top].rps * l1_ms(run, target) / 1000 / min(top, pool)
    evidence = (f"{target} (def handlers, a pool of {pool} threads): {_thread_text(rows)}: "
                f"{grew:.2f}x the {expected} threads one per request in service would add; at {top} users "
                f"{per_thread:.2f} requests in service per thread"
                + (f", and {top - pool} requests wait for one of the {pool} threads" if top > pool else ""))
    parts = [band[0] <= grew <= band[1], band[0] <= per_thread <= band[1]]
    return ("holds" if all(parts) else "partly" if any(parts) else "fails"), evidence


def def_safe_default(run: Run, target: str, unsafe: str, reference: str, users: int, responsive_ms: float,
                     ratio_min: float, busy_min: float) -> tuple[str, str]:
    """Seed 004: "Slow I/O (blocking database driver) -> def (let thread pool handle it)" and "When in
    doubt, use def - FastAPI's thread pool is a safe default": the same blocking calls in `def`
    (`target`) keep the app answering (/healthz) and serve as many at once as the pool has threads,
    where in `async def` (`unsafe`) they block everything. The async rewrite (`reference`) as context."""
    d, u, ref = subject(find(run, target, users)), find(run, unsafe, users), find(run, reference, users)
    threads = d.capacity or d.params.get("threads") or users
    busy = d.rps * l1_ms(run, target) / 1000 / min(users, threads)
    ratio = d.rps / u.rps if u.rps else float("inf")
    responsive = _responsive(d, responsive_ms)
    evidence = (f"at {users} users, the same blocking SQLAlchemy and OpenAI calls: in def ({target}, "
                f"{threads} threads) {d.rps:.1f} rps = {busy:.2f} requests in service per thread, "
                f"/healthz p95 {_canary(d)}; in async def ({unsafe}) {u.rps:.1f} rps, /healthz p95 "
                f"{_canary(u)}: {ratio:.1f}x; the async rewrite ({reference}) {ref.rps:.1f} rps. Safe, "
                f"not fastest: the pool's {threads} threads are its limit")
    safe = responsive and ratio >= ratio_min and busy >= busy_min
    return ("holds" if safe else "partly" if responsive or ratio >= ratio_min else "fails"), evidence


RULES: dict[str, Callable[..., tuple[str, str]]] = {
    "async_alternative": async_alternative,
    "no_added_concurrency": no_added_concurrency,
    "jobs_fix": jobs_fix,
    "queue_overhead": queue_overhead,
    "process_pool_cpu": process_pool_cpu,
    "fifth_request_waits": fifth_request_waits,
    "burst_concurrent": burst_concurrent,
    "workers_needed": workers_needed,
    "handles_load": handles_load,
    "approx_mb": approx_mb,
    "approx_seconds": approx_seconds,
    "more_memory": more_memory,
    "blocks_everything": blocks_everything,
    "workers_fix": workers_fix,
    "threads_vs_processes": threads_vs_processes,
    "goroutines": goroutines,
    "pubsub_blocks": pubsub_blocks,
    "pubsub_polling": pubsub_polling,
    "same_load_as": same_load_as,
    "truly_concurrent": truly_concurrent,
    "most_efficient": most_efficient,
    "no_extra_threads": no_extra_threads,
    "threadpool_concurrency": threadpool_concurrency,
    "loop_blocked": loop_blocked,
    "thread_per_request": thread_per_request,
    "workers_match_cores": workers_match_cores,
    "await_max_not_sum": await_max_not_sum,
    "loop_kept_free": loop_kept_free,
    "cpu_holds_loop": cpu_holds_loop,
    "light_cpu_def": light_cpu_def,
    "heavy_cpu_workers": heavy_cpu_workers,
    "gil_bound": gil_bound,
    "single_request_hides": single_request_hides,
    "pubsub_queue_wait": pubsub_queue_wait,
    "pubsub_timeline": pubsub_timeline,
    "pubsub_poll_blocks": pubsub_poll_blocks,
    "pubsub_short_timeout": pubsub_short_timeout,
    "pubsub_low_cpu": pubsub_low_cpu,
    "pubsub_many_streams": pubsub_many_streams,
    "sync_core_threads": sync_core_threads,
    "fix_ranking": fix_ranking,
    "idle_while_waiting": idle_while_waiting,
    "async_low_overhead": async_low_overhead,
    "pubsub_realtime": pubsub_realtime,
    "own_thread": own_thread,
    "def_safe_default": def_safe_default,
}
