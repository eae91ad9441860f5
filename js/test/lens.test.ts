import { afterEach, describe, expect, it, vi } from "vitest";
import lens from "../src/lens";
import type { LensModel } from "../src/lib/types";
import { contexts, EMPTY, f32, i32, mockModel } from "./helpers";

const ROWS = 2;
const COLS = 3;
const K = 2;

function lensState(over: Partial<LensModel> = {}): LensModel {
  const n = ROWS * COLS;
  return {
    prompt: "Paris is the capital of",
    status: "done",
    progress: 1,
    error: "",
    remote_status: "",
    tokens: ["Paris", " is", " the"],
    row_labels: ["0", "1"],
    shape: [ROWS, COLS],
    values: f32(Array.from({ length: n }, (_, i) => i / n)),
    vmin: 0,
    vmax: 1,
    colormap: "magma",
    scale: "linear",
    value_label: "top prob",
    aux: EMPTY,
    aux_label: "",
    selected: {},
    target: "",
    color_by: "top_prob",
    color_by_options: [
      ["top_prob", "top-1 probability"],
      ["entropy", "entropy (nats)"],
      ["target_prob", "target probability"],
    ],
    k: K,
    text_table: [" France", " the", "<script>x</script>"],
    // cell i: top-1 is table[i % 3], top-2 is table[(i + 1) % 3]
    topk_index: i32(Array.from({ length: n * K }, (_, j) => (Math.floor(j / K) + (j % K)) % 3)),
    topk_prob: f32(Array.from({ length: n * K }, (_, j) => (j % K === 0 ? 0.625 : 0.125))),
    entropy: f32(Array.from({ length: n }, () => 1.5)),
    target_prob: EMPTY,
    target_rank: EMPTY,
    ...over,
  };
}

function setup(over: Partial<LensModel> = {}) {
  const model = mockModel(lensState(over));
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = lens.render({ model, el });
  const q = <E extends Element>(sel: string) => el.querySelector<E>(sel)!;
  return { model, el, cleanup, q };
}

// 800 px assumed viewport, 28 px gutter, 3 columns at the 56 px lens default, 22 px rows.
const at = (row: number, col: number) => ({ clientX: 28 + col * 56 + 3, clientY: row * 22 + 3, bubbles: true });

afterEach(() => document.body.replaceChildren());

