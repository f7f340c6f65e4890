// rhythmflow page: plain JavaScript modules, no build step. Talks only to the JSON API under api/.
// Contract used here (see the README's HTTP API section):
//   POST api/validate  -> 200 {plan} | 422 {error: {message, field, line}}
//   POST api/jobs      -> 201 {id}   (JSON, or multipart: "request" JSON part + "style_audio" file)
//   GET  api/jobs/{id}, api/jobs/{id}/events (SSE, JSON events with an "event" field, last: status),
//   POST api/jobs/{id}/cancel|resume, GET api/jobs/{id}/audio?index=i, GET api/jobs, GET api/health
import { fmtSeconds, fmtWhen, planText } from "./format.js";
import { api, askKey, session, streamEvents } from "./http.js";
import { drawPeaks, readEmbeddingFile } from "./media.js";

const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const state = {
  jobId: null,          // job shown in the job panel
  stream: null,         // {close()} of the open event stream
  pollTimer: null,
  shownResults: null,   // job id whose results are drawn
  validateTimer: null,
  validateSeq: 0,
  historyNext: null,    // cursor/offset for "Load older jobs"
  lastSeq: 0,           // id of the last event shown for this job (a new stream replays all)
  embedding: null,      // style embedding (512 numbers) read from a file, or null
};

// ---- the form ----------------------------------------------------------------------------
const lyricsInput = $("lyrics-input");
const gutter = $("gutter");
let badLine = null;

function lyricsMode() { return document.querySelector("input[name=lyrics-mode]:checked").value; }
function styleMode() { return document.querySelector("input[name=style-mode]:checked").value; }

function drawGutter() {
  const n = Math.max(1, lyricsInput.value.split("\n").length);
  const lines = [];
  for (let i = 1; i <= n; i++) {
    lines.push(i === badLine ? `<span class="bad" title="error on this line">${i}</span>` : String(i));
  }
  gutter.innerHTML = lines.join("\n");
  gutter.scrollTop = lyricsInput.scrollTop;
}

function numberField(id) {
  const v = $(id).value.trim();
  return v === "" ? undefined : Number(v);
}

function buildRequest() {
  const req = {};
  if (lyricsMode() === "lrc") req.lrc = lyricsInput.value;
  else req.lyrics = lyricsInput.value;
  const mode = styleMode();
  if (mode === "prompt") {
    const p = $("style-prompt").value.trim();
    if (p) req.style_prompt = p;
  } else if (mode === "embedding" && state.embedding) {
    req.style_embedding = state.embedding;
  }
  for (const [id, key] of [["steps", "steps"], ["cfg-strength", "cfg_strength"], ["seed", "seed"],
                           ["duration", "duration"]]) {
    const v = numberField(id);
    if (v !== undefined) req[key] = v;
  }
  req.format = $("format").value;
  return req;
}

// Empty lyrics make an instrumental, so a chosen style alone is worth checking.
function styleChosen() {
  const mode = styleMode();
  if (mode === "prompt") return $("style-prompt").value.trim() !== "";
  if (mode === "embedding") return state.embedding !== null;
  return $("style-audio").files.length > 0;
}

// JSON, or multipart with the request as a JSON part when a reference audio file is chosen.
function requestBody() {
  const req = buildRequest();
  const file = styleMode() === "audio" ? $("style-audio").files[0] : null;
  if (!file) return { json: req };
  const form = new FormData();
  form.append("request", JSON.stringify(req));
  form.append("style_audio", file, file.name);
  return { form };
}

// request field → the control that sets it (marked aria-invalid while the server refuses it)
const CONTROLS = { lrc: "lyrics-input", lyrics: "lyrics-input", style_prompt: "style-prompt",
                   style_embedding: "style-embedding", style_audio: "style-audio", steps: "steps",
                   cfg_strength: "cfg-strength", seed: "seed", duration: "duration",
                   format: "format" };

