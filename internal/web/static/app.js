// slipway dashboard: live overview (Server-Sent Events), elapsed times,
// build logs followed as they are written. Pages work without it.
"use strict";

function elapsed(from) {
  let s = Math.max(0, Math.round((Date.now() - from) / 1000));
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60); s %= 60;
  if (m < 60) return m + "m " + s + "s";
  return Math.floor(m / 60) + "h " + (m % 60) + "m";
}

function tick() {
  for (const el of document.querySelectorAll("[data-elapsed-from]")) {
    const t = Date.parse(el.getAttribute("data-elapsed-from"));
    if (!isNaN(t)) el.textContent = elapsed(t);
  }
}

function live() {
  const box = document.getElementById("overview");
  if (!box || !window.EventSource) return;
  const state = document.getElementById("live-state");
  const es = new EventSource(box.getAttribute("data-live"));
  es.addEventListener("open", () => { if (state) state.textContent = "Live: updates as things change."; });
  es.addEventListener("error", () => { if (state) state.textContent = "Reconnecting…"; });
  es.addEventListener("overview", (e) => {
    // The server renders this fragment with html/template: it is escaped.
    box.innerHTML = e.data;
    box.setAttribute("data-updated", new Date().toISOString());
    tick();
  });
}

async function follow(pre) {
  const src = pre.getAttribute("data-log-src");
  try {
    const res = await fetch(src, { credentials: "same-origin" });
    if (!res.ok) { pre.textContent = "No build log: " + (await res.text()); return; }
    pre.textContent = "";
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(document.createTextNode(dec.decode(value, { stream: true })));
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
  } catch (err) {
    pre.append(document.createTextNode("\n(the log stopped: " + err + ")"));
  }
}

function reloadWhileRolling() {
  if (document.querySelector("[data-reload-while]") && !document.querySelector("pre.log")) {
    setTimeout(() => location.reload(), 3000);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  live();
  for (const pre of document.querySelectorAll("pre[data-log-src]")) follow(pre);
  setInterval(tick, 1000);
  reloadWhileRolling();
});
