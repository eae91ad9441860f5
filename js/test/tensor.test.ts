import { describe, expect, it } from "vitest";
import { isAbsent, toFloat32, toInt32 } from "../src/lib/tensor";

describe("tensor decoding", () => {
  it("views an aligned DataView without copying", () => {
    const src = new Float32Array([1.5, -2, NaN, 4]);
    const dv = new DataView(src.buffer, 4, 12);
    const out = toFloat32(dv);
    expect(out.buffer).toBe(src.buffer);
    expect(Array.from(out.slice(0, 1))).toEqual([-2]);
    expect(Number.isNaN(out[1])).toBe(true);
    expect(out.length).toBe(3);
  });

  it("copies when the byte offset is unaligned, reading little-endian", () => {
    const buf = new ArrayBuffer(1 + 8);
    const dv = new DataView(buf, 1, 8);
    dv.setFloat32(0, 3.25, true);
    dv.setFloat32(4, -7, true);
    const out = toFloat32(dv);
    expect(out.buffer).not.toBe(buf);
    expect(Array.from(out)).toEqual([3.25, -7]);

    const ibuf = new ArrayBuffer(3 + 8);
    const idv = new DataView(ibuf, 3, 8);
    idv.setInt32(0, -5, true);
    idv.setInt32(4, 123456, true);
    expect(Array.from(toInt32(idv))).toEqual([-5, 123456]);
  });

  it("treats an empty DataView (and null) as absent", () => {
    const empty = new DataView(new ArrayBuffer(0));
    expect(isAbsent(empty)).toBe(true);
    expect(isAbsent(null)).toBe(true);
    expect(toFloat32(empty).length).toBe(0);
    expect(toInt32(undefined).length).toBe(0);
    expect(isAbsent(new DataView(new ArrayBuffer(4)))).toBe(false);
  });

  it("accepts ArrayBuffer and Uint8Array too", () => {
    const src = new Int32Array([7, 8, 9]);
    expect(Array.from(toInt32(src.buffer))).toEqual([7, 8, 9]);
    expect(Array.from(toInt32(new Uint8Array(src.buffer)))).toEqual([7, 8, 9]);
  });

  it("ignores a trailing partial element", () => {
    expect(toFloat32(new DataView(new ArrayBuffer(10))).length).toBe(2);
  });
});
