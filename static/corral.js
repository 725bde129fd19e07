// The dashboard's few behaviours, kept out of the pages so that the Content
// Security Policy can forbid inline scripts and event handlers.
"use strict";

// A form with data-confirm asks before it is sent (cancel a session, revert a bead).
document.addEventListener("submit", (event) => {
  const question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

// A session's page: follow the end of the log as chunks arrive, unless the
// reader scrolled up.
function followLog(log) {
  let follow = true;
  log.scrollTop = log.scrollHeight;
  log.addEventListener("scroll", () => {
    follow = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
  });
  new MutationObserver(() => {
    if (follow) log.scrollTop = log.scrollHeight;
  }).observe(log, { childList: true, characterData: true, subtree: true });
}

// The hook page: tick the lease countdowns between polls; each poll renders
// them afresh from the server.
function tickLeases() {
  for (const el of document.querySelectorAll("#hook .lease[data-seconds]")) {
    const s = Math.max(Number(el.dataset.seconds) - 1, 0);
    el.dataset.seconds = s;
    el.textContent = s > 0 ? `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}` : "expired";
    el.classList.toggle("expired", s === 0);
  }
}

// A box that scrolls (a wide table on a phone, a diff, a long output) takes
// the keyboard's focus, so that arrow keys scroll it; a box that fits adds no
// stop to the Tab order.
function focusScrollers() {
  for (const box of document.querySelectorAll(".scroll, pre.diff, pre.detail, pre.context")) {
    const scrolls = box.scrollWidth > box.clientWidth || box.scrollHeight > box.clientHeight;
    if (scrolls && !box.hasAttribute("tabindex")) box.tabIndex = 0;
  }
}

// Deferred: the page is parsed when this runs.
focusScrollers();
window.addEventListener("resize", focusScrollers);
document.addEventListener("htmx:afterSettle", focusScrollers);
const sessionLog = document.getElementById("session-log");
if (sessionLog) followLog(sessionLog);
if (document.getElementById("hook")) setInterval(tickLeases, 1000);

// A submission's diff: the "+" on a line opens the comment form under it
// (fetched by htmx into the line's comments row, made when it has none yet).
document.addEventListener("click", (event) => {
  const button = event.target.closest && event.target.closest("button.add-comment");
  if (!button || !window.htmx) return;
  const table = button.closest("table.diff");
  const row = button.closest("tr");
  let holder = row.nextElementSibling;
  if (!holder || !holder.classList.contains("line-comments")) {
    holder = document.createElement("tr");
    holder.className = "line-comments";
    const cell = document.createElement("td");
    cell.colSpan = 4;
    const list = document.createElement("ul");
    list.className = "review-comments";
    const slot = document.createElement("div");
    slot.className = "comment-form-slot";
    cell.append(list, slot);
    holder.append(cell);
    row.after(holder);
  }
  const params = new URLSearchParams({
    file: table.dataset.file, side: button.dataset.side, line: button.dataset.line,
  });
  window.htmx.ajax("GET", `${table.dataset.commentUrl}?${params}`, {
    target: holder.querySelector(".comment-form-slot"), swap: "innerHTML",
  }).then(() => {
    const text = holder.querySelector("textarea");
    if (text) text.focus();
  });
});
