// faceloom web UI: plain JavaScript, no build step, no network beyond this server.
// Views: #/ (workspaces) and #/ws/NAME (one workspace). State comes from the JSON API, polled ~1 s.
"use strict";

const $ = (sel, root) => (root || document).querySelector(sel);
const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
const el = (tag, attrs, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
};

const ui = {
  info: null,
  view: null,
  ws: null,          // name of the open workspace
  wsData: null,      // last /api/ws/NAME answer
  tab: "inputs",
  facesRole: "a",
  facesOffset: 0,
  selectedFaces: new Set(),
  browse: { root: 0, path: "" },
  pollTimer: null,
  lossKey: "",
  previewStamp: null,
  videoStamp: {},
  pendingRun: null,
  pendingLive: false,
  live: null,        // {socket, stream, timer, frames} while the Live screen runs
  logJob: null,
};

class ApiError extends Error {
  constructor(status, data) {
    super((data && data.error) || `HTTP ${status}`);
    this.status = status;
    this.data = data || {};
  }
}

async function api(method, url, body, extraHeaders) {
  const opts = { method, headers: { "X-Faceloom": "1", ...(extraHeaders || {}) }, credentials: "same-origin" };
  if (body instanceof Blob) {
    opts.body = body;
  } else if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(url, opts);
  } catch (err) {
    $("#conn").textContent = "server not reachable";
    throw err;
  }
  $("#conn").textContent = "";
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { error: text }; }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}

function badge(state) {
  return el("span", { class: `badge ${state || ""}`, text: state || "?" });
}

// ---- routing ----------------------------------------------------------------------------------------
function route() {
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/ws\/([^/]+)(?:\/([a-z]+))?$/);
  $("#app").hidden = true;
  clearInterval(ui.pollTimer);
  if (m) {
    const name = decodeURIComponent(m[1]);
    if (ui.ws !== name) {
      liveStop();
      ui.ws = name;
      ui.wsData = null;
      ui.lossKey = "";
      ui.previewStamp = null;
      ui.videoStamp = {};
      ui.selectedFaces.clear();
      ui.facesOffset = 0;
    }
    showView("ws");
    selectTab(m[2] || ui.tab || "inputs");
    refreshWorkspace();
    loadBrowse();
    ui.pollTimer = setInterval(refreshWorkspace, 1000);
  } else {
    ui.ws = null;
    liveStop();
    showView("home");
    refreshHome();
    ui.pollTimer = setInterval(refreshHome, 2000);
  }
}

function showView(name) {
  ui.view = name;
  $("#view-home").hidden = name !== "home";
  $("#view-ws").hidden = name !== "ws";
}

function selectTab(tab) {
  ui.tab = tab;
  for (const b of $$("#ws-tabs button")) b.classList.toggle("active", b.dataset.tab === tab);
  for (const t of $$("#view-ws .tab")) t.hidden = t.id !== `tab-${tab}`;
  if (tab === "faces") loadFaces(true);
  if (tab === "settings") renderSettings(true);
  if (tab !== "live") liveStop();
}

// ---- home -------------------------------------------------------------------------------------------
async function refreshHome() {
  let data;
  try { data = await api("GET", "/api/workspaces"); } catch (_) { return; }
  const tbody = $("#ws-table tbody");
  tbody.replaceChildren();
  for (const w of data.workspaces) {
    const stages = el("td");
    if (w.error) stages.append(el("span", { class: "error", text: w.error }));
    for (const [name, st] of Object.entries(w.stages || {})) {
      stages.append(el("span", { class: `badge ${st.state}`, title: st.error || "", text: `${name}: ${st.state}` }));
    }
    const job = w.job ? badge(w.job.state) : "";
    tbody.append(el("tr", {}, el("td", {}, el("a", { href: `#/ws/${encodeURIComponent(w.name)}`, class: "ws-link", "data-name": w.name, text: w.name })), stages, el("td", {}, job)));
  }
  $("#ws-empty").hidden = data.workspaces.length > 0;
}

