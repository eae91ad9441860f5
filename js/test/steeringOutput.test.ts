// The steering widget's output: steered vs unsteered continuations as text, the KL
// readout and per-token KL strip, and the EAST curves.
import { afterEach, describe, expect, it } from "vitest";
import { EMPTY, f32, flush } from "./helpers";
import { setup, XSS } from "./steeringSetup";

const texts = (spans: Element[]) => spans.map((s) => s.textContent);

afterEach(() => document.body.replaceChildren());

describe("steering output", () => {
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
    expect(kl.textContent).toBe("KL(unsteered ‖ steered) 0.0123 · budget 0.05 · bound γ_max 1");
    expect(kl.classList.contains("aw-over-budget")).toBe(false);
    model.pySet("gamma_max", 0.42);
    model.pySet("measured_kl", 0.07);
    expect(kl.textContent).toBe("KL(unsteered ‖ steered) 0.07 · budget 0.05 · bound γ_max 0.42");
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
    model.pySet("method", "east");
    model.pySet("curve_beta", f32([0, 0.5, 1, 1.5]));
    model.pySet("curve_entropy_beta", f32([2, 1.8, 1.2, 0.7]));
    await flush();
    expect(q<HTMLElement>("div.aw-root").dataset.method).toBe("east");
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
});
