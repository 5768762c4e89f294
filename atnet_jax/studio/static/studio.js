// The studio's page: a thin client of the JSON API (see atnet_jax/studio/app.py). One state object; every
// change re-renders from it. Masks, rounds and objects come from the server; only strokes not yet run live here.

import { OVERLAY_MODES, drawOverlay } from "/static/overlay.js";
import { createPreview } from "/static/preview.js";
import { Viewport } from "/static/viewport.js";

const $ = (id) => document.getElementById(id);
const canvas = $("view");
const ctx = canvas.getContext("2d");

const state = {
  server: null,          // the last GET /api/state
  t: 0,                  // the frame shown
  tool: "pos-scribble",
  object: 1,             // the selected object id
  opacity: 0.55,
  pending: new Map(),    // frame -> strokes drawn but not yet run
  submitted: null,       // {frame, strokes} of the running round, restored to pending if it does not finish
  drawing: null,         // the stroke under the pointer
  running: null,         // {frame, total, done, updated: Set}
  progress: null,        // the last frame event
  playing: false,
  versions: [],
  status: "",
  error: false,
  busy: null,            // what holds the workspace on the server ("adding object 3"), from any page
  acting: false,         // this page is sending a step (its answer not yet back)
  disconnected: false,   // the event stream is lost (the page says so until it is back)
  brush: 3,              // stroke width and eraser radius on screen, in CSS pixels
  overlay: "both",       // how masks are drawn: both, fill, outline
  hidden: new Set(),     // object ids whose masks are not drawn
  speed: 1,              // playback speed (1: 10 frames/s)
};
window.studio = state;  // for debugging from the console

const frames = new Map();  // t -> HTMLImageElement
const masks = new Map();   // t -> {version, image}
const t0 = performance.now();
const view = new Viewport(canvas, () => draw());
state.view = view;

// A ?token= in the address (the first visit of a studio with a token) has set the cookie: take it out of the
// address bar and the history, so the URL can be shared or shown without it.
(() => {
  const url = new URL(window.location.href);
  if (!url.searchParams.has("token")) return;
  url.searchParams.delete("token");
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
})();

