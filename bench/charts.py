"""The report's charts: one function per chart, each returning a self-contained SVG string.

Figures are drawn with matplotlib's object API (no pyplot, so no global state or GUI backend) and
saved as SVG with text as paths, so the HTML report needs no fonts, scripts or network.
Anti-pattern targets are dashed / hatched and marked ⚠; flagged results get a red ring or a red
"*" label, because they are not framework results.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Mapping, Sequence

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, LogFormatter, NullLocator, ScalarFormatter

from bench.results import MIN_TAIL_SAMPLES, Result

FLAG_RED = "#d62728"
MARKERS = "osD^vPX<>"
Labelled = Sequence[tuple[str, Result]]  # (row label, its result)


def palette(names: Sequence[str]) -> dict[str, str]:
    """A distinct colour per name: tab10, then tab20's lighter shades; grey is left out because the
    legends use it for "any target"."""
    tab20 = mpl.colormaps["tab20"].colors
    colors = [c for i, c in enumerate(tab20) if i % 2 == 0 and i != 14] + [
        c for i, c in enumerate(tab20) if i % 2 == 1 and i != 15]
    return {name: mpl.colors.to_hex(colors[i % len(colors)]) for i, name in enumerate(dict.fromkeys(names))}


def throughput_vs_users(lines: dict[str, list[Result]], colors: dict[str, str]) -> str:
    """rps against users, one line per row label; log axes keep 2 rps and 200 rps readable."""
    fig, ax = _figure()
    markers = _markers_per_target(lines)
    flagged = False
    for name, results in lines.items():
        first = results[0]
        users = [r.users for r in results]
        rps = [r.rps for r in results]
        ax.plot(users, rps, color=colors[first.target], marker=markers[name], markersize=5,
                linestyle="--" if first.anti_pattern else "-", label=_legend_name(name, first))
        flagged |= _flag_rings(ax, [(r.users, r.rps) for r in results if r.flags])
    levels = sorted({r.users for results in lines.values() for r in results})
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_ticks(ax.xaxis, levels)
    _plain_ticks(ax.yaxis)
    ax.set_xlabel("users (concurrent Locust users)")
    ax.set_ylabel("requests / s")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, flagged_ring=flagged)
    return _svg(fig, "throughput")


def memory_bars(rows: Labelled, colors: dict[str, str]) -> str:
    """Peak PSS (solid) next to peak RSS (pale) per row: the gap is RSS double-counting shared pages."""
    fig, ax = _figure()
    width = 0.4
    for i, (_, r) in enumerate(rows):
        color = colors[r.target]
        hatch = "//" if r.anti_pattern else None
        pss = r.memory_mb.peak_pss or 0
        ax.bar(i - width / 2, pss, width, color=color, hatch=hatch, edgecolor="black", linewidth=0.5)
        ax.bar(i + width / 2, r.memory_mb.peak_rss or 0, width, color=color, alpha=0.35, hatch=hatch,
               edgecolor=color, linewidth=0.8)
        ax.annotate(f"{pss:.0f}", (i - width / 2, pss), ha="center", va="bottom", fontsize=7,
                    xytext=(0, 2), textcoords="offset points")
    _bar_ticks(ax, rows)
    ax.set_ylabel("MiB (whole process tree)")
    ax.grid(True, axis="y", alpha=0.3)
    handles = [Patch(facecolor="0.35", edgecolor="black", linewidth=0.5, label="peak PSS"),
               Patch(facecolor="0.35", alpha=0.35, label="peak RSS")]
    _legend(ax, handles, rows=rows)
    return _svg(fig, "memory")


def rps_vs_memory(rows: Labelled, colors: dict[str, str]) -> str:
    """One point per row: throughput against peak memory, log axes, with lines of equal rps per
    GB behind them, so the model that buys the most throughput per megabyte stands up and left.
    Docker rows are squares (their memory is the container's working set), anti-patterns crosses."""
    fig, ax = _figure()
    points = [(name, r) for name, r in rows if r.memory_mb.peak_pss and r.rps > 0]
    flagged = False
    for name, r in points:
        ax.scatter(r.memory_mb.peak_pss, r.rps, s=60, color=colors[r.target], zorder=3,
                   marker="X" if r.anti_pattern else ("s" if r.runtime == "docker" else "o"),
                   edgecolors="black", linewidths=0.5,
                   label=_legend_name(name, r))
        if r.flags:
            flagged |= _flag_rings(ax, [(r.memory_mb.peak_pss, r.rps)], size=180)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if points:
        mems = [r.memory_mb.peak_pss for _, r in points]
        lo, hi = min(mems) / 1.6, max(mems) * 1.6
        ax.set_xlim(lo, hi)
        for per_gb in (10, 100, 1000, 10000):  # rps = per_gb * MiB / 1024
            ax.plot([lo, hi], [per_gb * lo / 1024, per_gb * hi / 1024], color="0.8", linewidth=0.8,
                    linestyle=":", zorder=1)
            ax.annotate(f"{per_gb:g} rps/GB", (hi, per_gb * hi / 1024), fontsize=7, color="0.55",
                        xytext=(-4, 2), textcoords="offset points", ha="right", annotation_clip=True)
        rps = [r.rps for _, r in points]
        ax.set_ylim(min(rps) / 2, max(rps) * 2)
    _plain_ticks(ax.xaxis)
    _plain_ticks(ax.yaxis)
    ax.set_xlabel("peak memory of the whole target, MiB (log)")
    ax.set_ylabel("requests / s (log)")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, flagged_ring=flagged)
    return _svg(fig, "rps-memory")


