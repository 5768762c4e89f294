// A dataset in the studio: the start page's list of sequences (GET /api/dataset, POST /api/dataset/open), and on
// the studio page a link back to it when the studio serves a dataset.

const $ = (id) => document.getElementById(id);

function setStatus(text, error = false) {
  const el = $("status");
  if (!el) return;
  el.textContent = text;
  el.classList.toggle("error", error);
}

async function openSequence(name, button) {
  for (const b of document.querySelectorAll("#sequences button")) b.disabled = true;
  setStatus(`opening ${name} (reading the video, compiling for its frame size) ...`);
  try {
    const response = await fetch("/api/dataset/open", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ sequence: name }),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    window.location.assign("/");
  } catch (err) {
    setStatus(`cannot open ${name}: ${err.message}`, true);
    for (const b of document.querySelectorAll("#sequences button")) b.disabled = false;
    button.focus();
  }
}

async function renderList() {
  const response = await fetch("/api/dataset");
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    setStatus(data.error || `HTTP ${response.status}`, true);
    return;
  }
  $("dataset-root").textContent = `${data.input} \u2014 workspaces in ${data.workspaces}/<sequence>`;
  const body = $("sequences");
  body.replaceChildren();
  for (const s of data.sequences) {
    const row = document.createElement("tr");
    row.dataset.testid = `sequence-${s.name}`;
    const name = document.createElement("td");
    name.textContent = s.name + (data.open === s.name ? " (open)" : "");
    const frames = document.createElement("td");
    frames.textContent = String(s.frames);
    const state = document.createElement("td");
    state.textContent = s.state;
    state.dataset.testid = `sequence-state-${s.name}`;
    state.className = s.steps ? "started" : "dim";
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.textContent = data.open === s.name ? "continue" : s.steps ? "resume" : "open";
    button.dataset.testid = `open-${s.name}`;
    button.onclick = () => openSequence(s.name, button);
    action.append(button);
    row.append(name, frames, state, action);
    body.append(row);
  }
  setStatus(`${data.sequences.length} sequence(s)`);
}

async function showBackLink() {
  const link = $("dataset-back");
  const response = await fetch("/api/dataset").catch(() => null);
  const data = response && response.ok ? await response.json().catch(() => null) : null;
  if (data && data.dataset) link.hidden = false;
}

if ($("sequences")) renderList();
else if ($("dataset-back")) showBackLink();