// ------------------------------------------------------------------------------------------------ API

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body ?? {});
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${method} ${path}: HTTP ${response.status}`);
  return data;
}

const preview = createPreview({ state, api, draw, setStatus, $ });

function setStatus(text, error = false) {
  state.status = text;
  state.error = error;
  renderStatus();
}

async function refresh() {
  state.server = await api("GET", "/api/state");
  state.versions = state.server.versions.slice();
  state.busy = state.server.busy ?? null;
  if (!pendingRestored) restorePending();
  const r = state.server.running;
  state.running = r ? { frame: r.frame, total: r.total, done: r.done, updated: new Set(r.updated) } : null;
  if (state.object > state.server.objects.length) state.object = state.server.objects.length;
  state.t = Math.min(state.t, state.server.num_frames - 1);
  canvas.width = state.server.width;
  canvas.height = state.server.height;
  fit();
  renderAll();
}

// ---------------------------------------------------------------------------------------------- images

function frameImage(t) {
  let image = frames.get(t);
  if (!image) {
    image = new Image();
    image.onload = () => { if (t === state.t) draw(); };
    image.src = `/api/frames/${t}`;
    frames.set(t, image);
  }
  return image;
}

function maskImage(t) {
  // Versions only grow; the newest loaded version is shown while a newer one loads.
  const version = state.versions[t] ?? 0;
  let entry = masks.get(t);
  if (!entry) {
    entry = { shown: null, loading: null };
    masks.set(t, entry);
  }
  const have = (item) => item && item.version === version;
  if (!have(entry.shown) && !have(entry.loading)) {
    const item = { version, image: new Image() };
    entry.loading = item;
    item.image.onload = () => {
      if (!entry.shown || entry.shown.version < item.version) entry.shown = item;
      if (entry.loading === item) entry.loading = null;
      if (t === state.t) draw();
    };
    item.image.src = `/api/masks/${t}?v=${version}`;
  }
  return entry.shown;
}

// ---------------------------------------------------------------------------------------------- drawing

function fit() {
  const stage = $("stage");
  if (!state.server) return;
  const scale = Math.min((stage.clientWidth - 24) / state.server.width, (stage.clientHeight - 24) / state.server.height);
  canvas.style.width = `${Math.max(1, Math.floor(state.server.width * scale))}px`;
  canvas.style.height = `${Math.max(1, Math.floor(state.server.height * scale))}px`;
}

function colourOf(objectId) {
  if (objectId === 0) return "#ffffff";
  const obj = state.server.objects[objectId - 1];
  return obj ? obj.colour : "#888888";
}

function strokePath(stroke, width, alpha, dashed) {
  const W = canvas.width, H = canvas.height, pts = stroke.path;
  const scale = canvas.width / canvas.clientWidth / view.zoom;  // widths stay the same on screen at any zoom
  ctx.save();
  ctx.globalAlpha = alpha;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (dashed) ctx.setLineDash([6 * scale, 5 * scale]);
  if (pts.length === 1) {
    const [x, y] = pts[0];
    for (const [r, colour] of [[7 * scale, "#000"], [5 * scale, colourOf(stroke.object_id)]]) {
      ctx.beginPath();
      ctx.arc(x * W, y * H, r, 0, 2 * Math.PI);
      ctx.fillStyle = colour;
      ctx.fill();
    }
    if (stroke.object_id === 0) {  // a negative click: a cross inside the dot
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1.5 * scale;
      ctx.beginPath();
      ctx.moveTo(x * W - 3 * scale, y * H - 3 * scale); ctx.lineTo(x * W + 3 * scale, y * H + 3 * scale);
      ctx.moveTo(x * W + 3 * scale, y * H - 3 * scale); ctx.lineTo(x * W - 3 * scale, y * H + 3 * scale);
      ctx.stroke();
    }
  } else {
    for (const [w, colour] of [[width + 2.5, "#000"], [width, colourOf(stroke.object_id)]]) {
      ctx.beginPath();
      pts.forEach(([x, y], i) => (i ? ctx.lineTo(x * W, y * H) : ctx.moveTo(x * W, y * H)));
      ctx.strokeStyle = colour;
      ctx.lineWidth = w * scale;
      ctx.stroke();
    }
  }
  ctx.restore();
}

function draw() {
  if (!state.server) return;
  const t = state.t;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const frame = frameImage(t);
  if (frame.complete && frame.naturalWidth) ctx.drawImage(frame, 0, 0, canvas.width, canvas.height);
  const mask = preview.mask(t) || maskImage(t);
  if (mask) {
    drawOverlay(ctx, mask, { mode: state.overlay, opacity: state.opacity, objects: state.server.objects,
      hidden: state.hidden }, canvas.width, canvas.height);
  }
  const brush = state.brush;
  for (const s of state.server.strokes[String(t)] || []) strokePath(s, brush * 0.85, 0.85, false);
  if (state.submitted && state.submitted.frame === t) for (const s of state.submitted.strokes) strokePath(s, brush, 0.8, false);
  for (const s of state.pending.get(t) || []) strokePath(s, brush, 1, false);
  if (state.drawing && state.drawing.path) strokePath(state.drawing, brush, 1, false);
}

// ---------------------------------------------------------------------------------------------- panels

function renderObjects() {
  // The list is rebuilt only when the objects change, so a name field being edited keeps its focus and text.
  const list = $("objects");
  const signature = JSON.stringify(state.server.objects);
  if (list.dataset.signature !== signature) {
    list.dataset.signature = signature;
    list.replaceChildren(...state.server.objects.map(objectRow));
  }
  for (const li of list.children) {
    const id = Number(li.dataset.id);
    li.classList.toggle("selected", id === state.object);
    li.classList.toggle("hidden-object", state.hidden.has(id));
    const eye = li.querySelector(".eye");
    eye.setAttribute("aria-pressed", state.hidden.has(id) ? "false" : "true");
    eye.title = state.hidden.has(id) ? "Show this object's mask" : "Hide this object's mask";
  }
}

function objectRow(obj) {
  const li = document.createElement("li");
  li.dataset.testid = `object-${obj.id}`;
  li.dataset.id = String(obj.id);
  li.onclick = (e) => { if (e.target === li || e.target.className === "key") selectObject(obj.id); };
  const key = document.createElement("span");
  key.className = "key";
  key.textContent = obj.id <= 9 ? String(obj.id) : "";
  const eye = document.createElement("button");
  eye.className = "eye";
  eye.textContent = "\u25c9";
  eye.dataset.testid = `object-eye-${obj.id}`;
  eye.onclick = () => toggleVisible(obj.id);
  const colour = document.createElement("input");
  colour.type = "color";
  colour.value = obj.colour;
  colour.title = "Colour";
  colour.dataset.testid = `object-colour-${obj.id}`;
  colour.onchange = () => updateObject(obj.id, { colour: colour.value });
  const name = document.createElement("input");
  name.type = "text";
  name.value = obj.name;
  name.maxLength = 40;
  name.title = "Name (Enter to rename, Esc to keep the old name)";
  name.dataset.testid = `object-name-${obj.id}`;
  name.onfocus = () => selectObject(obj.id);
  name.onkeydown = (e) => {
    if (e.key === "Enter") name.blur();
    else if (e.key === "Escape") { name.value = obj.name; name.blur(); }
  };
  name.onchange = () => {
    if (!name.value.trim()) name.value = obj.name;
    else if (name.value !== obj.name) updateObject(obj.id, { name: name.value });
  };
  const remove = document.createElement("button");
  remove.className = "remove";
  remove.textContent = "\u00d7";
  remove.title = "Remove this object (its masks and strokes)";
  remove.dataset.testid = `object-remove-${obj.id}`;
  remove.onclick = () => removeObject(obj.id);
  li.append(key, eye, colour, name, remove);
  return li;
}

function toggleVisible(id) {
  if (state.hidden.has(id)) state.hidden.delete(id);
  else state.hidden.add(id);
  renderObjects();
  draw();
}

function renderSteps() {
  const list = $("steps");
  list.replaceChildren();
  let round = 0;
  state.server.steps.forEach((step, i) => {
    const li = document.createElement("li");
    li.dataset.testid = `step-${i + 1}`;
    if (step.kind === "round") {
      round += 1;
      li.innerHTML = `<span>${round}: frame ${step.frame}${preview.rangeLabel(step)}</span><span class="dim">${step.seconds.toFixed(1)} s</span>`;
      li.onclick = () => seek(step.frame);
    } else {
      const verb = step.kind === "add_object" ? "added" : "removed";
      li.innerHTML = `<span class="dim">object ${step.object} ${verb}</span>`;
    }
    list.append(li);
  });
  if (!state.server.steps.length) list.innerHTML = '<li class="dim">no rounds yet</li>';
  $("workspace-note").textContent = `${state.server.name}: ${state.server.num_frames} frames, ` +
    `${state.server.width}\u00d7${state.server.height}. Every round is saved in the workspace.`;
  $("demo-banner").hidden = !state.server.demo_weights;
}

function renderTimeline() {
  const timeline = $("timeline");
  const n = state.server.num_frames;
  if (timeline.children.length !== n) {
    timeline.replaceChildren();
    for (let t = 0; t < n; t++) {
      const cell = document.createElement("div");
      cell.dataset.testid = `timeline-cell-${t}`;
      cell.title = `frame ${t}`;
      timeline.append(cell);
    }
  }
  const annotated = new Set(state.server.annotated);
  const last = new Set(state.server.last_updated);
  const live = state.running ? state.running.updated : new Set();
  for (let t = 0; t < n; t++) {
    const c = timeline.children[t];
    c.className = [annotated.has(t) ? "annotated" : live.has(t) ? "live" : !state.running && last.has(t) ? "last" : "",
      t === state.t ? "current" : ""].join(" ").trim();
  }
  preview.decorateTimeline(timeline);
}

function renderTransport() {
  const n = state.server.num_frames;
  $("frame-label").textContent = `frame ${state.t} / ${n - 1}`;
  $("play").textContent = state.playing ? "pause" : "play";
  const bar = $("progress-bar"), text = $("progress-text");
  if (state.running) {
    const p = state.progress;
    const done = state.running.done, total = state.running.total;
    bar.style.width = `${(100 * done) / total}%`;
    const rate = p && p.fps ? `, ${p.fps.toFixed(1)} frames/s` : "";
    const eta = p && p.eta != null ? `, ${p.eta.toFixed(1)} s left` : "";
    text.textContent = `round on frame ${state.running.frame}: ${done} / ${total} frames${rate}${eta}`;
  } else {
    bar.style.width = "0";
    text.textContent = state.server.rounds ? `${state.server.rounds} round(s) done` : "draw on the frame, then Run";
  }
  const pending = (state.pending.get(state.t) || []).length;
  const elsewhere = [...state.pending.entries()].filter(([t, s]) => t !== state.t && s.length).map(([t]) => t);
  $("pending-note").textContent = (pending ? `${pending} new stroke(s) on this frame` : "") +
    (elsewhere.length ? `${pending ? "; " : ""}new strokes also on frame(s) ${elsewhere.join(", ")}` : "");
}

function renderControls() {
  // A round, or any other step that holds the workspace (from this page or another), disables what would
  // conflict with it.
  const busy = !!state.running || !!state.busy;
  document.body.dataset.running = state.running ? "1" : "0";
  document.body.dataset.busy = busy ? "1" : "0";
  document.body.dataset.tool = state.tool;
  for (const b of document.querySelectorAll("[data-tool]")) b.classList.toggle("active", b.dataset.tool === state.tool);
  $("run").disabled = busy || !(state.pending.get(state.t) || []).length;
  $("cancel").disabled = !state.running;
  $("undo").disabled = busy || !state.server.steps.length;
  $("redo").disabled = busy || !(state.server.redo || []).length;
  $("suggest").disabled = busy || !state.server.annotated.length;
  $("export").disabled = busy;
  $("add-object").disabled = busy;
  for (const b of document.querySelectorAll("#objects .remove")) b.disabled = busy;
  $("brush").value = state.brush;
  $("overlay").value = state.overlay;
}

function renderStatus() {
  const el = $("status");
  el.textContent = state.status;
  el.title = state.status;
  el.classList.toggle("error", state.error);
}

function renderAll() {
  if (!state.server) return;
  renderObjects();
  renderSteps();
  renderTimeline();
  renderTransport();
  renderControls();
  renderStatus();
  draw();
}

function renderFrame() {
  renderTimeline();
  renderTransport();
  renderControls();
  draw();
}

// ---------------------------------------------------------------------------------------------- actions

function seek(t) {
  if (!state.server) return;
  const before = state.t;
  state.t = Math.max(0, Math.min(state.server.num_frames - 1, t));
  if (state.t !== before) preview.frameChanged();
  renderFrame();
}

function selectObject(id) {
  if (id < 1 || id > state.server.objects.length) return;
  state.object = id;
  renderObjects();  // marks the selection; rebuilds nothing (the name field keeps its focus)
}

function setTool(tool) {
  state.tool = tool;
  renderControls();
}

async function guarded(action, busyText) {
  state.acting = true;  // a preview waits for this page's own step
  try {
    if (busyText) setStatus(busyText);
    await action();
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    state.acting = false;
  }
}

async function run() {
  const strokes = state.pending.get(state.t) || [];
  if (!strokes.length || state.running || state.busy) return;
  const frame = state.t;
  await guarded(async () => {
    state.submitted = { frame, strokes };
    state.pending.delete(frame);
    savePending();
    try {
      await api("POST", "/api/rounds", { frame, strokes, ...preview.rangeBody() });
      // The round_start event sets state.running; a fast round may already have ended (submitted cleared).
      if (state.submitted) setStatus(`running a round on frame ${frame} ...`);
    } catch (err) {
      state.pending.set(frame, strokes);
      savePending();
      state.submitted = null;
      throw err;
    }
    renderFrame();
  });
}

const cancel = () => guarded(() => api("POST", "/api/cancel"), "cancelling ...");

async function undo() {
  if (state.running || state.busy) return;
  await guarded(async () => {
    const r = await api("POST", "/api/undo");
    const what = r.undone.kind === "round" ? `round on frame ${r.undone.frame}` : `object ${r.undone.object} ${r.undone.kind === "add_object" ? "added" : "removed"}`;
    await refresh();
    setStatus(`undone: ${what}`);
  }, "undoing ...");
}

async function redo() {
  if (state.running || state.busy) return;
  await guarded(async () => {
    const r = await api("POST", "/api/redo");
    const what = r.redone.kind === "round" ? `round on frame ${r.redone.frame}` : `object ${r.redone.object} ${r.redone.kind === "add_object" ? "added" : "removed"}`;
    await refresh();
    setStatus(`redone: ${what}`);
  }, "redoing ...");
}

async function addObject() {
  if (state.running || state.busy) return;
  await guarded(async () => {
    const r = await api("POST", "/api/objects");
    state.object = r.id;
    await refresh();
    setStatus(`object ${r.id} added (empty on every frame)`);
  }, "adding an object ...");
}

async function updateObject(id, change) {
  await guarded(async () => {
    await api("PATCH", `/api/objects/${id}`, change);
    await refresh();
  });
}

async function removeObject(id) {
  if (state.running || state.busy) return;
  const obj = state.server.objects[id - 1];
  if (!window.confirm(`Remove ${obj.name}, its masks and its strokes? (Undo brings it back.)`)) return;
  await guarded(async () => {
    await api("DELETE", `/api/objects/${id}`);
    for (const [t, strokes] of state.pending) {
      state.pending.set(t, strokes.filter((s) => s.object_id !== id)
        .map((s) => (s.object_id > id ? { ...s, object_id: s.object_id - 1 } : s)));
    }
    savePending();
    state.hidden = new Set([...state.hidden].filter((k) => k !== id).map((k) => (k > id ? k - 1 : k)));
    await refresh();
    setStatus(`${obj.name} removed`);
  }, "removing ...");
}

async function suggest() {
  await guarded(async () => {
    const r = await api("GET", "/api/suggest");
    seek(r.frame);
    setStatus(`suggested frame ${r.frame}: the model is least sure there (entropy ${r.entropy.toFixed(3)} bits)`);
  });
}

async function exportAll() {
  await guarded(async () => {
    const r = await api("POST", "/api/export");
    setStatus(`exported ${r.files.length} item(s) into the workspace's ${r.folder}/ folder`);
  }, "exporting ...");
}

