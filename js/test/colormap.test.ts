import { describe, expect, it } from "vitest";
import { colorIndex, getLut, normalise, paintRGBA, rgba } from "../src/lib/colormap";

const hex = (c: number[]) => "#" + c.slice(0, 3).map((v) => v.toString(16).padStart(2, "0")).join("");

describe("colormaps", () => {
  it("are 256-entry RGB tables", () => {
    for (const name of ["viridis", "magma", "rdbu"]) expect(getLut(name).length).toBe(256 * 3);
  });

  it("hit the published endpoints", () => {
    expect(hex(rgba("viridis", 0, 1, 0))).toBe("#440154");
    expect(hex(rgba("viridis", 0, 1, 1))).toBe("#fde725");
    expect(hex(rgba("magma", 0, 1, 0))).toBe("#000004");
    expect(hex(rgba("magma", 0, 1, 1))).toBe("#fcfdbf");
  });

  it("clamp values outside vmin..vmax", () => {
    expect(rgba("viridis", 0, 1, -5)).toEqual(rgba("viridis", 0, 1, 0));
    expect(rgba("viridis", 0, 1, Infinity)).toEqual(rgba("viridis", 0, 1, 1));
  });

  it("rdbu is white-ish at 0 even with asymmetric limits, blue below, red above", () => {
    const [r, g, b, a] = rgba("rdbu", -1, 4, 0);
    expect(Math.min(r, g, b)).toBeGreaterThan(235);
    expect(a).toBe(255);
    expect(normalise("rdbu", -1, 4, 0)).toBe(0.5);
    const lo = rgba("rdbu", -1, 4, -1);
    const hi = rgba("rdbu", -1, 4, 4);
    expect(lo[2]).toBeGreaterThan(lo[0]); // blue
    expect(hi[0]).toBeGreaterThan(hi[2]); // red
    expect(colorIndex("rdbu", -1, 4, -1)).toBe(0);
    expect(colorIndex("rdbu", -1, 4, 4)).toBe(255);
  });

  it("draws NaN as a transparent (empty) cell", () => {
    expect(rgba("viridis", 0, 1, NaN)[3]).toBe(0);
    expect(colorIndex("magma", 0, 1, NaN)).toBe(-1);
  });

  it("paints RGBA pixels and blanks cells missing from a short buffer", () => {
    const out = new Uint8ClampedArray(3 * 4);
    paintRGBA(new Float32Array([0, 1]), 3, out, "viridis", 0, 1);
    expect(hex(Array.from(out.slice(0, 4)))).toBe("#440154");
    expect(out[3]).toBe(255);
    expect(hex(Array.from(out.slice(4, 8)))).toBe("#fde725");
    expect(out[11]).toBe(0);
  });

  it("falls back to viridis for an unknown name", () => {
    expect(getLut("nope")).toBe(getLut("viridis"));
  });
});

describe("log scale", () => {
  it("spreads decades evenly and clamps below vmin", async () => {
    const { normalise } = await import("../src/lib/colormap");
    expect(normalise("viridis", 1, 10000, 100, "log")).toBeCloseTo(0.5, 6);
    expect(normalise("viridis", 1, 10000, 0, "log")).toBe(0);
    expect(normalise("viridis", 1, 10000, 100, "linear")).toBeCloseTo(99 / 9999, 6);
  });
});