async function createWorkspace(ev) {
  ev.preventDefault();
  $("#create-error").textContent = "";
  const name = $("#new-name").value.trim();
  const body = { name, model: $("#new-model").value };
  const it = $("#new-iterations").value;
  if (it) body.iterations = Number(it);
  try {
    await api("POST", "/api/workspaces", body);
    location.hash = `#/ws/${encodeURIComponent(name)}`;
  } catch (err) {
    $("#create-error").textContent = err.message;
  }
}

async function openWorkspace(ev) {
  ev.preventDefault();
  $("#open-error").textContent = "";
  try {
    const data = await api("POST", "/api/workspaces/open", { path: $("#open-path").value.trim() });
    location.hash = `#/ws/${encodeURIComponent(data.name)}`;
  } catch (err) {
    $("#open-error").textContent = err.message;
  }
}

// ---- workspace --------------------------------------------------------------------------------------
async function refreshWorkspace() {
  if (!ui.ws) return;
  const name = ui.ws;
  let data;
  try {
    data = await api("GET", `/api/ws/${encodeURIComponent(name)}`);
  } catch (err) {
    if (err.status === 404) { $("#ws-name").textContent = `${name} (not found)`; }
    return;
  }
  if (ui.ws !== name) return;
  const first = ui.wsData === null;
  ui.wsData = data;
  $("#ws-name").textContent = data.name;
  $("#ws-path").textContent = data.path;
  renderStages(data);
  renderInputs(data);
  renderJob(data.job);
  renderTraining(data);
  renderAnalysis(data);
  renderResult(data);
  if (first && ui.tab === "settings") renderSettings(true);
}

function renderStages(data) {
  const box = $("#stages");
  box.replaceChildren();
  if (data.status_error) box.append(el("p", { class: "error", text: data.status_error }));
  for (const [name, st] of Object.entries(data.stages)) {
    const node = el("div", { class: "stage", id: `stage-${name}`, "data-state": st.state },
      el("div", { class: "name" }, name, " ", badge(st.state)),
      el("div", { class: "hint", text: st.seconds ? fmtSeconds(st.seconds) : (st.finished || "") }));
    if (st.error) node.append(el("div", { class: "err", text: st.error }));
    box.append(node);
  }
  const buttons = $("#stage-buttons");
  if (!buttons.childElementCount) {
    for (const s of ui.info.stages) {
      buttons.append(el("button", { id: `run-${s}`, "data-stage": s, text: `Run ${s}`, onclick: () => startRun([s]) }));
    }
  }
}

function renderInputs(data) {
  for (const role of ["a", "b", "target"]) {
    const list = $(`#inputs-${role}`);
    const items = data.inputs[role] || [];
    const key = JSON.stringify(items);
    if (list.dataset.key === key) continue;
    list.dataset.key = key;
    list.replaceChildren();
    if (!items.length) list.append(el("li", { class: "hint", text: "nothing yet" }));
    for (const p of items) {
      list.append(el("li", { "data-path": p }, el("span", { text: p }),
        el("button", { title: "remove from this workspace (the file stays)", text: "×", onclick: () => changeInputs(role, [p], "remove") })));
    }
  }
}

async function changeInputs(role, paths, mode) {
  $("#inputs-error").textContent = "";
  try {
    await api("POST", `/api/ws/${encodeURIComponent(ui.ws)}/inputs`, { role, paths, mode });
    await refreshWorkspace();
  } catch (err) {
    $("#inputs-error").textContent = err.message;
  }
}

async function uploadFiles(role, files) {
  const status = $("#upload-status");
  $("#inputs-error").textContent = "";
  const limit = ui.info.max_upload_mb * 1024 * 1024;
  for (const f of files) {
    if (f.size > limit) {
      $("#inputs-error").textContent = `${f.name}: too large (the limit is ${ui.info.max_upload_mb} MB)`;
      continue;
    }
    status.textContent = `uploading ${f.name} (${(f.size / 1048576).toFixed(1)} MB)…`;
    try {
      await api("POST", `/api/ws/${encodeURIComponent(ui.ws)}/upload?role=${role}&name=${encodeURIComponent(f.name)}`, f);
      status.textContent = `${f.name} added to ${role.toUpperCase()}`;
    } catch (err) {
      status.textContent = "";
      $("#inputs-error").textContent = err.message;
    }
  }
  refreshWorkspace();
}

