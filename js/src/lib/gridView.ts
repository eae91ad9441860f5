// The interactive grid both grid widgets draw with: scroll container, canvas, zoom
// buttons, hover tooltip and keyboard/click selection; grid.ts paints the canvas.
// Only the visible token labels exist in the DOM, for the same reason grid.ts draws
// only the visible slice: 30 x 4096 cells stay smooth to scroll.
import { Disposer } from "./dispose";
import {
  type CellPainter,
  type GridData,
  type Theme,
  DEFAULT_THEME,
  context2d,
  drawWindow,
  paintOffscreen,
  readTheme,
} from "./grid";
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
  /** The columns [first, last) on screen, after each draw that changes them. */
  onView?: (first: number, last: number) => void;
}

const ROTATE_BELOW_PX = 40; // narrower columns get vertical token labels

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
  private view = "";

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
    const { first, last } = visibleRange(l);
    if (`${first}:${last}` !== this.view) {
      this.view = `${first}:${last}`;
      this.opts.onView?.(first, last);
    }
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