function togglePlay() {
  state.playing = !state.playing;
  renderTransport();
  if (state.playing) tick();
}

function tick() {
  if (!state.playing) return;
  const next = (state.t + 1) % state.server.num_frames;
  frameImage(next);
  maskImage(next);
  seek(next);
  setTimeout(tick, 100 / state.speed);
}

// ------------------------------------------------------------------------------------- unrun strokes
// Strokes drawn but not yet run are kept in the browser's storage for this studio (origin) and video, so a
// reload or a closed tab does not lose them; closing the page while there are some asks first.

let pendingRestored = false;

function storageKey() {
  const s = state.server;
  return `atnet_studio.pending:${s.name}:${s.num_frames}:${s.width}x${s.height}`;
}

function savePending() {
  if (!state.server) return;
  const frames = Object.fromEntries([...state.pending].filter(([, strokes]) => strokes.length));
  try {
    if (Object.keys(frames).length) {
      localStorage.setItem(storageKey(), JSON.stringify({ steps: state.server.steps.length, frames }));
    } else {
      localStorage.removeItem(storageKey());
    }
  } catch (err) {  // storage full or disabled: the strokes stay on the page (and closing it asks first)
    setStatus(`cannot keep the new strokes across a reload: ${err.message}`, true);
  }
}

function restorePending() {
  pendingRestored = true;
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(storageKey()) || "null");
  } catch {
    saved = null;
  }
  if (!saved || typeof saved.frames !== "object") return;
  const objects = state.server.objects.length;
  let count = 0;
  for (const [t, strokes] of Object.entries(saved.frames)) {
    const frame = Number(t);
    if (!Number.isInteger(frame) || frame < 0 || frame >= state.server.num_frames || !Array.isArray(strokes)) continue;
    const valid = strokes.filter((s) => s && Array.isArray(s.path) && s.path.length && s.object_id <= objects);
    if (valid.length) state.pending.set(frame, valid);
    count += valid.length;
  }
  if (count) setStatus(`${count} stroke(s) not yet run were kept from before the reload`);
}

