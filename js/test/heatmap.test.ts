import { afterEach, describe, expect, it, vi } from "vitest";
import heatmap from "../src/heatmap";
import { PROMPT_DEBOUNCE_MS } from "../src/lib/shell";
import type { HeatmapModel } from "../src/lib/types";
import { contexts, EMPTY, expectCancelButton, f32, flush, i32, mockModel } from "./helpers";

const XSS = "<img src=x onerror=alert(1)>";

function heatmapState(over: Partial<HeatmapModel> = {}): HeatmapModel {
  const rows = 3;
  const cols = 5;
  return {
    prompt: "The cat sat",
    status: "done",
    progress: 1,
    error: "",
    remote_status: "",
    tokens: ["The", " cat", " sat", "\n", XSS],
    row_labels: ["emb", "0", "1"],
    shape: [rows, cols],
    values: f32(Array.from({ length: rows * cols }, (_, i) => i)),
    vmin: 0,
    vmax: 14,
    colormap: "viridis",
    scale: "linear",
    value_label: "L2 norm",
    aux: i32(Array.from({ length: rows * cols }, (_, i) => 100 + i)),
    aux_label: "channel",
    selected: {},
    stat: "norm",
    compare: "",
    stat_options: ["norm", "max_abs", "delta", "direction"],
    ...over,
  };
}

function setup(over: Partial<HeatmapModel> = {}) {
  const model = mockModel(heatmapState(over));
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = heatmap.render({ model, el });
  const q = <E extends Element>(sel: string) => el.querySelector<E>(sel)!;
  return { model, el, cleanup, q };
}

// With no layout in jsdom the grid assumes an 800 px viewport: gutter 31 px ("emb"),
// 5 columns fit at the 28 px cap, rows are 18 px tall; getBoundingClientRect is all zeros.
const LABEL_W = 31;
const CELL_W = 28;
const CELL_H = 18;
const at = (row: number, col: number) => ({ clientX: LABEL_W + col * CELL_W + 3, clientY: row * CELL_H + 3, bubbles: true });

afterEach(() => {
  document.body.replaceChildren();
  vi.useRealTimers();
});

