import { afterEach, describe, expect, it, vi } from "vitest";
import { PROMPT_DEBOUNCE_MS } from "../src/lib/shell";
import type { PatchingModel } from "../src/lib/types";
import patching from "../src/patching";
import { contexts, EMPTY, expectCancelButton, f32, flush, mockModel } from "./helpers";

const XSS = "<img src=x onerror=alert(1)>";
const ROWS = 3;
const COLS = 4;

function patchingState(over: Partial<PatchingModel> = {}): PatchingModel {
  return {
    status: "done",
    progress: 1,
    error: "",
    remote_status: "",
    prompt: "",
    tokens: ["When", " Mary", " and", XSS],
    row_labels: ["0", "1", "2"],
    shape: [ROWS, COLS],
    values: f32(Array.from({ length: ROWS * COLS }, (_, i) => (i - 6) / 6)),
    vmin: -1,
    vmax: 1,
    colormap: "rdbu",
    scale: "linear",
    value_label: "patched LD",
    aux: EMPTY,
    aux_label: "",
    selected: {},
    clean: "When Mary and John went to the store, John gave a drink to",
    corrupted: "When Mary and John went to the store, Mary gave a drink to",
    answer: [" Mary", " John"],
    site: "resid",
    site_options: ["resid", "attn", "mlp", "heads"],
    method: "exact",
    method_options: ["exact", "attribution", "relp"],
    normalized: true,
    ld_clean: 6.1234,
    ld_corrupted: -5.49,
    reference_values: EMPTY,
    correlation: NaN,
    col_label: "token",
    ...over,
  };
}

function setup(over: Partial<PatchingModel> = {}) {
  const model = mockModel(patchingState(over));
  model.send = vi.fn();
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = patching.render({ model, el });
  const q = <E extends Element>(sel: string) => el.querySelector<E>(sel)!;
  return { model, el, cleanup, q };
}

// 800 px assumed viewport, 28 px gutter ("0".."2"), 4 columns at the 32 px cap, 18 px rows.
const at = (row: number, col: number) => ({ clientX: 28 + col * 32 + 3, clientY: row * 18 + 3, bubbles: true });

afterEach(() => {
  document.body.replaceChildren();
  vi.useRealTimers();
});