// ---- allowed-folder picker ----------------------------------------------------------------------------
let browseSeq = 0; // only the newest listing asked for is drawn: replies can come back out of order

async function loadBrowse() {
  const allowed = ui.info.allowed;
  $("#browse-none").hidden = allowed.length > 0;
  $("#browse-ui").hidden = allowed.length === 0;
  if (!allowed.length) return;
  const sel = $("#browse-root");
  if (!sel.childElementCount) {
    for (const a of allowed) sel.append(el("option", { value: a.index, text: a.path }));
  }
  const seq = ++browseSeq;
  let data;
  try {
    data = await api("GET", `/api/browse?root=${ui.browse.root}&path=${encodeURIComponent(ui.browse.path)}`);
  } catch (err) {
    if (seq === browseSeq) $("#inputs-error").textContent = err.message;
    return;
  }
  if (seq !== browseSeq) return;
  const ticked = new Set($$(".browse-file:checked").map((b) => b.dataset.path)); // a redraw keeps the ticks
  const crumbs = $("#browse-crumbs");
  crumbs.replaceChildren(el("a", { text: data.base, onclick: () => { ui.browse.path = ""; loadBrowse(); } }));
  let acc = "";
  for (const part of data.path ? data.path.split("/") : []) {
    acc = acc ? `${acc}/${part}` : part;
    const target = acc;
    crumbs.append(" / ", el("a", { text: part, onclick: () => { ui.browse.path = target; loadBrowse(); } }));
  }
  const list = $("#browse-list");
  list.replaceChildren();
  for (const d of data.dirs) {
    const target = data.path ? `${data.path}/${d}` : d;
    list.append(el("li", { class: "dir", "data-dir": d, onclick: () => { ui.browse.path = target; loadBrowse(); } }, `${d}/`));
  }
  for (const f of data.files) {
    list.append(el("li", {}, el("label", {},
      el("input", { type: "checkbox", class: "browse-file", "data-path": f.path, "data-name": f.name, checked: ticked.has(f.path) }),
      ` ${f.name} `, el("span", { class: "hint", text: `${(f.size / 1048576).toFixed(2)} MB` }))));
  }
  if (!data.dirs.length && !data.files.length) list.append(el("li", { class: "hint", text: "no videos or images here" }));
}

function addSelected(role) {
  const boxes = $$(".browse-file:checked");
  const paths = boxes.map((b) => b.dataset.path);
  if (!paths.length) { $("#inputs-error").textContent = "tick one or more files first"; return; }
  for (const b of boxes) b.checked = false;
  changeInputs(role, role === "target" ? paths.slice(0, 1) : paths, role === "target" ? "replace" : "add");
}

// ---- faces --------------------------------------------------------------------------------------------
async function loadFaces(reset) {
  if (reset) {
    ui.facesOffset = 0;
    ui.selectedFaces.clear();
    $("#faces-grid").replaceChildren();
  }
  const role = ui.facesRole;
  let data;
  try {
    data = await api("GET", `/api/ws/${encodeURIComponent(ui.ws)}/faces/${role}?offset=${ui.facesOffset}`);
  } catch (err) {
    $("#faces-status").textContent = err.message;
    $("#faces-more").hidden = true;
    return;
  }
  if (role !== ui.facesRole) return;
  const grid = $("#faces-grid");
  for (const f of data.faces) {
    const box = el("input", { type: "checkbox", "data-id": f.id });
    const node = el("div", { class: "face", "data-id": f.id, title: `${f.short}  blur ${f.blur}  yaw ${f.yaw}` },
      box, el("img", { src: f.url, loading: "lazy", alt: f.short }), el("div", { class: "cap", text: f.short }));
    node.addEventListener("click", (ev) => {
      if (ev.target !== box) box.checked = !box.checked;
      node.classList.toggle("selected", box.checked);
      if (box.checked) ui.selectedFaces.add(f.id); else ui.selectedFaces.delete(f.id);
    });
    grid.append(node);
  }
  ui.facesOffset = data.offset + data.faces.length;
  $("#faces-status").textContent = `${data.total} faces of ${role.toUpperCase()}; showing ${ui.facesOffset}. Click bad ones, then “Remove selected”.`;
  $("#faces-more").hidden = ui.facesOffset >= data.total;
}