function showIssue(err) {
  const box = $("lyrics-issues");
  box.textContent = "";
  badLine = err && err.line ? err.line : null;
  drawGutter();
  for (const id of new Set(Object.values(CONTROLS))) $(id).removeAttribute("aria-invalid");
  if (!err) return;
  if (CONTROLS[err.field]) $(CONTROLS[err.field]).setAttribute("aria-invalid", "true");
  const div = document.createElement("div");
  div.className = "error-line";
  // the server's message often names its line or field already ("LRC line 3: …", "steps …")
  const text = String(err.message);
  const named = err.line ? new RegExp(`\\bline ${err.line}\\b`, "i").test(text)
    : err.field && text.replace(/^'/, "").startsWith(err.field);
  const label = err.line ? `Line ${err.line}` : err.field;
  const where = label && !named ? `${label}: ` : "";
  const msg = document.createElement("span");
  msg.textContent = `${where}${err.message}`;
  div.append(msg);
  if (err.line) {
    const go = document.createElement("button");
    go.type = "button";
    go.className = "link";
    go.textContent = `Go to line ${err.line}`;
    go.addEventListener("click", () => selectLine(err.line));
    div.append(go);
  }
  box.append(div);
}

function selectLine(n) {
  const lines = lyricsInput.value.split("\n");
  let start = 0;
  for (let i = 0; i < n - 1 && i < lines.length; i++) start += lines[i].length + 1;
  const end = start + (lines[n - 1] || "").length;
  lyricsInput.focus();
  lyricsInput.setSelectionRange(start, end);
}

async function validate() {
  const seq = ++state.validateSeq;
  const plan = $("plan");
  if (!lyricsInput.value.trim() && !styleChosen()) {   // nothing to check yet
    showIssue(null);
    plan.classList.remove("bad");
    plan.textContent = "Type lyrics to see the plan and its time estimate.";
    return;
  }
  try {
    const body = requestBody();
    const data = await api("api/validate", { method: "POST", ...body });
    if (seq !== state.validateSeq) return;   // a newer edit is being checked
    showIssue(null);
    plan.classList.remove("bad");
    const chosen = (data.plan || data).steps;
    if (chosen) $("steps").placeholder = `${chosen} (the plan's choice)`;
    plan.textContent = planText(data.plan || data, $("seed").value.trim() !== "")
      || "The request is valid.";
  } catch (e) {
    if (seq !== state.validateSeq) return;
    plan.classList.add("bad");
    plan.textContent = "Fix the problem above to see the plan.";
    showIssue({ message: e.message, field: e.field, line: e.line });
  }
}

function scheduleValidate() {
  clearTimeout(state.validateTimer);
  state.validateTimer = setTimeout(validate, 400);
}

async function readEmbedding() {
  const file = $("style-embedding").files[0];
  const out = $("embedding-info");
  state.embedding = null;
  if (!file) { out.textContent = ""; return; }
  try {
    state.embedding = await readEmbeddingFile(file);
    out.textContent = `${file.name}: 512 numbers read`;
    out.className = "muted";
  } catch (e) {
    out.textContent = `${file.name} cannot be used as a style embedding: ${e.message}`;
    out.className = "error";
  }
}

function syncModes() {
  const lrc = lyricsMode() === "lrc";
  $("lyrics-label").innerHTML = lrc
    ? "LRC text, one <code>[mm:ss.xx]</code> time per line"
    : "Plain lyrics, one line per sung line (the server times them)";
  const mode = styleMode();
  $("style-prompt-row").hidden = mode !== "prompt";
  $("style-audio-row").hidden = mode !== "audio";
  $("style-embedding-row").hidden = mode !== "embedding";
}

async function submit(ev) {
  ev.preventDefault();
  const btn = $("generate");
  $("form-error").textContent = "";
  btn.disabled = true;
  try {
    const data = await api("api/jobs", { method: "POST", ...requestBody() });
    await openJob(data.id);
    loadHistory();
    $("job-title").focus();
  } catch (e) {
    $("form-error").textContent = e.message;
    if (e.line || e.field) showIssue({ message: e.message, field: e.field, line: e.line });
  } finally {
    btn.disabled = false;
  }
}

// ---- the job panel -----------------------------------------------------------------------
function stopWatching() {
  if (state.stream) state.stream.close();
  state.stream = null;
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
}

async function openJob(id) {
  stopWatching();
  state.jobId = id;
  state.lastSeq = 0;
  $("job-warnings").textContent = "";
  $("job-empty").hidden = true;
  $("job-body").hidden = false;
  const job = await api(`api/jobs/${encodeURIComponent(id)}`);
  renderJob(job);
  if (!TERMINAL.has(job.status)) watch(id);
  markCurrentInHistory();
}

function renderProgress(p, status) {
  const bar = $("progress-bar");
  const text = $("progress-text");
  const step = p && Number.isFinite(p.step) ? p.step : 0;
  const total = p && (p.total_steps ?? p.total);
  if (status === "completed") {
    bar.max = 1; bar.value = 1;
  } else if (Number.isFinite(total) && total > 0) {
    bar.max = total; bar.value = Math.min(step, total);
  } else if (status === "queued") {
    bar.removeAttribute("value");   // indeterminate
  }
  const parts = [];
  if (status === "queued") parts.push("Waiting in the queue");
  else if (status === "running" && p && p.cancelling) parts.push("Cancelling…");
  else if (status === "running" && p && p.stage && p.stage !== "sample") parts.push(`Stage: ${p.stage}`);
  if (Number.isFinite(total) && total > 0 && status !== "queued") parts.push(`Step ${step}/${total}`);
  if (p && Number.isFinite(p.elapsed)) parts.push(`elapsed ${fmtSeconds(p.elapsed)}`);
  if (status === "running" && p && Number.isFinite(p.eta)) parts.push(`ETA ${fmtSeconds(p.eta)}`);
  if (status === "completed") parts.unshift("Done");
  if (status === "cancelled") parts.unshift("Cancelled");
  if (status === "failed") parts.unshift("Failed");
  text.textContent = parts.join(" · ");
}

function renderJob(job) {
  if (job.id !== state.jobId) return;
  $("job-id").textContent = `Job ${job.id}`;
  const badge = $("job-status");
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  renderProgress({ ...(job.progress || {}), cancelling: job.cancel_requested }, job.status);
  const err = job.error && (job.error.message || job.error);
  $("job-error").textContent = job.status === "failed" && err ? String(err) : "";
  for (const w of (job.plan && job.plan.warnings) || []) addWarning(w);
  $("cancel").disabled = !(job.status === "queued" || job.status === "running");
  $("resume").disabled = !(job.status === "cancelled" || job.status === "failed");
  if (job.status === "completed" && state.shownResults !== job.id) {
    state.shownResults = job.id;
    renderResults(job);
  } else if (job.status !== "completed" && state.shownResults !== null) {
    state.shownResults = null;
    $("results").textContent = "";
  }
}

function applyEvent(id, ev) {
  if (id !== state.jobId || !ev || typeof ev !== "object") return;
  const type = ev.event;
  // the vocabulary of rhythmflow.events, plus the service's "status"
  if (type === "sampling_step") {
    renderProgress({ step: ev.step, total_steps: ev.total, elapsed: ev.elapsed, eta: ev.eta,
                     stage: "sample" }, "running");
    setBadge("running");
  } else if (type === "decode_chunk") {
    $("progress-text").textContent = `Decoding audio, chunk ${ev.chunk}/${ev.total}`;
  } else if (type === "stage_started" && ev.stage !== "sample") {
    $("progress-text").textContent = `Stage: ${ev.stage}${ev.message ? " – " + ev.message : ""}`;
    setBadge("running");
  } else if (type === "warning" && ev.message) {
    addWarning(ev.message);
  } else if (type === "status") {
    // The stream replays a job's whole log (a resumed job's earlier "cancelled" too), so a
    // final status only ends the watch when the job itself says it is over.
    if (ev.status) setBadge(ev.status);
    if (ev.status === "running") $("progress-text").textContent = "Starting…";
    if (!ev.status || TERMINAL.has(ev.status)) {
      refreshJob(id).then((job) => {
        if (job && TERMINAL.has(job.status) && state.jobId === id) stopWatching();
      });
    }
  }
}

function addWarning(message) {
  const list = $("job-warnings");
  if ([...list.children].some((li) => li.textContent === message)) return;  // replayed
  const li = document.createElement("li");
  li.textContent = message;
  list.append(li);
}

function setBadge(status) {
  const badge = $("job-status");
  if (badge.textContent === status) return;
  badge.textContent = status;
  badge.className = `badge ${status}`;
  $("cancel").disabled = !(status === "queued" || status === "running");
  $("resume").disabled = !(status === "cancelled" || status === "failed");
}

async function refreshJob(id) {
  try {
    const job = await api(`api/jobs/${encodeURIComponent(id)}`);
    renderJob(job);
    loadHistory();
    loadHealth();
    return job;
  } catch (e) {
    $("job-error").textContent = e.message;
    return null;
  }
}

// Live events, with polling GET api/jobs/{id} when the stream breaks or ends early.
function watch(id) {
  state.stream = streamEvents(`api/jobs/${encodeURIComponent(id)}/events`,
    (ev, seq) => {
      if (seq && seq <= state.lastSeq) return;   // shown already (the stream after a resume)
      if (seq) state.lastSeq = seq;
      applyEvent(id, ev);
    },
    () => {
      if (state.jobId !== id) return;
      state.stream = null;
      poll(id);
    });
}

function poll(id) {
  clearTimeout(state.pollTimer);
  state.pollTimer = setTimeout(async () => {
    if (state.jobId !== id) return;
    const job = await refreshJob(id);
    if (!job || !TERMINAL.has(job.status)) poll(id);
  }, 1000);
}

async function jobAction(action) {
  const id = state.jobId;
  if (!id) return;
  $("job-error").textContent = "";
  try {
    const job = await api(`api/jobs/${encodeURIComponent(id)}/${action}`, { method: "POST" });
    if (job && job.id) renderJob(job);
    if (action === "resume") {
      stopWatching();
      watch(id);
    }
    if (action === "cancel") await refreshJob(id);
    loadHistory();
  } catch (e) {
    $("job-error").textContent = e.message;
  }
}

// ---- results: player, download, waveform -------------------------------------------------
function renderResults(job) {
  const list = $("results");
  list.textContent = "";
  (job.outputs || []).forEach((out, i) => {
    const index = out.index ?? i;
    const url = out.url || `api/jobs/${encodeURIComponent(job.id)}/audio?index=${index}`;
    const li = document.createElement("li");
    const title = document.createElement("h3");
    title.textContent = `Song ${index + 1}${out.seed !== undefined ? ` · seed ${out.seed}` : ""}`;
    const canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `Waveform of song ${index + 1} (loading)`);
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "metadata";
    audio.setAttribute("aria-label", `Song ${index + 1}`);
    const meta = document.createElement("p");
    meta.className = "meta";
    const dl = document.createElement("a");
    const name = `rhythmflow-${job.id}-${index}.${out.format || "wav"}`;
    dl.download = name;
    dl.textContent = `Download ${(out.format || "wav").toUpperCase()}`;
    meta.append(dl);
    if (out.metadata_url) {
      const m = document.createElement("a");
      m.href = out.metadata_url;
      m.textContent = "Metadata (JSON)";
      meta.append(m);
    }
    li.append(title, canvas, audio, meta);
    list.append(li);
    if (!session.key) {
      audio.src = url;
      dl.href = url;
    }
    drawWaveform(url, canvas, audio, dl, index).catch((e) => {
      canvas.setAttribute("aria-label", `Waveform of song ${index + 1} unavailable: ${e.message}`);
    });
  });
}