describe("patching render", () => {
  it("builds the DOM the wire promises, with no prompt box", () => {
    const { q, el } = setup();
    const root = q<HTMLElement>("div.aw-root");
    expect(root.dataset.widget).toBe("patching");
    expect(root.dataset.status).toBe("done");
    expect(el.querySelector("textarea.aw-prompt")).toBeNull();
    for (const sel of [
      "textarea.aw-clean",
      "textarea.aw-corrupted",
      "input.aw-answer-correct",
      "input.aw-answer-wrong",
      "select.aw-site",
      "select.aw-method",
      "input.aw-normalized",
      "button.aw-cancel",
      "span.aw-status",
      "progress.aw-progress",
      "div.aw-error",
      "div.aw-summary",
      "div.aw-scroll canvas.aw-grid",
      "div.aw-reference",
      "canvas.aw-colorbar",
      "div.aw-tooltip",
      "button.aw-zoom-in",
      "button.aw-zoom-out",
    ])
      expect(root.querySelector(sel), sel).not.toBeNull();
    expect(q(".aw-colorbar-label").textContent).toBe("patched LD");
    expect(q(".aw-colorbar-mid").textContent).toBe("(white = 0)");
  });

  it("shows the model's values in its inputs", () => {
    const { q } = setup();
    expect(q<HTMLTextAreaElement>("textarea.aw-clean").value).toBe(patchingState().clean);
    expect(q<HTMLTextAreaElement>("textarea.aw-corrupted").value).toBe(patchingState().corrupted);
    expect(q<HTMLInputElement>("input.aw-answer-correct").value).toBe(" Mary");
    expect(q<HTMLInputElement>("input.aw-answer-wrong").value).toBe(" John");
    const site = q<HTMLSelectElement>("select.aw-site");
    expect([...site.options].map((o) => o.value)).toEqual(["resid", "attn", "mlp", "heads"]);
    expect(site.value).toBe("resid");
    const method = q<HTMLSelectElement>("select.aw-method");
    expect([...method.options].map((o) => o.value)).toEqual(["exact", "attribution", "relp"]);
    expect(method.value).toBe("exact");
    expect(q<HTMLInputElement>("input.aw-normalized").checked).toBe(true);
  });

  it("sets clean and saves when the edited box loses focus, only on a real change", () => {
    const { model, q } = setup();
    const ta = q<HTMLTextAreaElement>("textarea.aw-clean");
    ta.value = "A new clean prompt";
    ta.dispatchEvent(new Event("input"));
    ta.dispatchEvent(new Event("blur"));
    expect(model.get("clean")).toBe("A new clean prompt");
    expect(model.saves).toBe(1);
    ta.dispatchEvent(new Event("blur"));
    expect(model.saves).toBe(1);
    ta.dispatchEvent(new Event("input")); // typed, but back to the same text
    ta.dispatchEvent(new Event("blur"));
    expect(model.saves).toBe(1);
    model.pySet("clean", "from python");
    expect(ta.value).toBe("from python");
  });

  it("debounces corrupted, commits on Enter but not Shift+Enter", () => {
    vi.useFakeTimers();
    const { model, q } = setup();
    const ta = q<HTMLTextAreaElement>("textarea.aw-corrupted");
    ta.value = "typed";
    ta.dispatchEvent(new Event("input"));
    ta.setSelectionRange(5, 5);
    ta.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", shiftKey: true }));
    vi.advanceTimersByTime(PROMPT_DEBOUNCE_MS - 10);
    expect(model.saves).toBe(0);
    vi.advanceTimersByTime(20);
    expect(model.get("corrupted")).toBe("typed\n");
    expect(model.saves).toBe(1);
    ta.value = "typed again";
    ta.dispatchEvent(new Event("input"));
    ta.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.get("corrupted")).toBe("typed again");
    expect(model.saves).toBe(2);
    vi.advanceTimersByTime(1000);
    expect(model.saves).toBe(2);
  });

  it("answer inputs set a new answer array on Enter or blur", () => {
    const { model, q } = setup();
    const before = model.get("answer");
    const correct = q<HTMLInputElement>("input.aw-answer-correct");
    correct.value = " Alice";
    correct.dispatchEvent(new Event("input"));
    expect(model.saves).toBe(0); // no commit per keystroke
    correct.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.get("answer")).toEqual([" Alice", " John"]);
    expect(model.get("answer")).not.toBe(before);
    expect(before).toEqual([" Mary", " John"]); // the old array was not mutated
    expect(model.saves).toBe(1);
    const wrong = q<HTMLInputElement>("input.aw-answer-wrong");
    wrong.value = " Bob";
    wrong.dispatchEvent(new Event("input"));
    wrong.dispatchEvent(new Event("blur"));
    expect(model.get("answer")).toEqual([" Alice", " Bob"]);
    expect(model.saves).toBe(2);
    model.pySet("answer", [" x", " y"]);
    expect(correct.value).toBe(" x");
    expect(wrong.value).toBe(" y");
  });

  it("binds site, method and normalized both ways", () => {
    const { model, q } = setup();
    const site = q<HTMLSelectElement>("select.aw-site");
    site.value = "heads";
    site.dispatchEvent(new Event("change"));
    expect(model.get("site")).toBe("heads");
    const method = q<HTMLSelectElement>("select.aw-method");
    method.value = "attribution";
    method.dispatchEvent(new Event("change"));
    expect(model.get("method")).toBe("attribution");
    const norm = q<HTMLInputElement>("input.aw-normalized");
    norm.checked = false;
    norm.dispatchEvent(new Event("change"));
    expect(model.get("normalized")).toBe(false);
    expect(model.saves).toBe(3);
    model.pySet("site", "mlp");
    model.pySet("method", "relp");
    model.pySet("normalized", true);
    expect(site.value).toBe("mlp");
    expect(method.value).toBe("relp");
    expect(norm.checked).toBe(true);
    model.pySet("method_options", ["exact", "attribution"]);
    expect(method.options.length).toBe(3); // the live value "relp" stays listed
  });

  it("has a cancel button: enabled while it runs, it asks Python to stop", () => {
    const { model, el } = setup();
    expectCancelButton(model, el);
  });

  it("summarises the logit differences and correlation, leaving out NaN", () => {
    const { model, q } = setup();
    const summary = q<HTMLDivElement>("div.aw-summary");
    expect(summary.textContent).toBe("LD clean +6.12 · LD corrupted −5.49");
    model.pySet("correlation", 0.9071);
    expect(summary.textContent).toBe("LD clean +6.12 · LD corrupted −5.49 · r(exact) 0.91");
    model.pySet("ld_clean", NaN);
    model.pySet("ld_corrupted", null as unknown as number); // NaN can arrive as null over JSON
    expect(summary.textContent).toBe("r(exact) 0.91");
    model.pySet("correlation", NaN);
    expect(summary.textContent).toBe("");
    expect(summary.hidden).toBe(true);
  });

  it("draws a partly computed grid, leaving NaN cells transparent", async () => {
    const { model, q } = setup({ values: f32(Array.from({ length: ROWS * COLS }, () => NaN)) });
    const filled = Array.from({ length: ROWS * COLS }, (_, i) => (i < 5 ? 0.5 : NaN)); // first chunk done
    model.pySet("values", f32(filled));
    await flush();
    const images = [...contexts.values()]
      .flatMap((c) => c.calls)
      .filter(([n, a]) => n === "putImageData" && (a[0] as ImageData).width === COLS)
      .map(([, a]) => (a[0] as ImageData).data);
    const last = images[images.length - 1];
    expect(last[4 * 4 + 3]).toBe(255); // computed
    expect(last[5 * 4 + 3]).toBe(0); // not yet: transparent, the hatch shows through
    const canvas = q<HTMLCanvasElement>("canvas.aw-grid");
    canvas.dispatchEvent(new MouseEvent("mousemove", at(2, 3)));
    expect(q("div.aw-tooltip").textContent).toContain("patched LD: —");
  });

  it("tooltip names the token, layer and value, or the head for head sites", () => {
    const { model, q } = setup();
    const canvas = q<HTMLCanvasElement>("canvas.aw-grid");
    canvas.dispatchEvent(new MouseEvent("mousemove", at(2, 1)));
    let text = q("div.aw-tooltip").textContent!;
    expect(text).toContain("token 1: “␣Mary”");
    expect(text).toContain("layer: 2");
    expect(text).toContain("patched LD: 0.5"); // (9 - 6) / 6
    model.pySet("col_label", "head");
    model.pySet("tokens", ["H0", "H1", "H2", "H3"]);
    canvas.dispatchEvent(new MouseEvent("mousemove", at(0, 3)));
    text = q("div.aw-tooltip").textContent!;
    expect(text).toContain("head 3");
    expect(text).not.toContain("token");
  });

  it("shows the exact reference grid only when reference_values is non-empty", async () => {
    const { model, el, q } = setup({ method: "attribution" });
    const ref = q<HTMLDivElement>("div.aw-reference");
    expect(ref.hidden).toBe(true);
    model.pySet("reference_values", f32(Array.from({ length: ROWS * COLS }, (_, i) => i / 12)));
    await flush();
    expect(ref.hidden).toBe(false);
    expect(ref.querySelector(".aw-panel-title")!.textContent).toBe("exact");
    expect(q(".aw-main .aw-panel-title").textContent).toBe("attribution");
    const canvases = el.querySelectorAll<HTMLCanvasElement>("canvas.aw-grid");
    expect(canvases.length).toBe(2);
    expect(ref.contains(canvases[1])).toBe(true);
    // The main tooltip adds the exact value; the reference one adds the method's.
    canvases[0].dispatchEvent(new MouseEvent("mousemove", at(0, 0)));
    expect(el.querySelectorAll("div.aw-tooltip")[0].textContent).toContain("exact: 0");
    canvases[1].dispatchEvent(new MouseEvent("mousemove", at(1, 2)));
    const refTip = el.querySelectorAll("div.aw-tooltip")[1].textContent!;
    expect(refTip).toContain("patched LD: 0.5"); // 6 / 12
    expect(refTip).toContain("attribution: 0");
    model.pySet("reference_values", EMPTY);
    await flush();
    expect(ref.hidden).toBe(true);
  });

  it("clicking either grid selects the cell", async () => {
    const { model, el } = setup({ reference_values: f32(Array.from({ length: ROWS * COLS }, () => 0.1)) });
    const canvases = el.querySelectorAll<HTMLCanvasElement>("canvas.aw-grid");
    canvases[0].dispatchEvent(new MouseEvent("click", at(1, 2)));
    expect(model.get("selected")).toEqual({ row: 1, col: 2 });
    canvases[1].dispatchEvent(new MouseEvent("click", at(2, 3)));
    expect(model.get("selected")).toEqual({ row: 2, col: 3 });
    expect(model.saves).toBe(2);
    // Both grids outline the selection.
    for (const c of canvases) expect(contexts.get(c)!.calls.some(([n]) => n === "strokeRect")).toBe(true);
  });

  it("creates no <img> from a malicious token or prompt", () => {
    const { el, q } = setup({ clean: XSS, answer: [XSS, XSS] });
    expect(el.querySelector("img")).toBeNull();
    expect(q<HTMLTextAreaElement>("textarea.aw-clean").value).toBe(XSS);
    expect(q<HTMLInputElement>("input.aw-answer-correct").value).toBe(XSS);
    const spans = el.querySelectorAll("span.aw-token");
    expect(spans[3].textContent).toContain("<img");
    q<HTMLCanvasElement>("canvas.aw-grid").dispatchEvent(new MouseEvent("mousemove", at(0, 3)));
    expect(q("div.aw-tooltip").textContent).toContain("<img");
    expect(el.querySelector("img")).toBeNull();
  });

  it("cleanup removes every listener and the DOM", async () => {
    const { model, el, cleanup, q } = setup({ reference_values: f32(Array.from({ length: ROWS * COLS }, () => 0.1)) });
    const ta = q<HTMLTextAreaElement>("textarea.aw-clean");
    const btn = q<HTMLButtonElement>("button.aw-cancel");
    expect(model.onCalls).toBeGreaterThan(10);
    cleanup();
    expect(model.offCalls).toBe(model.onCalls);
    expect(model.listenerCount()).toBe(0);
    expect(el.querySelector(".aw-root")).toBeNull();
    ta.value = "after cleanup";
    ta.dispatchEvent(new Event("input"));
    ta.dispatchEvent(new Event("blur"));
    model.pySet("status", "running");
    btn.disabled = false;
    btn.click();
    expect(model.saves).toBe(0);
    expect(model.send).not.toHaveBeenCalled();
    model.pySet("values", f32([1]));
    await flush();
  });
});