describe("heatmap render", () => {
  it("builds the DOM the wire promises", () => {
    const { q } = setup();
    const root = q<HTMLElement>("div.aw-root");
    expect(root.dataset.widget).toBe("heatmap");
    expect(root.dataset.status).toBe("done");
    for (const sel of [
      "textarea.aw-prompt",
      "select.aw-stat",
      "span.aw-status",
      "progress.aw-progress",
      "div.aw-error",
      "div.aw-scroll canvas.aw-grid",
      "div.aw-scroll div.aw-tokens",
      "canvas.aw-colorbar",
      "div.aw-tooltip",
      "button.aw-zoom-in",
      "button.aw-zoom-out",
    ])
      expect(root.querySelector(sel), sel).not.toBeNull();
    expect(root.querySelectorAll("span.aw-token").length).toBe(5);
    expect(q<HTMLSelectElement>("select.aw-stat").options.length).toBe(4);
  });

  it("has a cancel button: enabled while the forward runs, it asks Python to stop", () => {
    const { model, el } = setup();
    expectCancelButton(model, el);
  });

  it("shows a malicious prompt and token literally, creating no <img>", () => {
    const { el, q } = setup({ prompt: XSS });
    expect(el.querySelector("img")).toBeNull();
    expect(q<HTMLTextAreaElement>("textarea.aw-prompt").value).toBe(XSS);
    const spans = el.querySelectorAll("span.aw-token");
    expect(spans[4].textContent).toContain("<img");
    expect(spans[3].textContent).toBe("⏎");
    expect(spans[1].textContent).toBe("␣cat");
  });

  it("sets prompt and saves when the edited textarea loses focus", () => {
    const { model, q } = setup();
    const ta = q<HTMLTextAreaElement>("textarea.aw-prompt");
    ta.value = "A new prompt";
    ta.dispatchEvent(new Event("input"));
    ta.dispatchEvent(new Event("blur"));
    expect(model.get("prompt")).toBe("A new prompt");
    expect(model.saves).toBe(1);
    ta.dispatchEvent(new Event("blur")); // no edit since: no re-run
    expect(model.saves).toBe(1);
  });

  it("commits on Enter, not on Shift+Enter, and debounces typing", () => {
    vi.useFakeTimers();
    const { model, q } = setup();
    const ta = q<HTMLTextAreaElement>("textarea.aw-prompt");
    ta.value = "typed";
    ta.dispatchEvent(new Event("input"));
    ta.setSelectionRange(5, 5);
    ta.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", shiftKey: true }));
    expect(ta.value).toBe("typed\n"); // a newline, put in by the box itself (JupyterLab cancels a native one)
    expect(model.saves).toBe(0);
    vi.advanceTimersByTime(PROMPT_DEBOUNCE_MS - 10);
    expect(model.saves).toBe(0);
    vi.advanceTimersByTime(20);
    expect(model.get("prompt")).toBe("typed\n");
    expect(model.saves).toBe(1);
    ta.value = "typed again";
    ta.dispatchEvent(new Event("input"));
    ta.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.get("prompt")).toBe("typed again");
    expect(model.saves).toBe(2);
    vi.advanceTimersByTime(1000); // the pending debounce was cancelled
    expect(model.saves).toBe(2);
  });

  it("edits the compare prompt in its own box, and shows one set from Python", () => {
    const { model, q } = setup({ compare: "from python" });
    const box = q<HTMLTextAreaElement>("textarea.aw-compare");
    expect(box.value).toBe("from python");
    box.value = "When Mary and John went";
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.dispatchEvent(new Event("blur"));
    expect(model.get("compare")).toBe("When Mary and John went");
    expect(model.get("prompt")).toBe("The cat sat");
  });

  it("follows prompt changes from Python", () => {
    const { model, q } = setup();
    model.pySet("prompt", "from python");
    expect(q<HTMLTextAreaElement>("textarea.aw-prompt").value).toBe("from python");
  });

  it("selects the clicked cell and outlines it", async () => {
    const { model, q } = setup();
    const canvas = q<HTMLCanvasElement>("canvas.aw-grid");
    canvas.dispatchEvent(new MouseEvent("click", at(1, 2)));
    expect(model.get("selected")).toEqual({ row: 1, col: 2 });
    expect(model.saves).toBe(1);
    const strokes = contexts.get(canvas)!.calls.filter(([n]) => n === "strokeRect");
    expect(strokes.length).toBeGreaterThan(0);
    canvas.dispatchEvent(new MouseEvent("click", { clientX: 5, clientY: 5, bubbles: true })); // row labels
    expect(model.saves).toBe(1);
  });

  it("shows a tooltip with token, layer, value and aux", () => {
    const { q } = setup();
    const canvas = q<HTMLCanvasElement>("canvas.aw-grid");
    const tip = q<HTMLDivElement>("div.aw-tooltip");
    expect(tip.hidden).toBe(true);
    canvas.dispatchEvent(new MouseEvent("mousemove", at(2, 1)));
    expect(tip.hidden).toBe(false);
    const text = tip.textContent!;
    expect(text).toContain("␣cat");
    expect(text).toContain("layer: 1");
    expect(text).toContain("L2 norm: 11");
    expect(text).toContain("channel: 111");
    canvas.dispatchEvent(new MouseEvent("mouseleave"));
    expect(tip.hidden).toBe(true);
  });

  it("omits the aux line when aux is empty", () => {
    const { q } = setup({ aux: EMPTY, aux_label: "" });
    q<HTMLCanvasElement>("canvas.aw-grid").dispatchEvent(new MouseEvent("mousemove", at(0, 0)));
    expect(q("div.aw-tooltip").textContent).not.toContain("aux");
  });

  it("shows and hides the error", () => {
    const { model, q } = setup();
    const err = q<HTMLDivElement>("div.aw-error");
    expect(err.hidden).toBe(true);
    model.pySet("error", "CUDA out of memory <b>");
    model.pySet("status", "error");
    expect(err.hidden).toBe(false);
    expect(err.textContent).toBe("CUDA out of memory <b>");
    expect(err.querySelector("b")).toBeNull();
    expect(q<HTMLElement>("div.aw-root").dataset.status).toBe("error");
    model.pySet("error", "");
    expect(err.hidden).toBe(true);
  });

  it("shows progress only while running", () => {
    const { model, q } = setup();
    const bar = q<HTMLProgressElement>("progress.aw-progress");
    expect(bar.hidden).toBe(true);
    model.pySet("status", "running");
    model.pySet("progress", 0.25);
    expect(bar.hidden).toBe(false);
    expect(bar.value).toBe(0.25);
    expect(q("span.aw-status").textContent).toContain("running");
  });

  it("says why a local run is queued: another widget holds the model", () => {
    const { model, q } = setup();
    const status = q<HTMLSpanElement>("span.aw-status");
    model.pySet("status", "queued");
    expect(status.textContent).toBe("queued: the model is busy");
    expect(status.title).toContain("Another widget's run is using this model");
    model.pySet("progress", 0);
    model.pySet("status", "running");
    expect(status.textContent).toBe("running");
    expect(status.title).toBe("");
  });

  it("says where a remote job is while it runs, and forgets it when done", () => {
    const { model, q } = setup();
    const status = q("span.aw-status");
    model.pySet("status", "running");
    model.pySet("progress", 0);
    model.pySet("remote_status", "queued (position 2)");
    expect(status.textContent).toBe("queued (position 2)");
    model.pySet("remote_status", "downloading");
    expect(status.textContent).toBe("downloading");
    model.pySet("progress", 0.4);
    expect(status.textContent).toBe("downloading 40%");
    model.pySet("remote_status", "");
    model.pySet("status", "done");
    expect(status.textContent).toBe("done");
  });

  it("binds the stat select both ways", () => {
    const { model, q } = setup();
    const sel = q<HTMLSelectElement>("select.aw-stat");
    expect(sel.value).toBe("norm");
    sel.value = "delta";
    sel.dispatchEvent(new Event("change"));
    expect(model.get("stat")).toBe("delta");
    expect(model.saves).toBe(1);
    model.pySet("stat", "max_abs");
    expect(sel.value).toBe("max_abs");
    model.pySet("stat_options", ["norm", "max_abs"]);
    expect(sel.options.length).toBe(2);
  });

  it("redraws once when Python replaces the data, keeping token spans to visible columns", async () => {
    const rows = 30;
    const cols = 4096;
    const { model, el } = setup();
    model.pySet("row_labels", ["emb", ...Array.from({ length: rows - 1 }, (_, i) => String(i))]);
    model.pySet("tokens", Array.from({ length: cols }, (_, i) => `t${i}`));
    model.pySet("values", f32(Array.from({ length: rows * cols }, (_, i) => Math.sin(i))));
    model.pySet("aux", EMPTY);
    model.pySet("shape", [rows, cols]);
    await flush();
    const n = el.querySelectorAll("span.aw-token").length;
    expect(n).toBeGreaterThan(10);
    expect(n).toBeLessThan(400);
    const offscreen = [...contexts.values()].find((c) => c.calls.some(([n, a]) => n === "createImageData" && a[0] === cols));
    expect(offscreen).toBeDefined();
  });

  it("zooms with the buttons", () => {
    const { q } = setup();
    const label = q(".aw-zoom-label");
    expect(label.textContent).toBe("28 px/token");
    q<HTMLButtonElement>("button.aw-zoom-in").click();
    expect(label.textContent).toBe("42 px/token");
    q<HTMLButtonElement>("button.aw-zoom-out").click();
    q<HTMLButtonElement>("button.aw-zoom-out").click();
    expect(label.textContent).toBe("19 px/token");
  });

  it("still renders and reacts when there is no canvas context", () => {
    HTMLCanvasElement.prototype.getContext = (() => null) as unknown as HTMLCanvasElement["getContext"];
    const { model, q } = setup();
    q<HTMLCanvasElement>("canvas.aw-grid").dispatchEvent(new MouseEvent("click", at(0, 1)));
    expect(model.get("selected")).toEqual({ row: 0, col: 1 });
  });

  it("cleanup removes every listener and the DOM", async () => {
    const { model, el, cleanup, q } = setup();
    const ta = q<HTMLTextAreaElement>("textarea.aw-prompt");
    expect(model.onCalls).toBeGreaterThan(5);
    cleanup();
    expect(model.offCalls).toBe(model.onCalls);
    expect(model.listenerCount()).toBe(0);
    expect(el.querySelector(".aw-root")).toBeNull();
    ta.value = "after cleanup";
    ta.dispatchEvent(new Event("blur"));
    expect(model.saves).toBe(0);
    model.pySet("values", f32([1])); // no listener left to throw on a dead view
    await flush();
  });
});
