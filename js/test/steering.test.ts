// The steering widget's DOM and controls: strength slider (throttled sends, markers,
// calibration note), KL budget box, cancel button, and cleanup.
import { afterEach, describe, expect, it, vi } from "vitest";
import { STRENGTH_THROTTLE_MS, stepDecimals } from "../src/lib/strength";
import { throttle } from "../src/lib/throttle";
import { expectCancelButton, flush } from "./helpers";
import { setup } from "./steeringSetup";

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
    expect(root.dataset.method).toBe("asc");
    expect(root.dataset.operation).toBe("add");
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
      "div.aw-kl-strip-label",
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

  it("says 'ablated' and marks the root when the operation is an ablation", () => {
    const { model, q } = setup({ operation: "ablate", strength: 1, strength_min: 0, strength_max: 1 });
    expect(q<HTMLElement>("div.aw-root").dataset.operation).toBe("ablate");
    expect(q(".aw-steered .aw-panel-title").textContent).toBe("ablated (100% of the direction removed)");
    model.pySet("operation", "add");
    expect(q(".aw-steered .aw-panel-title").textContent).toBe("steered (strength +1.00)");
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
      expect(box.title).toBe(`KL budget (nats): the mean KL the steering may cost: a number above 0, not “${bad}”`);
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
    expect(box.title).toBe("KL budget (nats): the mean KL the steering may cost");
    box.dispatchEvent(new Event("change")); // same value: no re-run
    expect(model.saves).toBe(1);
    model.pySet("kl_budget", 0.2);
    expect(box.value).toBe("0.2");
  });

  it("has a cancel button: enabled while it runs, it asks Python to stop", () => {
    const { model, el } = setup();
    expectCancelButton(model, el);
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