async function drawWaveform(url, canvas, audio, dl, index) {
  const blob = await (await api(url, { raw: true })).blob();
  if (session.key) {   // <audio> and links cannot send the key: play and save this copy
    const local = URL.createObjectURL(blob);
    audio.src = local;
    dl.href = local;
  }
  const seconds = await drawPeaks(canvas, blob);
  canvas.dataset.duration = seconds.toFixed(3);
  canvas.setAttribute("aria-label", `Waveform of song ${index + 1}, ${fmtSeconds(seconds)}`);
}

// ---- history and health ------------------------------------------------------------------
function jobTitle(job) {
  const req = job.request || {};
  const text = req.lrc || req.lyrics || "";
  const first = text.split("\n").map((l) => l.replace(/\[[^\]]*\]/g, "").trim()).find(Boolean);
  return first || req.style_prompt || "(no lyrics)";
}

function historyItem(job) {
  const li = document.createElement("li");
  li.dataset.jobId = job.id;
  const badge = document.createElement("span");
  badge.className = `badge ${job.status}`;
  badge.textContent = job.status;
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = jobTitle(job);
  const when = document.createElement("span");
  when.className = "when muted";
  when.textContent = fmtWhen(job.created_at);
  const open = document.createElement("button");
  open.type = "button";
  open.className = "secondary";
  open.textContent = "Open";
  open.setAttribute("aria-label", `Open job ${job.id} (${job.status}): ${title.textContent}`);
  open.addEventListener("click", () => openJob(job.id).catch((e) => {
    $("job-error").textContent = e.message;
  }));
  li.append(badge, title, when, open);
  return li;
}