describe("lens render", () => {
  it("has the lens controls", () => {
    const { q } = setup();
    expect(q<HTMLElement>("div.aw-root").dataset.widget).toBe("lens");
    expect(q("input.aw-target")).not.toBeNull();
    const sel = q<HTMLSelectElement>("select.aw-color-by");
    expect([...sel.options].map((o) => o.value)).toEqual(["top_prob", "entropy", "target_prob"]);
    expect([...sel.options].map((o) => o.textContent)).toEqual(["top-1 probability", "entropy (nats)", "target probability"]);
    expect(q(".aw-zoom-label").textContent).toBe("56 px/token");
  });

  it("writes the top-1 token inside wide cells", () => {
    const { q } = setup();
    const ctx = contexts.get(q<HTMLCanvasElement>("canvas.aw-grid"))!;
    const texts = ctx.calls.filter(([n]) => n === "fillText").map(([, a]) => a[0]);
    expect(texts).toContain("␣France");
    expect(texts.some((t) => String(t).startsWith("<scr") && String(t).endsWith("…"))).toBe(true); // truncated canvas text, not markup
  });

  it("tooltip lists top-k as percentages, entropy and target", () => {
    const { q } = setup({ target: " France", target_prob: f32([0.5, 0.25, 0.125, 0.0625, 0.03, 0.01]), target_rank: i32([0, 1, 2, 3, 4, 5]) });
    q<HTMLCanvasElement>("canvas.aw-grid").dispatchEvent(new MouseEvent("mousemove", at(1, 2)));
    const text = q("div.aw-tooltip").textContent!;
    expect(text).toContain("␣the");
    expect(text).toContain("layer: 1");
    expect(text).toContain("1. “<script>x</script>” 62.5%");
    expect(text).toContain("2. “␣France” 12.5%");
    expect(text).toContain("entropy: 1.5 nats");
    expect(text).toContain("target “␣France”: 1.00% (rank 6)"); // five tokens above it, as the top-k list counts
    expect(q("div.aw-tooltip script")).toBeNull();
  });

  it("a filling-in lens says which cells are still computing, and which a cancel left out", () => {
    // the last column is not computed yet: NaN entropy, id -1
    const entropy = f32(Array.from({ length: ROWS * COLS }, (_, i) => (i % COLS === COLS - 1 ? NaN : 1.5)));
    const index = i32(Array.from({ length: ROWS * COLS * K }, (_, j) => (Math.floor(j / K) % COLS === COLS - 1 ? -1 : 0)));
    const { model, q } = setup({ status: "running", progress: 0.4, entropy, topk_index: index });
    model.send = vi.fn();
    const canvas = q<HTMLCanvasElement>("canvas.aw-grid");
    canvas.dispatchEvent(new MouseEvent("mousemove", at(1, 0)));
    expect(q("div.aw-tooltip").textContent).toContain("1. “␣France”");
    canvas.dispatchEvent(new MouseEvent("mousemove", at(1, 2)));
    expect(q("div.aw-tooltip").textContent).toContain("computing…");
    const cancel = q<HTMLButtonElement>("button.aw-cancel");
    expect(cancel.disabled).toBe(false);
    cancel.click();
    expect(model.send).toHaveBeenCalledWith({ type: "cancel" });
    model.pySet("status", "cancelled");
    expect(cancel.disabled).toBe(true);
    canvas.dispatchEvent(new MouseEvent("mousemove", at(1, 1)));
    canvas.dispatchEvent(new MouseEvent("mousemove", at(1, 2)));
    const text = q("div.aw-tooltip").textContent!;
    expect(text).toContain("not computed: the run was stopped");
    expect(text).not.toContain("computing…");
    model.pySet("status", "queued"); // asked again, waiting for the model: those cells are coming
    canvas.dispatchEvent(new MouseEvent("mousemove", at(1, 1)));
    canvas.dispatchEvent(new MouseEvent("mousemove", at(1, 2)));
    expect(q("div.aw-tooltip").textContent).toContain("computing…");
  });

  it("tells Python which columns are on screen while it runs, so those fill in next", () => {
    const { model } = setup({ status: "running" });
    expect(model.get("view_columns")).toEqual([0, COLS]); // the first draw's window
    expect(model.saves).toBe(1);
    const idle = setup({ status: "done" }).model;
    expect(idle.get("view_columns")).toBeUndefined(); // nothing to steer: not sent
    idle.pySet("status", "running");
    expect(idle.get("view_columns")).toEqual([0, COLS]);
    idle.pySet("status", "done");
    idle.pySet("status", "running");
    expect(idle.saves).toBe(1); // the same window is not sent again
  });

  it("commits target on Enter only when changed", () => {
    const { model, q } = setup();
    const input = q<HTMLInputElement>("input.aw-target");
    input.value = " Paris";
    input.dispatchEvent(new Event("input"));
    expect(model.saves).toBe(0);
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.get("target")).toBe(" Paris");
    expect(model.saves).toBe(1);
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.saves).toBe(1);
    model.pySet("target", "x");
    expect(input.value).toBe("x");
  });

  it("binds color_by both ways and selects on click", () => {
    const { model, q } = setup();
    const sel = q<HTMLSelectElement>("select.aw-color-by");
    sel.value = "entropy";
    sel.dispatchEvent(new Event("change"));
    expect(model.get("color_by")).toBe("entropy");
    q<HTMLCanvasElement>("canvas.aw-grid").dispatchEvent(new MouseEvent("click", at(0, 2)));
    expect(model.get("selected")).toEqual({ row: 0, col: 2 });
  });

  it("redraws the colour-by menu when Python changes its options", () => {
    const { model, q } = setup();
    model.pySet("color_by_options", [["top_prob", "top-1"], ["entropy", "entropy"]]);
    const sel = q<HTMLSelectElement>("select.aw-color-by");
    expect([...sel.options].map((o) => [o.value, o.textContent])).toEqual([["top_prob", "top-1"], ["entropy", "entropy"]]);
    expect(sel.value).toBe("top_prob");
  });

  it("an old snapshot without options still shows its colouring", () => {
    const { q } = setup({ color_by: "entropy", color_by_options: undefined });
    const sel = q<HTMLSelectElement>("select.aw-color-by");
    expect([...sel.options].map((o) => o.value)).toEqual(["entropy"]);
    expect(sel.value).toBe("entropy");
  });

  it("cleanup removes every listener", () => {
    const { model, cleanup } = setup();
    cleanup();
    expect(model.offCalls).toBe(model.onCalls);
    expect(model.listenerCount()).toBe(0);
  });
});
