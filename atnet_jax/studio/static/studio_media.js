// The studio page's media: download the export as one zip, play the exported overlay video, and J&F against the
// video's ground truth (a bar per frame under the timeline, the mean per step in the history). A thin client of
// POST /api/export.zip, GET /api/export/video and GET /api/scores; it follows the page by watching the history
// list, which studio.js re-renders after every step.

const $ = (id) => document.getElementById(id);

function setStatus(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

async function failure(response) {
  const data = await response.json().catch(() => ({}));
  return new Error(data.error || `HTTP ${response.status}`);
}

// ------------------------------------------------------------------------------------------- download

async function downloadZip() {
  const button = $("download-zip");
  button.disabled = true;
  setStatus("exporting and packing the zip ...");
  try {
    const response = await fetch("/api/export.zip", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    if (!response.ok) throw await failure(response);
    const disposition = response.headers.get("Content-Disposition") || "";
    const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || "export.zip";
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    setStatus(`downloaded ${name} (also written into the workspace's export/ folder)`);
  } catch (err) {
    setStatus(`download failed: ${err.message}`, true);
  } finally {
    button.disabled = document.body.dataset.running === "1";
  }
}

// ------------------------------------------------------------------------------------------------ video

async function openVideo() {
  const dialog = $("video-dialog");
  const video = $("export-video");
  const note = $("video-note");
  const head = await fetch("/api/export/video", { method: "HEAD" });
  if (!head.ok) {
    note.textContent = "No overlay video yet: press Export or Download zip first.";
    video.hidden = true;
  } else {
    note.textContent = "The last export's overlay video (H.264).";
    video.hidden = false;
    video.src = `/api/export/video?at=${Date.now()}`;
  }
  dialog.hidden = false;
}

function closeVideo() {
  const video = $("export-video");
  video.pause();
  video.removeAttribute("src");
  video.load();
  $("video-dialog").hidden = true;
}

// ----------------------------------------------------------------------------------------------- scores

let scores = null;
let fetching = false;
let again = false;  // asked again while a request was out: ask once more when it is back

function shade(score) {  // red at 0, amber at 0.5, green at 1
  const hue = Math.round(120 * Math.max(0, Math.min(1, score)));
  return `hsl(${hue} 65% 45%)`;
}

function renderScores() {
  const row = $("scores");
  const available = !!(scores && scores.available);
  row.hidden = !available;
  $("scores-legend").hidden = !available;
  if (!available) return;
  const n = scores.per_frame.length;
  if (row.children.length !== n) {
    row.replaceChildren();
    for (let t = 0; t < n; t++) {
      const cell = document.createElement("div");
      cell.dataset.testid = `score-cell-${t}`;
      cell.append(document.createElement("span"));
      row.append(cell);
    }
  }
  scores.per_frame.forEach((s, t) => {
    const cell = row.children[t];
    const bar = cell.firstChild;
    if (s === null) {
      cell.title = `frame ${t}: no ground truth`;
      bar.style.height = "0";
      cell.classList.add("none");
    } else {
      cell.title = `frame ${t}: J&F ${s.toFixed(3)}`;
      bar.style.height = `${Math.max(4, 100 * s)}%`;
      bar.style.background = shade(s);
      cell.classList.remove("none");
    }
  });
  $("scores-mean").textContent = `J&F ${scores.mean.toFixed(3)} (mean over ${scores.frames.length} frame(s) with ground truth)`;
  decorateSteps();
}

function decorateSteps() {
  if (!scores || !scores.available) return;
  const items = $("steps").querySelectorAll("li[data-testid^='step-']");
  items.forEach((li, i) => {
    let badge = li.querySelector(".score");
    const s = scores.steps[i];
    if (s === undefined) return;
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "score";
      badge.dataset.testid = `step-score-${i + 1}`;
      li.append(badge);
    }
    badge.textContent = s === null ? "J&F \u2013" : `J&F ${s.toFixed(2)}`;
    badge.title = s === null ? "not measured" : `mean J&F over the video after this step: ${s.toFixed(3)}`;
    if (s !== null) badge.style.color = shade(s);
  });
}

async function refreshScores() {
  if (fetching) {
    again = true;
    return;
  }
  fetching = true;
  do {
    again = false;
    try {
      const response = await fetch("/api/scores");
      if (response.ok) scores = await response.json();
    } catch (err) {
      // the connection is down: studio.js says so; the scores come back with the next refresh
    }
  } while (again);
  fetching = false;
  renderScores();
}

// ---------------------------------------------------------------------------------------------- wiring

$("download-zip").onclick = downloadZip;
$("open-video").onclick = openVideo;
$("video-close").onclick = closeVideo;
$("video-dialog").addEventListener("click", (event) => { if (event.target.id === "video-dialog") closeVideo(); });
// studio.js re-renders the history after every step, undo, object edit and reconnect: score then.
new MutationObserver(() => { decorateSteps(); refreshScores(); }).observe($("steps"), { childList: true });
new MutationObserver(() => {
  $("download-zip").disabled = document.body.dataset.running === "1";
}).observe(document.body, { attributes: true, attributeFilter: ["data-running"] });
refreshScores();
