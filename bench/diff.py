"""`bench diff RUN_A RUN_B`: each cell's change from one run to the other, and whether it is more
than the runs' own noise (pyperformance compare's question, asked of the lab's rows).

A cell is the same (scenario, target, params, workload, runtime, endpoint, users) in both runs. A
change is "beyond the spread" when the two runs' min-max ranges (`bench compare --repeat N`) do not
overlap; where a run measured a cell once there is no spread to judge by, and the table says so.
Claims whose verdict differs are listed after the cells. Like `bench report`, it runs no load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from bench.results import Claim, Result, Run

CellKey = tuple


def cell_key(r: Result) -> CellKey:
    return (r.scenario, r.target, tuple(sorted(r.params.items())), r.db_ms, r.llm_ms, r.runtime,
            r.jobs_endpoint, r.users)


def cell_name(r: Result) -> str:
    params = " ".join(f"{k}={v}" for k, v in sorted(r.params.items()))
    workload = f" db_ms={r.db_ms} llm_ms={r.llm_ms}" if r.db_ms is not None or r.llm_ms is not None else ""
    extra = "".join(f" [{x}]" for x in (r.jobs_endpoint, r.runtime if r.runtime != "native" else None) if x)
    return f"{r.target} @ {r.users} ({r.scenario}{', ' + params if params else ''}{workload}){extra}"


def _range(r: Result) -> tuple[float, float] | None:
    return r.spread.rps if r.spread else None


@dataclass(frozen=True)
class Change:
    a: Result
    b: Result

    @property
    def judgement(self) -> str:
        """"beyond the spread", "within the spread", or why it cannot be judged."""
        ra, rb = _range(self.a), _range(self.b)
        if ra is None and rb is None:
            return "no spread (measured once: --repeat N)"
        lo_a, hi_a = ra or (self.a.rps, self.a.rps)
        lo_b, hi_b = rb or (self.b.rps, self.b.rps)
        return "beyond the spread" if hi_a < lo_b or hi_b < lo_a else "within the spread"


@dataclass(frozen=True)
class Diff:
    a: Run
    b: Run
    changes: list[Change]
    only_a: list[Result]
    only_b: list[Result]
    claims: list[tuple[Claim, Claim]]  # (in A, in B) whose verdicts differ


def diff(a: Run, b: Run) -> Diff:
    rows_a = {cell_key(r): r for r in a.results}
    rows_b = {cell_key(r): r for r in b.results}
    claims_b = {c.id: c for c in b.claims}
    return Diff(a, b, [Change(rows_a[k], rows_b[k]) for k in rows_a if k in rows_b],
                [r for k, r in rows_a.items() if k not in rows_b],
                [r for k, r in rows_b.items() if k not in rows_a],
                [(c, claims_b[c.id]) for c in a.claims
                 if c.id in claims_b and c.verdict != claims_b[c.id].verdict])


def load(path: Path) -> Run:
    """A run folder (results/<run>, results/latest) or a results file."""
    return Run.model_validate_json(path.read_text()) if path.is_file() else Run.load(path)


def _rps(r: Result) -> str:
    return f"{r.rps:.1f}" + (f" ({r.spread.rps[0]:.1f}–{r.spread.rps[1]:.1f})" if r.spread else "")


def _pct(before: float | None, after: float | None) -> str:
    if not before or after is None:
        return "—"
    return f"{100 * (after - before) / before:+.1f} %"


def _change(before: float | None, after: float | None) -> float | None:
    return round(100 * (after - before) / before, 1) if before and after is not None else None


def diff_json(d: Diff) -> dict:
    """The same comparison for the web UI's "compare with": each cell side by side, its change in %,
    the judgement, the cells only one run has and the claims whose verdict changed."""
    def side(r: Result) -> dict:
        return {"rps": r.rps, "spread": list(r.spread.rps) if r.spread else None, "w_ms": r.w_ms(),
                "p50_ms": r.latency_ms.p50, "peak_mib": r.memory_mb.peak_pss, "flags": r.flags}

    return {
        "a": d.a.run_id, "b": d.b.run_id,
        "cells": [{"cell": cell_name(c.a), "a": side(c.a), "b": side(c.b),
                   "rps_change_pct": _change(c.a.rps, c.b.rps),
                   "w_change_pct": _change(c.a.w_ms(), c.b.w_ms()),
                   "peak_change_pct": _change(c.a.memory_mb.peak_pss, c.b.memory_mb.peak_pss),
                   "judgement": c.judgement}
                  for c in sorted(d.changes, key=lambda c: str(cell_key(c.a)))],
        "only_a": [cell_name(r) for r in d.only_a], "only_b": [cell_name(r) for r in d.only_b],
        "claims": [{"id": ca.id, "a": ca.verdict_text(), "b": cb.verdict_text(), "evidence_b": cb.evidence}
                   for ca, cb in d.claims],
    }


def diff_tables(d: Diff) -> list[Table]:
    cells = Table(title=f"bench diff: {d.a.run_id} → {d.b.run_id}", expand=False)
    for name, justify in (("cell", "left"), ("rps A", "right"), ("rps B", "right"), ("rps change", "right"),
                          ("W change", "right"), ("peak PSS change", "right"), ("judgement", "left")):
        cells.add_column(name, justify=justify)
    for c in sorted(d.changes, key=lambda c: str(cell_key(c.a))):
        style = "bold" if c.judgement == "beyond the spread" else None
        cells.add_row(cell_name(c.a), _rps(c.a), _rps(c.b), _pct(c.a.rps, c.b.rps),
                      _pct(c.a.w_ms(), c.b.w_ms()), _pct(c.a.memory_mb.peak_pss, c.b.memory_mb.peak_pss),
                      c.judgement, style=style)
    for rows, where in ((d.only_a, "only in A"), (d.only_b, "only in B")):
        for r in rows:
            cells.add_row(cell_name(r), *((_rps(r), "—") if where == "only in A" else ("—", _rps(r))),
                          "—", "—", "—", where, style="dim")
    tables = [cells]
    if d.claims:
        claims = Table(title="Claims whose verdict changed", expand=False)
        for name in ("claim", "A", "B", "evidence in B"):
            claims.add_column(name, max_width=70 if name != "evidence in B" else 90)
        for ca, cb in d.claims:
            claims.add_row(ca.id, ca.verdict_text(), cb.verdict_text(), cb.evidence)
        tables.append(claims)
    return tables
