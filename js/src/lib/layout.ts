// Pure geometry of the grid: which columns are on screen, which cell is under the
// pointer, how wide cells are. Kept free of the DOM so it is unit-tested directly
// and the canvas code only has to trust these numbers.

export interface GridLayout {
  rows: number;
  cols: number;
  /** CSS px per column (an integer, so cell edges land on pixels). */
  cellWidth: number;
  cellHeight: number;
  /** Width of the row-label gutter at the left of the canvas. */
  labelWidth: number;
  /** How far the data is scrolled, in CSS px. */
  scrollLeft: number;
  /** Width of the visible canvas, gutter included. */
  viewWidth: number;
}

export interface Cell {
  row: number;
  col: number;
}

export const MIN_CELL_WIDTH = 1;
/** Below this a default (fitted) width is unreadable, so we scroll instead. */
export const MIN_FIT_CELL_WIDTH = 4;

/** Columns [first, last) that intersect the visible window. */
export function visibleRange(l: GridLayout): { first: number; last: number } {
  if (l.cols <= 0 || l.cellWidth <= 0) return { first: 0, last: 0 };
  const dataWidth = Math.max(0, l.viewWidth - l.labelWidth);
  const first = Math.min(l.cols, Math.max(0, Math.floor(l.scrollLeft / l.cellWidth)));
  const last = Math.min(l.cols, Math.ceil((l.scrollLeft + dataWidth) / l.cellWidth));
  return { first, last: Math.max(first, last) };
}

/** Canvas x (CSS px) of a column's left edge; may be left of the gutter when scrolled. */
export function cellLeft(l: GridLayout, col: number): number {
  return l.labelWidth + col * l.cellWidth - l.scrollLeft;
}

/** The cell under canvas point (x, y), or null over the gutter or outside the data. */
export function cellAt(l: GridLayout, x: number, y: number): Cell | null {
  if (x < l.labelWidth || x >= l.viewWidth || y < 0) return null;
  const col = Math.floor((x - l.labelWidth + l.scrollLeft) / l.cellWidth);
  const row = Math.floor(y / l.cellHeight);
  if (col < 0 || col >= l.cols || row < 0 || row >= l.rows) return null;
  return { row, col };
}

/** Width that fits every column into `available` px, capped at `max`, but never below `min`. */
export function fitCellWidth(available: number, cols: number, max: number, min = MIN_FIT_CELL_WIDTH): number {
  if (cols <= 0 || available <= 0) return max;
  return Math.max(min, Math.min(max, Math.floor(available / cols)));
}

/** The next zoom step: ×1.5 per click, always moving at least 1 px, clamped to [1, max]. */
export function zoomedWidth(cellWidth: number, direction: 1 | -1, max: number): number {
  const next = direction > 0 ? Math.max(cellWidth + 1, Math.round(cellWidth * 1.5)) : Math.min(cellWidth - 1, Math.round(cellWidth / 1.5));
  return Math.max(MIN_CELL_WIDTH, Math.min(max, next));
}

/** scrollLeft that keeps the column under data-x `anchor` in place across a zoom. */
export function scrollAfterZoom(scrollLeft: number, anchor: number, oldWidth: number, newWidth: number): number {
  return Math.max(0, ((scrollLeft + anchor) / oldWidth) * newWidth - anchor);
}

/** Row height that keeps tall models on screen: at most `preferred`, at least `min`. */
export function rowHeightFor(rows: number, preferred: number, maxTotal = 600, min = 8): number {
  if (rows <= 0) return preferred;
  return Math.max(min, Math.min(preferred, Math.floor(maxTotal / rows)));
}

/** Gutter wide enough for the longest row label at ~7 px per character. */
export function labelWidthFor(labels: string[], charWidth = 7): number {
  const longest = labels.reduce((m, s) => Math.max(m, String(s).length), 0);
  return Math.max(28, Math.min(120, 10 + longest * charWidth));
}

/** Show a token label every `stride` columns so narrow labels never overlap. */
export function tokenStride(cellWidth: number, minSpacing = 14): number {
  return Math.max(1, Math.ceil(minSpacing / Math.max(1, cellWidth)));
}
