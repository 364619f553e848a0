// Conveyor's dashboard: follow a log live (Server-Sent Events) and refresh the part of a
// deployment's page that changes while it runs. Plain JavaScript, no build step.
"use strict";

function followLog(pre) {
  const source = new EventSource(pre.dataset.stream);
  const following = document.getElementById("following");
  source.addEventListener("line", (event) => {
    const line = JSON.parse(event.data);
    const span = document.createElement("span");
    span.className = "line";
    span.textContent = line.text + "\n";
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(span);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  });
  source.addEventListener("end", (event) => {
    source.close();  // else EventSource would reconnect
    const state = JSON.parse(event.data).state;
    if (following) following.textContent = "finished: " + state.replace("_", " ");
    pre.dataset.ended = state;
    refreshLive(true);
    if (pre.dataset.reloadOnEnd) window.location.reload();
  });
}

let refreshing = false;
let initialState = null;

async function refreshLive(final) {
  const holder = document.querySelector("[data-live-src]");
  if (!holder || refreshing) return;
  refreshing = true;
  try {
    const answer = await fetch(holder.dataset.liveSrc, {credentials: "same-origin"});
    if (answer.ok) holder.innerHTML = await answer.text();
  } finally {
    refreshing = false;
  }
  const live = document.getElementById("live");
  // Approved (or canceled) while the page was open: load it again, with its log.
  if (live && initialState === "awaiting_approval" && live.dataset.state !== initialState) {
    window.location.reload();
    return;
  }
  if (!final && live && live.dataset.active === "yes") setTimeout(() => refreshLive(false), 1000);
}

document.addEventListener("submit", (event) => {
  const button = event.submitter;
  if (button && button.classList.contains("confirm") &&
      !window.confirm(button.textContent.trim() + "?")) event.preventDefault();
});

document.addEventListener("DOMContentLoaded", () => {
  const pre = document.querySelector("pre[data-stream]");
  if (pre) followLog(pre);
  const live = document.getElementById("live");
  if (live) initialState = live.dataset.state;
  if (live && live.dataset.active === "yes") setTimeout(() => refreshLive(false), 1000);
});