async function removeFaces() {
  const ids = Array.from(ui.selectedFaces);
  if (!ids.length) { $("#faces-status").textContent = "select faces first"; return; }
  try {
    const r = await api("POST", `/api/ws/${encodeURIComponent(ui.ws)}/faces/${ui.facesRole}/remove`, { ids });
    await loadFaces(true);
    $("#faces-status").textContent = `removed ${r.removed.length}; ${$("#faces-status").textContent}`;
  } catch (err) {
    $("#faces-status").textContent = err.message;
  }
}

// ---- runs and jobs ---------------------------------------------------------------------------------------
async function startRun(stages) {
  $("#run-error").textContent = "";
  const swaps = !stages.length || stages.includes("convert");
  if (swaps && ui.wsData && !ui.wsData.consent) {
    // the server refuses the first swap without it too; ask before sending anything
    ui.pendingRun = stages;
    showConsent(ui.info.consent_text);
    return;
  }
  const body = { stages };
  const it = $("#run-iterations").value;
  const mins = $("#run-minutes").value;
  if (it) body.iterations = Number(it);
  if (mins) body.minutes = Number(mins);
  try {
    await api("POST", `/api/ws/${encodeURIComponent(ui.ws)}/run`, body);
    selectTab("run");
    refreshWorkspace();
  } catch (err) {
    if (err.data && err.data.consent_required) {
      ui.pendingRun = stages;
      showConsent(err.data.consent_text);
    } else {
      $("#run-error").textContent = err.message;
    }
  }
}

function showConsent(text) {
  $("#consent-text").textContent = text || ui.info.consent_text;
  $("#consent-check").checked = false;
  $("#consent-ok").disabled = true;
  $("#consent-modal").hidden = false;
}

async function confirmConsent() {
  try {
    await api("POST", `/api/ws/${encodeURIComponent(ui.ws)}/consent`, { agree: true });
  } catch (err) {
    $("#run-error").textContent = err.message;
    return;
  }
  $("#consent-modal").hidden = true;
  const stages = ui.pendingRun;
  ui.pendingRun = null;
  await refreshWorkspace();
  if (stages) startRun(stages);
  if (ui.pendingLive) { ui.pendingLive = false; liveStart(); }
}

// ---- live: the camera through the model over a WebSocket ---------------------------------------------
function liveSettings() {
  const out = {};
  for (const input of $$("[data-live]")) out[input.dataset.live] = input.type === "number" ? Number(input.value) : input.value;
  return out;
}

