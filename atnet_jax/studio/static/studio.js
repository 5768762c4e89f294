// The studio's page: a thin client of the JSON API (see atnet_jax/studio/app.py). One state object; every
// change re-renders from it. Masks, rounds and objects come from the server; only strokes not yet run live here.

import { createPreview } from "./preview.js";

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
};
window.studio = state;  // for debugging from the console

const frames = new Map();  // t -> HTMLImageElement
const masks = new Map();   // t -> {version, image}
const t0 = performance.now();

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

const preview = createPreview({ state, api, draw, outline, setStatus, $ });

function setStatus(text, error = false) {
  state.status = text;
  state.error = error;
  renderStatus();
}

async function refresh() {
  state.server = await api("GET", "/api/state");
  state.versions = state.server.versions.slice();
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
      item.edges = outline(item.image);
      if (!entry.shown || entry.shown.version < item.version) entry.shown = item;
      if (entry.loading === item) entry.loading = null;
      if (t === state.t) draw();
    };
    item.image.src = `/api/masks/${t}?v=${version}`;
  }
  return entry.shown;
}

function outline(image) {
  // The objects' borders: mask pixels with a 4-neighbour of another label, drawn opaque over the tinted mask.
  const w = image.naturalWidth, h = image.naturalHeight;
  const off = document.createElement("canvas");
  off.width = w;
  off.height = h;
  const c = off.getContext("2d", { willReadFrequently: true });
  c.drawImage(image, 0, 0);
  const src = c.getImageData(0, 0, w, h);
  const out = c.createImageData(w, h);
  const a = src.data, o = out.data;
  const key = (i) => (a[i + 3] ? (a[i] << 16) | (a[i + 1] << 8) | a[i + 2] : -1);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = 4 * (y * w + x);
      const k = key(i);
      if (k < 0) continue;
      if ((x > 0 && key(i - 4) !== k) || (x < w - 1 && key(i + 4) !== k) ||
          (y > 0 && key(i - 4 * w) !== k) || (y < h - 1 && key(i + 4 * w) !== k)) {
        o[i] = a[i]; o[i + 1] = a[i + 1]; o[i + 2] = a[i + 2]; o[i + 3] = 255;
      }
    }
  }
  c.putImageData(out, 0, 0);
  return off;
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
  const scale = canvas.width / canvas.clientWidth;
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
    ctx.save();
    ctx.globalAlpha = state.opacity;
    ctx.drawImage(mask.image, 0, 0, canvas.width, canvas.height);
    ctx.globalAlpha = Math.min(1, 0.35 + state.opacity);
    ctx.drawImage(mask.edges, 0, 0, canvas.width, canvas.height);
    ctx.restore();
  }
  for (const s of state.server.strokes[String(t)] || []) strokePath(s, 2.5, 0.85, false);
  if (state.submitted && state.submitted.frame === t) for (const s of state.submitted.strokes) strokePath(s, 3, 0.8, false);
  for (const s of state.pending.get(t) || []) strokePath(s, 3, 1, false);
  if (state.drawing) strokePath(state.drawing, 3, 1, false);
}

// ---------------------------------------------------------------------------------------------- panels

function renderObjects() {
  const list = $("objects");
  list.replaceChildren();
  for (const obj of state.server.objects) {
    const li = document.createElement("li");
    li.dataset.testid = `object-${obj.id}`;
    li.className = obj.id === state.object ? "selected" : "";
    li.onclick = (e) => { if (e.target === li || e.target.className === "key") selectObject(obj.id); };
    const key = document.createElement("span");
    key.className = "key";
    key.textContent = obj.id <= 9 ? String(obj.id) : "";
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
    name.title = "Name (Enter to rename)";
    name.dataset.testid = `object-name-${obj.id}`;
    name.onfocus = () => selectObject(obj.id);
    name.onkeydown = (e) => { if (e.key === "Enter") name.blur(); e.stopPropagation(); };
    name.onchange = () => updateObject(obj.id, { name: name.value });
    const remove = document.createElement("button");
    remove.className = "remove";
    remove.textContent = "\u00d7";
    remove.title = "Remove this object (its masks and strokes)";
    remove.dataset.testid = `object-remove-${obj.id}`;
    remove.onclick = () => removeObject(obj.id);
    li.append(key, colour, name, remove);
    list.append(li);
  }
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
  const busy = !!state.running;
  document.body.dataset.running = busy ? "1" : "0";
  document.body.dataset.tool = state.tool;
  for (const b of document.querySelectorAll("[data-tool]")) b.classList.toggle("active", b.dataset.tool === state.tool);
  $("run").disabled = busy || !(state.pending.get(state.t) || []).length;
  $("cancel").disabled = !busy;
  $("undo").disabled = busy || !state.server.steps.length;
  $("suggest").disabled = busy || !state.server.annotated.length;
  $("export").disabled = busy;
  $("add-object").disabled = busy;
}

function renderStatus() {
  const el = $("status");
  el.textContent = state.status;
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
  renderObjects();
}

function setTool(tool) {
  state.tool = tool;
  renderControls();
}

