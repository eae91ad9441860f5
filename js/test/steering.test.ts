import { afterEach, describe, expect, it, vi } from "vitest";
import { STRENGTH_THROTTLE_MS, stepDecimals } from "../src/lib/strength";
import { throttle } from "../src/lib/throttle";
import type { SteeringModel } from "../src/lib/types";
import steering from "../src/steering";
import { EMPTY, f32, flush, mockModel } from "./helpers";

const XSS = "<img src=x onerror=alert(1)>";

function steeringState(over: Partial<SteeringModel> = {}): SteeringModel {
  return {
    prompt: "I think that",
    status: "done",
    progress: 1,
    error: "",
    strength: 0.5,
    strength_min: -2,
    strength_max: 2,
    strength_step: 0.05,
    gamma_max: 1,
    calibrated: NaN,
    calibration_note: "",
    kl_budget: 0.05,
    unsteered_tokens: [" the", " cat", "\n", " sat"],
    steered_tokens: [" the", " dog", "\n", XSS],
    kl_per_token: f32([0.01, 0.2, 0.05, 0.1]),
    entropy_unsteered: f32([2, 3, 1, 2.5]),
    entropy_steered: f32([2.1, 1.5, 1, 2]),
    measured_kl: 0.0123,
    mode: "add",
    curve_beta: EMPTY,
    curve_entropy_beta: EMPTY,
    curve_temperature: EMPTY,
    curve_entropy_temperature: EMPTY,
    ...over,
  };
}

function setup(over: Partial<SteeringModel> = {}) {
  const model = mockModel(steeringState(over));
  model.send = vi.fn();
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = steering.render({ model, el });
  const q = <E extends Element>(sel: string) => el.querySelector<E>(sel)!;
  const qa = <E extends Element>(sel: string) => [...el.querySelectorAll<E>(sel)];
  return { model, el, cleanup, q, qa };
}

/** Record every strength the widget writes to the model. */
function recordStrength(model: ReturnType<typeof setup>["model"]): number[] {
  const sent: number[] = [];
  const set = model.set;
  model.set = (k, v) => {
    if (k === "strength") sent.push(v as number);
    set(k, v);
  };
  return sent;
}

const texts = (spans: Element[]) => spans.map((s) => s.textContent);

afterEach(() => {
  document.body.replaceChildren();
  vi.useRealTimers();
});