async function liveStart() {
  $("#live-error").textContent = "";
  if (ui.live) return;
  if (ui.wsData && !ui.wsData.consent) {
    ui.pendingLive = true;
    showConsent(ui.info.consent_text);
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    $("#live-error").textContent = `no camera: ${err.message || err.name}`;
    return;
  }
  const video = $("#live-camera");
  video.srcObject = stream;
  await video.play();
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${proto}://${location.host}/api/ws/${encodeURIComponent(ui.ws)}/live`);
  socket.binaryType = "blob";
  const canvas = document.createElement("canvas");
  const live = { socket, stream, timer: null, frames: 0, sending: false };
  ui.live = live;
  $("#live-start").hidden = true;
  $("#live-stop").hidden = false;
  $("#live-stats").textContent = "starting…";
  const img = $("#live-out");
  img.dataset.frames = "0";
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ settings: liveSettings() }));
    live.timer = setInterval(() => {
      // One frame on its way at a time from the page; the server keeps only the newest anyway.
      if (live.sending || socket.readyState !== WebSocket.OPEN || socket.bufferedAmount > 1 << 20) return;
      if (!video.videoWidth) return;
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      canvas.getContext("2d").drawImage(video, 0, 0);
      live.sending = true;
      canvas.toBlob((blob) => { live.sending = false; if (blob && socket.readyState === WebSocket.OPEN) socket.send(blob); }, "image/jpeg", 0.9);
    }, 1000 / 30);
  });
  socket.addEventListener("message", (ev) => {
    if (typeof ev.data !== "string") {
      const url = URL.createObjectURL(ev.data);
      // One listener per frame: the next load frees this frame's blob even if its own load never came.
      img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
      img.src = url;
      img.hidden = false;
      live.frames += 1;
      img.dataset.frames = String(live.frames);
      return;
    }
    const msg = JSON.parse(ev.data);
    if (msg.error) {
      $("#live-error").textContent = msg.error;
      if (msg.consent_required) { liveStop(); ui.pendingLive = true; showConsent(ui.info.consent_text); }
    } else if (msg.report) {
      const r = msg.report;
      $("#live-stats").textContent = `${r.fps.toFixed(1)} frames/s · latency p50 ${Math.round(r.latency_ms_p50)} ms, p95 ${Math.round(r.latency_ms_p95)} ms · dropped ${r.dropped}/${r.delivered}`;
      $("#live-stats").dataset.fps = String(r.fps);
    }
  });
  socket.addEventListener("close", () => { if (ui.live === live) liveStop(); });
}

function liveStop() {
  const live = ui.live;
  if (!live) return;
  ui.live = null;
  clearInterval(live.timer);
  for (const track of live.stream.getTracks()) track.stop();
  if (live.socket.readyState <= WebSocket.OPEN) live.socket.close();
  $("#live-start").hidden = false;
  $("#live-stop").hidden = true;
}

async function renderJob(job) {
  const stop = $("#job-stop");
  const resume = $("#job-resume");
  if (!job) {
    $("#job-state").textContent = "No job yet.";
    stop.hidden = resume.hidden = true;
    return;
  }
  const what = job.stages.length ? job.stages.join(", ") : "whole chain";
  const since = job.started ? ` since ${new Date(job.started * 1000).toLocaleTimeString()}` : "";
  const state = $("#job-state");
  state.replaceChildren(badge(job.state), ` ${what}${since}`, job.error ? el("span", { class: "error", text: `  ${job.error}` }) : "");
  state.dataset.state = job.state;
  state.dataset.job = job.id;
  stop.hidden = !["queued", "running", "stopping"].includes(job.state);
  stop.textContent = job.state === "stopping" ? "Stop now" : "Stop";
  stop.dataset.job = job.id;
  resume.hidden = !["stopped", "failed"].includes(job.state);
  resume.dataset.job = job.id;
  const active = ["running", "stopping"].includes(job.state);
  if (ui.tab === "run" && (active || ui.logJob !== `${job.id}:${job.state}`)) {
    ui.logJob = `${job.id}:${job.state}`;
    try {
      const data = await api("GET", `/api/jobs/${job.id}/log`);
      const pre = $("#job-log");
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = data.log;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    } catch (_) { /* the next poll tries again */ }
  }
}

async function jobAction(action, id) {
  try {
    await api("POST", `/api/jobs/${id}/${action}`);
  } catch (err) {
    $("#run-error").textContent = err.message;
  }
  refreshWorkspace();
}

// ---- training ---------------------------------------------------------------------------------------------
function renderTraining(data) {
  const img = $("#train-preview");
  if (data.preview && data.preview_mtime !== ui.previewStamp) {
    ui.previewStamp = data.preview_mtime;
    img.src = `/files/ws/${encodeURIComponent(data.name)}/${data.preview.split("/").map(encodeURIComponent).join("/")}?v=${data.preview_mtime}`;
    img.hidden = false;
    $("#train-preview-none").hidden = true;
  }
  const of = data.train_target ? ` of ${data.train_target}` : "";
  $("#train-step").textContent = data.train_step !== null ? `(step ${data.train_step}${of})` : "";
  const key = `${data.train_step}`;
  if (!data.draft && key !== ui.lossKey) {
    ui.lossKey = key;
    loadLoss();
  }
}

