"""The rows every report shows, and the one comparison table (docs/DESIGN.md, Run -> results -> report).

`rows` labels each result (the target, plus the params that vary between its rows) and
`by_scenario` groups them (different scenarios and workloads are never ranked together). The
Comparison tab of the Locust web UI, its CSV download and a web-UI session's report.md / report.html
all show `comparison_table`: every column of the throughput and resources tables in one, units in
the headers, from `MEASURES`; `chart_points` are what the tab and the session's report.html draw.

Memory is in MiB (2^20 bytes) everywhere: the samplers read bytes and divide by 1024 x 1024.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.results import Cpu, Result, Run

# The tab's charts, and a web-UI session's report.html's: one script, so both draw the same.
CHARTS_JS = Path(__file__).parent / "templates" / "lab_charts.js"

CALIBRATION = "calibration"
SCENARIO_ORDER = ["recommendation", "stream", "cpu"]
SCENARIO_TITLES = {
    "recommendation": "GET /recommendation: DB query + external call",
    "stream": "GET /stream: server-sent events held open for the whole completion (rps = streams/s)",
    "cpu": "GET /cpu: pure CPU in the language itself",
    "jobs": "Jobs: submit, poll until done (rps = jobs completed/s, latency = time to result)",
}

def fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def pct(part: int, whole: int) -> str:
    return "—" if not whole else f"{100 * part / whole:.1f}%"


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool = False  # right-aligned
    strong: bool = False
    css: str = ""  # extra class of its HTML cells


FLAGS_COLUMN = Column("flags", css="flags")


@dataclass
class TableRow:
    cells: list[str]
    marks: tuple[str, ...] = ()  # CSS classes in HTML: anti-pattern, flagged, verdict-holds, ...


@dataclass
class Table:
    kind: str  # CSS class in HTML, e.g. "throughput"
    columns: list[Column]
    rows: list[TableRow] = field(default_factory=list)

    def add(self, *cells: object, marks: tuple[str, ...] = ()) -> None:
        self.rows.append(TableRow([str(c) for c in cells], marks))


@dataclass(frozen=True)
class Row:
    """A result with its row label: the target plus the params that differ between its runs."""
    label: str
    result: Result

    @property
    def marks(self) -> tuple[str, ...]:
        return (("anti-pattern",) if self.result.anti_pattern else ()) + (
            ("flagged",) if self.result.flags else ())

    @property
    def name(self) -> str:
        return self.label + (" ⚠" if self.result.anti_pattern else "")


def is_calibration(r: Result) -> bool:
    return r.target == CALIBRATION or r.scenario == CALIBRATION


def params_text(params: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(params.items())) or "—"


def varying_params(results: list[Result]) -> dict[str, list[str]]:
    """target → the params whose values differ between its results (a missing one counts too)."""
    names: dict[str, set[str]] = defaultdict(set)
    for r in results:
        names[r.target].update(r.params)
    return {target: sorted(k for k in keys if len({r.params.get(k) for r in results
                                                   if r.target == target}) > 1)
            for target, keys in names.items()}


def rows(run: Run) -> list[Row]:
    """Every result with its label, e.g. `flask-sync workers=16` when a run swept workers."""
    varying = varying_params(run.results)
    mixed = len({r.runtime for r in run.results if not is_calibration(r)}) > 1
    out = [Row("calibration: Locust → mock upstream", r) if is_calibration(r) else
           Row(" ".join([r.target, *(f"{k}={r.params.get(k, '—')}" for k in varying.get(r.target, [])),
                         *(["[docker]"] if mixed and r.runtime == "docker" else [])]), r)
           for r in run.results]
    # Keep a target's rows together (a sweep may be appended later), in the order measured.
    first_target = {row.result.target: i for i, row in reversed(list(enumerate(out)))}
    first_label = {row.label: i for i, row in reversed(list(enumerate(out)))}
    return sorted(out, key=lambda row: (first_target[row.result.target], row.result.runtime != "native",
                                        first_label[row.label], row.result.users))


def memory_source(results: list[Result]) -> str | None:
    """ "PSS" or "working set" when every row measured the same kind of memory, else None."""
    sources = {r.memory_source for r in results if not is_calibration(r)}
    return sources.pop() if len(sources) == 1 else None


def _mem(r: Result, value: float | None, digits: int = 1) -> str:
    """RSS and USS exist natively only: a container's working set has no such split."""
    return "—" if r.runtime == "docker" else fmt(value, digits)


