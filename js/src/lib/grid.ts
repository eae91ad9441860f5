// The virtualised canvas heatmap both grid widgets draw with.
// All cells are coloured once into an offscreen image at one pixel per cell; each
// frame then scales just the visible slice of it onto a viewport-sized canvas with
// smoothing off. A scroll or hover therefore costs one drawImage, not rows*cols
// fillRects, which keeps 30 x 4096 cells smooth. Only visible token labels exist
// in the DOM for the same reason.
import { getLut, paintRGBA, rgba, type Scale } from "./colormap";
import { Disposer } from "./dispose";
import {
  type Cell,
  type GridLayout,
  cellAt,
  cellLeft,
  fitCellWidth,
  labelWidthFor,
  rowHeightFor,
  scrollAfterZoom,
  tokenStride,
  visibleRange,
  zoomedWidth,
} from "./layout";
import { createElement } from "./shell";
import { setTokenText } from "./tokens";

export interface GridData {
  rows: number;
  cols: number;
  values: Float32Array; // row-major, NaN = empty
  vmin: number;
  vmax: number;
  colormap: string;
  scale: Scale;
  tokens: string[];
  rowLabels: string[];
}

/** Extra drawing inside one visible cell (the lens writes its top token here). */
export type CellPainter = (
  ctx: CanvasRenderingContext2D,
  cell: Cell,
  box: { x: number; y: number; w: number; h: number },
  fill: [number, number, number, number],
) => void;

export interface GridOptions {
  /** Default width when fitting the container: the fitted width never exceeds it. */
  fitCellWidth: number;
  /** Zoom-in limit. */
  maxCellWidth: number;
  cellHeight: number;
  tooltip: (cell: Cell) => string[];
  onSelect: (cell: Cell) => void;
  paintCell?: CellPainter;
  /** paintCell runs only when cells are at least this wide. */
  paintCellMinWidth?: number;
}

interface Theme {
  fg: string;
  dim: string;
  bg: string;
  accent: string;
  font: string;
}

const DEFAULT_THEME: Theme = { fg: "#222", dim: "#666", bg: "#fff", accent: "#1976d2", font: "monospace" };
const ROTATE_BELOW_PX = 40; // narrower columns get vertical token labels

function readTheme(node: Element): Theme {
  // Custom properties come back with var() already resolved, so the canvas matches the CSS theme.
  let cs: CSSStyleDeclaration | null = null;
  try {
    cs = getComputedStyle(node);
  } catch {
    return DEFAULT_THEME;
  }
  const get = (name: string, fallback: string) => cs?.getPropertyValue(name).trim() || fallback;
  return {
    fg: get("--aw-fg", DEFAULT_THEME.fg),
    dim: get("--aw-fg-dim", DEFAULT_THEME.dim),
    bg: get("--aw-bg", DEFAULT_THEME.bg),
    accent: get("--aw-accent", DEFAULT_THEME.accent),
    font: get("--aw-mono", DEFAULT_THEME.font),
  };
}

function context2d(canvas: HTMLCanvasElement): CanvasRenderingContext2D | null {
  // Null where there is no canvas (jsdom, or a browser out of canvas memory): skip drawing, keep working.
  try {
    return canvas.getContext("2d");
  } catch {
    return null;
  }
}

/** Colour every cell into a cols x rows canvas, one pixel per cell. */
export function paintOffscreen(data: GridData): HTMLCanvasElement | null {
  if (data.rows <= 0 || data.cols <= 0) return null;
  const off = document.createElement("canvas");
  off.width = data.cols;
  off.height = data.rows;
  const ctx = context2d(off);
  if (!ctx) return null;
  const img = ctx.createImageData(data.cols, data.rows);
  paintRGBA(data.values, data.rows * data.cols, img.data, data.colormap, data.vmin, data.vmax, data.scale);
  ctx.putImageData(img, 0, 0);
  return off;
}

export interface WindowExtras {
  theme?: Theme;
  selected?: Cell | null;
  hover?: Cell | null;
  paintCell?: CellPainter;
  paintCellMinWidth?: number;
  dpr?: number;
}

