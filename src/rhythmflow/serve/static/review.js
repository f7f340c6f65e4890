// A finished job's lyrics as sung (GET api/jobs/{id} -> result: {lines, check, repair, takes}):
// each line in a gutter with its verdict (sung / garbled / missing, with its phoneme error
// rate), numbered as in the user's LRC (lines[*].source_line); a "Regenerate this line" action
// that submits an edit job on the line's span (ref_job = this job, edit_segments = [span]);
// and the takes side by side in #results, best first, each with its style score and PER.
import { api } from "./http.js";

const VERDICT_TEXT = { sung: "sung", garbled: "garbled", missing: "missing" };

function fmt(x) { return Number.isFinite(x) ? x.toFixed(2) : "–"; }

function section() {
  let el = document.getElementById("review");
  if (!el) {
    el = document.createElement("section");
    el.id = "review";
    el.className = "review";
    el.setAttribute("aria-labelledby", "review-title");
    document.getElementById("results").after(el);
  }
  return el;
}

export function clearReview() {
  const el = document.getElementById("review");
  if (el) { el.replaceChildren(); el.hidden = true; }
  document.getElementById("results").classList.remove("takes");
}

// The request of an edit job that samples `line` of `job` again: the job's own settings, a new
// seed, one take, the job's song as the reference (the server copies it; never a path).
function editRequest(job, line) {
  const req = { ...(job.request || {}) };
  for (const k of ["seed", "takes", "batch", "repair", "style_audio", "ref_job", "webhook_url",
                   "webhook_events"]) delete req[k];
  if ((job.request || {}).repair) req.check = true;
  req.ref_job = job.id;
  req.edit_segments = [line.span];
  return req;
}

function lineRow(job, line, check, onSubmitted) {
  const row = document.createElement("li");
  row.className = "sung-line";
  const n = line.source_line ?? line.line;
  row.dataset.line = String(n);
  const ln = document.createElement("span");
  ln.className = "ln";
  ln.textContent = String(n);
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = line.text;
  const verdict = document.createElement("span");
  verdict.className = "verdict";
  if (check) {
    row.classList.add(`verdict-${check.verdict}`);
    ln.title = `LRC line ${n}: ${VERDICT_TEXT[check.verdict] || check.verdict}, PER ` +
      `${fmt(check.per)}; heard “${check.heard || ""}”`;
    verdict.textContent = `${VERDICT_TEXT[check.verdict] || check.verdict} · PER ${fmt(check.per)}`;
  }
  const regen = document.createElement("button");
  regen.type = "button";
  regen.className = "link regen";
  regen.textContent = "Regenerate this line";
  regen.setAttribute("aria-label", `Regenerate line ${n}: ${line.text}`);
  const status = document.createElement("span");
  status.className = "regen-status";
  status.setAttribute("role", "status");
  regen.addEventListener("click", async () => {
    regen.disabled = true;
    status.textContent = "submitting…";
    try {
      const data = await api("api/jobs", { method: "POST", json: editRequest(job, line) });
      status.textContent = `edit job ${data.id} queued`;
      if (onSubmitted) onSubmitted(data.id);
    } catch (e) {
      status.textContent = `not queued: ${e.message}`;
      regen.disabled = false;
    }
  });
  row.append(ln, text, verdict, regen, status);
  return row;
}

// The lyrics as sung with their verdicts, the repair's rounds, and each take's scores.
export function renderReview(job, { onSubmitted } = {}) {
  clearReview();
  const result = job.result;
  if (!result || !Array.isArray(result.lines) || !result.lines.length) return;
  const el = section();
  const title = document.createElement("h3");
  title.id = "review-title";
  title.textContent = result.check ? "Lyrics as sung: each line checked" : "Lyrics as sung";
  const checks = new Map(((result.check && result.check.lines) || []).map((c) => [c.line, c]));
  const list = document.createElement("ol");
  list.className = "sung-lyrics";
  list.id = "sung-lyrics";
  for (const line of result.lines) list.append(lineRow(job, line, checks.get(line.line), onSubmitted));
  el.append(title, list);
  if (result.check) {
    const summary = document.createElement("p");
    summary.className = "muted";
    summary.textContent = `Song PER ${fmt(result.check.per)} (phoneme error rate: 0 = every ` +
      "phone heard; a line over 0.5 is garbled).";
    el.append(summary);
  }
  if (result.repair && Array.isArray(result.repair.rounds)) {
    const p = document.createElement("p");
    p.className = "repair-summary";
    const rounds = result.repair.rounds;
    p.textContent = rounds.length
      ? `Repaired in ${rounds.length} round(s): ` + rounds.map((r) =>
        `round ${r.round}: lines ${r.lines.join(", ")}, kept ${r.kept.length ? r.kept.join(", ") : "none"}`)
        .join("; ") + (result.repair.passed ? " – every line passes." : " – some lines still fail.")
      : "No line needed a repair.";
    el.append(p);
  }
  el.hidden = false;
  if (Array.isArray(result.takes) && result.takes.length > 1) renderTakes(result.takes);
}

// Each take's card in #results (written best first) gets its rank and scores; the list is
// laid out side by side.
function renderTakes(takes) {
  const results = document.getElementById("results");
  results.classList.add("takes");
  const cards = [...results.children];
  takes.forEach((t, k) => {
    const card = cards[k];
    if (!card) return;
    card.dataset.take = String(k + 1);
    const scores = document.createElement("p");
    scores.className = "scores";
    scores.textContent = `Take ${k + 1}${k === 0 ? " (best)" : ""} · style ` +
      `${t.style_score === null ? "not scored" : fmt(t.style_score)} · PER ${t.per === null ? "–" : fmt(t.per)}`;
    card.querySelector("h3").after(scores);
  });
}