const LOSS_COLOURS = ["#2f6fde", "#d9480f", "#1f8a4c", "#6b46c1", "#b7791f", "#0b7285"];

async function loadLoss() {
  let data;
  try { data = await api("GET", `/api/ws/${encodeURIComponent(ui.ws)}/trainlog`); } catch (_) { return; }
  drawLoss(data);
}

function drawLoss(data) {
  const canvas = $("#loss-canvas");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 46, R = 10, T = 10, B = 26;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif";
  const legend = $("#loss-legend");
  legend.replaceChildren();
  const cols = data.columns.map((c, i) => ({ c, i })).filter((x) => x.c.startsWith("loss_"));
  if (!data.rows.length || !cols.length) {
    ctx.fillStyle = "#667085";
    ctx.fillText("no training log yet", L, H / 2);
    return;
  }
  const xs = data.rows.map((r) => r[0]);
  let lo = Infinity, hi = -Infinity;
  for (const r of data.rows) for (const { i } of cols) { const v = r[i]; if (v !== null && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
  if (!isFinite(lo)) return;
  if (hi - lo < 1e-9) { hi += 1e-3; lo -= 1e-3; }
  const x0 = xs[0], x1 = Math.max(xs[xs.length - 1], x0 + 1);
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y) => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);
  ctx.strokeStyle = "#d9dee5";
  ctx.fillStyle = "#667085";
  ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const y = lo + ((hi - lo) * k) / 4;
    ctx.beginPath(); ctx.moveTo(L, py(y)); ctx.lineTo(W - R, py(y)); ctx.stroke();
    ctx.fillText(y.toPrecision(3), 2, py(y) + 4);
  }
  ctx.fillText(`step ${x0}`, L, H - 8);
  const endLabel = `step ${xs[xs.length - 1]}`;
  ctx.fillText(endLabel, W - R - ctx.measureText(endLabel).width, H - 8);
  cols.forEach(({ c, i }, n) => {
    const colour = LOSS_COLOURS[n % LOSS_COLOURS.length];
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    let started = false;
    for (const r of data.rows) {
      const v = r[i];
      if (v === null || !isFinite(v)) continue;
      if (!started) { ctx.moveTo(px(r[0]), py(v)); started = true; } else ctx.lineTo(px(r[0]), py(v));
    }
    ctx.stroke();
    const last = data.rows[data.rows.length - 1][i];
    legend.append(el("span", { style: `color:${colour}`, text: `${c} ${last !== null ? Number(last).toFixed(4) : ""}` }));
  });
}

// ---- coverage, eval, result -------------------------------------------------------------------------------
function kvTable(obj, prefix, out) {
  out = out || [];
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) kvTable(v, key, out);
    else if (typeof v === "number" || typeof v === "boolean" || (typeof v === "string" && v.length < 80)) out.push([key, v]);
  }
  return out;
}

function renderKV(rows) {
  const t = el("table", { class: "kv" });
  for (const [k, v] of rows) t.append(el("tr", {}, el("td", { text: k }), el("td", { text: typeof v === "number" ? (Number.isInteger(v) ? v : v.toFixed(4)) : String(v) })));
  return t;
}