function hasUnrun() {
  return [...state.pending.values()].some((strokes) => strokes.length) || !!(state.drawing && state.drawing.path);
}

window.addEventListener("beforeunload", (event) => {
  if (!hasUnrun()) return;
  savePending();
  event.preventDefault();
  event.returnValue = "";  // the browser asks whether to leave: the strokes not yet run are also kept
});

// ---------------------------------------------------------------------------------------------- pointer

function pointAt(event) {
  const rect = canvas.getBoundingClientRect();
  const x = Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width));
  const y = Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height));
  return [x, y];
}

function now() {
  return Math.round(performance.now() - t0) / 1000;
}

function addPending(stroke) {
  const list = state.pending.get(state.t) || [];
  list.push(stroke);
  state.pending.set(state.t, list);
  savePending();
  renderFrame();
  preview.schedule();
}

function eraseRadius() {
  return 3 * state.brush + 1;  // screen pixels: the brush size, as the eraser's reach
}

function eraseAt(point) {
  const list = state.pending.get(state.t) || [];
  const rect = canvas.getBoundingClientRect();
  const radius = eraseRadius();
  const near = (s) => s.path.some(([x, y]) => Math.hypot((x - point[0]) * rect.width, (y - point[1]) * rect.height) < radius);
  const kept = list.filter((s) => !near(s));
  if (kept.length !== list.length) {
    state.pending.set(state.t, kept);
    savePending();
    renderFrame();
    preview.schedule();
  }
}

