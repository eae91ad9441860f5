// The direct-logit-attribution widget against a mock model: both grids draw (with their emb
// row), hover reads back values and the token as text, clicks move the position and select heads.
import { afterEach, describe, expect, it } from "vitest";
import dla from "../src/dla";
import type { LogitAttributionModel } from "../src/lib/types";
import { renderSnapshot, type Snapshot } from "../src/snapshot";
import { contexts, f32, mockModel, typeAndEnter } from "./helpers";

const LAYERS = 2;
const HEADS = 3;

function dlaState(over: Partial<LogitAttributionModel> = {}): LogitAttributionModel {
  return {
    prompt: "Tom met <b>x</b>",
    status: "done",
    progress: 1,
    error: "",
    remote_status: "",
    tokens: ["Tom", " met", "<b>x</b>"],
    row_labels: ["0", "1"],
    shape: [LAYERS, HEADS],
    values: f32([0.25, -0.5, 0.75, 1, 0, -1.25]), // heads, row-major
    vmin: -2,
    vmax: 2,
    colormap: "rdbu",
    scale: "linear",
    value_label: "direct effect on logit(' Paris')",
    aux: new DataView(new ArrayBuffer(0)),
    aux_label: "",
    selected: {},
    target: " Paris",
    wrong: "",
    position: -1,
    token_index: 2,
    metric_label: "logit(' Paris')",
    components: f32([0.625, -1.5, -0.25, 2]), // layer 0: attn, mlp; layer 1: attn, mlp
    attn_bias: f32([0.125, 0]),
    embed: 0.375,
    norm_bias: 0,
    logit: 1.25,
    total: 1.25,
    note: "",
    ...over,
  };
}

function setup(over: Partial<LogitAttributionModel> = {}) {
  const model = mockModel(dlaState(over));
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = dla.render({ model, el });
  const q = <E extends Element>(sel: string) => el.querySelector<E>(sel)!;
  return { model, el, cleanup, q };
}

// jsdom: an 800 px viewport. Strip gutter 31 px ("emb"), 44 px cells; heads gutter 28 px, 48 px cells; 18 px rows.
const stripAt = (row: number, col: number) => ({ clientX: 31 + col * 44 + 3, clientY: row * 18 + 3, bubbles: true });
const headAt = (row: number, col: number) => ({ clientX: 28 + col * 48 + 3, clientY: row * 18 + 3, bubbles: true });

function hover(q: <E extends Element>(sel: string) => E, panel: string, at: MouseEventInit): string {
  q<HTMLCanvasElement>(`${panel} canvas.aw-grid`).dispatchEvent(new MouseEvent("mousemove", at));
  return q(`${panel} div.aw-tooltip`).textContent!;
}

afterEach(() => document.body.replaceChildren());

