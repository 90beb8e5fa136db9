// Draw-and-search page: strokes from pointer events (mouse, pen, touch), a search after every stroke (debounced,
// a stale request cancelled), thumbnails of the ranked photos. No dependencies, nothing loaded from elsewhere.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const statusLine = document.getElementById("status");
const costLine = document.getElementById("cost");
const list = document.getElementById("results");
const picker = document.getElementById("catalogue");
const pen = document.getElementById("pen");
const K = 10;
const DEBOUNCE_MS = 150;

let strokes = [];          // each a list of [x, y] in the canvas's own pixels
let current = null;        // the stroke being drawn
let timer = null;          // the debounce timer of the next search
let inflight = null;       // AbortController of the running search
let searches = 0;

function setState(state) { document.body.dataset.state = state; }

function say(text, error = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", error);
}

function point(event) {
  const r = pad.getBoundingClientRect();
  return [(event.clientX - r.left) * pad.width / r.width, (event.clientY - r.top) * pad.height / r.height];
}

function redraw() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#111";
  ctx.fillStyle = "#111";
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.lineWidth = Number(pen.value);
  for (const s of current ? [...strokes, current] : strokes) {
    if (s.length === 1) {
      ctx.beginPath();
      ctx.arc(s[0][0], s[0][1], ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
      continue;
    }
    ctx.beginPath();
    ctx.moveTo(s[0][0], s[0][1]);
    for (const [x, y] of s.slice(1)) ctx.lineTo(x, y);
    ctx.stroke();
  }
}

pad.addEventListener("pointerdown", (e) => {
  if (e.button !== undefined && e.button > 0) return;
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  current = [point(e)];
  redraw();
});

pad.addEventListener("pointermove", (e) => {
  if (!current) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of events.length ? events : [e]) current.push(point(ev));
  redraw();
});

function endStroke() {
  if (!current) return;
  strokes.push(current);
  current = null;
  redraw();
  schedule();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(searchStrokes, DEBOUNCE_MS);
}

async function post(body, headers) {
  if (inflight) inflight.abort();          // a newer drawing makes the running search stale
  const controller = new AbortController();
  inflight = controller;
  setState("searching");
  const t0 = performance.now();
  try {
    const response = await fetch("/search", { method: "POST", body, headers, signal: controller.signal });
    const doc = await response.json();
    if (controller !== inflight) return;   // superseded while the answer was on its way
    if (!response.ok) throw new Error(doc.detail || `HTTP ${response.status}`);
    show(doc, performance.now() - t0);
    setState("done");
  } catch (err) {
    if (err.name === "AbortError") return;
    say(String(err.message || err), true);
    costLine.textContent = "";
    setState("error");
  } finally {
    if (controller === inflight) inflight = null;
    searches += 1;
    document.body.dataset.searches = String(searches);
  }
}

function searchStrokes() {
  if (!strokes.length) { clearResults("Draw with a mouse, a pen or a finger."); return; }
  const body = JSON.stringify({ width: pad.width, height: pad.height, strokes, k: K, catalogue: picker.value });
  post(body, { "Content-Type": "application/json" });
}

function clearResults(message) {
  if (inflight) { inflight.abort(); inflight = null; }
  list.replaceChildren();
  say(message);
  costLine.textContent = "";
  setState("idle");
}

function show(doc, roundTripMs) {
  const items = doc.results.map((hit) => {
    const li = document.createElement("li");
    li.className = "hit";
    li.dataset.name = hit.name;
    li.dataset.rank = String(hit.rank);
    const img = document.createElement("img");
    img.src = `/photos/${hit.id}?catalogue=${encodeURIComponent(doc.catalogue)}`;
    img.alt = hit.name;
    img.loading = "lazy";
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.innerHTML = `<span class="rank">#${hit.rank}</span><span class="score">${hit.score.toFixed(3)}</span>`;
    li.append(img, meta);
    return li;
  });
  list.replaceChildren(...items);
  const trust = doc.confidence === null ? "" :
    doc.in_domain === false ? " · this does not look like what the catalogue holds" :
    ` · confidence ${doc.confidence.toFixed(2)}`;
  say(`${doc.results.length} best matches${trust}`);
  const looked = doc.canvases.length > 1 ? ` (after ${doc.canvases.slice(0, -1).join(", ")})` : "";
  const flops = doc.gflops === null ? "" : ` · ${doc.gflops.toFixed(3)} GFLOPs`;
  costLine.textContent = `canvas ${doc.canvas}${looked}${flops} · server ${doc.ms.toFixed(1)} ms · ` +
    `round trip ${roundTripMs.toFixed(0)} ms`;
}

document.getElementById("undo").addEventListener("click", () => {
  strokes.pop();
  redraw();
  schedule();
});

document.getElementById("clear").addEventListener("click", () => {
  strokes = [];
  clearTimeout(timer);
  redraw();
  clearResults("Cleared. Draw again.");
});

pen.addEventListener("input", redraw);
picker.addEventListener("change", () => { if (strokes.length) schedule(); });

document.getElementById("file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (!file) return;
  strokes = [];
  redraw();
  const form = new FormData();
  form.append("file", file);
  form.append("k", String(K));
  form.append("catalogue", picker.value);
  say(`Searching with ${file.name}...`);
  post(form, {});
  e.target.value = "";
});

async function loadCatalogues() {
  try {
    const response = await fetch("/catalogues");
    const catalogues = await response.json();
    picker.replaceChildren(...catalogues.map((c) => {
      const o = document.createElement("option");
      o.value = c.name;
      o.textContent = `${c.name} (${c.photos} photos${c.model ? ", " + c.model : ""})`;
      return o;
    }));
    picker.disabled = catalogues.length < 2;
    document.body.dataset.ready = "1";
  } catch (err) {
    say(`Cannot reach the server: ${err.message || err}`, true);
  }
}

redraw();
loadCatalogues();