def scenario_title(group: str) -> str:
    """A group's heading: the scenario's, with the workload when it is not the run's."""
    scenario, _, workload = group.partition(" ")
    title = SCENARIO_TITLES.get(scenario, scenario)
    return f"{title}, another workload: {workload.replace(' ', ', ')}" if workload else title


def by_scenario(all_rows: list[Row]) -> dict[str, list[Row]]:
    """Framework rows grouped by scenario, recommendation first; calibration rows left out."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in all_rows:
        if not is_calibration(row.result):
            groups[row.result.group()].append(row)
    order = [s for s in SCENARIO_ORDER if s in groups] + sorted(set(groups) - set(SCENARIO_ORDER))
    return {s: groups[s] for s in order}


def highest_level(group: list[Row]) -> list[Row]:
    """Per label, the row at its highest users level (where memory and latency differ most)."""
    top: dict[str, Row] = {}
    for row in group:
        if row.label not in top or row.result.users > top[row.label].result.users:
            top[row.label] = row
    return list(top.values())


LATENCY_COLUMNS = ("n", "mean ms", "W ms", "p50 ms", "p95 ms", "p99 ms")


def latency_cells(r: Result) -> tuple[str, ...]:
    """n, mean, W = users / rps, p50, p95, p99: a tail of fewer than 20 samples reads "n<20"."""
    lat, n = r.latency_ms, r.latency_n
    return (r.samples_text(), fmt(lat.mean), fmt(r.w_ms()), lat.text("p50", n), lat.text("p95", n),
            lat.text("p99", n))


def rps_text(r: Result) -> str:
    """The row's rps; a repeated cell's with the lowest and highest of its repeats."""
    if r.spread is None:
        return f"{r.rps:.1f}"
    return f"{r.rps:.1f} ({r.spread.rps[0]:.1f}–{r.spread.rps[1]:.1f}, n={r.spread.n})"


def throughput_table(group: list[Row]) -> Table:
    ttft = any(row.result.ttft_ms for row in group)  # stream scenario: time to first token
    t = Table("throughput", [Column("target"), *(Column(n, numeric=True) for n in (
        "users", "rps", *LATENCY_COLUMNS,
        *(("TTFT n", "TTFT p50 ms", "TTFT p95 ms") if ttft else ()),
        "failures", "ceiling rps", "efficiency", "canary p95 ms", "rps per GiB", "CPU ms / request")),
        FLAGS_COLUMN])
    for row in group:
        r = row.result
        first = ()
        if ttft:  # older files did not count the first tokens: their n is the served streams
            n = r.requests - r.failures
            first = ((fmt(r.ttft_ms.n if r.ttft_ms.n is not None else n), r.ttft_ms.text("p50", n),
                      r.ttft_ms.text("p95", n)) if r.ttft_ms else ("—", "—", "—"))
        t.add(row.name, r.users, rps_text(r), *latency_cells(r), *first, pct(r.failures, r.requests),
              fmt(r.ceiling_rps, 1), fmt(r.efficiency, 2), r.canary_text(), fmt(r.rps_per_gb()),
              fmt(r.cpu_ms_per_request, 1), "; ".join(r.flags) or "—", marks=row.marks)
    return t


def locust_cpu(cpu: Cpu) -> str:
    """Locust's CPU, % of one core: all its processes, and with several how many (`locust --processes`)."""
    return fmt(cpu.locust) + (f" (×{cpu.locust_processes})" if (cpu.locust_processes or 1) > 1 else "")


def resources_table(group: list[Row]) -> Table:
    source = memory_source([row.result for row in group])
    mem = source or "memory"  # a mixed table names the source per row
    t = Table("resources", [Column("target"), *(Column(n, numeric=True) for n in (
        "users", f"idle {mem} MiB", f"peak {mem} MiB", "peak RSS MiB", "peak USS MiB")),
        *(() if source else (Column("memory is"),)), *(Column(n, numeric=True) for n in (
            "processes", "MiB per request in flight", "CPU target %", "CPU Locust %", "CPU machine %",
            "CPU ms / request"))])
    for row in group:
        r, m = row.result, row.result.memory_mb
        t.add(row.name, r.users, fmt(m.idle_pss, 1), fmt(m.peak_pss, 1), _mem(r, m.peak_rss),
              _mem(r, m.peak_uss), *(() if source else (r.memory_source,)), r.processes,
              fmt(r.mb_per_request_in_flight(), 2), fmt(r.cpu_pct.target), locust_cpu(r.cpu_pct),
              fmt(r.cpu_pct.machine), fmt(r.cpu_ms_per_request, 2), marks=row.marks)
    return t