def latency_bars(rows: Labelled, colors: dict[str, str]) -> str:
    """p50 / p95 / p99 per row as three bars of falling opacity, on a log axis (no p95 / p99 bar
    for a row of fewer than MIN_TAIL_SAMPLES samples)."""
    fig, ax = _figure()
    width = 0.27
    shades = {"p50": 1.0, "p95": 0.6, "p99": 0.3}
    for i, (_, r) in enumerate(rows):
        for j, (name, alpha) in enumerate(shades.items()):
            value = getattr(r.latency_ms, name)
            if name != "p50" and r.latency_n < MIN_TAIL_SAMPLES:
                continue  # a tail of too few samples is not drawn, as it is not printed
            if value:
                ax.bar(i + (j - 1) * width, value, width, color=colors[r.target], alpha=alpha,
                       hatch="//" if r.anti_pattern else None, edgecolor="black", linewidth=0.4)
    ax.set_yscale("log")
    _plain_ticks(ax.yaxis)
    _bar_ticks(ax, rows)
    ax.set_ylabel("latency, ms (log)")
    ax.grid(True, axis="y", which="major", alpha=0.3)
    handles = [Patch(facecolor="0.35", alpha=alpha, edgecolor="black", linewidth=0.4, label=name)
               for name, alpha in shades.items()]
    _legend(ax, handles, rows=rows)
    return _svg(fig, "latency")