function markCurrentInHistory() {
  for (const li of $("history").children) {
    li.classList.toggle("current", li.dataset.jobId === state.jobId);
  }
}

async function loadHistory(more = false) {
  const params = new URLSearchParams({ limit: "20" });
  if (more && state.historyNext !== null) params.set("before", state.historyNext);
  try {
    const data = await api(`api/jobs?${params}`);
    const jobs = Array.isArray(data) ? data : (data.jobs || data.items || []);
    const list = $("history");
    if (!more) list.textContent = "";
    for (const job of jobs) list.append(historyItem(job));
    if (!list.children.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "No jobs yet.";
      list.append(li);
    }
    state.historyNext = (data && !Array.isArray(data) && (data.next ?? data.next_cursor)) ?? null;
    $("history-more").hidden = state.historyNext === null;
    markCurrentInHistory();
  } catch (e) {
    $("history").textContent = `History unavailable: ${e.message}`;
  }
}

async function loadHealth() {
  try {
    const h = await api("api/health");
    const bits = [];
    if (h.workers_alive !== undefined) bits.push(`workers ${h.workers_alive}`);
    if (h.model_loaded !== undefined) bits.push(h.model_loaded ? "model loaded" : "model not loaded yet");
    const queued = typeof h.queue === "object" && h.queue !== null
      ? Object.values(h.queue).reduce((a, b) => a + Number(b || 0), 0) : h.queue;
    if (queued !== undefined) bits.push(`${queued} waiting`);
    $("health").textContent = bits.length ? `Server ready · ${bits.join(" · ")}` : "Server ready";
  } catch (e) {
    $("health").textContent = `Server problem: ${e.message}`;
  }
}

