// The console's only script: confirmations for destructive buttons and the live audit view.
// No inline scripts anywhere (the Content-Security-Policy forbids them); the pages work without
// this file, except for the live view.
"use strict";

document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const message = button && button.dataset.confirm;
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

function text(value) {
  return value === undefined || value === null ? "" : String(value);
}

function cell(row, value, className) {
  const td = document.createElement("td");
  td.textContent = text(value);
  if (className) td.className = className;
  row.appendChild(td);
}

function eventRow(e) {
  const row = document.createElement("tr");
  const decision = e.decision || e.outcome || "";
  const http = e.http || {};
  const details = e.details || {};
  row.className = "decision-" + decision;
  cell(row, text(e.time).slice(0, 19).replace("T", " "), "mono small");
  cell(row, (e.actor || {}).subject || "—");
  cell(row, e.type === "security" ? e.event : `${text(e.operation)} ${text(http.method)} ${text(http.path)} → ${text(http.status)}`);
  cell(row, (e.resources || []).join(" ") || details.rule || (details.user ? "user:" + details.user : ""), "mono small");
  const verdict = document.createElement("td");
  const badge = document.createElement("span");
  badge.className = "state " + (decision === "allow" || decision === "success" ? "active" : "denied");
  badge.textContent = decision;
  verdict.append(badge, e.action ? " " + e.action : "");
  row.appendChild(verdict);
  cell(row, e.reason || "");
  return row;
}

function startLiveView(table) {
  const rows = document.getElementById("live-rows");
  const state = document.getElementById("live-state");
  const toggle = document.getElementById("live-toggle");
  const filters = document.getElementById("live-filters");
  let after = null;
  let paused = false;
  let first = true;

  toggle.addEventListener("click", () => {
    paused = !paused;
    toggle.textContent = paused ? "Resume" : "Pause";
    toggle.setAttribute("aria-pressed", String(paused));
    state.textContent = paused ? "paused" : "live";
  });
  filters.addEventListener("change", () => {
    rows.replaceChildren();
    after = null;
    first = true;
  });

  async function poll() {
    if (!paused) {
      const params = new URLSearchParams();
      for (const [name, value] of new FormData(filters)) {
        if (value) params.set(name, value);
      }
      if (after) params.set("after", after);
      params.set("limit", first ? "50" : "200");
      try {
        const response = await fetch(table.dataset.source + "?" + params, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        });
        if (!response.ok) throw new Error("HTTP " + response.status);
        const page = await response.json();
        // This view's own polling is audited too; showing it would bury everything else.
        const fresh = page.events
          .filter((e) => (e.http || {}).path !== table.dataset.source)
          .map(eventRow);
        rows.prepend(...fresh);
        while (rows.children.length > 500) rows.lastElementChild.remove();
        after = page.last_id || after;
        first = false;
        state.textContent = "live";
      } catch (error) {
        state.textContent = "cannot reach the audit trail (" + error.message + "), retrying";
      }
    }
    window.setTimeout(poll, 2000);
  }
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("live");
  if (table) startLiveView(table);
});