canvas.addEventListener("pointerdown", (event) => {
  if (!state.server) return;
  if (view.startPan(event)) { event.preventDefault(); return; }
  if (event.button > 0) return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  const point = pointAt(event);
  const positive = state.tool.startsWith("pos");
  const objectId = positive ? state.object : 0;
  if (state.tool === "eraser") {
    state.drawing = { erasing: true };
    eraseAt(point);
  } else if (state.tool.endsWith("click")) {
    addPending({ path: [point], object_id: objectId, start_time: now(), end_time: now() });
  } else {
    state.drawing = { path: [point], object_id: objectId, start_time: now() };
    draw();
  }
});

canvas.addEventListener("pointermove", (event) => {
  if (view.movePan(event) || !state.drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const point = pointAt(e);
    if (state.drawing.erasing) { eraseAt(point); continue; }
    const [px, py] = state.drawing.path[state.drawing.path.length - 1];
    const rect = canvas.getBoundingClientRect();
    if (Math.hypot((point[0] - px) * rect.width, (point[1] - py) * rect.height) >= 2) state.drawing.path.push(point);
  }
  draw();
});

function endStroke(event) {
  if (view.endPan(event)) return;
  const stroke = state.drawing;
  state.drawing = null;
  if (!stroke || stroke.erasing) { draw(); return; }
  stroke.end_time = now();
  addPending(stroke);
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

// ---------------------------------------------------------------------------------------------- events

const LOST = "lost the connection to the studio; retrying ...";

function connect() {
  const source = new EventSource("/api/events");
  source.onopen = () => {
    const was = state.disconnected;
    state.disconnected = false;
    refresh().then(() => { if (was && state.status === LOST) setStatus("connected to the studio again"); })
      .catch((err) => setStatus(err.message, true));
  };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    preview.onEvent(event);
    if (event.type === "round_start") {
      state.running = { frame: event.frame, total: event.total, done: 0, updated: new Set() };
      state.progress = null;
      renderFrame();
    } else if (event.type === "frame") {
      state.versions[event.t] = event.version;
      if (!state.running) state.running = { frame: event.t, total: event.total, done: 0, updated: new Set() };
      state.running.done = event.done;
      state.running.total = event.total;
      state.running.updated.add(event.t);
      state.progress = event;
      if (event.t === state.t) maskImage(event.t);
      renderTimeline();
      renderTransport();
    } else if (event.type === "round_end") {
      state.running = null;
      state.versions = event.versions.slice();
      if (event.status !== "done" && state.submitted) {
        const list = state.pending.get(state.submitted.frame) || [];
        state.pending.set(state.submitted.frame, [...state.submitted.strokes, ...list]);
        savePending();
      }
      state.submitted = null;
      refresh().then(() => setStatus(event.message, event.status === "failed"));
    } else if (event.type === "busy") {
      showBusy(event.busy);
    } else if (event.type === "state" || event.type === "exported") {
      refresh();
    }
  };
  source.onerror = () => {
    state.disconnected = true;
    setStatus(LOST, true);
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 1000);  // refused for good: start again
  };
}

