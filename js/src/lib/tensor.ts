// Decode the little-endian float32 / int32 `Bytes` traits into typed arrays.
// Views share the comm buffer when its offset is 4-byte aligned, because a
// 30 x 4096 x k top-k table is megabytes and copying it on every update is waste;
// typed arrays cannot start at an unaligned offset, so only then do we copy.

export type BytesLike = DataView | ArrayBuffer | ArrayBufferView | null | undefined;

// Typed arrays use the host byte order; every browser we target is little-endian,
// but we still check so a big-endian host decodes correctly instead of garbage.
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

interface Span {
  buffer: ArrayBufferLike;
  byteOffset: number;
  byteLength: number;
}

function spanOf(b: BytesLike): Span | null {
  if (b == null) return null;
  if (b instanceof ArrayBuffer) return { buffer: b, byteOffset: 0, byteLength: b.byteLength };
  if (ArrayBuffer.isView(b)) return { buffer: b.buffer, byteOffset: b.byteOffset, byteLength: b.byteLength };
  return null; // anything else (e.g. a stray JSON value) is treated as absent
}

/** True when the trait carries no data (anywidget sends an empty DataView for `b""`). */
export function isAbsent(b: BytesLike): boolean {
  const s = spanOf(b);
  return s === null || s.byteLength === 0;
}

function decode<T extends Float32Array | Int32Array>(
  b: BytesLike,
  Ctor: { new (buf: ArrayBufferLike, off: number, len: number): T; new (len: number): T },
  read: (dv: DataView, off: number) => number,
): T {
  const s = spanOf(b);
  if (s === null || s.byteLength < 4) return new Ctor(0);
  const n = Math.floor(s.byteLength / 4); // a trailing partial element is ignored
  if (HOST_IS_LITTLE_ENDIAN && s.byteOffset % 4 === 0) return new Ctor(s.buffer, s.byteOffset, n);
  if (HOST_IS_LITTLE_ENDIAN) {
    const copy = s.buffer.slice(s.byteOffset, s.byteOffset + n * 4) as ArrayBuffer;
    return new Ctor(copy, 0, n);
  }
  const out = new Ctor(n);
  const dv = new DataView(s.buffer, s.byteOffset, n * 4);
  for (let i = 0; i < n; i++) out[i] = read(dv, i * 4);
  return out;
}

export function toFloat32(b: BytesLike): Float32Array {
  return decode(b, Float32Array, (dv, o) => dv.getFloat32(o, true));
}

export function toInt32(b: BytesLike): Int32Array {
  return decode(b, Int32Array, (dv, o) => dv.getInt32(o, true));
}
