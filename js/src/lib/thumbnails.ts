// A rows x cols grid of small square images (n x n values each), e.g. one attention
// pattern per layer x head, on one colour scale from 0 to `vmax` (or each image against its
// own maximum, so faint ones still show their shape). All images are coloured once into an
// offscreen canvas at one pixel per value; a draw then scales each onto the visible canvas.
import { paintRGBA } from "./colormap";
import { type Theme, DEFAULT_THEME, context2d } from "./grid";

export interface ThumbData {
  rows: number;
  cols: number;
  n: number; // each image is n x n
  values: Float32Array; // [rows, cols, n, n] row-major; NaN = empty
  colormap: string;
  vmax: number | null; // the top of the scale (from 0); null: each image to its own maximum
  rowLabels: string[];
}

export interface ThumbLayout {
  size: number; // CSS px per image side
  gap: number;
  left: number; // gutter for the row labels
  top: number; // band for the column numbers
}

export interface ThumbCell {
  row: number;
  col: number;
}

/** Image size that keeps `rows` images within `maxHeight` and `cols` within `maxWidth`. */
export function thumbLayout(rows: number, cols: number, maxHeight = 560, maxWidth = 460): ThumbLayout {
  const gap = 2;
  const fit = Math.min(Math.floor(maxHeight / Math.max(1, rows)), Math.floor(maxWidth / Math.max(1, cols))) - gap;
  return { size: Math.max(6, Math.min(40, fit)), gap, left: 28, top: 14 };
}

export function thumbCanvasSize(d: ThumbData, l: ThumbLayout): { width: number; height: number } {
  return { width: l.left + d.cols * (l.size + l.gap), height: l.top + d.rows * (l.size + l.gap) };
}

/** The image under canvas point (x, y) (CSS px), or null outside every image. */
export function thumbAt(d: ThumbData, l: ThumbLayout, x: number, y: number): ThumbCell | null {
  const step = l.size + l.gap;
  const col = Math.floor((x - l.left) / step);
  const row = Math.floor((y - l.top) / step);
  if (x < l.left || y < l.top || col >= d.cols || row >= d.rows) return null;
  return { row, col };
}

/** Colour every image into a (cols * n) x (rows * n) canvas. */
export function paintThumbnails(d: ThumbData): HTMLCanvasElement | null {
  const { rows, cols, n } = d;
  if (rows <= 0 || cols <= 0 || n <= 0) return null;
  const off = document.createElement("canvas");
  off.width = cols * n;
  off.height = rows * n;
  const ctx = context2d(off);
  if (!ctx) return null;
  const img = ctx.createImageData(cols * n, rows * n);
  const one = new Uint8ClampedArray(n * n * 4);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const start = (r * cols + c) * n * n;
      const values = d.values.subarray(Math.min(start, d.values.length), Math.min(start + n * n, d.values.length));
      let top = d.vmax ?? 0;
      if (d.vmax === null) for (const v of values) if (v > top) top = v; // NaN compares false: skipped
      paintRGBA(values, n * n, one, d.colormap, 0, top > 0 ? top : 1);
      for (let i = 0; i < n; i++) {
        img.data.set(one.subarray(i * n * 4, (i + 1) * n * 4), ((r * n + i) * cols * n + c * n) * 4);
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  return off;
}

export interface ThumbMarks {
  selected?: ThumbCell | null;
  hover?: ThumbCell | null;
  theme?: Theme;
  dpr?: number;
}

/** Draw the images, their row labels and column numbers, and the selection / hover outlines. */
export function drawThumbnails(ctx: CanvasRenderingContext2D, off: CanvasImageSource | null, d: ThumbData, l: ThumbLayout, m: ThumbMarks = {}): void {
  const theme = m.theme ?? DEFAULT_THEME;
  const dpr = m.dpr ?? 1;
  const { width, height } = thumbCanvasSize(d, l);
  const step = l.size + l.gap;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  if (off) {
    // Shrinking a 32-bin pattern to a few pixels reads better smoothed; enlarging, as cells.
    ctx.imageSmoothingEnabled = d.n > l.size;
    for (let r = 0; r < d.rows; r++) {
      for (let c = 0; c < d.cols; c++) ctx.drawImage(off, c * d.n, r * d.n, d.n, d.n, l.left + c * step, l.top + r * step, l.size, l.size);
    }
  }
  ctx.fillStyle = theme.dim;
  ctx.font = `${Math.max(8, Math.min(11, l.size))}px ${theme.font}`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  const stride = Math.max(1, Math.ceil(10 / step));
  for (let r = 0; r < d.rows; r += stride) ctx.fillText(String(d.rowLabels[r] ?? r), l.left - 4, l.top + r * step + l.size / 2);
  ctx.textAlign = "center";
  const colStride = Math.max(1, Math.ceil(14 / step));
  for (let c = 0; c < d.cols; c += colStride) ctx.fillText(String(c), l.left + c * step + l.size / 2, l.top / 2);
  const outline = (cell: ThumbCell | null | undefined, color: string, width: number) => {
    if (!cell || cell.row >= d.rows || cell.col >= d.cols) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.strokeRect(l.left + cell.col * step - width / 2, l.top + cell.row * step - width / 2, l.size + width, l.size + width);
  };
  outline(m.hover, theme.fg, 1);
  outline(m.selected, theme.accent, 2);
}