function busyText(busy) {
  return `busy: ${busy} ...`;
}

function showBusy(busy) {
  // What holds the workspace, from this page or another: conflicting buttons are disabled meanwhile.
  const before = state.busy;
  state.busy = busy;
  if (busy) setStatus(busyText(busy));
  else if (before && state.status === busyText(before)) setStatus("ready");
  if (state.server) renderControls();
}

// ---------------------------------------------------------------------------------------------- keys

const TOOL_KEYS = { s: "pos-scribble", n: "neg-scribble", c: "pos-click", x: "neg-click", e: "eraser" };
const SLIDER_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"]);
const NOT_TEXT = new Set(["range", "color", "checkbox", "radio", "button", "submit", "reset", "file"]);

function isField(target) {
  // Where typed keys are text (or a choice), never shortcuts.
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  return target.tagName === "INPUT" && !NOT_TEXT.has(target.type);
}

function setBrush(size) {
  state.brush = Math.max(1, Math.min(20, Math.round(size)));
  $("brush").value = state.brush;
  draw();
}

function setOpacity(opacity) {
  state.opacity = Math.max(0, Math.min(1, opacity));
  $("opacity").value = state.opacity;
  draw();
}

function setOverlay(mode) {
  state.overlay = OVERLAY_MODES.includes(mode) ? mode : "both";
  $("overlay").value = state.overlay;
  draw();
}

