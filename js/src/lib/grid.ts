// Painting the layer x token heatmap both grid widgets show (gridView.ts is the
// interactive view around it).
// All cells are coloured once into an offscreen image at one pixel per cell; each
// frame then scales just the visible slice of it onto a viewport-sized canvas with
// smoothing off. A scroll or hover therefore costs one drawImage, not rows*cols
// fillRects, which keeps 30 x 4096 cells smooth.
import { getLut, paintRGBA, rgba, type Scale } from "./colormap";
import { type Cell, type GridLayout, cellLeft, labelWidthFor, visibleRange } from "./layout";

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

export interface Theme {
  fg: string;
  dim: string;
  bg: string;
  accent: string;
  font: string;
}

export const DEFAULT_THEME: Theme = { fg: "#222", dim: "#666", bg: "#fff", accent: "#1976d2", font: "monospace" };

export function readTheme(node: Element): Theme {
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

export function context2d(canvas: HTMLCanvasElement): CanvasRenderingContext2D | null {
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
