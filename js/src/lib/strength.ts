// The steering-strength slider: a range input two-way bound to a float trait, its
// value beside it, and markers on the track at symmetric strengths (±γ_max, ±the
// calibrated strength) so the user sees where the KL budget is met while dragging.
// Dragging sends throttled values: each send re-runs generation in Python, so one per
// frame would queue dozens of runs, but the last value must always get through.
import type { Disposer } from "./dispose";
import { formatSigned } from "./format";
import { createElement } from "./shell";
import { throttle } from "./throttle";

export const STRENGTH_THROTTLE_MS = 100;

/** Decimals a step implies (0.05 -> 2, 0.025 -> 3, 1 -> 0), so "+0.30" lines up while dragging. */
export function stepDecimals(step: number): number {
  if (!Number.isFinite(step) || step <= 0) return 2;
  const s = String(Number(step.toPrecision(6)));
  const exp = s.match(/e-(\d+)$/);
  if (exp) return Math.min(6, Number(exp[1]));
  return Math.min(6, s.split(".")[1]?.length ?? 0);
}

export interface MarkerSpec {
  className: string;
  title: string;
}

export interface StrengthRange {
  min: number;
  max: number;
  step: number;
}

export interface StrengthSliderOptions {
  /** The strength the model holds now. */
  get(): number;
  /** Write a new strength to the model and save (only called for a real change). */
  set(value: number): void;
  markers: MarkerSpec[];
}

export class StrengthSlider {
  readonly el: HTMLDivElement;
  readonly input: HTMLInputElement;
  private readonly valueText: HTMLSpanElement;
  private readonly track: HTMLDivElement;
  /** Per marker spec: its [+, -] pair. */
  private readonly markerPairs: Array<[HTMLDivElement, HTMLDivElement]>;
  private range: StrengthRange = { min: -1, max: 1, step: 0.01 };

  constructor(d: Disposer, opts: StrengthSliderOptions) {
    this.el = createElement("div", "aw-strength-group");
    this.track = createElement("div", "aw-strength-track");
    this.input = createElement("input", "aw-strength");
    this.input.type = "range";
    this.input.setAttribute("aria-label", "steering strength");
    // The markers let the pointer through to the slider, so the slider names them.
    this.input.title = "strength; marks: " + opts.markers.map((m) => m.title).join(", ");
    this.valueText = createElement("span", "aw-strength-value");
    this.markerPairs = opts.markers.map((m) => {
      const pair = ["+", "−"].map((sign) => {
        const marker = createElement("div", m.className);
        marker.title = m.title;
        marker.dataset.sign = sign;
        marker.hidden = true;
        return marker;
      }) as [HTMLDivElement, HTMLDivElement];
      this.track.append(...pair);
      return pair;
    });
    this.track.prepend(this.input); // markers after it, so they paint above the track
    this.el.append(this.track, this.valueText);

    const send = throttle((v: number) => {
      if (v !== opts.get()) opts.set(v);
    }, STRENGTH_THROTTLE_MS);
    d.add(() => send.cancel());
    d.listen(this.input, "input", () => {
      const v = Number(this.input.value);
      this.showValue(v); // the readout follows the thumb at once, only the send waits
      send(v);
    });
    d.listen(this.input, "change", () => {
      send(Number(this.input.value));
      send.flush(); // released: send the final value now
    });
  }

  /** Apply the trait range; the value is re-applied after, since min/max clamp it. */
  setRange(r: StrengthRange): void {
    const min = Number.isFinite(r.min) ? r.min : -1;
    const max = Number.isFinite(r.max) && r.max > min ? r.max : min + 1;
    this.range = { min, max, step: r.step };
    this.input.min = String(min);
    this.input.max = String(max);
    this.input.step = Number.isFinite(r.step) && r.step > 0 ? String(r.step) : "any";
  }

  /** Show the model's strength (the thumb clamps to the range; the readout does not). */
  setValue(v: number): void {
    if (Number.isFinite(v) && Number(this.input.value) !== v) this.input.value = String(v);
    this.showValue(v);
  }

  /** Place marker pair `i` at ±|v|; a side is hidden when v is NaN/null or off the track. */
  setMarker(i: number, v: number): void {
    const { min, max } = this.range;
    const at = Math.abs(v);
    this.markerPairs[i].forEach((marker, side) => {
      const x = side === 0 ? at : -at;
      const show = Number.isFinite(x) && x >= min && x <= max;
      marker.hidden = !show;
      if (!show) return;
      const f = (x - min) / (max - min);
      // A CSS variable rather than `left`: the stylesheet maps it onto the part of the
      // track the thumb's centre can reach (the thumb is inset by half its width).
      marker.style.setProperty("--aw-at", f.toFixed(4));
      marker.dataset.value = String(x); // the title stays the wire's fixed name
    });
  }

  format(v: number): string {
    return formatSigned(v, stepDecimals(this.range.step));
  }

  private showValue(v: number): void {
    this.valueText.textContent = this.format(v);
  }
}