def sweep(param: str, lines: dict[str, list[tuple[int, Result]]], colors: dict[str, str]) -> str:
    """rps and peak PSS against one swept parameter (e.g. workers), one line per target."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    rps_ax, mem_ax = fig.subplots(1, 2)
    flagged = False
    for name, points in lines.items():
        points = sorted(points, key=lambda p: p[0])
        first = points[0][1]
        xs = [value for value, _ in points]
        style = {"color": colors[first.target], "marker": "o", "markersize": 5,
                 "linestyle": "--" if first.anti_pattern else "-"}
        rps_ax.plot(xs, [r.rps for _, r in points], label=_legend_name(name, first), **style)
        mem_ax.plot(xs, [r.memory_mb.peak_pss for _, r in points], **style)
        for ax, value in ((rps_ax, lambda r: r.rps), (mem_ax, lambda r: r.memory_mb.peak_pss)):
            flagged |= _flag_rings(ax, [(x, value(r)) for x, r in points if r.flags])
    values = sorted({value for points in lines.values() for value, _ in points})
    for ax, ylabel in ((rps_ax, "requests / s"), (mem_ax, "peak PSS, MiB")):
        ax.set_xlabel(param)
        ax.set_ylabel(ylabel)
        ax.set_xticks(values)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    _legend(rps_ax, flagged_ring=flagged, loc="lower right", outside=False)
    return _svg(fig, f"sweep-{param}")


def time_to_result(lines: dict[str, list[Result]], colors: dict[str, str]) -> str:
    """The jobs scenario: time to result (p50, a bar up to p95) against jobs completed per second,
    one line per row label through its users levels; circles for jobs submitted and polled, squares
    for the same request answered synchronously. Log axes: 2 jobs/s and 100 jobs/s both readable."""
    fig, ax = _figure()
    flagged = False
    for name, results in lines.items():
        points = [r for r in results if r.rps > 0 and r.latency_ms.p50]
        if not points:
            continue
        first = points[0]
        x = [r.rps for r in points]
        y = [r.latency_ms.p50 for r in points]
        up = [max((r.latency_ms.p95 or p50) - p50, 0) if r.latency_n >= MIN_TAIL_SAMPLES else 0
              for r, p50 in zip(points, y, strict=True)]
        ax.errorbar(x, y, yerr=[[0] * len(y), up], color=colors[first.target], capsize=3,
                    marker="o" if first.jobs_endpoint == "jobs" else "s", markersize=6,
                    linestyle="--" if first.anti_pattern else "-", label=_legend_name(name, first))
        for r in points:
            ax.annotate(f"{r.users}", (r.rps, r.latency_ms.p50), fontsize=7, color="0.4",
                        xytext=(4, -9), textcoords="offset points")
        flagged |= _flag_rings(ax, [(r.rps, r.latency_ms.p50) for r in points if r.flags])
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_ticks(ax.xaxis)
    _plain_ticks(ax.yaxis)
    ax.set_xlabel("jobs completed / s (log; the small numbers are users)")
    ax.set_ylabel("time to result, ms (log)")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, flagged_ring=flagged)
    return _svg(fig, "jobs")


def capacity(lines: dict[str, list[Result]], knees: dict[str, tuple[int, float]], colors: dict[str, str],
             salt: str) -> str:
    """`bench capacity`: rps against users per target (log axes), each knee a star; lines that
    bend flat or fall have met their limit."""
    fig, ax = _figure()
    for name, results in lines.items():
        points = sorted((r.users, r.rps) for r in results)
        ax.plot([u for u, _ in points], [x for _, x in points], color=colors[name], marker="o", markersize=3,
                linewidth=1.2, label=name)
        if name in knees:
            ax.plot(*knees[name], color=colors[name], marker="*", markersize=13, markeredgecolor="black",
                    markeredgewidth=0.5, linestyle="none")
    levels = sorted({r.users for results in lines.values() for r in results})
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_ticks(ax.xaxis, levels)
    _plain_ticks(ax.yaxis)
    ax.set_xlabel("users (concurrent Locust users)")
    ax.set_ylabel("requests / s")
    ax.grid(True, which="major", alpha=0.3)
    handles = ax.get_legend_handles_labels()[0]
    handles.append(Line2D([], [], color="0.4", marker="*", markersize=11, linestyle="none",
                          label="knee: highest rps within the SLO"))
    _legend(ax, handles)
    return _svg(fig, f"capacity-{salt}")


def _flag_rings(ax: Axes, points: list[tuple[float, float]], size: float = 150) -> bool:
    """A red ring around each flagged point (not a framework result); True when any was drawn."""
    if points:
        ax.scatter(*zip(*points, strict=True), s=size, facecolors="none", edgecolors=FLAG_RED,
                   linewidths=1.5, zorder=4)
    return bool(points)


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    return fig, fig.add_subplot()


def _svg(fig: Figure, salt: str) -> str:
    """The figure as an <svg> element; a per-chart hash salt keeps ids unique within one page."""
    buf = io.StringIO()
    with mpl.rc_context({"svg.hashsalt": salt}):
        # No date (reproducible) and no RDF metadata block (bytes nobody reads).
        fig.savefig(buf, format="svg", metadata=dict.fromkeys(("Date", "Type", "Format", "Creator")))
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: it goes inline in HTML


def _legend_name(name: str, result: Result) -> str:
    return name + (" ⚠" if result.anti_pattern else "")


def _markers_per_target(lines: dict[str, list[Result]]) -> dict[str, str]:
    """Rows of one target share its colour; different params of it get different markers."""
    seen: dict[str, int] = {}
    out = {}
    for name, results in lines.items():
        n = seen[results[0].target] = seen.get(results[0].target, -1) + 1
        out[name] = MARKERS[n % len(MARKERS)]
    return out


def _plain_ticks(axis, ticks: Sequence[float] | None = None) -> None:
    """Log axes labelled 2, 10, 40 rather than 2×10⁰: at the given ticks, or matplotlib's own
    (minor ones too when the axis spans only a decade or two, so a short axis still has labels)."""
    if ticks is not None:
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_minor_locator(NullLocator())
        formatter = ScalarFormatter()
        formatter.set_scientific(False)
        axis.set_major_formatter(formatter)
        return
    axis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


class _PlainLogFormatter(LogFormatter):
    """LogFormatter's choice of which ticks get a label, written plainly (20000, not 2e+04)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _bar_ticks(ax: Axes, rows: Labelled) -> None:
    """One tick per row; ⚠ for anti-patterns, a red "*" for flagged results."""
    ax.set_xticks(range(len(rows)),
                  [_legend_name(name, r) + (" *" if r.flags else "") for name, r in rows],
                  rotation=30, ha="right", fontsize=8)
    for tick, (_, r) in zip(ax.get_xticklabels(), rows, strict=True):
        if r.flags:
            tick.set_color(FLAG_RED)
    ax.set_xlim(-0.6, len(rows) - 0.4)


