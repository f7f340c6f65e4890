// Files the browser reads itself: a song decoded with WebAudio and drawn as min/max peaks, and a
// style embedding (.npy float32/float64, or .json) read into 512 numbers.

export const STYLE_DIM = 512;

// Decodes `blob` (wav/flac/mp3) and draws one min/max bar per canvas pixel column (all
// channels). Returns the duration in seconds.
export async function drawPeaks(canvas, blob) {
  const Offline = window.OfflineAudioContext || window.webkitOfflineAudioContext;
  const buffer = await new Offline(1, 1, 44100).decodeAudioData(await blob.arrayBuffer());
  const dpr = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const height = Math.max(1, Math.round(canvas.clientHeight * dpr));
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext("2d");
  const accent = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim();
  g.fillStyle = accent || "#2456c8";
  const chans = [];
  for (let c = 0; c < buffer.numberOfChannels; c++) chans.push(buffer.getChannelData(c));
  const per = Math.max(1, Math.floor(buffer.length / width));
  const mid = height / 2;
  for (let x = 0; x < width; x++) {
    let lo = 0, hi = 0;
    const from = x * per;
    const to = Math.min(buffer.length, from + per);
    for (const data of chans) {
      for (let i = from; i < to; i++) {
        const v = data[i];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    g.fillRect(x, mid - hi * mid, 1, Math.max(1, (hi - lo) * mid));
  }
  return buffer.duration;
}

// The numbers of a little-endian float32/float64 .npy file (C order), or an Error.
export function parseNpy(buf) {
  const bytes = new Uint8Array(buf);
  if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.slice(1, 6)) !== "NUMPY") {
    throw new Error("not a .npy file");
  }
  const major = bytes[6];
  const view = new DataView(buf);
  const at = major === 1 ? 10 : 12;
  const start = at + (major === 1 ? view.getUint16(8, true) : view.getUint32(8, true));
  const header = new TextDecoder().decode(bytes.slice(at, start));
  if (/'fortran_order':\s*True/.test(header)) throw new Error("Fortran order is not supported");
  const kind = (/'descr':\s*'([^']+)'/.exec(header) || [])[1];
  if (kind === "<f4") return Array.from(new Float32Array(buf.slice(start)));
  if (kind === "<f8") return Array.from(new Float64Array(buf.slice(start)));
  throw new Error(`dtype ${kind} (need float32 or float64)`);
}

// A File holding a style embedding → its 512 numbers; throws an Error saying what is wrong.
export async function readEmbeddingFile(file) {
  const buf = await file.arrayBuffer();
  const values = file.name.toLowerCase().endsWith(".json")
    ? [JSON.parse(new TextDecoder().decode(buf))].flat(3)
    : parseNpy(buf);
  if (values.length !== STYLE_DIM || !values.every((v) => typeof v === "number" && Number.isFinite(v))) {
    throw new Error(`${values.length} values, need ${STYLE_DIM} finite numbers`);
  }
  return values;
}