# --- the one comparison table ---------------------------------------------------------------

Value = float | int | str | None


@dataclass(frozen=True)
class Measure:
    """One column of the comparison table: its raw value (CSV, sorting, charts) and its text."""
    key: str
    title: str  # as the table heads it, with its unit
    value: Callable[[Result], Value]
    text: Callable[[Result], str] | None = None  # None: the value, rounded to `digits`
    digits: int = 0
    unit: str = ""  # for the CSV header, where the title does not say it already
    numeric: bool = True

    def cell(self, r: Result) -> str:
        if self.text is not None:
            return self.text(r)
        value = self.value(r)
        return fmt(value, self.digits) if isinstance(value, int | float) or value is None else str(value)

    @property
    def csv_title(self) -> str:
        return f"{self.title} ({self.unit})" if self.unit else self.title


def _lat(name: str) -> Callable[[Result], str]:
    return lambda r: r.latency_ms.text(name, r.latency_n)


def _ttft_n(r: Result) -> int | None:
    if r.ttft_ms is None:
        return None  # older files did not count the first tokens: their n is the served streams
    return r.ttft_ms.n if r.ttft_ms.n is not None else r.requests - r.failures


def _ttft(name: str) -> Callable[[Result], str]:
    return lambda r: r.ttft_ms.text(name, _ttft_n(r)) if r.ttft_ms else "—"


def _failures_pct(r: Result) -> float | None:
    return 100 * r.failures / r.requests if r.requests else None


def measures(group: list[Result]) -> list[Measure]:
    """The comparison table's columns for these rows: time to first token where a row streamed, and
    the kind of memory per row where Docker and native rows are mixed."""
    source = memory_source(group)
    mem = source or "memory"
    ttft = any(r.ttft_ms for r in group)
    return [
        Measure("users", "users", lambda r: r.users, unit="concurrent users"),
        Measure("rps", "rps", lambda r: r.rps, rps_text, unit="valid answers per second"),
        Measure("n", "n", lambda r: r.latency_n, lambda r: r.samples_text(), unit="samples"),
        Measure("mean_ms", "mean ms", lambda r: r.latency_ms.mean),
        Measure("w_ms", "W ms", lambda r: r.w_ms()),
        Measure("p50_ms", "p50 ms", lambda r: r.latency_ms.p50, _lat("p50")),
        Measure("p95_ms", "p95 ms", lambda r: r.latency_ms.p95, _lat("p95")),
        Measure("p99_ms", "p99 ms", lambda r: r.latency_ms.p99, _lat("p99")),
        *((Measure("ttft_n", "TTFT n", _ttft_n, unit="samples"),
           Measure("ttft_p50_ms", "TTFT p50 ms", lambda r: r.ttft_ms and r.ttft_ms.p50, _ttft("p50")),
           Measure("ttft_p95_ms", "TTFT p95 ms", lambda r: r.ttft_ms and r.ttft_ms.p95, _ttft("p95")))
          if ttft else ()),
        Measure("failures_pct", "failures %", _failures_pct, lambda r: pct(r.failures, r.requests)),
        Measure("ceiling_rps", "ceiling rps", lambda r: r.ceiling_rps, digits=1),
        Measure("efficiency", "efficiency", lambda r: r.efficiency, digits=2, unit="rps / ceiling"),
        Measure("canary_p95_ms", "canary p95 ms", lambda r: r.canary_p95_ms, lambda r: r.canary_text()),
        Measure("idle_mib", f"idle {mem} MiB", lambda r: r.memory_mb.idle_pss, digits=1),
        Measure("peak_mib", f"peak {mem} MiB", lambda r: r.memory_mb.peak_pss, digits=1),
        Measure("peak_rss_mib", "peak RSS MiB", lambda r: r.memory_mb.peak_rss,
                lambda r: _mem(r, r.memory_mb.peak_rss)),
        Measure("peak_uss_mib", "peak USS MiB", lambda r: r.memory_mb.peak_uss,
                lambda r: _mem(r, r.memory_mb.peak_uss)),
        *(() if source else (Measure("memory_is", "memory is", lambda r: r.memory_source, numeric=False),)),
        Measure("processes", "processes", lambda r: r.processes),
        Measure("mib_per_in_flight", "MiB per request in flight", lambda r: r.mb_per_request_in_flight(),
                digits=2),
        Measure("rps_per_gib", "rps per GiB", lambda r: r.rps_per_gb()),
        Measure("cpu_target_pct", "CPU target %", lambda r: r.cpu_pct.target, unit="% of one core"),
        Measure("cpu_locust_pct", "CPU Locust %", lambda r: r.cpu_pct.locust, lambda r: locust_cpu(r.cpu_pct),
                unit="% of one core"),
        Measure("cpu_machine_pct", "CPU machine %", lambda r: r.cpu_pct.machine, unit="% of all cores"),
        Measure("cpu_ms_per_request", "CPU ms / request", lambda r: r.cpu_ms_per_request, digits=2),
        Measure("flags", "flags", lambda r: "; ".join(r.flags), lambda r: "; ".join(r.flags) or "—",
                numeric=False),
    ]


