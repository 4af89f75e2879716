// pg_webhook console: the little the server cannot do. Times in the
// viewer's own zone, confirmations before changes, copy buttons, and event
// type suggestions for the endpoint form. Everything works without it,
// except that times stay in UTC and changes are not confirmed.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  const rel = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const ago = (d) => {
    const s = Math.round((d.getTime() - Date.now()) / 1000);
    const a = Math.abs(s);
    if (a < 60) return rel.format(s, "second");
    if (a < 3600) return rel.format(Math.round(s / 60), "minute");
    if (a < 86400) return rel.format(Math.round(s / 3600), "hour");
    return rel.format(Math.round(s / 86400), "day");
  };
  for (const t of document.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (Number.isNaN(d.getTime())) continue;
    t.title = t.textContent + " (" + ago(d) + ")";
    t.textContent = fmt.format(d);
  }

  for (const f of document.querySelectorAll("form[data-confirm]")) {
    f.addEventListener("submit", (e) => {
      if (!window.confirm(f.dataset.confirm)) e.preventDefault();
    });
  }

  for (const b of document.querySelectorAll("button[data-copy]")) {
    b.addEventListener("click", async () => {
      const el = document.getElementById(b.dataset.copy);
      if (!el) return;
      try {
        await navigator.clipboard.writeText(el.textContent);
        b.textContent = "Copied";
      } catch (_) {
        const r = document.createRange();
        r.selectNodeContents(el);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(r);
        b.textContent = "Selected: press Ctrl+C";
      }
      setTimeout(() => { b.textContent = "Copy"; }, 2000);
    });
  }

  const types = document.getElementById("event_types");
  for (const b of document.querySelectorAll("button[data-add-type]")) {
    b.addEventListener("click", () => {
      if (!types) return;
      const have = types.value.split(/[\s,]+/).filter((x) => x && x !== "*");
      if (!have.includes(b.dataset.addType)) have.push(b.dataset.addType);
      types.value = have.join(", ");
      types.focus();
    });
  }
});