function renderAnalysis(data) {
  const cov = $("#coverage");
  const key = JSON.stringify(data.coverage);
  if (cov.dataset.key !== key) {
    cov.dataset.key = key;
    if (data.coverage) {
      cov.replaceChildren();
      const u = data.coverage.uncovered || {};
      if (u.share !== undefined) {
        cov.append(el("p", { text: `${(100 * u.share).toFixed(1)}% of the target's frames are outside B's coverage (${u.frames} frames).` }));
      }
      const w = data.coverage.warnings || [];
      cov.append(el("p", { text: w.length ? `${w.length} warning(s):` : "No coverage warnings: B's faces cover what the target needs." }));
      if (w.length) cov.append(el("ul", { class: "warnings" }, ...w.map((x) => el("li", { text: x }))));
      const a = data.coverage.advice || [];
      if (a.length) cov.append(el("p", { text: "Advice:" }), el("ul", {}, ...a.map((x) => el("li", { text: x }))));
    }
  }
  const link = $("#report-link");
  if (data.report) {
    link.href = `/files/ws/${encodeURIComponent(data.name)}/${data.report.split("/").map(encodeURIComponent).join("/")}`;
    link.hidden = false;
  } else link.hidden = true;
  const ev = $("#eval");
  const ekey = JSON.stringify(data.eval);
  if (ev.dataset.key !== ekey) {
    ev.dataset.key = ekey;
    const e = data.eval;
    if (e) {
      ev.replaceChildren();
      if (e.model) ev.append(el("p", { text: `${e.model.architecture} model at step ${e.model.step}, scored on held-out faces (never trained on).` }));
      const parts = { reconstruction: e.reconstruction, identity: e.identity, sharpness: e.sharpness, pose_expression: e.pose_expression, video: e.video };
      const rows = kvTable(parts).filter(([, v]) => typeof v !== "string" || !v.includes("/"));
      ev.append(renderKV(rows));
      for (const [name, p] of Object.entries(e.provenance || {})) {
        ev.append(el("p", { class: "hint", text: `${name}: ${p.synthetic ? "labelled synthetic" : "NOT labelled"} (metadata label ${p.label ? "present" : "absent"}, watermark z = ${p.watermark ? p.watermark.score : "?"})` }));
      }
      for (const w of e.warnings || []) ev.append(el("p", { class: "hint", text: `warning: ${w}` }));
    }
  }
}

async function renderResult(data) {
  for (const [kind, vid, none, dl] of [["output", "#result-video", "#result-none", "#result-download"], ["side_by_side", "#sbs-video", "#sbs-none", "#sbs-download"]]) {
    const out = data.outputs[kind];
    const stamp = out && out.exists ? `${out.path}` + (data.stages.convert ? data.stages.convert.finished : "") : null;
    if (!stamp) {
      $(vid).hidden = true; $(dl).hidden = true; $(none).hidden = false;
      ui.videoStamp[kind] = null;
      continue;
    }
    if (ui.videoStamp[kind] === stamp) continue;
    ui.videoStamp[kind] = stamp;
    try {
      const v = await api("GET", `/api/ws/${encodeURIComponent(data.name)}/video/${kind}`);
      const video = $(vid);
      video.src = v.url;
      video.hidden = false;
      $(none).hidden = true;
      const a = $(dl);
      a.href = v.download;
      a.textContent = `Download ${v.name}`;
      a.hidden = false;
    } catch (err) {
      ui.videoStamp[kind] = null;
      $(none).textContent = err.message;
    }
  }
}

// ---- settings ---------------------------------------------------------------------------------------------
// The fields come from the settings' own metadata (/api/info "settings"): kind, choices, range, help, and
// whether a change starts a new model (marked *; the old model is kept as model.prev-...).
function settingInput(name, row, v) {
  const common = { "data-setting": name, title: row.help };
  if (row.kind === "choice") {
    const options = row.choices.map((c) => el("option", { value: c, text: String(c), selected: c === v }));
    return el("select", { ...common, "data-type": "text" }, ...options);
  }
  if (row.kind === "boolean") return el("input", { ...common, type: "checkbox", "data-type": "boolean", checked: !!v });
  const numeric = row.kind === "integer" || row.kind === "number";
  const input = el("input", {
    ...common,
    type: numeric ? "number" : "text",
    step: row.kind === "integer" ? "1" : "any",
    "data-type": numeric ? (row.optional ? "nullable-number" : "number") : (row.optional ? "nullable" : "text"),
    value: v === null || v === undefined ? "" : v,
    placeholder: row.optional ? "default" : "",
  });
  if (numeric && row.low !== null) input.min = row.low;
  if (numeric && row.high !== null) input.max = row.high;
  return input;
}

