// A token x token matrix drawn large (an attention pattern): rows are query tokens, columns
// key tokens, or bins of consecutive tokens when the matrix is pooled (`bins` holds each
// bin's first token). Cells wide enough get their tokens as labels beside the rows and
// under the columns (spans, textContent: token text is untrusted); hover shows a tooltip,
// a click reports the cell. NaN cells are drawn empty.
import { paintRGBA } from "./colormap";
import { Disposer } from "./dispose";
import { type Theme, DEFAULT_THEME, context2d, readTheme } from "./grid";
import type { Cell } from "./layout";
import { createElement } from "./shell";
import { createTooltip, hideTooltip, showTooltip } from "./tooltip";
import { setTokenText } from "./tokens";

export interface SquareData {
  n: number; // n x n cells
  values: Float32Array; // row-major; NaN = empty
  bins: Int32Array; // first token of each row / column (length n)
  tokens: string[];
  colormap: string;
  vmin: number;
  vmax: number;
}

export interface SquareOptions {
  maxSide: number; // CSS px
  labelMinCell: number; // token labels only when cells are at least this many px
  tooltip: (cell: Cell) => string[];
  onSelect: (cell: Cell) => void;
}

const LABEL_WIDTH = 84;
const LABEL_HEIGHT = 64;

/** Whole pixels per cell when the matrix fits `maxSide` that way, else a fraction (shrunk). */
export function squareCell(n: number, maxSide: number): number {
  if (n <= 0) return 1;
  return n <= maxSide ? Math.max(1, Math.min(28, Math.floor(maxSide / n))) : maxSide / n;
}

export class SquareView {
  readonly el: HTMLDivElement;
  readonly canvas: HTMLCanvasElement;
  readonly rowsEl: HTMLDivElement;
  readonly colsEl: HTMLDivElement;
  readonly tooltip: HTMLDivElement;
  private d = new Disposer();
  private data: SquareData | null = null;
  private off: HTMLCanvasElement | null = null;
  private cell = 1;
  private hover: Cell | null = null;
  private marked = -1; // a highlighted row (the query whose attention is shown elsewhere)
  private theme: Theme = DEFAULT_THEME;

  constructor(
    parent: HTMLElement,
    private opts: SquareOptions,
  ) {
    this.el = createElement("div", "aw-square");
    this.rowsEl = createElement("div", "aw-square-rows");
    this.canvas = createElement("canvas", "aw-pattern");
    this.canvas.setAttribute("role", "img");
    this.colsEl = createElement("div", "aw-square-cols");
    this.el.append(this.rowsEl, this.canvas, createElement("div", "aw-square-corner"), this.colsEl);
    this.tooltip = createTooltip(this.el);
    parent.append(this.el);
    const d = this.d;
    d.add(() => this.el.remove());
    d.listen(this.canvas, "mousemove", (ev) => this.onHover(ev));
    d.listen(this.canvas, "mouseleave", () => {
      hideTooltip(this.tooltip);
      this.hover = null;
      this.draw();
    });
    d.listen(this.canvas, "click", (ev) => {
      const cell = this.cellAt(ev);
      if (cell) this.opts.onSelect(cell);
    });
  }

  setData(data: SquareData): void {
    this.data = data;
    this.theme = readTheme(this.el);
    this.cell = squareCell(data.n, this.opts.maxSide);
    this.off = null;
    if (data.n > 0) {
      const off = document.createElement("canvas");
      off.width = off.height = data.n;
      const ctx = context2d(off);
      if (ctx) {
        const img = ctx.createImageData(data.n, data.n);
        paintRGBA(data.values, data.n * data.n, img.data, data.colormap, data.vmin, data.vmax);
        ctx.putImageData(img, 0, 0);
        this.off = off;
      }
    }
    const side = Math.round(this.cell * data.n);
    const dpr = Math.max(1, globalThis.devicePixelRatio || 1);
    this.canvas.width = Math.round(side * dpr);
    this.canvas.height = Math.round(side * dpr);
    this.canvas.style.width = this.canvas.style.height = `${side}px`;
    this.hover = null;
    hideTooltip(this.tooltip);
    this.labels(data, side);
    this.draw();
  }

  /** Highlight one row (-1: none). */
  markRow(row: number): void {
    this.marked = row;
    this.draw();
  }

  destroy(): void {
    this.d.dispose();
    this.off = null;
    this.data = null;
  }

  private labels(data: SquareData, side: number): void {
    const show = this.cell >= this.opts.labelMinCell;
    this.rowsEl.hidden = this.colsEl.hidden = !show;
    this.el.style.gridTemplateColumns = show ? `${LABEL_WIDTH}px ${side}px` : `0px ${side}px`;
    if (!show) {
      this.rowsEl.replaceChildren();
      this.colsEl.replaceChildren();
      return;
    }
    this.rowsEl.style.height = `${side}px`;
    this.colsEl.style.height = `${LABEL_HEIGHT}px`;
    const span = (i: number, rotated: boolean) => {
      const s = createElement("span", rotated ? "aw-token aw-rot" : "aw-token aw-square-row");
      setTokenText(s, data.tokens[data.bins[i] ?? i]);
      s.dataset.index = String(i);
      if (rotated) Object.assign(s.style, { left: `${i * this.cell}px`, width: `${this.cell}px`, height: `${LABEL_HEIGHT}px` });
      else Object.assign(s.style, { top: `${i * this.cell}px`, height: `${this.cell}px`, lineHeight: `${this.cell}px` });
      return s;
    };
    const indices = Array.from({ length: data.n }, (_, i) => i);
    this.rowsEl.replaceChildren(...indices.map((i) => span(i, false)));
    this.colsEl.replaceChildren(...indices.map((i) => span(i, true)));
  }

  draw(): void {
    const data = this.data;
    const ctx = context2d(this.canvas);
    if (!data || !ctx) return;
    const side = this.cell * data.n;
    const dpr = this.canvas.width / Math.max(1, Math.round(side));
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, side, side);
    if (this.off) {
      ctx.imageSmoothingEnabled = this.cell < 1; // enlarged cells stay sharp; a shrunk matrix is averaged
      ctx.drawImage(this.off, 0, 0, side, side);
    }
    const outline = (cell: Cell | null, color: string, width: number, wholeRow: boolean) => {
      if (!cell) return;
      ctx.strokeStyle = color;
      ctx.lineWidth = width;
      const w = wholeRow ? side : Math.max(1, this.cell);
      ctx.strokeRect((wholeRow ? 0 : cell.col * this.cell) + width / 2, cell.row * this.cell + width / 2, w - width, Math.max(1, this.cell) - width);
    };
    if (this.marked >= 0 && this.marked < data.n) outline({ row: this.marked, col: 0 }, this.theme.accent, 1, true);
    outline(this.hover, this.theme.fg, 1, false);
  }

  private cellAt(ev: MouseEvent): Cell | null {
    const data = this.data;
    if (!data) return null;
    const rect = this.canvas.getBoundingClientRect();
    const row = Math.floor((ev.clientY - rect.top) / this.cell);
    const col = Math.floor((ev.clientX - rect.left) / this.cell);
    return row >= 0 && col >= 0 && row < data.n && col < data.n ? { row, col } : null;
  }

  private onHover(ev: MouseEvent): void {
    const cell = this.cellAt(ev);
    if (!cell) {
      hideTooltip(this.tooltip);
      return;
    }
    if (!this.hover || this.hover.row !== cell.row || this.hover.col !== cell.col) {
      this.hover = cell;
      this.draw();
    }
    showTooltip(this.tooltip, this.el, ev, this.opts.tooltip(cell));
  }
}
