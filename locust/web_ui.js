// Concurrency Lab additions to Locust's web UI (served by web_session.py, loaded by the index page).
// - The "Comparison" tab (registered through Locust's extended_tabs, so it sits among Locust's own,
//   and shown under the start form before any swarm, and alone at ./lab/): a panel that holds the Compare form
//   (targets that are up x users levels, a window: POST ./lab/compare), the session picker (this
//   session, or an earlier one or a CLI run of the same results folder, read-only) with "compare
//   with" (bench diff's judgement), the downloads, and per scenario one sortable table with every
//   column (GET ./lab/table) and its charts (./lab/charts.js), refreshed every 2 s while open.
// - The start form's Host field lists the targets that are up (GET ./lab/hosts) in a <datalist>.
(() => {
  "use strict";
  const REFRESH_MS = 2000;
  const STYLE = `
    #lab-comparison { padding: 8px 24px 48px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
    #lab-comparison h3 { margin: 18px 0 6px; font-size: 1.05em; }
    #lab-comparison .lab-bar { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin: 4px 0; }
    #lab-comparison .lab-bar a, #lab-comparison button, #lab-comparison select, #lab-comparison input {
      font: inherit; padding: 3px 8px; border: 1px solid rgba(128,128,128,.6); border-radius: 4px;
      background: none; color: inherit; }
    #lab-comparison .lab-bar a { text-decoration: none; }
    #lab-comparison button { cursor: pointer; }
    #lab-comparison select option { color: #000; }
    #lab-comparison fieldset { border: 1px solid rgba(128,128,128,.4); border-radius: 6px; margin: 8px 0; padding: 6px 12px 10px; }
    #lab-comparison fieldset label { margin-right: 14px; white-space: nowrap; }
    #lab-comparison input[type=number] { width: 6em; }
    #lab-comparison .lab-note { opacity: 0.75; max-width: 110em; }
    #lab-comparison .lab-problem { color: #d62728; }
    #lab-comparison .lab-scroll { overflow-x: auto; max-width: 100%; }
    #lab-comparison table { border-collapse: collapse; font-size: 12px; margin: 4px 0 10px; }
    #lab-comparison th, #lab-comparison td { padding: 3px 6px; border-bottom: 1px solid rgba(128,128,128,.35);
      text-align: left; vertical-align: top; }
    #lab-comparison th { cursor: pointer; user-select: none; white-space: nowrap; }
    #lab-comparison th[aria-sort=ascending]::after { content: " ▲"; }
    #lab-comparison th[aria-sort=descending]::after { content: " ▼"; }
    #lab-comparison td.num, #lab-comparison th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
    #lab-comparison td.lab-target { white-space: nowrap; }
    #lab-comparison td.flags { min-width: 18em; }
    #lab-comparison tr.anti-pattern { background: rgba(255, 196, 0, .14); }
    #lab-comparison tr.flagged td.flags { color: #d62728; }
    #lab-comparison button.lab-delete { border: none; opacity: .6; padding: 0 4px; }
    #lab-comparison .lab-charts { display: flex; flex-wrap: wrap; gap: 18px; }
    #lab-comparison figure.lab-chart { margin: 6px 0; }
    #lab-comparison figcaption { font-size: 12px; max-width: 520px; }
    #lab-comparison .beyond { font-weight: bold; }`;

  const panel = document.createElement("div");
  panel.id = "lab-comparison";
  panel.hidden = true;
  panel.innerHTML = `<style>${STYLE}</style>
    <div class="lab-bar">
      <label>Session <select id="lab-run"></select></label>
      <label>compare with <select id="lab-with"><option value="">—</option></select></label>
      <span id="lab-downloads"></span>
      <button type="button" id="lab-clear">Clear session</button>
    </div>
    <form id="lab-compare" autocomplete="off">
      <fieldset><legend>Compare: each target at each users level in turn (warm-up, window, drain), as
        <code>bench compare --targets … --users …</code> measures it</legend>
        <div id="lab-targets" class="lab-bar"><span class="lab-note">looking for the targets that are up…</span></div>
        <div class="lab-bar">
          <label>users <input name="users" value="1, 50" size="14"></label>
          <label>window s <input name="window_s" type="number" min="3" max="600" value="10"></label>
          <label>db ms <input name="db_ms" type="number" min="0" max="5000"></label>
          <label>llm ms <input name="llm_ms" type="number" min="0" max="20000"></label>
          <button type="submit" id="lab-start">Compare</button>
          <button type="button" id="lab-cancel" hidden>Cancel</button>
          <progress id="lab-progress" hidden></progress>
          <span id="lab-status" class="lab-note"></span>
        </div>
      </fieldset>
    </form>
    <p id="lab-problem" class="lab-problem" hidden></p>
    <div id="lab-diff"></div>
    <div id="lab-groups"></div>`;
  const $ = (sel) => panel.querySelector(sel);
  const hostList = document.createElement("datalist");
  hostList.id = "lab-hosts";
  const state = { run: "", current: "", with: "", table: null, tableKey: "", sort: {}, lastFetch: 0,
    workloadSet: false, hostsShown: "" };

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  async function json(url, options) {
    const resp = await fetch(url, { cache: "no-store", ...(options || {}) });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error((body.error && body.error.message) || `HTTP ${resp.status}`);
    return body;
  }

  // --- charts: one script for the tab and the session's report.html ---------------------------
  let chartsLoaded = null;
  function loadCharts() {
    chartsLoaded = chartsLoaded || new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "./lab/charts.js";
      script.onload = resolve;
      script.onerror = reject;
      document.head.append(script);
    });
    return chartsLoaded;
  }

  // --- the table ----------------------------------------------------------------------------
  function compareValues(a, b, numeric) {
    const missing = (v) => v === null || v === undefined || v === "";
    if (missing(a) || missing(b)) return missing(a) - missing(b); // blanks last either way
    return numeric ? a - b : String(a).localeCompare(String(b));
  }

  function sortedRows(group) {
    const sort = state.sort[group.key];
    if (!sort) return group.rows;
    const numeric = group.columns[sort.col].numeric;
    const rows = [...group.rows];
    rows.sort((x, y) => {
      const c = compareValues(x.values[sort.col], y.values[sort.col], numeric);
      return sort.dir === "descending" ? -c : c;
    });
    return rows;
  }

  function renderTable(group, deletable) {
    const table = document.createElement("table");
    table.className = "lab-table comparison";
    table.dataset.group = group.key;
    const head = table.createTHead().insertRow();
    if (deletable) head.append(document.createElement("td"));
    const sort = state.sort[group.key];
    group.columns.forEach((col, i) => {
      const th = document.createElement("th");
      th.textContent = col.title;
      th.dataset.col = i;
      if (col.numeric) th.className = "num";
      if (sort && sort.col === i) th.setAttribute("aria-sort", sort.dir);
      th.title = "sort by this column";
      head.append(th);
    });
    const body = table.createTBody();
    for (const row of sortedRows(group)) {
      const tr = body.insertRow();
      tr.className = row.marks.join(" ");
      tr.dataset.id = row.id;
      if (deletable) {
        const td = tr.insertCell();
        if (!row.id.startsWith("#")) {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "lab-delete";
          button.dataset.id = row.id;
          button.title = "delete this row";
          button.textContent = "✕";
          td.append(button);
        }
      }
      row.cells.forEach((cell, i) => {
        const td = tr.insertCell();
        td.textContent = cell;
        const col = group.columns[i];
        td.className = [i === 0 ? "lab-target" : "", col.numeric ? "num" : "", col.key].join(" ").trim();
      });
    }
    const scroll = document.createElement("div");
    scroll.className = "lab-scroll";
    scroll.append(table);
    return scroll;
  }

  async function renderGroups() {
    const box = $("#lab-groups");
    const table = state.table;
    box.replaceChildren();
    if (!table.groups.length) {
      box.innerHTML = `<p class="lab-note">No row yet. Every swarm is recorded from the end of its ramp-up
        (each user answered once) to Stop, to the form's "Record s", or to a change of users, then drained
        (its requests followed to their end); the Compare form above records each target at each level.</p>`;
      return;
    }
    await loadCharts().catch(() => {});
    for (const group of table.groups) {
      const h = document.createElement("h3");
      h.textContent = group.title;
      const charts = document.createElement("div");
      charts.className = "lab-charts";
      charts.dataset.group = group.key;
      box.append(h, renderTable(group, table.current), charts);
      if (window.LabCharts) window.LabCharts.draw(charts, group.points);
    }
    const note = document.createElement("p");
    note.className = "lab-note";
    note.textContent = "Rows are measured as bench compare measures a level: latency over the requests " +
      "started in the window, each followed to its end (n samples; unfinished ones count with their wait " +
      "so far); rps = valid answers in the window per second; W = users / rps (Little's law). A flagged " +
      "row is not a framework result. Memory in MiB: PSS natively, the container's working set under " +
      "Docker. Click a column's head to sort.";
    box.append(note);
  }

  function renderDownloads() {
    const run = encodeURIComponent(state.run);
    const links = [["comparison.csv", "CSV"], ["results.json", "results.json"], ["report.md", "report.md"],
      ["report.html", "report.html"]];
    const box = $("#lab-downloads");
    box.replaceChildren(...links.map(([name, label]) => {
      const a = document.createElement("a");
      a.href = `./lab/session/${name}?run=${run}`;
      a.textContent = label;
      if (name === "report.html") a.target = "_blank";
      else a.setAttribute("download", "");
      a.dataset.download = name;
      return a;
    }));
  }

  async function refreshTable(force) {
    const key = `${state.run}|${state.rowsSeen}`;
    if (!force && key === state.tableKey) return;
    state.table = await json(`./lab/table?run=${encodeURIComponent(state.run)}`);
    state.tableKey = key;
    await renderGroups();
  }

  // --- "compare with": bench diff ----------------------------------------------------------
  function pct(value) {
    return value === null || value === undefined ? "—" : `${value > 0 ? "+" : ""}${value.toFixed(1)} %`;
  }

  async function refreshDiff() {
    const box = $("#lab-diff");
    if (!state.with) {
      box.replaceChildren();
      return;
    }
    const d = await json(`./lab/diff?a=${encodeURIComponent(state.with)}&b=${encodeURIComponent(state.run)}`);
    const table = document.createElement("table");
    table.className = "lab-table lab-diff";
    const head = table.createTHead().insertRow();
    for (const title of ["cell", `rps ${d.a}`, `rps ${d.b}`, "rps change", "W change", "peak memory change",
      "judgement"]) {
      const th = document.createElement("th");
      th.textContent = title;
      head.append(th);
    }
    const body = table.createTBody();
    for (const c of d.cells) {
      const tr = body.insertRow();
      if (c.judgement === "beyond the spread") tr.className = "beyond";
      for (const cell of [c.cell, c.a.rps.toFixed(1), c.b.rps.toFixed(1), pct(c.rps_change_pct),
        pct(c.w_change_pct), pct(c.peak_change_pct), c.judgement]) tr.insertCell().textContent = cell;
    }
    for (const [cells, where] of [[d.only_a, `only in ${d.a}`], [d.only_b, `only in ${d.b}`]]) {
      for (const cell of cells) {
        const tr = body.insertRow();
        for (const value of [cell, "", "", "", "", "", where]) tr.insertCell().textContent = value;
      }
    }
    const h = document.createElement("h3");
    h.textContent = `Compared with ${d.a} (bench diff ${d.a} ${d.b})`;
    const note = document.createElement("p");
    note.className = "lab-note";
    note.textContent = "A change is beyond the spread when the two runs' min–max ranges do not overlap " +
      "(bench compare --repeat N); a cell measured once in both runs cannot be judged." +
      (d.claims.length ? ` Claims whose verdict changed: ${d.claims.map((c) => `${c.id} ${c.a} → ${c.b}`).join("; ")}.` : "");
    const scroll = document.createElement("div");
    scroll.className = "lab-scroll";
    scroll.append(table);
    box.replaceChildren(h, scroll, note);
  }

  // --- sessions ----------------------------------------------------------------------------
  async function refreshRuns() {
    const runs = await json("./lab/runs");
    const listed = JSON.stringify(runs.map((r) => [r.run_id, r.rows]));
    if (listed === state.runsListed) return; // rebuilt only when a run or a row count changed
    state.runsListed = listed;
    for (const [select, blank] of [[$("#lab-run"), false], [$("#lab-with"), true]]) {
      const chosen = select.value;
      const options = runs.map((r) => {
        const option = document.createElement("option");
        option.value = r.run_id;
        option.textContent = `${r.run_id}${r.run_id === state.current ? " (this session)" : ""} · ${r.kind} · ${r.rows} rows`;
        return option;
      });
      if (blank) {
        const none = document.createElement("option");
        none.value = "";
        none.textContent = "—";
        options.unshift(none);
      }
      select.replaceChildren(...options);
      select.value = chosen || (blank ? "" : state.run);
    }
  }

  // --- the Compare form and the status -----------------------------------------------------
  async function refreshHosts() {
    const hosts = await json("./lab/hosts");
    hostList.replaceChildren(...hosts.map((h) => {
      const option = document.createElement("option");
      option.value = h.url;
      option.label = `${h.target}: ${h.model}`;
      return option;
    }));
    const shown = hosts.map((h) => h.url).join(" ");
    if (shown === state.hostsShown) return;
    state.hostsShown = shown;
    const box = $("#lab-targets");
    const checked = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
    box.replaceChildren(...hosts.map((h) => {
      const label = document.createElement("label");
      label.title = h.model;
      const input = document.createElement("input");
      input.type = "checkbox";
      input.name = "hosts";
      input.value = h.url;
      input.dataset.target = h.target;
      input.checked = checked.has(h.url);
      label.append(input, ` ${h.target}`);
      return label;
    }));
    if (!hosts.length) box.innerHTML = `<span class="lab-note">no target is up</span>`;
  }

  function showStatus(info) {
    const cmp = info.compare;
    const running = cmp && !cmp.finished;
    const form = $("#lab-compare");
    form.hidden = !state.table || !state.table.current;
    $("#lab-start").disabled = Boolean(running);
    $("#lab-cancel").hidden = !running;
    const progress = $("#lab-progress");
    progress.hidden = !running;
    if (running) {
      progress.max = cmp.cells;
      progress.value = cmp.done;
    }
    const rec = info.recording;
    let status = "";
    if (running) status = `cell ${Math.min(cmp.done + 1, cmp.cells)} of ${cmp.cells}: ${cmp.current}`;
    else if (cmp && cmp.finished) status = `compared ${cmp.done} of ${cmp.cells} cells${cmp.cancelled ? " (cancelled)" : ""}`;
    if (rec) status += `${status ? " · " : ""}recording ${rec.host} at ${rec.users} users: ${rec.phase}` +
      (rec.phase === "window" ? ` ${rec.window_s} s${rec.record_s ? ` of ${rec.record_s}` : ""}` : "");
    $("#lab-status").textContent = status;
    const problems = [info.problem, ...((cmp && cmp.problems) || [])].filter(Boolean);
    const problem = $("#lab-problem");
    problem.hidden = !problems.length;
    problem.textContent = problems.join(" · ");
    if (!state.workloadSet && info.workload) {
      form.elements.db_ms.value = info.workload.db_ms;
      form.elements.llm_ms.value = info.workload.llm_ms;
      state.workloadSet = true;
    }
  }

  async function refresh(force) {
    if (!force && Date.now() - state.lastFetch < REFRESH_MS) return;
    state.lastFetch = Date.now();
    const info = await json("./lab/session");
    if (!state.current) {
      state.current = info.run_id;
      state.run = state.run || info.run_id;
      renderDownloads();
    }
    state.rowsSeen = state.run === state.current ? info.rows : "read-only";
    await Promise.all([refreshRuns(), refreshHosts()]);
    await refreshTable(force);
    $("#lab-clear").hidden = state.run !== state.current;
    showStatus(info);
  }

  $("#lab-compare").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const hosts = [...form.querySelectorAll("input[name=hosts]:checked")].map((i) => i.value);
    const users = form.elements.users.value.split(/[\s,]+/).filter(Boolean).map(Number);
    const body = { hosts, users, window_s: Number(form.elements.window_s.value),
      db_ms: Number(form.elements.db_ms.value), llm_ms: Number(form.elements.llm_ms.value) };
    try {
      await json("./lab/compare", { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify(body) });
      $("#lab-problem").hidden = true;
    } catch (err) {
      $("#lab-problem").hidden = false;
      $("#lab-problem").textContent = err.message;
    }
    await refresh(true);
  });

  $("#lab-cancel").addEventListener("click", async () => {
    await fetch("./lab/compare", { method: "DELETE" });
    await refresh(true);
  });

  $("#lab-clear").addEventListener("click", async () => {
    if (!window.confirm("Delete every row of this session?")) return;
    await fetch("./lab/comparison", { method: "DELETE" });
    await refresh(true);
  });

  $("#lab-run").addEventListener("change", async (event) => {
    state.run = event.target.value;
    renderDownloads();
    await refresh(true);
    await refreshDiff();
  });

  $("#lab-with").addEventListener("change", async (event) => {
    state.with = event.target.value;
    await refreshDiff().catch((err) => { $("#lab-diff").textContent = err.message; });
  });

  panel.addEventListener("click", async (event) => {
    const th = event.target.closest("th[data-col]");
    if (th) {
      const key = th.closest("table").dataset.group;
      const col = Number(th.dataset.col);
      const sort = state.sort[key];
      state.sort[key] = { col, dir: sort && sort.col === col && sort.dir === "ascending" ? "descending" : "ascending" };
      await renderGroups();
      return;
    }
    const button = event.target.closest("button.lab-delete");
    if (button) {
      await fetch(`./lab/comparison/rows/${encodeURIComponent(button.dataset.id)}`, { method: "DELETE" });
      await refresh(true);
    }
  });

  // --- placing the panel and the Host list ---------------------------------------------------
  function comparisonSelected() {
    const tab = [...document.querySelectorAll('[role="tab"]')]
      .find((t) => t.textContent.trim() === "Comparison");
    return Boolean(tab) && tab.getAttribute("aria-selected") === "true";
  }

  function attachHostList() {
    for (const input of document.querySelectorAll('input[name="host"]')) {
      if (input.getAttribute("list") !== hostList.id) {
        input.setAttribute("list", hostList.id);
        input.setAttribute("autocomplete", "off");
        refreshHosts().catch(() => {});
      }
    }
  }

  function placePanel() {
    // With the tabs shown (a swarm has run): after the box that holds the tab bar, where a tab's
    // content goes, visible while the Comparison tab is selected. React re-creates that box when the
    // UI switches views, so the panel is put back whenever it is not there. On the start form (no
    // tabs yet): right under the form, so a comparison needs no swarm first. On ./lab/ alone: the page.
    if (document.body.dataset.lab === "standalone") {
      if (panel.parentElement !== document.body) document.body.append(panel);
      return true;
    }
    const tabs = document.querySelector('[role="tablist"]');
    const box = tabs && tabs.closest(".MuiTabs-root") && tabs.closest(".MuiTabs-root").parentElement;
    if (box) {
      if (panel.previousElementSibling !== box) box.after(panel);
      return comparisonSelected();
    }
    const form = document.querySelector('input[name="userCount"]');
    const holder = form && (form.closest(".MuiContainer-root") || form.closest("form"));
    if (holder) {
      if (panel.previousElementSibling !== holder) holder.after(panel);
      return true;
    }
    return false;
  }

  function tick() {
    attachHostList();
    const open = placePanel();
    if (open && panel.hidden) state.lastFetch = 0; // just opened: show the rows at once
    panel.hidden = !open;
    if (open) refresh(false).catch((err) => { $("#lab-status").textContent = err.message; });
  }

  document.body.append(hostList);
  new MutationObserver(attachHostList).observe(document.getElementById("root") || document.body,
    { childList: true, subtree: true });
  setInterval(tick, 500);
  tick();
})();
