// The snapshot renderer: packed arrays widen back to what the live widgets decode,
// and a snapshot draws read-only with the live widget's own code.
import { describe, expect, it } from "vitest";
import { halfToFloat, isSnapshot, renderSnapshot, unpack, type Snapshot } from "../src/snapshot";

function b64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

function packF32(values: number[]): { dtype: string; data: string } {
  return { dtype: "<f4", data: b64(new Uint8Array(new Float32Array(values).buffer)) };
}

function heatmapSnapshot(prompt: string, tokens: string[]): Snapshot {
  return {
    format: "actwidgets.snapshot",
    version: 1,
    widget: "heatmap",
    model: "tiny",
    saved: "2026-11-21T10:00:00Z",
    state: {
      prompt, tokens, row_labels: ["emb", "0"], shape: [2, tokens.length], vmin: 0, vmax: 4,
      colormap: "viridis", scale: "linear", value_label: "L2 norm", aux_label: "", selected: {},
      stat: "norm", stat_options: ["norm", "max_abs"], status: "done", progress: 1, error: "",
    },
    buffers: { values: packF32([...Array(2 * tokens.length).keys()]), aux: { dtype: "<i4", data: "" } },
  };
}

describe("halfToFloat", () => {
  it("decodes normals, subnormals, zero, infinities and NaN", () => {
    expect(halfToFloat(0x3c00)).toBe(1);
    expect(halfToFloat(0xc000)).toBe(-2);
    expect(halfToFloat(0x7bff)).toBe(65504);
    expect(halfToFloat(0x0001)).toBeCloseTo(5.96e-8, 10);
    expect(halfToFloat(0x0000)).toBe(0);
    expect(halfToFloat(0x7c00)).toBe(Infinity);
    expect(halfToFloat(0xfc00)).toBe(-Infinity);
    expect(halfToFloat(0x7e00)).toBeNaN();
  });
});

describe("unpack", () => {
  it("widens float16 and small ints to little-endian float32 / int32", () => {
    const halves = new Uint16Array([0x3c00, 0x4200, 0x7e00]); // 1, 3, NaN
    const f = unpack({ dtype: "<f2", data: b64(new Uint8Array(halves.buffer)) });
    expect(f.byteLength).toBe(12);
    expect([f.getFloat32(0, true), f.getFloat32(4, true)]).toEqual([1, 3]);
    expect(f.getFloat32(8, true)).toBeNaN();
    const u = unpack({ dtype: "|u1", data: b64(new Uint8Array([0, 200, 255])) });
    expect([0, 4, 8].map((o) => u.getInt32(o, true))).toEqual([0, 200, 255]);
    const s = unpack({ dtype: "<i2", data: b64(new Uint8Array(new Int16Array([-5, 30000]).buffer)) });
    expect([0, 4].map((o) => s.getInt32(o, true))).toEqual([-5, 30000]);
  });

  it("rejects a dtype it does not know instead of drawing garbage", () => {
    expect(() => unpack({ dtype: "<f8", data: "" })).toThrow(/dtype/);
  });
});

describe("renderSnapshot", () => {
  it("draws the live widget read-only, marked as a snapshot", () => {
    const el = document.createElement("div");
    const cleanup = renderSnapshot(el, heatmapSnapshot("The Eiffel Tower", ["The", " E"]));
    const root = el.querySelector<HTMLElement>(".aw-root[data-widget=heatmap]")!;
    expect(root.dataset.snapshot).toBe("true");
    expect(el.querySelector(".aw-snapshot-badge")!.textContent).toMatch(/^Snapshot of 2026-11-21 10:00 UTC \(tiny\)/);
    const prompt = root.querySelector<HTMLTextAreaElement>("textarea.aw-prompt")!;
    expect(prompt.value).toBe("The Eiffel Tower");
    const controls = [...root.querySelectorAll<HTMLInputElement>("textarea, input, select, button")];
    expect(controls.length).toBeGreaterThan(2);
    expect(controls.every((c) => c.disabled)).toBe(true);
    cleanup();
    expect(el.children.length).toBe(0);
  });

  it("renders token text as text, never as HTML", () => {
    const el = document.createElement("div");
    renderSnapshot(el, heatmapSnapshot("x", ["<img src=x onerror=alert(1)>", "<b>"]));
    expect(el.querySelector("img")).toBeNull();
    expect(el.querySelector("b")).toBeNull();
    expect(el.textContent).toContain("<img");
    expect(el.textContent).toContain("<b>");
  });

  it("says so when the snapshot is of a widget it does not know", () => {
    const el = document.createElement("div");
    renderSnapshot(el, { ...heatmapSnapshot("x", ["a"]), widget: "future-widget" });
    expect(el.textContent).toMatch(/unknown widget "future-widget"/);
  });

  it("recognises snapshots", () => {
    expect(isSnapshot(heatmapSnapshot("x", ["a"]))).toBe(true);
    expect(isSnapshot({ format: "other" })).toBe(false);
    expect(isSnapshot(null)).toBe(false);
  });
});
