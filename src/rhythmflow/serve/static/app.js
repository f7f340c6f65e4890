// rhythmflow page: plain JavaScript modules, no build step. Talks only to the JSON API under api/.
// Contract used here (see the README's HTTP API section):
//   POST api/validate  -> 200 {plan (its lint: [{line, kind, message}])}
//                       | 422/413 {error: {message, field, line, errors: [{field, message, line}]}}
//   POST api/jobs      -> 201 {id}   (JSON, or multipart: "request" JSON part + "style_audio" file)
//   GET  api/jobs/{id}, api/jobs/{id}/events (SSE, JSON events with an "event" field, last: status),
//   POST api/jobs/{id}/cancel|resume, GET api/jobs/{id}/audio?index=i, GET api/jobs, GET api/health
import { fmtSeconds, fmtWhen, planText } from "./format.js";
import { api, askKey, session, streamEvents } from "./http.js";
import { drawPeaks, readEmbeddingFile } from "./media.js";
import { clearReview, renderReview } from "./review.js";

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
const lineNotes = $("line-notes");
// the lyrics' problems by 1-based line (from the last check): line → {errors, warnings}
let marks = new Map();
const measure = document.createElement("canvas").getContext("2d");

function lyricsMode() { return document.querySelector("input[name=lyrics-mode]:checked").value; }
function styleMode() { return document.querySelector("input[name=style-mode]:checked").value; }

// The gutter: one row per line of the editor, its number, and a marker (CSS) on the lines with
// an error (.bad) or a lint warning (.warn); the row's title holds the messages.
function drawGutter() {
  const n = Math.max(1, lyricsInput.value.split("\n").length);
  const rows = document.createDocumentFragment();
  for (let i = 1; i <= n; i++) {
    const row = document.createElement("span");
    row.className = "ln";
    row.dataset.line = String(i);
    row.textContent = String(i);
    const m = marks.get(i);
    if (m) {
      row.classList.add(m.errors.length ? "bad" : "warn");
      row.title = [...m.errors, ...m.warnings].join("\n");
    }
    rows.append(row);
  }
  gutter.replaceChildren(rows);
  gutter.scrollTop = lyricsInput.scrollTop;
  drawNotes();
}

