// The colour bar: the scale's gradient with its limits and the value's name, so a
// colour can be read back as a number without hovering.
import { getLut, isDiverging, LUT_SIZE } from "./colormap";
import { formatNumber } from "./format";
import { createElement } from "./shell";

export interface ColorbarSpec {
  colormap: string;
  vmin: number;
  vmax: number;
  label: string;
  scale?: string;
}

export class Colorbar {
  readonly el: HTMLDivElement;
  readonly canvas: HTMLCanvasElement;
  private label = createElement("span", "aw-colorbar-label");
  private min = createElement("span", "aw-colorbar-min");
  private mid = createElement("span", "aw-colorbar-mid");
  private max = createElement("span", "aw-colorbar-max");

  constructor(parent: HTMLElement) {
    this.el = createElement("div", "aw-colorbar-wrap");
    this.canvas = createElement("canvas", "aw-colorbar");
    this.canvas.width = LUT_SIZE;
    this.canvas.height = 1; // one pixel row, stretched by CSS: the LUT is the gradient
    this.el.append(this.label, this.min, this.canvas, this.max, this.mid);
    parent.append(this.el);
  }

  update(spec: ColorbarSpec): void {
    this.label.textContent = spec.label;
    this.min.textContent = formatNumber(spec.vmin);
    this.max.textContent = formatNumber(spec.vmax);
    // A diverging scale is white at 0, not at the midpoint of vmin..vmax; say so.
    this.mid.textContent = isDiverging(spec.colormap) ? "(white = 0)" : spec.scale === "log" ? "(log scale)" : "";
    this.canvas.title = `${spec.label}: ${formatNumber(spec.vmin)} … ${formatNumber(spec.vmax)} (${spec.colormap})`;
    let ctx: CanvasRenderingContext2D | null = null;
    try {
      ctx = this.canvas.getContext("2d");
    } catch {
      ctx = null;
    }
    if (!ctx) return;
    const lut = getLut(spec.colormap);
    const img = ctx.createImageData(LUT_SIZE, 1);
    for (let i = 0; i < LUT_SIZE; i++) {
      img.data[i * 4] = lut[i * 3];
      img.data[i * 4 + 1] = lut[i * 3 + 1];
      img.data[i * 4 + 2] = lut[i * 3 + 2];
      img.data[i * 4 + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  destroy(): void {
    this.el.remove();
  }
}