def _legend(ax: Axes, handles: list | None = None, *, rows: Labelled = (), flagged_ring: bool = False,
            loc: str = "upper left", outside: bool = True) -> None:
    if handles is None:
        handles = ax.get_legend_handles_labels()[0]
    handles = list(handles)
    if any(r.anti_pattern for _, r in rows):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="⚠ anti-pattern"))
    if any(r.flags for _, r in rows):
        handles.append(Line2D([], [], color=FLAG_RED, marker="$*$", linestyle="none",
                              label="* flagged: not a framework result"))
    if flagged_ring:
        handles.append(Line2D([], [], color=FLAG_RED, marker="o", markerfacecolor="none", markersize=9,
                              linestyle="none", label="flagged: not a framework result"))
    where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1)} if outside else {"loc": loc}
    ax.legend(handles=handles, fontsize=8, frameon=False, **where)


def recovery_bars(rows: dict[str, dict[str, float]], colors: dict[str, str]) -> str:
    """`bench faults`: time to recover (ms) per fault, a bar per target. rows: target → fault → ms."""
    faults = list(dict.fromkeys(f for per in rows.values() for f in per))
    fig, ax = _figure()
    width = 0.8 / max(len(rows), 1)
    for i, (target, per) in enumerate(rows.items()):
        xs = [faults.index(f) + i * width for f in per]
        ax.bar(xs, list(per.values()), width=width, color=colors[target], label=target)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(faults))], faults, fontsize=8)
    ax.set_ylabel("time to recover, ms")
    ax.set_yscale("log")
    _plain_ticks(ax.yaxis)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return _svg(fig, "recovery")


def memory_over_time(series: dict[str, list[tuple[float, float]]], colors: dict[str, str]) -> str:
    """`bench soak`: each target's memory (MiB) against minutes under load."""
    fig, ax = _figure()
    for target, points in series.items():
        ax.plot([t / 60 for t, _ in points], [mb for _, mb in points], color=colors[target], label=target)
    ax.set_xlabel("minutes under load")
    ax.set_ylabel("memory, MiB")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return _svg(fig, "soak-memory")