async function guarded(action, busyText) {
  try {
    if (busyText) setStatus(busyText);
    await action();
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function run() {
  const strokes = state.pending.get(state.t) || [];
  if (!strokes.length || state.running) return;
  const frame = state.t;
  await guarded(async () => {
    state.submitted = { frame, strokes };
    state.pending.delete(frame);
    try {
      await api("POST", "/api/rounds", { frame, strokes, ...preview.rangeBody() });
      // The round_start event sets state.running; a fast round may already have ended (submitted cleared).
      if (state.submitted) setStatus(`running a round on frame ${frame} ...`);
    } catch (err) {
      state.pending.set(frame, strokes);
      state.submitted = null;
      throw err;
    }
    renderFrame();
  });
}

const cancel = () => guarded(() => api("POST", "/api/cancel"), "cancelling ...");

async function undo() {
  if (state.running) return;
  await guarded(async () => {
    const r = await api("POST", "/api/undo");
    const what = r.undone.kind === "round" ? `round on frame ${r.undone.frame}` : `object ${r.undone.object} ${r.undone.kind === "add_object" ? "added" : "removed"}`;
    await refresh();
    setStatus(`undone: ${what}`);
  }, "undoing ...");
}

async function addObject() {
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
  const obj = state.server.objects[id - 1];
  if (!window.confirm(`Remove ${obj.name}, its masks and its strokes? (Undo brings it back.)`)) return;
  await guarded(async () => {
    await api("DELETE", `/api/objects/${id}`);
    for (const [t, strokes] of state.pending) {
      state.pending.set(t, strokes.filter((s) => s.object_id !== id)
        .map((s) => (s.object_id > id ? { ...s, object_id: s.object_id - 1 } : s)));
    }
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
  setTimeout(tick, 100);
}

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
  renderFrame();
  preview.schedule();
}

function eraseAt(point) {
  const list = state.pending.get(state.t) || [];
  const rect = canvas.getBoundingClientRect();
  const near = (s) => s.path.some(([x, y]) => Math.hypot((x - point[0]) * rect.width, (y - point[1]) * rect.height) < 10);
  const kept = list.filter((s) => !near(s));
  if (kept.length !== list.length) {
    state.pending.set(state.t, kept);
    renderFrame();
    preview.schedule();
  }
}

canvas.addEventListener("pointerdown", (event) => {
  if (!state.server || event.button > 0) return;
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
  if (!state.drawing) return;
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

function endStroke() {
  const stroke = state.drawing;
  state.drawing = null;
  if (!stroke || stroke.erasing) { draw(); return; }
  stroke.end_time = now();
  addPending(stroke);
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

// ---------------------------------------------------------------------------------------------- events

function connect() {
  const source = new EventSource("/api/events");
  source.onopen = () => refresh().catch((err) => setStatus(err.message, true));
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
      }
      state.submitted = null;
      refresh().then(() => setStatus(event.message, event.status === "failed"));
    } else if (event.type === "state" || event.type === "exported") {
      refresh();
    }
  };
  source.onerror = () => setStatus("lost the connection to the studio; retrying ...", true);
}

// ---------------------------------------------------------------------------------------------- keys

const TOOL_KEYS = { s: "pos-scribble", n: "neg-scribble", c: "pos-click", x: "neg-click", e: "eraser" };

document.addEventListener("keydown", (event) => {
  if (!state.server || event.target.tagName === "INPUT" && event.target.type === "text") return;
  const help = $("help");
  const key = event.key;
  if (key === "?") { help.hidden = !help.hidden; return; }
  if (!help.hidden) { if (key === "Escape") help.hidden = true; return; }
  const step = event.shiftKey ? 10 : 1;
  if ((event.ctrlKey || event.metaKey) && key.toLowerCase() === "z") { event.preventDefault(); undo(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (key === "ArrowLeft") seek(state.t - step);
  else if (key === "ArrowRight") seek(state.t + step);
  else if (key === "Home") seek(0);
  else if (key === "End") seek(state.server.num_frames - 1);
  else if (key === " ") togglePlay();
  else if (key === "Enter") run();
  else if (key === "Escape") { if (state.running) cancel(); else preview.drop(); }
  else if (key === "Backspace") {
    const list = state.pending.get(state.t) || [];
    list.pop();
    renderFrame();
    preview.schedule();
  } else if (key.toLowerCase() === "m") preview.toggleStop();
  else if (key.toLowerCase() === "u") undo();
  else if (key.toLowerCase() === "g") suggest();
  else if (key === "+") addObject();
  else if (key === "[" || key === "]") {
    state.opacity = Math.max(0, Math.min(1, state.opacity + (key === "]" ? 0.1 : -0.1)));
    $("opacity").value = state.opacity;
    draw();
  } else if (/^[1-9]$/.test(key)) selectObject(Number(key));
  else if (TOOL_KEYS[key.toLowerCase()]) setTool(TOOL_KEYS[key.toLowerCase()]);
  else return;
  event.preventDefault();
});

// ---------------------------------------------------------------------------------------------- wiring

for (const b of document.querySelectorAll("[data-tool]")) b.onclick = () => setTool(b.dataset.tool);
$("run").onclick = run;
$("cancel").onclick = cancel;
$("undo").onclick = undo;
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
$("opacity").oninput = (event) => { state.opacity = Number(event.target.value); draw(); };
$("help-button").onclick = () => { $("help").hidden = false; };
$("help-close").onclick = () => { $("help").hidden = true; };
window.addEventListener("resize", () => { fit(); draw(); });

refresh().then(() => setStatus("ready")).catch((err) => setStatus(err.message, true));
connect();
