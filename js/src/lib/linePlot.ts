// A small inline-SVG line plot (EAST's action entropy against β or temperature):
// one polyline, axes, and min/max tick labels. Built with createElementNS and
// textContent only; a few dozen points, so it is simply redrawn on every update.
import { formatNumber } from "./format";
import { createElement } from "./shell";

const SVG_NS = "http://www.w3.org/2000/svg";
const W = 240;
const H = 140;
const M = { left: 40, right: 10, top: 8, bottom: 30 }; // room for tick and axis labels

function svgEl<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function text(x: number, y: number, s: string, anchor: "start" | "middle" | "end", className: string): SVGTextElement {
  const t = svgEl("text", { x, y, "text-anchor": anchor, class: className });
  t.textContent = s;
  return t;
}

/** [lo, hi] of the finite values, widened when flat so the line sits mid-plot. */
function extent(a: Float32Array, n: number): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    if (Number.isFinite(a[i])) {
      lo = Math.min(lo, a[i]);
      hi = Math.max(hi, a[i]);
    }
  }
  if (lo > hi) return [0, 1];
  if (lo === hi) return [lo - 0.5, hi + 0.5];
  return [lo, hi];
}

export interface LinePlotLabels {
  title: string;
  x: string;
  y: string;
}

export class LinePlot {
  readonly el: HTMLDivElement;
  private readonly svg: SVGSVGElement;

  constructor(className: string, private readonly labels: LinePlotLabels) {
    this.el = createElement("div", `aw-curve ${className}`);
    const title = createElement("div", "aw-panel-title");
    title.textContent = labels.title;
    this.svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
    this.svg.setAttribute("aria-label", labels.title);
    this.el.append(title, this.svg);
  }

  /** Draw y against x (the shorter length wins); hidden when there is nothing to draw. */
  update(xs: Float32Array, ys: Float32Array): void {
    const n = Math.min(xs.length, ys.length);
    this.el.hidden = n === 0;
    if (n === 0) {
      this.svg.replaceChildren();
      return;
    }
    const [x0, x1] = extent(xs, n);
    const [y0, y1] = extent(ys, n);
    const px = (x: number) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
    const py = (y: number) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);
    let d = "";
    let pen = false; // a NaN point breaks the line instead of joining across it
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(xs[i]) || !Number.isFinite(ys[i])) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${px(xs[i]).toFixed(1)},${py(ys[i]).toFixed(1)}`;
      pen = true;
    }
    const bottom = H - M.bottom;
    const right = W - M.right;
    this.svg.replaceChildren(
      svgEl("path", { d: `M${M.left},${M.top}V${bottom}H${right}`, class: "aw-axis", fill: "none" }),
      svgEl("path", { d, class: "aw-curve-line", fill: "none" }),
      text(M.left, bottom + 12, formatNumber(x0), "start", "aw-tick"),
      text(right, bottom + 12, formatNumber(x1), "end", "aw-tick"),
      text(M.left - 4, bottom, formatNumber(y0), "end", "aw-tick"),
      text(M.left - 4, M.top + 8, formatNumber(y1), "end", "aw-tick"),
      text((M.left + right) / 2, H - 4, this.labels.x, "middle", "aw-axis-label"),
      text(10, (M.top + bottom) / 2, this.labels.y, "middle", "aw-axis-label"),
    );
    // The y label reads bottom-to-top beside the axis.
    const yLabel = this.svg.lastElementChild!;
    yLabel.setAttribute("transform", `rotate(-90 10 ${(M.top + bottom) / 2})`);
  }
}
