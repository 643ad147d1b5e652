// Concurrency Lab additions to Locust's web UI (served by web_session.py, loaded by the index page).
// - The "Comparison" tab (registered through Locust's extended_tabs, so it sits among Locust's own)
//   shows the session's recorded swarms: a panel placed right after the tab bar, where a tab's
//   content goes (Locust renders nothing there for this tab), rendered by the server
//   (GET ./lab/comparison) and refreshed every 2 s while the tab is open.
// - The start form's Host field lists the targets that are up (GET ./lab/hosts) in a <datalist>:
//   pick one, or type any URL as before.
(() => {
  "use strict";
  const REFRESH_MS = 2000;
  const panel = document.createElement("div");
  panel.id = "lab-comparison";
  panel.hidden = true;
  const hostList = document.createElement("datalist");
  hostList.id = "lab-hosts";
  let shownHtml = "";
  let lastFetch = 0;

  function comparisonSelected() {
    const tab = [...document.querySelectorAll('[role="tab"]')]
      .find((t) => t.textContent.trim() === "Comparison");
    return Boolean(tab) && tab.getAttribute("aria-selected") === "true";
  }

  async function refreshPanel(force) {
    if (!force && Date.now() - lastFetch < REFRESH_MS) return;
    lastFetch = Date.now();
    const resp = await fetch("./lab/comparison", { cache: "no-store" });
    const html = await resp.text();
    if (html !== shownHtml) { // replacing identical HTML would reset the reader's selection
      shownHtml = html;
      panel.innerHTML = html;
    }
  }

  async function refreshHosts() {
    const resp = await fetch("./lab/hosts", { cache: "no-store" });
    const hosts = await resp.json();
    hostList.replaceChildren(...hosts.map((h) => {
      const option = document.createElement("option");
      option.value = h.url;
      option.label = `${h.target}: ${h.model}`;
      return option;
    }));
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

  panel.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    if (button.dataset.action === "delete") {
      await fetch(`./lab/comparison/rows/${encodeURIComponent(button.dataset.id)}`, { method: "DELETE" });
    } else if (button.dataset.action === "clear") {
      if (!window.confirm("Delete every recorded swarm of this session?")) return;
      await fetch("./lab/comparison", { method: "DELETE" });
    }
    await refreshPanel(true);
  });

  function placePanel() {
    // After the box that holds the tab bar; React re-creates that box when the UI switches between
    // the start form and the tabs, so the panel is put back whenever it is not there.
    const tabs = document.querySelector('[role="tablist"]');
    const box = tabs && tabs.closest(".MuiTabs-root") && tabs.closest(".MuiTabs-root").parentElement;
    if (box && panel.previousElementSibling !== box) box.after(panel);
  }

  function tick() {
    attachHostList();
    placePanel();
    const open = comparisonSelected();
    if (open && panel.hidden) lastFetch = 0; // just opened: show the rows at once
    panel.hidden = !open;
    if (open) refreshPanel(false).catch(() => {});
  }

  document.body.append(hostList);
  new MutationObserver(attachHostList).observe(document.getElementById("root") || document.body,
    { childList: true, subtree: true });
  setInterval(tick, 500);
  tick();
})();