FLAME_ROW_IN = 0.17  # height of one stack level, inches
FLAME_WIDTH_IN = 12.0
FLAME_FONT_PT = 6.5


def flame_graph(stacks: Mapping[tuple[str, ...], int], layer_of: Callable[[str], str | None],
                colors: Mapping[str, str], salt: str, min_share: float = 0.004, max_depth: int = 80) -> str:
    """`bench profile`: folded stacks (root first -> samples) as a flame graph, the root at the bottom
    and each frame as wide as its samples, the widest first ("left heavy"). A frame is drawn in its
    layer's colour, or where it has none in its caller's (the layer its own time counts for); frames
    under `min_share` of all samples are left out, and a label is the function's name, cut to fit."""
    total = sum(stacks.values())
    tree: dict = {}  # frame -> [samples, children]
    for stack, n in stacks.items():
        level = tree
        for frame in stack[:max_depth]:
            node = level.setdefault(frame, [0, {}])
            node[0] += n
            level = node[1]
    rects: list[tuple[float, int, int, str, str]] = []  # x, depth, samples, frame, layer

    def place(level: dict, x: float, depth: int, caller: str) -> None:
        for frame, (n, children) in sorted(level.items(), key=lambda kv: (-kv[1][0], kv[0])):
            if n < min_share * total:
                break  # the rest are narrower still
            layer = layer_of(frame) or caller
            rects.append((x, depth, n, frame, layer))
            place(children, x, depth + 1, layer)
            x += n

    place(tree, 0.0, 0, "other")
    depth = max((d for _, d, _, _, _ in rects), default=0) + 1
    fig = Figure(figsize=(FLAME_WIDTH_IN, 0.9 + depth * FLAME_ROW_IN), layout="constrained")
    ax = fig.add_subplot()
    patches = [Rectangle((x, d), n, 0.92) for x, d, n, _, _ in rects]
    ax.add_collection(PatchCollection(patches, facecolors=[_shade(colors.get(layer, "#9e9e9e"), frame)
                                                           for _, _, _, frame, layer in rects],
                                      edgecolors="white", linewidths=0.3))
    points_per_sample = 0.96 * FLAME_WIDTH_IN * 72 / max(total, 1)
    for x, d, n, frame, _ in rects:
        fits = int(n * points_per_sample / (0.6 * FLAME_FONT_PT)) - 1
        label = flame_label(frame)
        if fits >= 4:
            ax.text(x + 2 / points_per_sample, d + 0.46, label if len(label) <= fits
                    else label[:fits - 1] + "…", fontsize=FLAME_FONT_PT, va="center", ha="left",
                    clip_on=True)
    ax.set_xlim(0, max(total, 1))
    ax.set_ylim(0, depth)
    ax.axis("off")
    present = {layer for *_, layer in rects}
    handles = [Patch(facecolor=color, label=layer) for layer, color in colors.items() if layer in present]
    ax.legend(handles=handles, fontsize=8, frameon=False, ncols=len(handles) or 1, loc="lower left",
              bbox_to_anchor=(0, 1.0))
    return _svg(fig, f"flame-{salt}")


def flame_label(frame: str) -> str:
    """A frame's function name: "Client.request" of "Client.request (openai/_base_client.py)",
    "(anonymous)" of "(anonymous) (node_app/server.js)", "gin.(*Context).Next" of
    "github.com/gin-gonic/gin.(*Context).Next"."""
    name = frame.rsplit(" (", 1)[0] if frame.endswith(")") and " (" in frame else frame
    return name.rsplit("/", 1)[-1]


def _shade(color: str, frame: str) -> tuple[float, float, float]:
    """The layer's colour lightened by up to 35 %, the same for a frame every time: neighbours differ."""
    mix = (zlib.crc32(frame.encode()) % 36) / 100
    r, g, b = mpl.colors.to_rgb(color)
    return (r + (1 - r) * mix, g + (1 - g) * mix, b + (1 - b) * mix)