// ---- wiring ------------------------------------------------------------------------------
function init() {
  lyricsInput.addEventListener("input", () => { drawGutter(); scheduleValidate(); });
  lyricsInput.addEventListener("scroll", () => { gutter.scrollTop = lyricsInput.scrollTop; });
  lyricsInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("compose").requestSubmit();
  });
  for (const el of document.querySelectorAll("input[name=lyrics-mode], input[name=style-mode]")) {
    el.addEventListener("change", () => { syncModes(); scheduleValidate(); });
  }
  for (const id of ["style-prompt", "steps", "cfg-strength", "seed", "duration", "format", "style-audio"]) {
    $(id).addEventListener("input", scheduleValidate);
    $(id).addEventListener("change", scheduleValidate);
  }
  $("style-embedding").addEventListener("change", async () => { await readEmbedding(); scheduleValidate(); });
  $("compose").addEventListener("submit", submit);
  $("cancel").addEventListener("click", () => jobAction("cancel"));
  $("resume").addEventListener("click", () => jobAction("resume"));
  $("history-refresh").addEventListener("click", () => loadHistory());
  $("history-more").addEventListener("click", () => loadHistory(true));
  $("key-button").hidden = !session.key;
  $("key-button").addEventListener("click", async () => { if (await askKey()) loadHistory(); });
  $("job-title").tabIndex = -1;
  syncModes();
  drawGutter();
  loadHealth();
  setInterval(loadHealth, 15000);   // workers come and go; the model loads after start
  loadHistory();
  if (lyricsInput.value.trim()) scheduleValidate();
}

init();