def comparison_table(group: list[Row]) -> Table:
    """One row per result: every figure of the throughput and resources tables, units in the heads."""
    cols = measures([row.result for row in group])
    t = Table("comparison", [Column("target"),
                             *(Column(m.title, numeric=m.numeric, css=m.key) for m in cols)])
    for row in group:
        t.add(row.name, *(m.cell(row.result) for m in cols), marks=row.marks)
    return t


def row_id(r: Result, index: int) -> str:
    """A row's id in the tab: a web-UI row's recording time, else its place in results.json."""
    return r.recorded_at or f"#{index}"


def chart_points(group: list[Row]) -> list[dict]:
    """What the tab's charts (and a web-UI session's report.html) draw, one point per row: rps
    against peak memory, rps per row, and p50 / p95 / p99 (a tail of fewer than MIN_TAIL_SAMPLES
    samples is left out, as the table prints "n<20")."""
    def tail(r: Result, name: str) -> float | None:
        return None if r.latency_ms.text(name, r.latency_n).startswith("n<") else getattr(r.latency_ms, name)

    return [{"label": f"{row.name} @ {row.result.users}", "target": row.result.target,
             "users": row.result.users, "rps": row.result.rps, "peak_mib": row.result.memory_mb.peak_pss,
             "p50": row.result.latency_ms.p50, "p95": tail(row.result, "p95"), "p99": tail(row.result, "p99"),
             "flagged": bool(row.result.flags)} for row in group]


def comparison_json(run: Run) -> dict:
    """The Comparison tab's model of a run: per scenario and workload, the table (with raw values to
    sort by) and the chart points."""
    index = {id(r): i for i, r in enumerate(run.results)}
    groups = []
    for key, group in by_scenario(rows(run)).items():
        cols = measures([row.result for row in group])
        groups.append({
            "key": key, "title": scenario_title(key),
            "columns": [{"key": "target", "title": "target", "numeric": False},
                        *({"key": m.key, "title": m.title, "numeric": m.numeric} for m in cols)],
            "rows": [{"id": row_id(row.result, index[id(row.result)]), "target": row.result.target,
                      "cells": [row.name, *(m.cell(row.result) for m in cols)],
                      "values": [row.label, *(m.value(row.result) for m in cols)],
                      "marks": list(row.marks)} for row in group],
            "points": chart_points(group)})
    return {"run_id": run.run_id, "started_at": run.started_at, "groups": groups,
            "workload": {"db_ms": run.scenario.db_ms, "llm_ms": run.scenario.llm_ms},
            "sources": sorted({r.source for r in run.results})}


CSV_CONTEXT = ("run_id", "scenario", "db_ms", "llm_ms", "target", "label", "model", "params", "runtime",
               "source", "recorded_at")


def comparison_csv(run: Run) -> str:
    """One line per row, every column of the comparison table (raw values, units in the header)
    and what the row measured: the CSV download."""
    results = [row.result for group in by_scenario(rows(run)).values() for row in group]
    labels = {id(row.result): row.label for row in rows(run)}
    cols = measures(results)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_CONTEXT, *(m.csv_title for m in cols)])
    for r in results:
        writer.writerow([run.run_id, r.scenario, run.scenario.db_ms if r.db_ms is None else r.db_ms,
                         run.scenario.llm_ms if r.llm_ms is None else r.llm_ms, r.target, labels[id(r)],
                         r.model, params_text(r.params), r.runtime, r.source, r.recorded_at or "",
                         *(_csv_value(m.value(r)) for m in cols)])
    return out.getvalue()


def _csv_value(value: Value) -> Value:
    return "" if value is None else round(value, 3) if isinstance(value, float) else value