document.addEventListener("keydown", (event) => {
  if (!state.server || isField(event.target)) return;
  if (event.target.type === "range" && SLIDER_KEYS.has(event.key)) return;
  const help = $("help");
  const key = event.key;
  if (key === "?") { help.hidden = !help.hidden; return; }
  if (!help.hidden) { if (key === "Escape") help.hidden = true; return; }
  const step = event.shiftKey ? 10 : 1;
  if (event.ctrlKey || event.metaKey) {
    const k = key.toLowerCase();
    if (k === "z" && event.shiftKey || k === "y") redo();
    else if (k === "z") undo();
    else return;
    event.preventDefault();
    return;
  }
  if (event.altKey) return;
  if (key === " ") {  // play / pause when released, unless the view was dragged meanwhile
    if (!event.repeat) {
      view.spaceHeld = true;
      view.panned = false;
      document.body.classList.add("space-held");
    }
  } else if (key === "ArrowLeft") seek(state.t - step);
  else if (key === "ArrowRight") seek(state.t + step);
  else if (key === "Home") seek(0);
  else if (key === "End") seek(state.server.num_frames - 1);
  else if (key === "Enter") run();
  else if (key === "Escape") { if (state.running) cancel(); else preview.drop(); }
  else if (key === "Backspace") {
    const list = state.pending.get(state.t) || [];
    list.pop();
    savePending();
    renderFrame();
    preview.schedule();
  } else if (key.toLowerCase() === "m") preview.toggleStop();
  else if (key.toLowerCase() === "u") {
    if (event.shiftKey) redo(); else undo();
  }
  else if (key.toLowerCase() === "g") suggest();
  else if (key === "+") addObject();
  else if (key === "[" || key === "]") setBrush(state.brush + (key === "]" ? 1 : -1));
  else if (key === "{" || key === "}") setOpacity(state.opacity + (key === "}" ? 0.1 : -0.1));
  else if (key.toLowerCase() === "o") setOverlay(OVERLAY_MODES[(OVERLAY_MODES.indexOf(state.overlay) + 1) % OVERLAY_MODES.length]);
  else if (key.toLowerCase() === "v") toggleVisible(state.object);
  else if (key === "0") view.reset();
  else if (/^[1-9]$/.test(key)) selectObject(Number(key));
  else if (TOOL_KEYS[key.toLowerCase()]) setTool(TOOL_KEYS[key.toLowerCase()]);
  else return;
  event.preventDefault();
});

