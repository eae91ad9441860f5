// The attention widget against a mock model: a click on a thumbnail selects that head, a
// click on a row of the large pattern sets the query, hover shows query and key tokens as
// TEXT (a token that looks like markup stays text), and a snapshot draws read-only.
import { afterEach, describe, expect, it } from "vitest";
import attention from "../src/attention";
import type { AttentionModel } from "../src/lib/types";
import { renderSnapshot, type Snapshot } from "../src/snapshot";
import { contexts, EMPTY, expectCancelButton, f32, i32, mockModel, typeAndEnter } from "./helpers";

const EVIL = "<img src=x onerror=alert(1)>";
const SHOWN = "<img␣src=x␣onerror=alert(1)>"; // as quoteToken shows it: spaces made visible, still text
const TOKENS = [EVIL, " Mary", " went"];
const T = TOKENS.length;
const LAYERS = ["3", "4"];
const HEADS = 2;

/** A causal pattern whose row i spreads evenly over keys 0..i, NaN above the diagonal. */
function causal(n: number): number[] {
  return Array.from({ length: n * n }, (_, k) => (k % n <= Math.floor(k / n) ? 1 / (Math.floor(k / n) + 1) : NaN));
}

function attentionState(over: Partial<AttentionModel> = {}): AttentionModel {
  return {
    prompt: "a prompt",
    status: "done",
    progress: 1,
    error: "",
    remote_status: "",
    tokens: TOKENS,
    row_labels: ["head 0", "head 1"],
    shape: [HEADS, T],
    values: f32([0.5, 0.25, 0.25, 1, 0, 0]),
    vmin: 0,
    vmax: 1,
    colormap: "viridis",
    scale: "linear",
    value_label: "attention from token 2",
    aux: EMPTY,
    aux_label: "",
    selected: { row: 1, col: 2 },
    head: [3, 1],
    query: null,
    query_index: 2,
    n_heads: HEADS,
    layer_labels: LAYERS,
    overview: f32(Array.from({ length: LAYERS.length * HEADS }, () => causal(T)).flat()),
    overview_size: T,
    overview_bins: i32([0, 1, 2]),
    pattern: f32(causal(T)),
    pattern_size: T,
    pattern_bins: i32([0, 1, 2]),
    pattern_head: [3, 1],
    ...over,
  };
}

function setup(over: Partial<AttentionModel> = {}) {
  const model = mockModel(attentionState(over));
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = attention.render({ model, el });
  const q = <E extends Element>(sel: string) => el.querySelector<E>(sel)!;
  return { model, el, cleanup, q };
}

// jsdom's boxes are all at (0, 0), so client coordinates are canvas coordinates.
// Thumbnails: 28 px row-label gutter, 14 px band on top, 40 px images 2 px apart (2 x 2 heads).
const thumb = (row: number, col: number) => ({ clientX: 28 + col * 42 + 5, clientY: 14 + row * 42 + 5, bubbles: true });
// The large pattern: 3 tokens at 28 px per cell.
const cell = (row: number, col: number) => ({ clientX: col * 28 + 5, clientY: row * 28 + 5, bubbles: true });

afterEach(() => document.body.replaceChildren());

