// Text for numbers the API returns: durations, times, the plan and its estimate.

export function fmtSeconds(s) {
  if (s === null || s === undefined || !Number.isFinite(Number(s))) return "–";
  const t = Math.max(0, Math.round(Number(s)));
  if (t < 60) return `${t} s`;
  if (t < 3600) return `${Math.floor(t / 60)} min ${String(t % 60).padStart(2, "0")} s`;
  return `${Math.floor(t / 3600)} h ${String(Math.floor((t % 3600) / 60)).padStart(2, "0")} min`;
}

// An ISO date string or epoch seconds, in the reader's locale.
export function fmtWhen(v) {
  if (v === null || v === undefined) return "";
  const d = typeof v === "number" ? new Date(v * 1000) : new Date(v);
  return Number.isNaN(d.getTime()) ? String(v) : d.toLocaleString();
}

const STAGES = ["load", "lyrics", "style", "sampling", "decode"];

// plan.estimate: {load, lyrics, style, sampling, decode, total, seconds_per_eval, basis, …};
// {"known": false} (or seconds_per_eval 0) while nothing has measured this machine's speed.
export function estimateText(est) {
  if (est === null || est === undefined) return "";
  if (typeof est === "number") return `about ${fmtSeconds(est)}`;
  const total = est.total ?? est.seconds;
  if (est.known === false || est.seconds_per_eval === 0 || typeof total !== "number") {
    const why = est.basis && est.basis !== "unknown" ? `: ${est.basis}` : "";
    return `not known yet${why}`;
  }
  const parts = STAGES.filter((k) => typeof est[k] === "number" && est[k] >= 0.5)
    .map((k) => `${k} ${fmtSeconds(est[k])}`);
  return `about ${fmtSeconds(total)}${parts.length > 1 ? ` (${parts.join(", ")})` : ""}`;
}

function gigabytes(n) {
  return `${(n / 1e9).toFixed(n < 1e10 ? 1 : 0)} GB`;
}

// The plan as lines: a summary, then its warnings (the LRC lint's are left out: the page marks
// them at their lines). The server draws a seed on every check when none is chosen, so the
// seed is shown only when `seedChosen`.
export function planText(plan, seedChosen) {
  const bits = [];
  const est = estimateText(plan.estimate);
  if (est) bits.push(`Estimated time: ${est}`);
  if (plan.model) bits.push(`model ${String(plan.model).split(/[\\/]/).pop()}`);
  if (plan.duration) bits.push(`${Number(plan.duration).toFixed(0)} s of audio`);
  if (plan.steps) bits.push(`${plan.steps} steps`);
  if (plan.runtime_class) bits.push(plan.runtime_class);
  const mem = plan.memory;
  if (mem && mem.total && mem.available) {
    bits.push(`memory ${gigabytes(mem.total)} of ${gigabytes(mem.available)}`);
  }
  if (seedChosen && plan.seed !== undefined && plan.seed !== null) bits.push(`seed ${plan.seed}`);
  const warnings = (plan.warnings || []).filter((w) => !String(w).startsWith("lint: "))
    .map((w) => `Warning: ${w}`);
  return [bits.join(" · "), ...warnings].join("\n");
}
