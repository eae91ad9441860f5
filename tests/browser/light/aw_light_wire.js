// Wire helpers for aw_light.js: the kernel websocket's binary framing (jupyter_server's
// default: a count, offsets, then the JSON message and its buffers) and the widget
// protocol's buffers-in-state (binary values travel beside the JSON, located by
// buffer_paths).

// ---------------------------------------------------------------- websocket framing
export function decodeBinary(buf) {
  const dv = new DataView(buf);
  const n = dv.getUint32(0);
  const offsets = [];
  for (let i = 0; i < n; i++) offsets.push(dv.getUint32(4 * (i + 1)));
  offsets.push(buf.byteLength);
  const msg = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, offsets[0], offsets[1] - offsets[0])));
  msg.buffers = [];
  for (let i = 1; i < n; i++) msg.buffers.push(new DataView(buf.slice(offsets[i], offsets[i + 1])));
  return msg;
}

function toBytes(b) {
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function encodeBinary(msg, buffers) {
  const json = new TextEncoder().encode(JSON.stringify(msg));
  const parts = [json, ...buffers.map(toBytes)];
  const header = 4 * (parts.length + 1);
  const total = header + parts.reduce((s, p) => s + p.byteLength, 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, parts.length);
  let off = header;
  parts.forEach((p, i) => {
    dv.setUint32(4 * (i + 1), off);
    out.set(p, off);
    off += p.byteLength;
  });
  return out.buffer;
}

// ---------------------------------------------------------------- buffers in state
function isBinary(v) {
  return v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}

export function removeBuffers(state) {
  const buffers = [];
  const paths = [];
  const walk = (obj, path) => {
    if (isBinary(obj)) return null;
    if (Array.isArray(obj)) {
      return obj.map((v, i) => {
        if (isBinary(v)) { buffers.push(v); paths.push([...path, i]); return null; }
        return v && typeof v === "object" ? walk(v, [...path, i]) : v;
      });
    }
    if (obj && typeof obj === "object") {
      const out = {};
      for (const [k, v] of Object.entries(obj)) {
        if (isBinary(v)) { buffers.push(v); paths.push([...path, k]); continue; }
        out[k] = v && typeof v === "object" ? walk(v, [...path, k]) : v;
      }
      return out;
    }
    return obj;
  };
  return { state: walk(state, []), buffers, buffer_paths: paths };
}

export function putBuffers(state, paths, buffers) {
  (paths || []).forEach((path, i) => {
    let obj = state;
    for (const k of path.slice(0, -1)) obj = obj[k];
    obj[path[path.length - 1]] = buffers[i];
  });
}

export function sameValue(a, b) {
  if (a === b) return true;
  if (isBinary(a) || isBinary(b)) return false;  // a new buffer is a change
  if (a && b && typeof a === "object" && typeof b === "object") {
    try { return JSON.stringify(a) === JSON.stringify(b); } catch { return false; }
  }
  return false;
}
