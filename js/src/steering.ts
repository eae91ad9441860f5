// Steering widget: the same prompt continued with and without a steering vector,
// side by side, with what the steering cost: KL(unsteered ‖ steered) per token and
// on average against a budget, and where on the strength slider the budget is met
// (the closed-form bound γ_max and the measured, calibrated strength). In EAST
// (method "east") it also plots action entropy against β and against temperature. With
// operation "ablate" the slider is the fraction of the direction removed, 0 to 1.
// Python generates; continuations stream in token by token, so the panels append.
import { createCancelButton } from "./lib/cancel";
import { coalesce } from "./lib/dispose";
import { asNumber, formatNumber } from "./lib/format";
import { KlStrip } from "./lib/klStrip";
import { LinePlot } from "./lib/linePlot";
import { bindPositiveNumber } from "./lib/numberInput";
import { createElement, createShell, labelled } from "./lib/shell";
import { StrengthSlider } from "./lib/strength";
import { toFloat32 } from "./lib/tensor";
import { TokenStream } from "./lib/tokenStream";
import type { AnyModel, AnyWidget, RenderProps, SteeringModel } from "./lib/types";

/** `KL(unsteered ‖ steered) 0.0123 · budget 0.05 · bound γ_max 0.42`, leaving out what is NaN/null.
 * KL is not symmetric: the readout names its direction, as the PNG does. */
function klText(model: AnyModel<SteeringModel>): string {
  const parts: string[] = [];
  const kl = asNumber(model.get("measured_kl"));
  const budget = asNumber(model.get("kl_budget"));
  const gamma = asNumber(model.get("gamma_max"));
  if (Number.isFinite(kl)) parts.push(`KL(unsteered ‖ steered) ${formatNumber(kl)}`);
  if (Number.isFinite(budget)) parts.push(`budget ${formatNumber(budget)}`);
  if (Number.isFinite(gamma)) parts.push(`bound γ_max ${formatNumber(gamma)}`);
  return parts.join(" · ");
}

function panel(streamClass: string): { el: HTMLDivElement; title: HTMLDivElement; stream: TokenStream } {
  const stream = new TokenStream("aw-tok-text");
  const el = createElement("div", `aw-panel aw-gen ${streamClass}`);
  const title = createElement("div", "aw-panel-title");
  el.append(title, stream.el);
  return { el, title, stream };
}

