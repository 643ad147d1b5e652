// The comparison's charts, drawn as SVG from bench.comparison.chart_points: the Locust web UI's
// Comparison tab and a web-UI session's report.html load this one script, so both draw the same.
//   LabCharts.draw(element, points) -> three <figure>s: rps against peak memory (one point per row),
//   rps per row, and p50 / p95 / p99 per row (log axis: a queue's waits are seconds, a free model's ms).
(() => {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf"];
  const TAILS = [["p50", 1], ["p95", 0.65], ["p99", 0.35]];

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function colors(points) {
    const targets = [...new Set(points.map((p) => p.target))];
    return Object.fromEntries(targets.map((t, i) => [t, PALETTE[i % PALETTE.length]]));
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const step = 10 ** Math.floor(Math.log10(value));
    return [1, 2, 2.5, 5, 10].map((m) => m * step).find((v) => v >= value);
  }

  function linearTicks(max) {
    return [0, 0.25, 0.5, 0.75, 1].map((f) => f * max);
  }

  function fmt(value) {
    return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
  }

  function figure(key, title, caption) {
    const fig = document.createElement("figure");
    fig.className = "lab-chart";
    fig.dataset.chart = key;
    const head = document.createElement("figcaption");
    head.innerHTML = "<strong></strong> <span></span>";
    head.firstChild.textContent = title;
    head.lastChild.textContent = caption;
    fig.append(head);
    return fig;
  }

  function axisText(svg, x, y, text, anchor, extra) {
    svg.append(el("text", { x, y, "text-anchor": anchor || "middle", "font-size": 11, fill: "currentColor",
      ...(extra || {}) }, text));
  }

  function scatter(points, color) {
    const fig = figure("rps-memory", "Throughput against memory",
      "one point per row: rps against peak memory (MiB); up and to the left buys more throughput per MiB");
    const W = 520, H = 320, L = 56, R = 16, T = 12, B = 40;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
    const shown = points.filter((p) => p.peak_mib !== null && p.peak_mib !== undefined);
    const xMax = niceMax(Math.max(...shown.map((p) => p.peak_mib), 1));
    const yMax = niceMax(Math.max(...shown.map((p) => p.rps), 1));
    const x = (v) => L + (v / xMax) * (W - L - R);
    const y = (v) => H - B - (v / yMax) * (H - T - B);
    for (const t of linearTicks(xMax)) {
      svg.append(el("line", { x1: x(t), x2: x(t), y1: T, y2: H - B, stroke: "currentColor", "stroke-opacity": 0.15 }));
      axisText(svg, x(t), H - B + 14, fmt(t));
    }
    for (const t of linearTicks(yMax)) {
      svg.append(el("line", { x1: L, x2: W - R, y1: y(t), y2: y(t), stroke: "currentColor", "stroke-opacity": 0.15 }));
      axisText(svg, L - 6, y(t) + 4, fmt(t), "end");
    }
    axisText(svg, (L + W - R) / 2, H - 6, "peak memory, MiB");
    axisText(svg, 14, (T + H - B) / 2, "rps", "middle", { transform: `rotate(-90 14 ${(T + H - B) / 2})` });
    for (const p of shown) {
      const dot = el("circle", { cx: x(p.peak_mib), cy: y(p.rps), r: 6, stroke: color[p.target],
        "stroke-width": 2, fill: p.flagged ? "none" : color[p.target], class: "lab-point" });
      dot.append(el("title", {}, `${p.label}: ${fmt(p.rps)} rps, ${fmt(p.peak_mib)} MiB` +
        (p.flagged ? " (flagged)" : "")));
      svg.append(dot);
      axisText(svg, x(p.peak_mib) + 9, y(p.rps) - 8, p.label, "start", { "font-size": 10 });
    }
    fig.append(svg);
    return fig;
  }

  function bars(key, title, caption, points, color, series, log) {
    const fig = figure(key, title, caption);
    const row = 22, W = 520, L = 170, R = 60, T = 8;
    const H = T + points.length * row + 30;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
    const values = points.flatMap((p) => series.map(([name]) => p[name])).filter((v) => v > 0);
    const top = log ? 10 ** Math.ceil(Math.log10(Math.max(...values, 10))) : niceMax(Math.max(...values, 1));
    const bottom = log ? 10 ** Math.floor(Math.log10(Math.min(...values, top / 10))) : 0;
    const x = (v) => L + (log ? Math.log10(v / bottom) / Math.log10(top / bottom) : v / top) * (W - L - R);
    const ticks = log ? Array.from({ length: Math.round(Math.log10(top / bottom)) + 1 }, (_, i) => bottom * 10 ** i)
      : linearTicks(top);
    for (const t of ticks) {
      svg.append(el("line", { x1: x(t), x2: x(t), y1: T, y2: H - 24, stroke: "currentColor", "stroke-opacity": 0.15 }));
      axisText(svg, x(t), H - 10, fmt(t));
    }
    points.forEach((p, i) => {
      const y0 = T + i * row;
      axisText(svg, L - 6, y0 + row / 2 + 4, p.label, "end", { "font-size": 10 });
      const height = (row - 6) / series.length;
      series.forEach(([name, opacity], j) => {
        const value = p[name];
        if (!(value > 0)) return;
        const bar = el("rect", { x: L, y: y0 + 3 + j * height, width: Math.max(x(value) - L, 1),
          height: height - 1, fill: color[p.target], "fill-opacity": p.flagged ? opacity * 0.45 : opacity,
          class: "lab-bar", "data-series": name });
        bar.append(el("title", {}, `${p.label} ${name}: ${fmt(value)}` + (p.flagged ? " (flagged)" : "")));
        svg.append(bar);
      });
      const last = series.map(([name]) => p[name]).filter((v) => v > 0).pop();
      if (last) axisText(svg, x(last) + 4, y0 + row / 2 + 4, fmt(last), "start", { "font-size": 10 });
    });
    fig.append(svg);
    return fig;
  }

  function draw(container, points) {
    const color = colors(points);
    container.replaceChildren(
      scatter(points, color),
      bars("rps", "Throughput per row", "valid answers per second; a paler bar is a flagged row",
        points, color, [["rps", 0.9]], false),
      bars("latency", "Latency percentiles", "p50, p95, p99 in ms, log axis (a tail of fewer than 20 " +
        "samples is left out)", points, color, TAILS, true));
  }

  window.LabCharts = { draw };
})();