document.addEventListener("keyup", (event) => {
  if (event.key !== " " || !view.spaceHeld) return;
  view.spaceHeld = false;
  document.body.classList.remove("space-held");
  event.preventDefault();
  if (!view.panned && !isField(event.target)) togglePlay();
});
window.addEventListener("blur", () => { view.spaceHeld = false; document.body.classList.remove("space-held"); });

// ---------------------------------------------------------------------------------------------- wiring

for (const b of document.querySelectorAll("[data-tool]")) b.onclick = () => setTool(b.dataset.tool);
$("run").onclick = run;
$("cancel").onclick = cancel;
$("undo").onclick = undo;
$("redo").onclick = redo;
$("suggest").onclick = suggest;
$("export").onclick = exportAll;
$("add-object").onclick = addObject;
$("play").onclick = togglePlay;
$("first").onclick = () => seek(0);
$("prev").onclick = () => seek(state.t - 1);
$("next").onclick = () => seek(state.t + 1);
$("last").onclick = () => seek(state.server.num_frames - 1);
// The timeline is also a slider: press and drag along it.
function seekTimeline(event) {
  const rect = $("timeline").getBoundingClientRect();
  seek(Math.floor(((event.clientX - rect.left) / rect.width) * state.server.num_frames));
}
$("timeline").addEventListener("pointerdown", (event) => {
  if (!state.server) return;
  $("timeline").setPointerCapture(event.pointerId);
  seekTimeline(event);
});
$("timeline").addEventListener("pointermove", (event) => {
  if (state.server && $("timeline").hasPointerCapture(event.pointerId)) seekTimeline(event);
});
$("opacity").oninput = (event) => setOpacity(Number(event.target.value));
$("brush").oninput = (event) => setBrush(Number(event.target.value));
// A choice made, the select gives the keys back to the shortcuts.
$("overlay").onchange = (event) => { setOverlay(event.target.value); event.target.blur(); };
$("speed").onchange = (event) => { state.speed = Number(event.target.value) || 1; event.target.blur(); };
$("fit").onclick = () => view.reset();
$("help-button").onclick = () => { $("help").hidden = false; };
$("help-close").onclick = () => { $("help").hidden = true; };
window.addEventListener("resize", () => { fit(); draw(); });

refresh().then(() => setStatus(state.busy ? busyText(state.busy) : state.status || "ready")).catch((err) => setStatus(err.message, true));
connect();