/** Draw the visible window of the grid (cells, separators, overlays, row labels) onto ctx. */
export function drawWindow(
  ctx: CanvasRenderingContext2D,
  off: CanvasImageSource | null,
  l: GridLayout,
  data: GridData,
  x: WindowExtras = {},
): void {
  const theme = x.theme ?? DEFAULT_THEME;
  const dpr = x.dpr ?? 1;
  const height = l.rows * l.cellHeight;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, l.viewWidth, height);
  const { first, last } = visibleRange(l);
  const cw = l.cellWidth;
  const ch = l.cellHeight;
  if (off && last > first) {
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, first, 0, last - first, l.rows, cellLeft(l, first), 0, (last - first) * cw, height);
  }
  if (cw >= 16) {
    // Hairline gaps between wide columns so neighbouring equal colours still read as separate cells.
    ctx.fillStyle = theme.bg;
    ctx.globalAlpha = 0.5;
    for (let c = first + 1; c < last; c++) ctx.fillRect(cellLeft(l, c), 0, 1, height);
    ctx.globalAlpha = 1;
  }
  if (x.paintCell && cw >= (x.paintCellMinWidth ?? 28)) {
    for (let r = 0; r < l.rows; r++) {
      for (let c = first; c < last; c++) {
        const fill = rgba(data.colormap, data.vmin, data.vmax, data.values[r * data.cols + c] ?? NaN, data.scale);
        x.paintCell(ctx, { row: r, col: c }, { x: cellLeft(l, c), y: r * ch, w: cw, h: ch }, fill);
      }
    }
  }
  const outline = (cell: Cell | null | undefined, color: string, width: number) => {
    if (!cell || cell.col < first || cell.col >= last || cell.row >= l.rows) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.strokeRect(cellLeft(l, cell.col) + width / 2, cell.row * ch + width / 2, Math.max(1, cw - width), ch - width);
  };
  outline(x.hover, theme.fg, 1);
  outline(x.selected, theme.accent, 2);

  // Row labels last, so a half-scrolled first column never shows under them.
  ctx.fillStyle = theme.bg;
  ctx.fillRect(0, 0, l.labelWidth, height);
  ctx.fillStyle = theme.dim;
  ctx.font = `${Math.max(8, Math.min(11, ch - 2))}px ${theme.font}`;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const stride = Math.max(1, Math.ceil(10 / ch));
  for (let r = 0; r < l.rows; r += stride) ctx.fillText(String(data.rowLabels[r] ?? r), l.labelWidth - 4, r * ch + ch / 2);
}

/**
 * One full draw, for benchmarks: colour all cells offscreen, then draw the window.
 * Returns the milliseconds it took.
 */
export function drawGrid(
  canvas: HTMLCanvasElement,
  data: GridData,
  view: Partial<Pick<GridLayout, "cellWidth" | "cellHeight" | "scrollLeft" | "viewWidth">> = {},
): number {
  const t0 = performance.now();
  getLut(data.colormap);
  const l: GridLayout = {
    rows: data.rows,
    cols: data.cols,
    cellWidth: view.cellWidth ?? 4,
    cellHeight: view.cellHeight ?? 16,
    labelWidth: labelWidthFor(data.rowLabels),
    scrollLeft: view.scrollLeft ?? 0,
    viewWidth: view.viewWidth ?? 1000,
  };
  canvas.width = l.viewWidth;
  canvas.height = l.rows * l.cellHeight;
  const off = paintOffscreen(data);
  const ctx = context2d(canvas);
  if (ctx) drawWindow(ctx, off, l, data);
  return performance.now() - t0;
}

/** The interactive grid: scroll container, canvas, token labels, tooltip and zoom buttons. */
export class Grid {
  readonly el: HTMLDivElement;
  readonly canvas: HTMLCanvasElement;
  readonly scroll: HTMLDivElement;
  readonly tokensEl: HTMLDivElement;
  readonly tooltip: HTMLDivElement;
  private content: HTMLDivElement;
  private zoomLabel: HTMLSpanElement;
  private d = new Disposer();
  private data: GridData | null = null;
  private off: HTMLCanvasElement | null = null;
  private cellWidth: number;
  private cellHeight: number;
  private userZoomed = false;
  private selected: Cell | null = null;
  private hover: Cell | null = null;
  private theme: Theme = DEFAULT_THEME;
  private frame = 0;