function renderSettings(force) {
  const data = ui.wsData;
  const box = $("#settings-fields");
  if (!data || (!force && box.childElementCount)) return;
  box.replaceChildren();
  for (const [section, rows] of Object.entries(ui.info.settings || {})) {
    const values = (data.settings || {})[section];
    if (!values) continue;
    const fs = el("fieldset", {}, el("legend", { text: section }));
    for (const row of rows) {
      const label = `${row.key}${row.shapes_model ? " *" : ""} `;
      fs.append(el("label", { title: row.help }, label, settingInput(`${section}.${row.key}`, row, values[row.key])));
    }
    if (rows.length) box.append(fs);
  }
  const kept = (data.kept && data.kept.models) || [];
  $("#settings-kept").textContent = kept.length ? `Earlier models kept: ${kept.join(", ")}` : "";
}

async function saveSettings(ev) {
  ev.preventDefault();
  $("#settings-error").textContent = "";
  const body = {};
  for (const input of $$("#settings-fields [data-setting]")) {
    const [section, key] = input.dataset.setting.split(".");
    const type = input.dataset.type;
    const raw = input.value.trim();
    const value = type === "boolean" ? input.checked
      : type === "number" ? Number(raw)
      : type === "nullable-number" ? (raw === "" ? "" : Number(raw))
      : raw;
    const old = ui.wsData.settings[section][key];
    if (value === old || (old === null && value === "")) continue;
    (body[section] = body[section] || {})[key] = value;
  }
  try {
    await api("POST", `/api/ws/${encodeURIComponent(ui.ws)}/settings`, body);
    $("#settings-status").textContent = "saved";
    await refreshWorkspace();
    renderSettings(true);
  } catch (err) {
    $("#settings-error").textContent = err.message;
  }
}

function fillModels() {
  const select = $("#new-model");
  const row = (ui.info.settings.train || []).find((r) => r.key === "model");
  select.replaceChildren(...ui.info.models.map((m) => el("option", { value: m, text: m, selected: row && m === row.default })));
}

// ---- start ------------------------------------------------------------------------------------------------
async function init() {
  try {
    ui.info = await api("GET", "/api/info");
  } catch (err) {
    $("#app").textContent = `Cannot reach the faceloom server: ${err.message}`;
    return;
  }
  fillModels();
  $("#create-form").addEventListener("submit", createWorkspace);
  $("#open-form").addEventListener("submit", openWorkspace);
  for (const b of $$("#ws-tabs button")) b.addEventListener("click", () => selectTab(b.dataset.tab));
  for (const b of $$("#faces-roles button")) {
    b.addEventListener("click", () => {
      ui.facesRole = b.dataset.role;
      for (const o of $$("#faces-roles button")) o.classList.toggle("active", o === b);
      loadFaces(true);
    });
  }
  $("#faces-remove").addEventListener("click", removeFaces);
  $("#faces-more").addEventListener("click", () => loadFaces(false));
  for (const input of $$(".upload-input")) {
    input.addEventListener("change", () => { uploadFiles(input.dataset.role, Array.from(input.files)); input.value = ""; });
  }
  $("#browse-root").addEventListener("change", (ev) => { ui.browse = { root: Number(ev.target.value), path: "" }; loadBrowse(); });
  for (const id of ["#add-a", "#add-b", "#add-target"]) $(id).addEventListener("click", () => addSelected($(id).dataset.role));
  $("#run-all").addEventListener("click", () => startRun([]));
  $("#job-stop").addEventListener("click", (ev) => jobAction("stop", ev.target.dataset.job));
  $("#job-resume").addEventListener("click", (ev) => jobAction("resume", ev.target.dataset.job));
  $("#consent-check").addEventListener("change", (ev) => { $("#consent-ok").disabled = !ev.target.checked; });
  $("#consent-ok").addEventListener("click", confirmConsent);
  $("#consent-cancel").addEventListener("click", () => { $("#consent-modal").hidden = true; ui.pendingRun = null; });
  $("#settings-form").addEventListener("submit", saveSettings);
  $("#live-start").addEventListener("click", liveStart);
  $("#live-stop").addEventListener("click", liveStop);
  for (const input of $$("[data-live]")) {
    input.addEventListener("change", () => {
      if (ui.live && ui.live.socket.readyState === WebSocket.OPEN) ui.live.socket.send(JSON.stringify({ settings: liveSettings() }));
    });
  }
  window.addEventListener("hashchange", route);
  route();
}

init();