describe("attention render", () => {
  it("has a cancel button: enabled while the forward runs, it asks Python to stop", () => {
    const { model, el } = setup();
    expectCancelButton(model, el);
  });

  it("draws the three views and the query box", () => {
    const { q } = setup();
    expect(q<HTMLElement>("div.aw-root").dataset.widget).toBe("attention");
    for (const sel of ["canvas.aw-overview", "canvas.aw-pattern", "canvas.aw-grid", "input.aw-query"]) expect(q(sel)).not.toBeNull();
    expect(q(".aw-pattern-title").textContent).toContain("layer 3 · head 1");
    expect(q(".aw-from-title").textContent).toBe("from token 2 “␣went”: each head of layer 3 (click a row to show that head)");
    expect(q(".aw-query-token").textContent).toBe("“␣went”");
    // one image per head, scaled from the offscreen thumbnails
    const draws = contexts.get(q<HTMLCanvasElement>("canvas.aw-overview"))!.calls.filter(([n]) => n === "drawImage");
    expect(draws.length).toBe(LAYERS.length * HEADS);
  });

  it("clicking a head in the overview sets the head trait to [layer, head]", () => {
    const { model, q } = setup();
    q<HTMLCanvasElement>("canvas.aw-overview").dispatchEvent(new MouseEvent("click", thumb(1, 0)));
    expect(model.get("head")).toEqual([4, 0]); // row 1 is block 4, not 1
    expect(model.saves).toBe(1);
    q<HTMLCanvasElement>("canvas.aw-overview").dispatchEvent(new MouseEvent("click", { clientX: 5, clientY: 30, bubbles: true }));
    expect(model.saves).toBe(1); // the gutter is no head
  });

  it("hover on the overview names the head", () => {
    const { q } = setup();
    q<HTMLCanvasElement>("canvas.aw-overview").dispatchEvent(new MouseEvent("mousemove", thumb(0, 1)));
    const tip = q<HTMLElement>("div.aw-overview-wrap div.aw-tooltip");
    expect(tip.hidden).toBe(false);
    expect(tip.textContent).toContain("layer 3 · head 1");
  });

  it("hover on the large pattern shows query and key tokens as text, and the weight", () => {
    const { q } = setup();
    q<HTMLCanvasElement>("canvas.aw-pattern").dispatchEvent(new MouseEvent("mousemove", cell(2, 0)));
    const tip = q<HTMLElement>("div.aw-square div.aw-tooltip");
    expect(tip.hidden).toBe(false);
    expect(tip.textContent).toContain("query 2: “␣went”");
    expect(tip.textContent).toContain(`key 0: “${SHOWN}”`);
    expect(tip.textContent).toContain("weight: 33.3%");
    expect(tip.querySelector("img")).toBeNull();
    // above the diagonal: the causal mask
    q<HTMLCanvasElement>("canvas.aw-pattern").dispatchEvent(new MouseEvent("mousemove", cell(0, 2)));
    expect(tip.textContent).toContain("masked");
  });

  it("labels the pattern's rows and columns with token text, never markup", () => {
    const { q, el } = setup();
    const rows = [...el.querySelectorAll<HTMLElement>(".aw-square-rows span.aw-token")].map((s) => s.textContent);
    expect(rows).toEqual([SHOWN, "␣Mary", "␣went"]);
    expect(q(".aw-square-cols span.aw-token")).not.toBeNull();
    expect(el.querySelector(".aw-square img")).toBeNull();
  });

  it("clicking a row of the large pattern looks from that token", () => {
    const { model, q } = setup();
    q<HTMLCanvasElement>("canvas.aw-pattern").dispatchEvent(new MouseEvent("click", cell(1, 0)));
    expect(model.get("query")).toBe(1);
    expect(model.saves).toBe(1);
  });

  it("a prompt typed in the box looks from its last token again: a clicked query was the old prompt's", () => {
    const { model, q } = setup({ query: 2 });
    typeAndEnter(q<HTMLTextAreaElement>("textarea.aw-prompt"), "Hi");
    expect(model.get("prompt")).toBe("Hi");
    expect(model.get("query")).toBeNull();
    expect(model.saves).toBe(1);
  });

  it("a pooled pattern names its bins of tokens", () => {
    const { q } = setup({ pattern_size: 2, pattern: f32([1, NaN, 0.5, 0.5]), pattern_bins: i32([0, 2]) });
    expect(q(".aw-pattern-title").textContent).toContain("pooled to 2 bins of 2 tokens");
    q<HTMLCanvasElement>("canvas.aw-pattern").dispatchEvent(new MouseEvent("mousemove", { clientX: 5, clientY: 5, bubbles: true }));
    const tip = q<HTMLElement>("div.aw-square div.aw-tooltip").textContent!;
    expect(tip).toContain(`queries 0–1: “${SHOWN}” … “␣Mary”`); // a bin of two tokens
    expect(tip).toContain(`keys 0–1: “${SHOWN}” … “␣Mary”`);
    expect(tip).toContain("summed over the key tokens");
  });

  it("the from-this-token grid's tooltip shows both tokens as text", () => {
    const { q } = setup();
    q<HTMLCanvasElement>("canvas.aw-grid").dispatchEvent(new MouseEvent("mousemove", { clientX: 52 + 5, clientY: 3, bubbles: true }) /* past the 52 px "head 0" gutter */);
    const tip = q<HTMLElement>("div.aw-from-panel div.aw-tooltip");
    expect(tip.textContent).toContain(`key 0: “${SHOWN}”`);
    expect(tip.textContent).toContain("query 2: “␣went”");
    expect(tip.textContent).toContain("weight: 50.0%");
    expect(tip.querySelector("img")).toBeNull();
  });

  it("the query box commits whole numbers (negative from the end), blank for the last token, and refuses the rest", () => {
    const { model, q } = setup();
    const box = q<HTMLInputElement>("input.aw-query");
    expect(box.value).toBe("");
    box.value = "1";
    box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.get("query")).toBe(1);
    box.value = "1.5";
    box.dispatchEvent(new Event("change"));
    expect(box.classList.contains("aw-invalid")).toBe(true);
    expect(model.get("query")).toBe(1);
    box.value = "";
    box.dispatchEvent(new Event("change"));
    expect(model.get("query")).toBeNull();
    expect(model.saves).toBe(2);
    expect(box.min).toBe(""); // negative counts from the end, as in Python
    box.value = "-2";
    box.dispatchEvent(new Event("change"));
    expect(model.get("query")).toBe(-2);
  });

  it("redraws when Python sends another head", async () => {
    const { model, q } = setup();
    model.pySet("pattern_head", [4, 0]);
    await new Promise((r) => setTimeout(r, 0));
    expect(q(".aw-pattern-title").textContent).toContain("layer 4 · head 0");
  });

  it("cleanup removes every listener", () => {
    const { model, cleanup } = setup();
    cleanup();
    expect(model.offCalls).toBe(model.onCalls);
    expect(model.listenerCount()).toBe(0);
  });

  it("a snapshot draws read-only", () => {
    const state = attentionState();
    const buffers: Snapshot["buffers"] = {};
    const plain: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(state)) {
      if (v instanceof DataView) {
        const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
        buffers[k] = { dtype: k.endsWith("_bins") || k === "aux" ? "<i4" : "<f4", data: btoa(String.fromCharCode(...bytes)) };
      } else plain[k] = v;
    }
    const el = document.createElement("div");
    document.body.append(el);
    renderSnapshot(el, { format: "actwidgets.snapshot", version: 1, widget: "attention", state: plain, buffers });
    expect(el.querySelector<HTMLElement>(".aw-root")!.dataset.snapshot).toBe("true");
    expect(el.querySelector<HTMLInputElement>("input.aw-query")!.disabled).toBe(true);
    expect(el.querySelector(".aw-pattern-title")!.textContent).toContain("layer 3 · head 1");
  });
});