// A note on each marked line, just after its text (clipped to the editor), saying what is wrong.
function drawNotes() {
  lineNotes.replaceChildren();
  if (!marks.size) return;
  const cs = getComputedStyle(lyricsInput);
  const lh = parseFloat(cs.lineHeight) || 21;
  const padTop = parseFloat(cs.paddingTop) || 0;
  const padLeft = parseFloat(cs.paddingLeft) || 0;
  const width = lyricsInput.clientWidth;
  Object.assign(lineNotes.style, { left: `${lyricsInput.offsetLeft}px`,
    top: `${lyricsInput.offsetTop}px`, width: `${width}px`,
    height: `${lyricsInput.clientHeight}px` });
  measure.font = cs.font || `${cs.fontSize} ${cs.fontFamily}`;
  const lines = lyricsInput.value.split("\n");
  for (const [line, m] of marks) {
    if (line > lines.length) continue;
    const top = padTop + (line - 1) * lh - lyricsInput.scrollTop;
    if (top + lh < 0 || top > lyricsInput.clientHeight) continue;
    const end = measure.measureText(lines[line - 1].replace(/\t/g, "        ")).width;
    const left = Math.max(padLeft, padLeft + end + 20 - lyricsInput.scrollLeft);
    if (left > width - 120) continue;   // never over the text: the marker and the list say it
    const note = document.createElement("div");
    note.className = `note ${m.errors.length ? "bad" : "warn"}`;
    note.dataset.line = String(line);
    // the position names the line: "LRC line 2: …" / "line 2 …" is said once, in the list
    note.textContent = [...m.errors, ...m.warnings]
      .map((t) => t.replace(/^(LRC )?line \d+:?\s*/i, "")).join("  ·  ");
    Object.assign(note.style, { top: `${top}px`, left: `${left}px`, height: `${lh}px`,
                                lineHeight: `${lh}px` });
    lineNotes.append(note);
  }
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
  const takes = numberField("takes");
  if (takes !== undefined && takes !== 1) req.takes = takes;
  for (const key of ["check", "repair"]) if ($(key).checked) req[key] = true;
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

// Where each request field's problems are shown: the lyrics in the editor's gutter and the list
// under it; the style under the style choice (at the control of the chosen mode); a setting
// under its control; anything else (a field the page never sends, the request as a whole)
// above the plan. Each such control is marked aria-invalid while the server refuses it.
const LYRICS_FIELDS = new Set(["lrc", "lyrics"]);
const STYLE_FIELDS = new Set(["style_prompt", "style_embedding", "style_audio"]);
const SETTINGS = { steps: "steps", cfg_strength: "cfg-strength", seed: "seed",
                   duration: "duration", format: "format", takes: "takes", check: "check",
                   repair: "repair" };
const STYLE_CONTROLS = { prompt: "style-prompt", audio: "style-audio", embedding: "style-embedding" };

function issueLine(className, text, line) {
  const div = document.createElement("div");
  div.className = className;
  if (line) div.dataset.line = String(line);
  const msg = document.createElement("span");
  msg.textContent = text;
  div.append(msg);
  if (line) {
    const go = document.createElement("button");
    go.type = "button";
    go.className = "link";
    go.textContent = `Go to line ${line}`;
    go.addEventListener("click", () => selectLine(line));
    div.append(go);
  }
  return div;
}

// Shows every problem at its field (errors: [{field, message, line}]) and the lint's warnings
// (lint: [{line, kind, message}]) by line in the gutter; none of either clears the marks.
function showProblems(errors = [], lint = []) {
  const controls = ["lyrics-input", ...Object.values(STYLE_CONTROLS), ...Object.values(SETTINGS)];
  for (const id of controls) $(id).removeAttribute("aria-invalid");
  for (const el of document.querySelectorAll(".field-issue")) el.textContent = "";
  $("lyrics-issues").textContent = "";
  $("form-issues").textContent = "";
  marks = new Map();
  const mark = (line, kind, text) => {
    if (!marks.has(line)) marks.set(line, { errors: [], warnings: [] });
    marks.get(line)[kind].push(text);
  };
  const lyricsRows = [];
  const invalid = (id) => $(id).setAttribute("aria-invalid", "true");
  const say = (el, text) => { el.textContent = el.textContent ? `${el.textContent}\n${text}` : text; };
  for (const e of errors) {
    if (LYRICS_FIELDS.has(e.field)) {
      invalid("lyrics-input");
      if (e.line) mark(e.line, "errors", e.message);
      lyricsRows.push({ cls: "error-line", line: e.line, text: e.message });
    } else if (STYLE_FIELDS.has(e.field)) {
      invalid(STYLE_CONTROLS[styleMode()]);
      say($("style-issues"), e.message);
    } else if (SETTINGS[e.field]) {
      invalid(SETTINGS[e.field]);
      say($(`${SETTINGS[e.field]}-issue`), e.message);
    } else {
      // the server's message names its field already ("mood: unknown field …")
      const named = e.field && String(e.message).startsWith(e.field);
      $("form-issues").append(issueLine("error-line",
        `${e.field && !named ? `${e.field}: ` : ""}${e.message}`, null));
    }
  }
  for (const w of lint) {
    if (!Number.isInteger(w.line)) continue;
    mark(w.line, "warnings", `${w.kind}: ${w.message}`);
    lyricsRows.push({ cls: "warn-line", line: w.line, text: `Lint, ${w.kind}: ${w.message}` });
  }
  lyricsRows.sort((a, b) => (a.line || 0) - (b.line || 0));
  for (const r of lyricsRows) {
    // "LRC line 3: …" names its line; otherwise say which
    const named = !r.line || new RegExp(`\\bline ${r.line}\\b`, "i").test(r.text);
    $("lyrics-issues").append(issueLine(r.cls, `${named ? "" : `Line ${r.line}: `}${r.text}`,
                                        r.line));
  }
  drawGutter();
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
    showProblems();
    plan.classList.remove("bad");
    plan.textContent = "Type lyrics to see the plan and its time estimate.";
    return;
  }
  try {
    const body = requestBody();
    const data = await api("api/validate", { method: "POST", ...body });
    if (seq !== state.validateSeq) return;   // a newer edit is being checked
    const p = data.plan || data;
    showProblems([], Array.isArray(p.lint) ? p.lint : []);
    plan.classList.remove("bad");
    if (p.steps) $("steps").placeholder = `${p.steps} (the plan's choice)`;
    plan.textContent = planText(p, $("seed").value.trim() !== "") || "The request is valid.";
  } catch (e) {
    if (seq !== state.validateSeq) return;
    plan.classList.add("bad");
    const n = e.errors.length;
    plan.textContent = n > 1 ? `Fix the ${n} problems marked above to see the plan.`
      : "Fix the problem marked above to see the plan.";
    showProblems(e.errors);
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
    if (e.status === 422 || e.status === 413) {   // refused: each problem at its field
      showProblems(e.errors);
      $("form-error").textContent = e.errors.length > 1
        ? `Not queued: fix the ${e.errors.length} problems marked above.`
        : `Not queued: ${e.message}`;
    } else {
      $("form-error").textContent = e.message;
    }
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
  resetPreview();
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
  if (status === "queued") parts.push(queueText(p));
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
  renderProgress({ ...(job.progress || {}), cancelling: job.cancel_requested,
                   queue_position: job.queue_position, estimated_start: job.estimated_start },
                 job.status);
  const err = job.error && (job.error.message || job.error);
  $("job-error").textContent = job.status === "failed" && err ? String(err) : "";
  for (const w of (job.plan && job.plan.warnings) || []) addWarning(w);
  $("cancel").disabled = !(job.status === "queued" || job.status === "running");
  $("resume").disabled = !(job.status === "cancelled" || job.status === "failed");
  if (job.status === "completed" && state.shownResults !== job.id) {
    state.shownResults = job.id;
    renderResults(job);
    // the lines' verdicts, "regenerate this line" (an edit job, opened here), the takes' scores
    renderReview(job, { onSubmitted: (id) => openJob(id).then(() => loadHistory()) });
  } else if (job.status !== "completed" && state.shownResults !== null) {
    state.shownResults = null;
    $("results").textContent = "";
    clearReview();
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
  } else if (type === "preview" && ev.url) {
    showPreview(ev).catch(() => {});
  } else if (type === "status" && ev.status === "queued" && Number.isFinite(ev.queue_position)) {
    setBadge("queued");
    renderProgress({ queue_position: ev.queue_position, estimated_start: ev.estimated_start },
                   "queued");
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

function queueText(p) {
  // "Waiting in the queue · 3rd · starts in ~2 min"
  const parts = ["Waiting in the queue"];
  if (p && Number.isFinite(p.queue_position)) {
    parts.push(p.queue_position === 1 ? "next" : `position ${p.queue_position}`);
  }
  if (p && Number.isFinite(p.estimated_start)) parts.push(`starts in ~${fmtSeconds(p.estimated_start)}`);
  return parts.join(" · ");
}

function resetPreview() {
  const audio = $("preview");
  audio.pause();
  audio.removeAttribute("src");
  audio.load();
  state.previewStep = 0;
  $("preview-box").hidden = true;
}

async function showPreview(ev) {
  // the newest preview replaces the one shown (and keeps playing if one was)
  if (!(ev.step > (state.previewStep || 0))) return;
  state.previewStep = ev.step;
  const audio = $("preview");
  const playing = !audio.paused && !audio.ended;
  const url = String(ev.url).replace(/^\//, "");   // relative: the page may live under a prefix
  if (session.key) {   // <audio> cannot send the key: play a copy fetched with it
    const blob = await (await api(url, { raw: true })).blob();
    if (state.previewStep !== ev.step) return;
    if (audio.src.startsWith("blob:")) URL.revokeObjectURL(audio.src);
    audio.src = URL.createObjectURL(blob);
  } else {
    audio.src = url;
  }
  $("preview-text").textContent = `Preview at step ${ev.step} (${fmtSeconds(ev.seconds || 0)} excerpt)`;
  $("preview-box").hidden = false;
  if (playing) audio.play().catch(() => {});
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
      // shown already (the stream after a resume); a queue place carries no id of its own
      if (seq && seq <= state.lastSeq && !("queue_position" in ev)) return;
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
  lyricsInput.addEventListener("scroll", () => { gutter.scrollTop = lyricsInput.scrollTop; drawNotes(); });
  new ResizeObserver(() => drawNotes()).observe(lyricsInput);
  lyricsInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("compose").requestSubmit();
  });
  for (const el of document.querySelectorAll("input[name=lyrics-mode], input[name=style-mode]")) {
    el.addEventListener("change", () => { syncModes(); scheduleValidate(); });
  }
  for (const id of ["style-prompt", "steps", "cfg-strength", "seed", "duration", "format", "style-audio",
                    "takes", "check", "repair"]) {
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