describe("steering render", () => {
  it("builds the DOM the wire promises", () => {
    const { q } = setup();
    const root = q<HTMLElement>("div.aw-root");
    expect(root.dataset.widget).toBe("steering");
    expect(root.dataset.status).toBe("done");
    expect(root.dataset.mode).toBe("add");
    for (const sel of [
      "textarea.aw-prompt",
      "span.aw-status",
      "progress.aw-progress",
      "div.aw-error",
      "button.aw-cancel",
      "input.aw-strength",
      "span.aw-strength-value",
      "input.aw-budget",
      "span.aw-kl",
      "div.aw-unsteered",
      "div.aw-steered",
      "div.aw-kl-strip",
      "div.aw-curves",
    ])
      expect(root.querySelector(sel), sel).not.toBeNull();
    expect(q<HTMLTextAreaElement>("textarea.aw-prompt").value).toBe("I think that");
    expect(q(".aw-unsteered .aw-panel-title").textContent).toBe("unsteered");
    expect(q(".aw-steered .aw-panel-title").textContent).toBe("steered (strength +0.50)");
  });

  it("renders the slider with the trait range and value, both ways", () => {
    const { model, q } = setup();
    const slider = q<HTMLInputElement>("input.aw-strength");
    expect(slider.type).toBe("range");
    expect(slider.min).toBe("-2");
    expect(slider.max).toBe("2");
    expect(slider.step).toBe("0.05");
    expect(slider.value).toBe("0.5");
    expect(q("span.aw-strength-value").textContent).toBe("+0.50");
    model.pySet("strength", -1.25);
    expect(slider.value).toBe("-1.25");
    expect(q("span.aw-strength-value").textContent).toBe("−1.25");
    expect(q(".aw-steered .aw-panel-title").textContent).toBe("steered (strength −1.25)");
    model.pySet("strength_max", 5);
    model.pySet("strength_step", 0.5);
    expect(slider.max).toBe("5");
    expect(slider.step).toBe("0.5");
    expect(slider.value).toBe("-1.25"); // the value survives a range change
  });

  it("throttles input while dragging and always sends the last value", () => {
    vi.useFakeTimers();
    const { model, q } = setup();
    const sent = recordStrength(model);
    const slider = q<HTMLInputElement>("input.aw-strength");
    const values: number[] = [];
    for (let i = 0; i < 20; i++) {
      const v = Number((-1 + i * 0.1).toFixed(2));
      values.push(v);
      slider.value = String(v);
      slider.dispatchEvent(new Event("input"));
      expect(q("span.aw-strength-value").textContent).toBe((v < 0 ? "−" : v > 0 ? "+" : "") + Math.abs(v).toFixed(2));
      vi.advanceTimersByTime(40); // 20 events in 800 ms
    }
    vi.advanceTimersByTime(STRENGTH_THROTTLE_MS * 2);
    expect(sent.length).toBeGreaterThanOrEqual(2);
    expect(sent.length).toBeLessThanOrEqual(11);
    expect(sent[0]).toBe(values[0]); // leading edge: the first move is sent at once
    expect(sent[sent.length - 1]).toBe(values[19]);
    expect(model.get("strength")).toBe(values[19]);
    expect(model.saves).toBe(sent.length);
    vi.advanceTimersByTime(1000);
    expect(sent.length).toBeLessThanOrEqual(11); // nothing left queued
  });

  it("sends the final value on change without waiting for the throttle", () => {
    vi.useFakeTimers();
    const { model, q } = setup();
    const sent = recordStrength(model);
    const slider = q<HTMLInputElement>("input.aw-strength");
    for (const v of ["0.1", "0.2", "0.3"]) {
      slider.value = v;
      slider.dispatchEvent(new Event("input"));
    }
    expect(sent).toEqual([0.1]);
    slider.dispatchEvent(new Event("change"));
    expect(sent).toEqual([0.1, 0.3]);
    vi.advanceTimersByTime(1000);
    expect(sent).toEqual([0.1, 0.3]); // the flushed trailing call does not fire again
    slider.dispatchEvent(new Event("change")); // no real change: nothing sent
    expect(sent).toEqual([0.1, 0.3]);
  });

  it("throttle: leading + trailing with the newest arguments", () => {
    vi.useFakeTimers();
    const calls: number[] = [];
    const t = throttle((v: number) => calls.push(v), 100);
    t(1);
    t(2);
    t(3);
    expect(calls).toEqual([1]);
    vi.advanceTimersByTime(100);
    expect(calls).toEqual([1, 3]);
    vi.advanceTimersByTime(500);
    t(4); // the window is long over: leading again
    expect(calls).toEqual([1, 3, 4]);
    t(5);
    t.cancel();
    vi.advanceTimersByTime(500);
    expect(calls).toEqual([1, 3, 4]);
  });

  it("step decimals follow the step", () => {
    expect(stepDecimals(0.05)).toBe(2);
    expect(stepDecimals(0.025)).toBe(3);
    expect(stepDecimals(1)).toBe(0);
    expect(stepDecimals(1e-7)).toBe(6);
    expect(stepDecimals(NaN)).toBe(2);
  });

  it("places ±markers for finite values and hides them for NaN/null or out of range", () => {
    const { model, qa } = setup();
    const gamma = qa<HTMLDivElement>("div.aw-gamma-marker");
    const calib = qa<HTMLDivElement>("div.aw-calibrated-marker");
    expect(gamma.length).toBe(2);
    expect(calib.length).toBe(2);
    expect(gamma.every((m) => !m.hidden)).toBe(true);
    // Range -2..2: +1 is 3/4 along, -1 is 1/4 along.
    expect(gamma[0].style.getPropertyValue("--aw-at")).toBe("0.7500");
    expect(gamma[1].style.getPropertyValue("--aw-at")).toBe("0.2500");
    expect(gamma.map((m) => m.dataset.value)).toEqual(["1", "-1"]);
    expect(gamma[0].title).toBe("γ_max (closed form)");
    expect(calib[0].title).toContain("calibrated");
    expect(calib.every((m) => m.hidden)).toBe(true); // NaN
    model.pySet("calibrated", 0.4);
    expect(calib.every((m) => !m.hidden)).toBe(true);
    expect(calib[0].style.getPropertyValue("--aw-at")).toBe("0.6000");
    model.pySet("gamma_max", null as unknown as number); // NaN can arrive as null over JSON
    expect(gamma.every((m) => m.hidden)).toBe(true);
    model.pySet("gamma_max", 3); // beyond ±2
    expect(gamma.every((m) => m.hidden)).toBe(true);
    model.pySet("strength_min", 0); // an asymmetric range: only +0.4 is on the track
    expect(calib[0].hidden).toBe(false);
    expect(calib[1].hidden).toBe(true);
  });

  it("shows why there is no calibrated strength, as text, and hides the note when there is one", () => {
    const { model, q } = setup();
    const note = q<HTMLDivElement>("div.aw-calibration-note");
    expect(note.hidden).toBe(true);
    model.pySet("calibration_note", "No strength met the KL budget <b>0.05</b>");
    expect(note.hidden).toBe(false);
    expect(note.textContent).toBe("No strength met the KL budget <b>0.05</b>");
    expect(note.querySelector("b")).toBeNull();
    model.pySet("calibration_note", "");
    expect(note.hidden).toBe(true);
  });

  it("binds the budget both ways and rejects non-positive or non-numeric input", () => {
    const { model, q } = setup();
    const box = q<HTMLInputElement>("input.aw-budget");
    expect(box.type).toBe("number");
    expect(box.step).toBe("any");
    expect(box.value).toBe("0.05");
    for (const bad of ["0", "-0.1", ""]) {
      box.value = bad;
      box.dispatchEvent(new Event("input"));
      box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
      expect(box.classList.contains("aw-invalid"), bad).toBe(true);
      expect(box.getAttribute("aria-invalid")).toBe("true");
    }
    box.value = "abc"; // a number input drops non-numeric text: reads as ""
    box.dispatchEvent(new Event("change"));
    expect(box.classList.contains("aw-invalid")).toBe(true);
    expect(model.get("kl_budget")).toBe(0.05);
    expect(model.saves).toBe(0);
    box.value = "0.1";
    box.dispatchEvent(new Event("input"));
    box.dispatchEvent(new Event("blur"));
    expect(model.get("kl_budget")).toBe(0.1);
    expect(model.saves).toBe(1);
    expect(box.classList.contains("aw-invalid")).toBe(false);
    box.dispatchEvent(new Event("change")); // same value: no re-run
    expect(model.saves).toBe(1);
    model.pySet("kl_budget", 0.2);
    expect(box.value).toBe("0.2");
  });

  it("renders tokens as text, never as markup", () => {
    const { el, qa } = setup({ prompt: XSS });
    expect(el.querySelector("img")).toBeNull();
    const steered = qa(".aw-steered span.aw-tok");
    expect(texts(steered)).toEqual([" the", " dog", "\n", XSS]);
    expect(texts(qa(".aw-unsteered span.aw-tok"))).toEqual([" the", " cat", "\n", " sat"]);
    expect(el.querySelector<HTMLTextAreaElement>("textarea.aw-prompt")!.value).toBe(XSS);
  });

  it("marks steered tokens that differ from the unsteered token at the same index", async () => {
    const { model, qa } = setup();
    const diff = () => qa(".aw-steered span.aw-tok").map((s) => s.classList.contains("aw-diff"));
    expect(diff()).toEqual([false, true, false, true]);
    expect(qa(".aw-unsteered .aw-diff").length).toBe(0);
    model.pySet("unsteered_tokens", [" the", " dog", "\n", " sat"]);
    await flush();
    expect(diff()).toEqual([false, false, false, true]);
    // A steered token beyond the unsteered ones is not compared (not generated yet).
    model.pySet("steered_tokens", [" the", " dog", "\n", XSS, " more"]);
    await flush();
    expect(diff()).toEqual([false, false, false, true, false]);
  });

  it("appends spans when the continuations grow, keeping the existing ones", async () => {
    const { model, el, qa } = setup({ unsteered_tokens: [], steered_tokens: [] });
    expect(qa("span.aw-tok").length).toBe(0);
    model.pySet("unsteered_tokens", [" a"]);
    model.pySet("steered_tokens", [" a"]);
    await flush();
    const first = el.querySelector(".aw-steered span.aw-tok");
    expect(first).not.toBeNull();
    model.pySet("unsteered_tokens", [" a", " b", " c"]);
    model.pySet("steered_tokens", [" a", " x", " c"]);
    await flush();
    const spans = qa(".aw-steered span.aw-tok");
    expect(spans[0]).toBe(first);
    expect(texts(spans)).toEqual([" a", " x", " c"]);
    expect(spans.map((s) => s.classList.contains("aw-diff"))).toEqual([false, true, false]);
    // A new run (shorter list, different text) rewrites and trims.
    model.pySet("steered_tokens", [" z"]);
    await flush();
    expect(texts(qa(".aw-steered span.aw-tok"))).toEqual([" z"]);
    expect(qa(".aw-steered span.aw-tok")[0]).toBe(first); // rewritten in place
    expect(first!.classList.contains("aw-diff")).toBe(true);
  });

  it("shows the KL readout and flags it over budget", () => {
    const { model, q } = setup();
    const kl = q<HTMLSpanElement>("span.aw-kl");
    expect(kl.textContent).toBe("KL 0.0123 · budget 0.05 · bound γ_max 1");
    expect(kl.classList.contains("aw-over-budget")).toBe(false);
    model.pySet("gamma_max", 0.42);
    model.pySet("measured_kl", 0.07);
    expect(kl.textContent).toBe("KL 0.07 · budget 0.05 · bound γ_max 0.42");
    expect(kl.classList.contains("aw-over-budget")).toBe(true);
    model.pySet("kl_budget", 0.1);
    expect(kl.classList.contains("aw-over-budget")).toBe(false);
    model.pySet("measured_kl", NaN);
    model.pySet("gamma_max", null as unknown as number);
    expect(kl.textContent).toBe("budget 0.1");
    expect(kl.classList.contains("aw-over-budget")).toBe(false);
  });

  it("draws one KL bar per unsteered token, scaled to the max, with a hover title", async () => {
    const { model, q, qa } = setup();
    const bars = qa<HTMLDivElement>("div.aw-kl-strip > div");
    expect(bars.length).toBe(4);
    expect(bars.map((b) => parseFloat(b.style.height))).toEqual([5, 100, 25, 50]);
    expect(bars[1].title).toBe("“␣cat”\nKL 0.2 nats\nentropy unsteered 3 · steered 1.5");
    bars[1].dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    expect(qa(".aw-unsteered span.aw-tok")[1].classList.contains("aw-hl")).toBe(true);
    q("div.aw-kl-strip").dispatchEvent(new MouseEvent("mouseleave"));
    expect(qa(".aw-hl").length).toBe(0);
    // Streaming: more tokens than KL values so far; the unscored ones are flat.
    model.pySet("unsteered_tokens", [" the", " cat", "\n", " sat", " on"]);
    await flush();
    const after = qa<HTMLDivElement>("div.aw-kl-strip > div");
    expect(after.length).toBe(5);
    expect(after[0]).toBe(bars[0]);
    expect(after[4].classList.contains("aw-missing")).toBe(true);
    expect(after[4].title).toContain("KL —");
  });

  it("draws the EAST curves as SVG when present, hides them otherwise", async () => {
    const { model, el, q } = setup();
    const curves = q<HTMLDivElement>("div.aw-curves");
    expect(curves.hidden).toBe(true);
    expect(el.querySelector("div.aw-curves path.aw-curve-line")).toBeNull();
    model.pySet("mode", "entropy");
    model.pySet("curve_beta", f32([0, 0.5, 1, 1.5]));
    model.pySet("curve_entropy_beta", f32([2, 1.8, 1.2, 0.7]));
    await flush();
    expect(q<HTMLElement>("div.aw-root").dataset.mode).toBe("entropy");
    expect(curves.hidden).toBe(false);
    const beta = q<HTMLDivElement>(".aw-curve-beta");
    const temp = q<HTMLDivElement>(".aw-curve-temperature");
    expect(beta.hidden).toBe(false);
    expect(temp.hidden).toBe(true);
    const svg = beta.querySelector("svg")!;
    expect(svg.namespaceURI).toBe("http://www.w3.org/2000/svg");
    const line = svg.querySelector("path.aw-curve-line")!;
    expect(line.getAttribute("d")).toMatch(/^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+){3}$/);
    const ticks = [...svg.querySelectorAll("text")].map((t) => t.textContent);
    expect(ticks).toEqual(expect.arrayContaining(["0", "1.5", "0.7", "2", "β"]));
    expect(beta.textContent).toContain("action entropy vs steering β");
    model.pySet("curve_temperature", f32([0.5, 1, 2]));
    model.pySet("curve_entropy_temperature", f32([0.5, 1.5, 2.5]));
    await flush();
    expect(temp.hidden).toBe(false);
    expect(temp.querySelector("path.aw-curve-line")).not.toBeNull();
    expect(temp.textContent).toContain("action entropy vs temperature");
    for (const t of ["curve_beta", "curve_entropy_beta", "curve_temperature", "curve_entropy_temperature"] as const) model.pySet(t, EMPTY);
    await flush();
    expect(curves.hidden).toBe(true);
  });

  it("enables cancel only while running, and sends cancel on click", () => {
    const { model, q } = setup();
    const btn = q<HTMLButtonElement>("button.aw-cancel");
    expect(btn.disabled).toBe(true);
    model.pySet("status", "running");
    expect(btn.disabled).toBe(false);
    btn.click();
    expect(model.send).toHaveBeenCalledTimes(1);
    expect(model.send).toHaveBeenCalledWith({ type: "cancel" });
    model.pySet("status", "done");
    expect(btn.disabled).toBe(true);
    btn.dispatchEvent(new MouseEvent("click")); // a click that races the end of the run
    expect(model.send).toHaveBeenCalledTimes(1);
  });

  it("cleanup removes every listener, the DOM and any pending send", async () => {
    vi.useFakeTimers();
    const { model, el, cleanup, q } = setup();
    const sent = recordStrength(model);
    const slider = q<HTMLInputElement>("input.aw-strength");
    const budget = q<HTMLInputElement>("input.aw-budget");
    const btn = q<HTMLButtonElement>("button.aw-cancel");
    slider.value = "1";
    slider.dispatchEvent(new Event("input"));
    slider.value = "1.5";
    slider.dispatchEvent(new Event("input")); // queued for the trailing edge
    expect(sent).toEqual([1]);
    expect(model.onCalls).toBeGreaterThan(15);
    model.pySet("steered_tokens", [" late"]); // a coalesced redraw queued before cleanup
    cleanup();
    vi.advanceTimersByTime(1000);
    expect(sent).toEqual([1]); // the trailing send died with the view
    expect(model.offCalls).toBe(model.onCalls);
    expect(model.listenerCount()).toBe(0);
    expect(el.querySelector(".aw-root")).toBeNull();
    const saves = model.saves;
    slider.value = "-1";
    slider.dispatchEvent(new Event("input"));
    slider.dispatchEvent(new Event("change"));
    budget.value = "0.3";
    budget.dispatchEvent(new Event("change"));
    model.pySet("status", "running");
    btn.disabled = false;
    btn.click();
    vi.advanceTimersByTime(1000);
    vi.useRealTimers();
    await flush();
    expect(model.saves).toBe(saves);
    expect(model.send).not.toHaveBeenCalled();
  });
});