describe("dla render", () => {
  it("draws the strip and the head grid, both with an emb row", () => {
    const { q, el } = setup();
    expect(q<HTMLElement>("div.aw-root").dataset.widget).toBe("dla");
    for (const panel of ["div.aw-dla-strip", "div.aw-dla-heads"]) {
      const ctx = contexts.get(q<HTMLCanvasElement>(`${panel} canvas.aw-grid`))!;
      expect(ctx.calls.some(([n]) => n === "drawImage")).toBe(true); // the cells
      expect(q<HTMLCanvasElement>(`${panel} canvas.aw-grid`).style.height).toBe(`${(LAYERS + 1) * 18}px`);
    }
    const labels = (panel: string) => [...el.querySelectorAll(`${panel} span.aw-token`)].map((s) => s.textContent);
    expect(labels("div.aw-dla-strip")).toEqual(["attn", "mlp"]);
    expect(labels("div.aw-dla-heads")).toEqual(["H0", "H1", "H2"]);
    const rows = (panel: string) =>
      contexts.get(q<HTMLCanvasElement>(`${panel} canvas.aw-grid`))!.calls.filter(([n]) => n === "fillText").map(([, a]) => a[0]);
    expect(rows("div.aw-dla-strip").slice(-3)).toEqual(["emb", "0", "1"]); // the last frame's row labels
    expect(rows("div.aw-dla-heads").slice(-3)).toEqual(["", "0", "1"]);
    expect(q("canvas.aw-colorbar")).not.toBeNull();
    expect(q(".aw-colorbar-mid").textContent).toBe("(white = 0)");
  });

  it("colours the strip's cells from the embedding and the components", () => {
    const { q } = setup();
    const canvases = [...contexts.keys()].filter((c) => c.width === 2 && c.height === LAYERS + 1);
    expect(canvases.length).toBeGreaterThan(0); // the strip's one-pixel-per-cell image
    const image = contexts.get(canvases[0])!.calls.find(([n]) => n === "putImageData")![1][0] as ImageData;
    const alpha = [...Array(6).keys()].map((i) => image.data[i * 4 + 3]);
    expect(alpha).toEqual([255, 0, 255, 255, 255, 255]); // the emb row's MLP cell is empty
    expect(q("div.aw-dla-strip")).not.toBeNull();
  });

  it("hover gives each part's value, what is attributed, and the token as text", () => {
    const { q } = setup();
    const attn = hover(q, "div.aw-dla-strip", stripAt(1, 0));
    expect(attn).toContain("layer 0 attention output");
    expect(attn).toContain("direct effect: +0.625");
    expect(attn).toContain("heads +0.500 · output bias +0.125");
    expect(attn).toContain("on logit(' Paris') at token 2 “<b>x</b>”");
    expect(q("div.aw-dla-strip div.aw-tooltip b")).toBeNull(); // token text is never markup
    expect(hover(q, "div.aw-dla-strip", stripAt(2, 1))).toContain("layer 1 MLP output");
    expect(hover(q, "div.aw-dla-strip", stripAt(0, 0))).toContain("embedding");
    const head = hover(q, "div.aw-dla-heads", headAt(2, 2));
    expect(head).toContain("layer 1, head 2");
    expect(head).toContain("direct effect: −1.250");
    expect(head).toContain("layer 1 attention output: −0.250");
    expect(hover(q, "div.aw-dla-heads", headAt(0, 1))).toContain("direct effect: +0.375"); // the emb row
  });

  it("shows the prompt's tokens as text, outlines the attributed one, and moves on a click", () => {
    const { model, q, el } = setup();
    const spans = [...el.querySelectorAll<HTMLElement>("div.aw-dla-tokens span.aw-tok")];
    expect(spans.map((s) => s.textContent)).toEqual(["Tom", " met", "<b>x</b>"]);
    expect(q("div.aw-dla-tokens b")).toBeNull();
    expect(spans.map((s) => s.classList.contains("aw-hl"))).toEqual([false, false, true]);
    spans[2].dispatchEvent(new MouseEvent("click", { bubbles: true })); // already shown: no re-run
    expect(model.saves).toBe(0);
    spans[1].dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(model.get("position")).toBe(1);
    expect(model.saves).toBe(1);
    model.pySet("token_index", 1);
    return Promise.resolve().then(() => {
      const now = [...el.querySelectorAll<HTMLElement>("div.aw-dla-tokens span.aw-tok")];
      expect(now.map((s) => s.classList.contains("aw-hl"))).toEqual([false, true, false]);
    });
  });

  it("a prompt typed in the box attributes at its last token again: a clicked position was the old prompt's", () => {
    const { model, q } = setup({ position: 1 });
    typeAndEnter(q<HTMLTextAreaElement>("textarea.aw-prompt"), "The capital of France is");
    expect(model.get("prompt")).toBe("The capital of France is");
    expect(model.get("position")).toBe(-1);
    expect(model.saves).toBe(1); // one message: the two never run apart
  });

  it("says the model's logit beside the sum of the parts, and the note when there is one", () => {
    const { q, model } = setup();
    expect(q("div.aw-dla-sum").textContent).toBe("model +1.250 · sum of parts +1.250 · embedding +0.375 · final-norm bias 0.000");
    expect(q("div.aw-dla-what").textContent).toBe("logit(' Paris') at token 2 “<b>x</b>”");
    expect(q<HTMLElement>("div.aw-note").hidden).toBe(true);
    model.pySet("note", "soft-caps its logits");
    return Promise.resolve().then(() => {
      expect(q<HTMLElement>("div.aw-note").hidden).toBe(false);
      expect(q("div.aw-note").textContent).toBe("soft-caps its logits");
    });
  });

  it("a click on a head selects it by layer and head; the emb row selects nothing", () => {
    const { model, q } = setup();
    const canvas = q<HTMLCanvasElement>("div.aw-dla-heads canvas.aw-grid");
    canvas.dispatchEvent(new MouseEvent("click", headAt(0, 1)));
    expect(model.get("selected")).toEqual({});
    canvas.dispatchEvent(new MouseEvent("click", headAt(2, 1)));
    expect(model.get("selected")).toEqual({ row: 1, col: 1 });
  });

  it("target and wrong commit on Enter", () => {
    const { model, q } = setup();
    const wrong = q<HTMLInputElement>("input.aw-wrong");
    wrong.value = " London";
    wrong.dispatchEvent(new Event("input"));
    wrong.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.get("wrong")).toBe(" London");
    expect(q<HTMLInputElement>("input.aw-target").value).toBe(" Paris");
  });

  it("draws nothing but the shell before the first run", () => {
    const { q } = setup({ shape: [0, 0], values: f32([]), components: f32([]), logit: NaN, total: NaN, tokens: [] });
    expect(q<HTMLElement>("div.aw-dla-sum").hidden).toBe(true);
    expect(q<HTMLElement>("div.aw-dla-tokens").hidden).toBe(true);
  });

  it("cleanup removes every listener", () => {
    const { model, cleanup } = setup();
    cleanup();
    expect(model.offCalls).toBe(model.onCalls);
    expect(model.listenerCount()).toBe(0);
  });

  it("draws from a snapshot, read-only", () => {
    const el = document.createElement("div");
    document.body.append(el);
    const { values, components, attn_bias, aux, ...state } = dlaState();
    const pack = (v: DataView) => ({ dtype: "<f4", data: btoa(String.fromCharCode(...new Uint8Array(v.buffer))) });
    const snap: Snapshot = {
      format: "actwidgets.snapshot", version: 1, widget: "dla", state,
      buffers: { values: pack(values), components: pack(components), attn_bias: pack(attn_bias), aux: pack(aux) },
    };
    renderSnapshot(el, snap);
    expect(el.querySelector(".aw-root[data-widget=dla][data-snapshot=true]")).not.toBeNull();
    expect(el.querySelector<HTMLInputElement>("input.aw-target")!.disabled).toBe(true);
    expect(el.querySelector("div.aw-dla-sum")!.textContent).toContain("sum of parts +1.250");
  });
});