function render({ model, el }: RenderProps<SteeringModel>): () => void {
  const shell = createShell(model, el, "steering", {
    figure: {
      traits: ["unsteered_tokens", "steered_tokens"],
      present: () => (model.get("unsteered_tokens") ?? []).length + (model.get("steered_tokens") ?? []).length > 0,
    },
  });
  const d = shell.disposer;

  // --- controls: strength slider with its markers, the KL budget, cancel
  const slider = new StrengthSlider(d, {
    get: () => asNumber(model.get("strength")),
    set: (v) => {
      model.set("strength", v);
      model.save_changes();
    },
    markers: [
      { className: "aw-gamma-marker", title: "γ_max (closed form)" },
      { className: "aw-calibrated-marker", title: "calibrated (measured KL = budget)" },
    ],
  });
  const budget = createElement("input", "aw-budget");
  budget.type = "number";
  budget.step = "any";
  budget.min = "0";
  budget.title = "KL budget (nats): the mean KL the steering may cost";
  bindPositiveNumber(model, d, budget, "kl_budget");
  const cancel = createCancelButton(model, d, "Stop generating after the current step");
  shell.controls.append(labelled("strength", slider.el), labelled("KL budget", budget), cancel);

  // --- KL readout, the two continuations, the per-token KL strip, the EAST curves
  const kl = createElement("span", "aw-kl");
  const note = createElement("div", "aw-calibration-note");
  const unsteered = panel("aw-unsteered");
  const steered = panel("aw-steered");
  unsteered.title.textContent = "unsteered";
  const panels = createElement("div", "aw-grids aw-gens");
  panels.append(unsteered.el, steered.el);
  let lit: HTMLSpanElement | undefined; // the unsteered token whose KL bar is hovered
  const strip = new KlStrip(d, (i) => {
    lit?.classList.remove("aw-hl");
    lit = i === null ? undefined : unsteered.stream.span(i);
    lit?.classList.add("aw-hl");
  });
  const stripLabel = createElement("div", "aw-kl-strip-label");
  stripLabel.textContent = "KL(unsteered ‖ steered) at each unsteered token, teacher-forced (bar height; hover for the numbers)";
  unsteered.el.append(stripLabel, strip.el); // under the text it scores
  const curves = createElement("div", "aw-curves");
  const betaPlot = new LinePlot("aw-curve-beta", { title: "action entropy vs steering β", x: "β", y: "entropy" });
  const tempPlot = new LinePlot("aw-curve-temperature", { title: "action entropy vs temperature", x: "temperature", y: "entropy" });
  curves.append(betaPlot.el, tempPlot.el);
  shell.body.append(kl, note, panels, curves);

  const syncRange = () => {
    slider.setRange({
      min: asNumber(model.get("strength_min")),
      max: asNumber(model.get("strength_max")),
      step: asNumber(model.get("strength_step")),
    });
    syncStrength();
    slider.setMarker(0, asNumber(model.get("gamma_max")));
    slider.setMarker(1, asNumber(model.get("calibrated")));
  };
  const syncStrength = () => {
    const s = asNumber(model.get("strength"));
    slider.setValue(s);
    steered.title.textContent =
      model.get("operation") === "ablate"
        ? `ablated (${Math.round(s * 100)}% of the direction removed)`
        : `steered (strength ${slider.format(s)})`;
  };
  const syncKl = () => {
    kl.textContent = klText(model);
    kl.hidden = kl.textContent === "";
    const measured = asNumber(model.get("measured_kl"));
    const limit = asNumber(model.get("kl_budget"));
    kl.classList.toggle("aw-over-budget", measured > limit); // false whenever either is NaN
    kl.title = kl.classList.contains("aw-over-budget") ? "measured KL is over the budget" : "";
  };
  const syncNote = () => {
    note.textContent = String(model.get("calibration_note") ?? "");
    note.hidden = note.textContent === "";
  };
  const syncMode = () => {
    shell.root.dataset.method = String(model.get("method") ?? "");
    shell.root.dataset.operation = String(model.get("operation") ?? "");
    syncStrength();
  };

  const drawTokens = () => {
    const a = unsteered.stream.update(model.get("unsteered_tokens") ?? []);
    const b = steered.stream.update(model.get("steered_tokens") ?? []);
    // Only indices at or after the first change can have changed diff status.
    for (let i = Math.min(a, b); i < steered.stream.length; i++) {
      const other = unsteered.stream.text(i);
      // Compared only where both exist: an index the unsteered run has not reached yet is not a difference.
      steered.stream.span(i)!.classList.toggle("aw-diff", other !== undefined && other !== steered.stream.text(i));
    }
    strip.update({
      tokens: model.get("unsteered_tokens") ?? [],
      kl: toFloat32(model.get("kl_per_token")),
      entropyUnsteered: toFloat32(model.get("entropy_unsteered")),
      entropySteered: toFloat32(model.get("entropy_steered")),
    });
  };
  const drawCurves = () => {
    betaPlot.update(toFloat32(model.get("curve_beta")), toFloat32(model.get("curve_entropy_beta")));
    tempPlot.update(toFloat32(model.get("curve_temperature")), toFloat32(model.get("curve_entropy_temperature")));
    curves.hidden = betaPlot.el.hidden && tempPlot.el.hidden;
  };
  // Tokens, entropies and KL arrive together inside hold_sync() but as separate
  // change events: redraw once per message. `alive`: a redraw queued just before
  // cleanup must not run after it.
  let alive = true;
  d.add(() => {
    alive = false;
  });
  const syncTokens = coalesce(() => alive && drawTokens());
  const syncCurves = coalesce(() => alive && drawCurves());

  for (const t of ["strength_min", "strength_max", "strength_step", "gamma_max", "calibrated"]) d.onModel(model, `change:${t}`, syncRange);
  d.onModel(model, "change:strength", syncStrength);
  for (const t of ["measured_kl", "kl_budget", "gamma_max"]) d.onModel(model, `change:${t}`, syncKl);
  for (const t of ["method", "operation"]) d.onModel(model, `change:${t}`, syncMode);
  d.onModel(model, "change:calibration_note", syncNote);
  for (const t of ["unsteered_tokens", "steered_tokens", "kl_per_token", "entropy_unsteered", "entropy_steered"])
    d.onModel(model, `change:${t}`, syncTokens);
  for (const t of ["curve_beta", "curve_entropy_beta", "curve_temperature", "curve_entropy_temperature"]) d.onModel(model, `change:${t}`, syncCurves);

  syncRange();
  syncKl();
  syncNote();
  syncMode();
  drawTokens(); // synchronous: the view is complete when render returns
  drawCurves();

  return () => d.dispose();
}

// `satisfies`: tsc checks the export against anywidget's own widget type, which loads it.
export default { render } satisfies AnyWidget<SteeringModel>;
