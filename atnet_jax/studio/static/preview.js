// Preview as you draw, and the propagation range of a round (see atnet_jax/studio/app.py).
//
// Preview: a short while after the last stroke on a frame changes (drawn, erased, removed), the page sends the
// frame's whole pending interaction to POST /api/preview; the server runs A-Net on that frame alone and the page
// shows its mask in place of the saved one until Run (which propagates it without running A-Net again), a change
// of frame, or another step drops it. Range: both ways, forward or backward only, and a stop frame marked on the
// timeline (M), sent with Run as "direction" and "until".

export const PREVIEW_DEBOUNCE_MS = 300;

export function createPreview({ state, api, draw, setStatus, $ }) {
  const p = {
    timer: null,        // the debounce timer
    requested: 0,       // numbers the requests: only the latest one's answer is shown
    inflight: 0,        // requests sent and not answered
    server: null,       // {frame, version}: the preview the server holds for this page
    shown: null,        // {frame, version, image, edges}: the preview drawn
    changedAt: null,    // performance.now() of the last stroke change (for "stroke -> preview shown")
    timings: [],        // stroke -> preview shown, ms
    direction: "both",
    stop: null,         // the stop frame marked on the timeline, or null
  };
  state.preview = p;  // for debugging and the browser tests

  const strokesOf = (t) => state.pending.get(t) || [];

  function schedule() {
    clearTimeout(p.timer);
    p.timer = null;
    if (!state.server || state.running) return;
    p.changedAt = performance.now();
    p.timer = setTimeout(request, PREVIEW_DEBOUNCE_MS);
  }

  async function request() {
    p.timer = null;
    if (!state.server || state.running) return;
    if (state.busy || state.acting) {  // another step holds the workspace: ask once it is done
      p.timer = setTimeout(request, PREVIEW_DEBOUNCE_MS);
      return;
    }
    const frame = state.t;
    const strokes = strokesOf(frame);
    if (!strokes.length) { await drop(); return; }
    const number = ++p.requested;
    const changedAt = p.changedAt ?? performance.now();
    let answer;
    p.inflight += 1;
    try {
      answer = await api("POST", "/api/preview", { frame, strokes });
    } catch (err) {
      if (number === p.requested && !state.running) setStatus(`preview: ${err.message}`, true);
      return;
    } finally {
      p.inflight -= 1;
    }
    if (number !== p.requested || answer.superseded || state.running || state.t !== frame) return;
    show(answer.frame, answer.version, answer.seconds, changedAt);
  }

  function show(frame, version, seconds, changedAt) {
    p.server = { frame, version };
    const image = new Image();
    image.onload = () => {
      if (!p.server || p.server.version !== version || state.running) return;
      p.shown = { frame, version, image };  // drawn as the saved masks are (overlay.js)
      const ms = performance.now() - changedAt;
      p.timings.push(ms);
      document.body.dataset.previewVersion = String(version);
      document.body.dataset.previewFrame = String(frame);
      setStatus(`preview of frame ${frame} (A-Net ${seconds.toFixed(2)} s, shown ${(ms / 1000).toFixed(2)} s after ` +
        "the stroke): Run propagates it");
      draw();
    };
    image.src = `/api/preview/mask?v=${version}`;
  }

  function clear() {
    const had = !!p.shown;
    p.server = null;
    p.shown = null;
    delete document.body.dataset.previewVersion;
    delete document.body.dataset.previewFrame;
    if (had) draw();
  }

  async function drop() {
    clearTimeout(p.timer);
    p.timer = null;
    p.requested += 1;  // answers still on their way are not shown
    const held = p.server || p.inflight;
    clear();
    if (!held || state.running) return;
    try {
      await api("DELETE", "/api/preview");
    } catch (err) {
      // 409: a step runs (a round takes the preview, the others drop it).
    }
  }

  // The mask to draw on frame t instead of the saved one, or null.
  function mask(t) {
    return p.shown && p.shown.frame === t && !state.running ? p.shown : null;
  }

  function frameChanged() {
    if ((p.server || p.inflight || p.timer) && (!p.server || p.server.frame !== state.t)) drop();
    if (strokesOf(state.t).length && !(p.server && p.server.frame === state.t)) schedule();
  }

  function onEvent(event) {
    if (event.type === "round_start") {
      clearTimeout(p.timer);
      p.timer = null;
      p.requested += 1;
      clear();  // the round takes the preview: its frame events show the masks from here on
    } else if (event.type === "preview" && event.frame === null) {
      clear();  // dropped by another step (undo, an object edit, export)
    } else if ((event.type === "round_end" && event.status !== "done") || event.type === "state" ||
               event.type === "exported") {
      // Strokes back in pending (a round cancelled or failed), or a step dropped the preview: preview again.
      setTimeout(() => { if (strokesOf(state.t).length && !p.server) schedule(); }, 0);
    }
  }

  // ------------------------------------------------------------------------------------------- range

  function rangeBody() {
    const body = {};
    if (p.direction !== "both") body.direction = p.direction;
    if (p.stop !== null) body.until = p.stop;
    return body;
  }

  // A round's range in the history: "" for both ways with no stop frame.
  function rangeLabel(step) {
    const way = step.direction === "forward" ? " \u2192" : step.direction === "backward" ? " \u2190" : "";
    return way + (Number.isInteger(step.until) ? ` (stop ${step.until})` : "");
  }

  function toggleStop() {
    p.stop = p.stop === state.t ? null : state.t;
    renderRange();
  }

  function setDirection(direction) {
    p.direction = direction;
    renderRange();
  }

  function decorateTimeline(timeline) {
    for (let t = 0; t < timeline.children.length; t++) timeline.children[t].classList.toggle("stop", t === p.stop);
  }

  function renderRange() {
    $("range").value = p.direction;
    $("stop-frame").textContent = p.stop === null ? "" : `stop at frame ${p.stop}`;
    $("clear-stop").hidden = p.stop === null;
    decorateTimeline($("timeline"));
  }

  $("range").addEventListener("change", (event) => { setDirection(event.target.value); event.target.blur(); });
  $("clear-stop").addEventListener("click", () => { p.stop = null; renderRange(); });
  renderRange();

  return { schedule, drop, mask, frameChanged, onEvent, rangeBody, rangeLabel, toggleStop, decorateTimeline };
}
