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

// Deferred: the page is parsed when this runs.
const sessionLog = document.getElementById("session-log");
if (sessionLog) followLog(sessionLog);
if (document.getElementById("hook")) setInterval(tickLeases, 1000);