  constructor(
    parent: HTMLElement,
    private opts: GridOptions,
  ) {
    this.cellWidth = opts.fitCellWidth;
    this.cellHeight = opts.cellHeight;
    this.el = createElement("div", "aw-grid-wrap");
    const zoom = createElement("div", "aw-zoom");
    const out = createElement("button", "aw-zoom-out");
    out.type = "button";
    out.textContent = "−";
    out.title = "Narrower cells";
    const inn = createElement("button", "aw-zoom-in");
    inn.type = "button";
    inn.textContent = "+";
    inn.title = "Wider cells";
    const fit = createElement("button", "aw-zoom-fit");
    fit.type = "button";
    fit.textContent = "fit";
    fit.title = "Fit cells to the width";
    this.zoomLabel = createElement("span", "aw-zoom-label");
    zoom.append(out, inn, fit, this.zoomLabel);

    this.scroll = createElement("div", "aw-scroll");
    this.content = createElement("div", "aw-content");
    this.canvas = createElement("canvas", "aw-grid");
    this.canvas.tabIndex = 0; // arrow keys move the selection
    this.canvas.setAttribute("role", "img");
    this.tokensEl = createElement("div", "aw-tokens");
    this.content.append(this.canvas, this.tokensEl);
    this.scroll.append(this.content);
    this.tooltip = createElement("div", "aw-tooltip");
    this.tooltip.hidden = true;
    this.el.append(zoom, this.scroll, this.tooltip);
    parent.append(this.el);

    const d = this.d;
    d.add(() => this.el.remove());
    d.add(() => this.cancelFrame());
    d.listen(out, "click", () => this.zoom(-1));
    d.listen(inn, "click", () => this.zoom(1));
    d.listen(fit, "click", () => {
      this.userZoomed = false;
      this.relayout();
    });
    d.listen(this.scroll, "scroll", () => this.schedule(), { passive: true });
    d.listen(this.canvas, "mousemove", (ev) => this.onHover(ev));
    d.listen(this.canvas, "mouseleave", () => this.clearHover());
    d.listen(this.canvas, "click", (ev) => {
      const cell = this.cellAtEvent(ev);
      if (cell) this.opts.onSelect(cell);
    });
    d.listen(this.canvas, "keydown", (ev) => this.onKey(ev));
    if (typeof ResizeObserver !== "undefined") {
      let lastWidth = -1;
      const ro = new ResizeObserver(() => {
        const w = this.scroll.clientWidth;
        if (w !== lastWidth) {
          lastWidth = w;
          this.relayout();
        }
      });
      ro.observe(this.scroll);
      d.add(() => ro.disconnect());
    }
  }

  /** Current geometry, as the pure helpers see it. */
  layout(): GridLayout {
    const data = this.data;
    const rows = data?.rows ?? 0;
    const cols = data?.cols ?? 0;
    const labelWidth = labelWidthFor(data?.rowLabels ?? []);
    const contentWidth = labelWidth + cols * this.cellWidth;
    return {
      rows,
      cols,
      cellWidth: this.cellWidth,
      cellHeight: this.cellHeight,
      labelWidth,
      scrollLeft: this.scroll.scrollLeft || 0,
      viewWidth: Math.max(labelWidth, Math.min(this.viewportWidth(), contentWidth)),
    };
  }

  setData(data: GridData): void {
    this.data = data;
    this.off = paintOffscreen(data);
    if (this.selected && (this.selected.row >= data.rows || this.selected.col >= data.cols)) this.selected = null;
    this.hover = null;
    this.tooltip.hidden = true;
    this.relayout();
  }

  setSelected(cell: Cell | null): void {
    this.selected = cell;
    this.draw();
  }

  get cellWidthPx(): number {
    return this.cellWidth;
  }

  destroy(): void {
    this.d.dispose();
    this.off = null;
    this.data = null;
  }

  private viewportWidth(): number {
    // Before the view is attached clientWidth is 0; draw at a plausible width and let ResizeObserver correct it.
    return this.scroll.clientWidth || 800;
  }

  private relayout(): void {
    const data = this.data;
    this.theme = readTheme(this.el);
    if (data) {
      this.cellHeight = rowHeightFor(data.rows, this.opts.cellHeight);
      if (!this.userZoomed) {
        const gutter = labelWidthFor(data.rowLabels);
        this.cellWidth = fitCellWidth(this.viewportWidth() - gutter - 2, data.cols, this.opts.fitCellWidth);
      }
    }
    const l = this.layout();
    this.content.style.width = `${l.labelWidth + l.cols * l.cellWidth}px`;
    const dpr = Math.max(1, globalThis.devicePixelRatio || 1);
    const h = l.rows * l.cellHeight;
    this.canvas.width = Math.round(l.viewWidth * dpr);
    this.canvas.height = Math.round(h * dpr);
    this.canvas.style.width = `${l.viewWidth}px`;
    this.canvas.style.height = `${h}px`;
    this.zoomLabel.textContent = `${this.cellWidth} px/token`;
    this.draw();
  }

  private zoom(direction: 1 | -1): void {
    if (!this.data) return;
    const before = this.layout();
    const next = zoomedWidth(this.cellWidth, direction, this.opts.maxCellWidth);
    if (next === this.cellWidth) return;
    const anchor = (before.viewWidth - before.labelWidth) / 2; // keep the centre column centred
    this.userZoomed = true;
    this.cellWidth = next;
    this.relayout();
    this.scroll.scrollLeft = scrollAfterZoom(before.scrollLeft, anchor, before.cellWidth, next);
    this.draw();
  }

