// After a failed run, or one cancelled before it drew, Python keeps the previous figure and
// says so (`stale`): every widget, live or as a snapshot, dims it and says whose it is (one
// rule, in shell.ts). Snapshots saved before `stale` existed: "error" alone meant it. The
// same shell keeps the keys its controls use away from the notebook's shortcuts.
import { afterEach, describe, expect, it } from "vitest";
import heatmap from "../src/heatmap";
import lens from "../src/lens";
import { STALE_LABEL } from "../src/lib/shell";
import type { RenderProps } from "../src/lib/types";
import patching from "../src/patching";
import { renderSnapshot } from "../src/snapshot";
import steering from "../src/steering";
import { EMPTY, f32, flush, mockModel } from "./helpers";

const GRID = {
  prompt: "The cat sat",
  status: "done",
  progress: 1,
  error: "",
  remote_status: "",
  tokens: ["The", " cat", " sat"],
  row_labels: ["emb", "0"],
  shape: [2, 3],
  values: f32([0, 1, 2, 3, 4, 5]),
  vmin: 0,
  vmax: 5,
  colormap: "viridis",
  scale: "linear",
  value_label: "L2 norm",
  aux: EMPTY,
  aux_label: "",
  selected: {},
};
const NO_GRID = { shape: [0, 0], values: EMPTY, tokens: [], row_labels: [] };

const KINDS: Record<string, { render: (p: RenderProps<never>) => () => void; state: Record<string, unknown>; empty: Record<string, unknown> }> = {
  heatmap: { render: heatmap.render as never, state: { ...GRID, stat: "norm", stat_options: ["norm"] }, empty: NO_GRID },
  lens: {
    render: lens.render as never,
    state: {
      ...GRID, target: "", color_by: "top_prob", color_by_options: [["top_prob", "top-1 probability"]], k: 1, text_table: [" a"], topk_index: EMPTY, topk_prob: EMPTY,
      entropy: EMPTY, target_prob: EMPTY, target_rank: EMPTY,
    },
    empty: NO_GRID,
  },
  patching: {
    render: patching.render as never,
    state: {
      ...GRID, colormap: "rdbu", clean: "a b c", corrupted: "a b d", answer: [" x", " y"], site: "resid",
      site_options: ["resid"], method: "exact", method_options: ["exact"], normalized: true, ld_clean: 1,
      ld_corrupted: -1, reference_values: EMPTY, correlation: NaN, col_label: "token",
    },
    empty: NO_GRID,
  },
  steering: {
    render: steering.render as never,
    state: {
      prompt: "I think", status: "done", progress: 1, error: "", strength: 0.5, strength_min: -2, strength_max: 2,
      strength_step: 0.05, gamma_max: 1, calibrated: NaN, calibration_note: "", kl_budget: 0.05,
      unsteered_tokens: [" the", " cat"], steered_tokens: [" the", " dog"], kl_per_token: f32([0.01, 0.2]),
      entropy_unsteered: f32([2, 3]), entropy_steered: f32([2, 1]), measured_kl: 0.1, method: "asc", operation: "add",
      curve_beta: EMPTY, curve_entropy_beta: EMPTY, curve_temperature: EMPTY, curve_entropy_temperature: EMPTY,
    },
    empty: { unsteered_tokens: [], steered_tokens: [], kl_per_token: EMPTY, entropy_unsteered: EMPTY, entropy_steered: EMPTY },
  },
};

function stale(el: HTMLElement) {
  const body = el.querySelector<HTMLElement>(".aw-root > .aw-body")!;
  const note = el.querySelector<HTMLElement>(".aw-root > .aw-stale-note")!;
  return { dimmed: body.classList.contains("aw-stale"), labelled: !note.hidden, note, body };
}

function setup(kind: string, over: Record<string, unknown> = {}) {
  const model = mockModel<Record<string, unknown>>({ ...KINDS[kind].state, ...over });
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = KINDS[kind].render({ model: model as never, el });
  return { model, el, cleanup };
}

afterEach(() => document.body.replaceChildren());

