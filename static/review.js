// The review queue from the keyboard (/review/): j/k move, o opens, a approves
// (htmx: the row goes, no page load), r requests changes (the submission's
// page at its form), x rejects (a reason inline: Enter sends, Escape cancels),
// ? lists the keys. A file of its own (the page's keys do nothing elsewhere);
// the Content Security Policy allows no inline script.
"use strict";

// The navigation's count of what waits for this person: fetched once the page
// is up, again after each decision made from the queue, and every minute.
(() => {
  const count = document.getElementById("review-count");
  if (!count) return;
  const refresh = () => {
    fetch(count.dataset.countUrl, { credentials: "same-origin" })
      .then((response) => (response.ok ? response.text() : null))
      .then((html) => { if (html !== null) count.innerHTML = html; })
      .catch(() => {});
  };
  refresh();
  document.body.addEventListener("review-changed", refresh);
  setInterval(refresh, 60_000);
})();

(() => {
  const queue = () => document.getElementById("review-queue");
  const rows = () => Array.from(document.querySelectorAll("#review-queue tr[data-submission]"));
  let index = 0;

  function select(i) {
    const all = rows();
    for (const row of all) {
      row.classList.remove("selected");
      row.removeAttribute("aria-current");
    }
    document.getElementById("review-empty").hidden = all.length > 0;
    if (!all.length) return null;
    index = Math.max(0, Math.min(i, all.length - 1));
    const row = all[index];
    row.classList.add("selected");
    row.setAttribute("aria-current", "true");
    row.scrollIntoView({ block: "nearest" });
    return row;
  }

  function say(text) {
    const status = document.getElementById("review-status");
    if (status) {
      status.className = "review-status";
      status.textContent = text;
    }
  }

  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable]") !== null;
  }

  function toggleKeys() {
    const keys = document.getElementById("review-keys");
    keys.hidden = !keys.hidden;
  }

  function reject(row) {
    const form = row.querySelector("form.reject-form");
    if (!form) return say("Your role cannot reject submissions.");
    form.hidden = false;
    form.querySelector("input.reason").focus();
  }

  function approve(row) {
    const form = row.querySelector("form.approve-form");
    if (!form) return say("Your role cannot approve submissions.");
    row.classList.add("deciding");
    window.htmx.trigger(form, "submit");
  }

  const actions = {
    j: () => select(index + 1),
    k: () => select(index - 1),
    o: (row) => { window.location.href = row.dataset.url; },
    r: (row) => { window.location.href = `${row.dataset.url}#request-changes`; },
    a: approve,
    x: reject,
  };

  document.addEventListener("keydown", (event) => {
    if (!queue() || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape" && event.target.closest("form.reject-form")) {
      const form = event.target.closest("form.reject-form");
      form.hidden = true;
      form.closest("tr").focus();
      return;
    }
    if (typing(event.target)) return;
    if (event.key === "?") {
      event.preventDefault();
      return toggleKeys();
    }
    const act = actions[event.key];
    if (!act) return;
    const row = select(index);
    if (!row) return say("Nothing waits for a person.");
    event.preventDefault();
    act(row);
  });

  // A click picks the row, so that keys act on it next.
  document.addEventListener("click", (event) => {
    const row = event.target.closest && event.target.closest("#review-queue tr[data-submission]");
    if (row) select(rows().indexOf(row));
  });

  // After a row went (approved, rejected) or the filters redrew the queue,
  // the row now at the same place is selected.
  document.addEventListener("htmx:afterSettle", () => { if (queue()) select(index); });
  if (queue()) select(0);
})();