  private schedule(): void {
    if (this.frame) return;
    const raf = globalThis.requestAnimationFrame ?? ((cb: FrameRequestCallback) => setTimeout(() => cb(0), 16) as unknown as number);
    this.frame = raf(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private cancelFrame(): void {
    if (!this.frame) return;
    (globalThis.cancelAnimationFrame ?? clearTimeout)(this.frame);
    this.frame = 0;
  }

  /** Redraw the visible window and its token labels. */
  draw(): void {
    const data = this.data;
    if (!data) return;
    const l = this.layout();
    const ctx = context2d(this.canvas);
    if (ctx) {
      drawWindow(ctx, this.off, l, data, {
        theme: this.theme,
        selected: this.selected,
        hover: this.hover,
        paintCell: this.opts.paintCell,
        paintCellMinWidth: this.opts.paintCellMinWidth,
        dpr: this.canvas.width / Math.max(1, l.viewWidth),
      });
    }
    this.drawTokens(l, data);
  }

  private drawTokens(l: GridLayout, data: GridData): void {
    const { first, last } = visibleRange(l);
    const rotate = l.cellWidth < ROTATE_BELOW_PX;
    const stride = tokenStride(l.cellWidth);
    const spanWidth = Math.max(l.cellWidth, rotate ? 14 : 0);
    this.tokensEl.style.width = `${l.viewWidth}px`;
    this.tokensEl.style.height = rotate ? "72px" : "18px";
    const spans: HTMLSpanElement[] = [];
    // Align the stride to absolute columns so labels do not jump around while scrolling.
    for (let c = Math.ceil(first / stride) * stride; c < last; c += stride) {
      const x = cellLeft(l, c) + (l.cellWidth - spanWidth) / 2;
      if (x + spanWidth <= l.labelWidth) continue; // hidden under the gutter
      const span = createElement("span", rotate ? "aw-token aw-rot" : "aw-token");
      setTokenText(span, data.tokens[c]);
      span.dataset.col = String(c);
      span.style.left = `${x}px`;
      span.style.width = `${spanWidth}px`;
      if (rotate) span.style.height = "72px";
      if (this.selected?.col === c) span.classList.add("aw-sel");
      spans.push(span);
    }
    this.tokensEl.replaceChildren(...spans);
  }

  private cellAtEvent(ev: MouseEvent): Cell | null {
    const rect = this.canvas.getBoundingClientRect();
    return cellAt(this.layout(), ev.clientX - rect.left, ev.clientY - rect.top);
  }

  private onHover(ev: MouseEvent): void {
    const cell = this.cellAtEvent(ev);
    if (!cell) return this.clearHover();
    if (!this.hover || this.hover.row !== cell.row || this.hover.col !== cell.col) {
      this.hover = cell;
      const lines = this.opts.tooltip(cell);
      this.tooltip.replaceChildren(
        ...lines.map((line, i) => {
          const div = createElement("div", i === 0 ? "aw-tip-head" : "aw-tip-line");
          div.textContent = line;
          return div;
        }),
      );
      this.draw();
    }
    this.tooltip.hidden = false;
    const wrap = this.el.getBoundingClientRect();
    const x = ev.clientX - wrap.left;
    const y = ev.clientY - wrap.top;
    const w = this.tooltip.offsetWidth;
    const h = this.tooltip.offsetHeight;
    // Flip left of / above the pointer near the right / bottom edge: notebook output
    // areas clip what overflows the widget.
    const left = x + 14 + w > this.el.clientWidth && x - 14 - w >= 0 ? x - 14 - w : x + 14;
    const top = y + 14 + h > this.el.clientHeight ? Math.max(0, y - 14 - h) : y + 14;
    this.tooltip.style.left = `${left}px`;
    this.tooltip.style.top = `${top}px`;
  }

  private clearHover(): void {
    this.tooltip.hidden = true;
    if (this.hover) {
      this.hover = null;
      this.draw();
    }
  }

  private onKey(ev: KeyboardEvent): void {
    const data = this.data;
    if (!data) return;
    const moves: Record<string, [number, number]> = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    const m = moves[ev.key];
    if (!m) return;
    ev.preventDefault();
    const from = this.selected ?? { row: 0, col: visibleRange(this.layout()).first };
    const row = Math.max(0, Math.min(data.rows - 1, from.row + (this.selected ? m[0] : 0)));
    const col = Math.max(0, Math.min(data.cols - 1, from.col + (this.selected ? m[1] : 0)));
    // Keep the keyboard selection on screen.
    const l = this.layout();
    const dataWidth = l.viewWidth - l.labelWidth;
    if (col * l.cellWidth < l.scrollLeft) this.scroll.scrollLeft = col * l.cellWidth;
    else if ((col + 1) * l.cellWidth > l.scrollLeft + dataWidth) this.scroll.scrollLeft = (col + 1) * l.cellWidth - dataWidth;
    this.opts.onSelect({ row, col });
  }
}
