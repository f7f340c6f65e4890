// HTTP for the page: JSON calls with the API key, the key dialog, and a job's event stream.
// Errors arrive as {"error": {"message", "field", "line"}} and become ApiError; a refused
// request (422/413) adds "errors": every problem found, each {"field", "message", "line"}.

const KEY_STORE = "rhythmflow.apiKey";
const $ = (id) => document.getElementById(id);

export const session = {
  key: sessionStorage.getItem(KEY_STORE) || "",
  keyPrompt: null,   // pending promise while the key dialog is open
};

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    let message = err.message;
    if (!message && body && body.detail !== undefined) {
      message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
    super(message || `HTTP ${status}`);
    this.status = status;
    this.field = err.field || null;
    this.line = Number.isInteger(err.line) ? err.line : null;
    // every problem, each {field, message, line}; the one above when the answer lists none
    this.errors = Array.isArray(err.errors) && err.errors.length
      ? err.errors.map((e) => ({ field: e.field || null, message: String(e.message || ""),
                                 line: Number.isInteger(e.line) ? e.line : null }))
      : [{ field: this.field, message: this.message, line: this.line }];
  }
}

export function authHeaders() {
  return session.key ? { Authorization: `Bearer ${session.key}` } : {};
}

// One call: `json` (an object) or `form` (FormData) as the body; the parsed JSON answer, or the
// Response when `raw`. On 401 the key is asked for (again, when the one sent was refused), at
// most three times.
export async function api(path, { method = "GET", json, form, raw = false, tries = 0 } = {}) {
  const headers = authHeaders();
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body });
  } catch (e) {
    throw new ApiError(0, { error: { message: `The server cannot be reached (${e.message}).` } });
  }
  if (res.status === 401 && tries < 3 && (await askKey(headers.Authorization !== undefined))) {
    return api(path, { method, json, form, raw, tries: tries + 1 });
  }
  if (!res.ok) {
    let data = null;
    try { data = await res.json(); } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, data);
  }
  if (raw) return res;
  return res.status === 204 ? null : res.json();
}

// Shows the key dialog; resolves true when a key was entered. Concurrent callers share it.
export function askKey(refused = false) {
  if (session.keyPrompt) return session.keyPrompt;
  $("key-refused").hidden = !refused;
  const dialog = $("key-dialog");
  $("key-button").hidden = false;
  session.keyPrompt = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const value = $("key-input").value.trim();
      const ok = dialog.returnValue === "ok" && value !== "";
      if (ok) {
        session.key = value;
        sessionStorage.setItem(KEY_STORE, value);
      }
      session.keyPrompt = null;
      resolve(ok);
    }, { once: true });
    $("key-input").value = session.key;
    dialog.showModal();
    $("key-input").focus();
  });
  return session.keyPrompt;
}

// Server-Sent Events of `url`: onEvent(object, seq) per JSON event (its "event" field filled
// from the SSE event name when missing; seq: the SSE id as a number, or 0); onFail() once when
// the stream breaks or ends. EventSource when
// no key is needed (it cannot send headers), else a fetch stream read by hand. Returns {close()}.
export function streamEvents(url, onEvent, onFail) {
  let closed = false;
  const deliver = (text, type, id) => {
    let ev;
    try { ev = JSON.parse(text); } catch (_) { return; }   // ignore a malformed event
    if (ev && typeof ev === "object") {
      if (!ev.event) ev.event = type;
      onEvent(ev, Number(id) || 0);
    }
  };
  const fail = () => {
    if (!closed) {
      closed = true;
      handle.close();
      onFail();
    }
  };
  let handle;
  if (!session.key && window.EventSource) {
    const es = new EventSource(url);
    // events are named by type ("event: SampleEvent"); unnamed ones arrive as "message"
    for (const type of ["message", "status", "stage_started", "stage_finished", "sampling_step",
                        "decode_chunk", "warning", "result", "preview"]) {
      es.addEventListener(type, (m) => deliver(m.data, type, m.lastEventId));
    }
    es.onerror = fail;
    handle = { close: () => { closed = true; es.close(); } };
    return handle;
  }
  const ctl = new AbortController();
  handle = { close: () => { closed = true; ctl.abort(); } };
  (async () => {
    const res = await fetch(url, { headers: { ...authHeaders(), Accept: "text/event-stream" },
                                   signal: ctl.signal });
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const lines = buf.slice(0, cut).split("\n");
        buf = buf.slice(cut + 2);
        const field = (name) => lines.filter((l) => l.startsWith(name + ":"))
          .map((l) => l.slice(name.length + 1).replace(/^ /, "")).join("\n");
        const data = field("data");
        if (data) deliver(data, field("event") || "message", field("id"));
      }
    }
    fail();   // the stream ended: the caller reads the job to learn why
  })().catch((e) => { if (e.name !== "AbortError") fail(); });
  return handle;
}