describe.each(Object.keys(KINDS))("%s keeps its keys", (kind) => {
  it("keeps Enter and the arrows from the notebook's shortcuts, and lets Ctrl+S through", async () => {
    const { el } = setup(kind);
    const suppressed: Record<string, boolean> = {};
    // where and when JupyterLab matches its shortcuts: a capture listener on the document
    const listen = (ev: KeyboardEvent) => {
      const name = `${ev.ctrlKey ? "Ctrl+" : ""}${ev.shiftKey ? "Shift+" : ""}${ev.key}`;
      suppressed[name] = (ev.target as Element).closest("[data-lm-suppress-shortcuts]") !== null;
    };
    document.addEventListener("keydown", listen, true);
    const inside = el.querySelector<HTMLElement>("textarea, input, canvas")!;
    for (const init of [{ key: "Enter", shiftKey: true }, { key: "ArrowLeft" }, { key: "s", ctrlKey: true }, { key: "Escape" }]) {
      inside.dispatchEvent(new KeyboardEvent("keydown", { ...init, bubbles: true }));
      await flush(); // each key is its own task in a browser: the mark is for that key only
    }
    expect(el.querySelector("[data-lm-suppress-shortcuts]")).toBeNull();
    document.removeEventListener("keydown", listen, true);
    expect(suppressed).toEqual({ "Shift+Enter": true, ArrowLeft: true, "Ctrl+s": false, Escape: false });
  });
});

describe.each(Object.keys(KINDS))("%s after a failed run", (kind) => {
  it("dims the previous figure and labels it, until the next run draws", async () => {
    const { model, el } = setup(kind, { stale: false });
    expect(stale(el)).toMatchObject({ dimmed: false, labelled: false });
    model.pySet("error", "The prompt is empty: type some text to run the model on.");
    model.pySet("status", "error");
    model.pySet("stale", true);
    await flush();
    const s = stale(el);
    expect(s).toMatchObject({ dimmed: true, labelled: true });
    expect(s.note.textContent).toBe(STALE_LABEL);
    // the note sits between the error and the figure, outside the dimmed part
    expect(s.note.previousElementSibling!.classList.contains("aw-error")).toBe(true);
    expect(s.note.nextElementSibling).toBe(s.body);
    model.pySet("status", "running"); // still the earlier input's figure on screen
    expect(stale(el)).toMatchObject({ dimmed: true, labelled: true });
    model.pySet("stale", false); // the new run drew (part of) its figure
    expect(stale(el)).toMatchObject({ dimmed: false, labelled: false });
    model.pySet("status", "done");
    expect(stale(el)).toMatchObject({ dimmed: false, labelled: false });
  });

  it("dims nothing when there is no previous figure, and marks one that arrives later", () => {
    const { model, el } = setup(kind, { ...KINDS[kind].empty, status: "error", error: "bad input", stale: true });
    expect(stale(el)).toMatchObject({ dimmed: false, labelled: false });
    for (const [trait, value] of Object.entries(KINDS[kind].state)) {
      if (trait in KINDS[kind].empty) model.pySet(trait, value);
    }
    expect(stale(el)).toMatchObject({ dimmed: true, labelled: true });
  });

  it("keeps the figure of a run cancelled after it drew; dims one cancelled before", () => {
    const { model, el } = setup(kind, { stale: false });
    model.pySet("status", "cancelled");
    expect(stale(el)).toMatchObject({ dimmed: false, labelled: false });
    model.pySet("status", "queued"); // a new input, then a cancel before its run drew
    model.pySet("status", "cancelled");
    model.pySet("stale", true);
    expect(stale(el)).toMatchObject({ dimmed: true, labelled: true });
    expect(el.querySelector<HTMLElement>(".aw-error")!.hidden).toBe(true);
  });

  it("marks a snapshot taken in the error state the same way", () => {
    const el = document.createElement("div");
    const state: Record<string, unknown> = { ...KINDS[kind].state, status: "error", error: "Unknown token 'zzz'.", stale: true };
    const buffers: Record<string, { dtype: string; data: string }> = {};
    for (const [name, value] of Object.entries(state)) {
      if (value instanceof DataView) {
        const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
        buffers[name] = { dtype: name === "topk_index" || name === "aux" ? "<i4" : "<f4", data: btoa(String.fromCharCode(...bytes)) };
        delete state[name];
      }
    }
    renderSnapshot(el, { format: "actwidgets.snapshot", version: 1, widget: kind, state, buffers });
    expect(stale(el)).toMatchObject({ dimmed: true, labelled: true });
    expect(el.querySelector(".aw-error")!.textContent).toBe("Unknown token 'zzz'.");
    const done = document.createElement("div");
    renderSnapshot(done, { format: "actwidgets.snapshot", version: 1, widget: kind, state: { ...state, status: "done", error: "", stale: false }, buffers });
    expect(stale(done)).toMatchObject({ dimmed: false, labelled: false });
    const older = document.createElement("div"); // saved before `stale` existed: "error" meant it
    const { stale: _, ...legacy } = state;
    renderSnapshot(older, { format: "actwidgets.snapshot", version: 1, widget: kind, state: legacy, buffers });
    expect(stale(older)).toMatchObject({ dimmed: true, labelled: true });
  });
});
