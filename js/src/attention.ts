// Attention widget: every head's pattern (a thumbnail per layer x head), the selected head
// large, and "from this token" (each head of that layer: weights from the query token to
// every key, drawn by the shared grid). A click on a thumbnail sets `head`, on a row of
// the large pattern sets `query`, on a row of the grid selects that head (Python maps the
// grid's `selected` row to `head`). Token text is untrusted: it only ever goes through
// textContent (tooltips, labels), never markup.
import { createCancelButton } from "./lib/cancel";
import { Colorbar } from "./lib/colorbar";
import { coalesce } from "./lib/dispose";
import { formatPercent } from "./lib/format";
import { type GridData, context2d, readTheme } from "./lib/grid";
import { bindGrid, gridFigure, readGridData } from "./lib/gridModel";
import { createElement, createShell, labelled } from "./lib/shell";
import { SquareView } from "./lib/squareView";
import { toFloat32, toInt32 } from "./lib/tensor";
import {
  type ThumbCell,
  type ThumbData,
  drawThumbnails,
  paintThumbnails,
  thumbAt,
  thumbCanvasSize,
  thumbLayout,
} from "./lib/thumbnails";
import { createTooltip, hideTooltip, showTooltip } from "./lib/tooltip";
import { quoteToken } from "./lib/tokens";
import type { AnyModel, AnyWidget, AttentionModel, RenderProps } from "./lib/types";

const OVERVIEW_TRAITS = ["overview", "overview_size", "n_heads", "layer_labels", "head"];
const PATTERN_TRAITS = ["pattern", "pattern_size", "pattern_bins", "pattern_head", "tokens", "query_index"];

/** The head a [layer, head] trait names, or null when it is not a pair of numbers. */
function pair(v: unknown): [number, number] | null {
  return Array.isArray(v) && v.length === 2 && v.every((x) => Number.isInteger(x)) ? [v[0], v[1]] : null;
}

/** "key 3: “ Mary”", or for a bin of several tokens "keys 64–127: “a” … “b”". */
function span(tokens: string[], bins: Int32Array, i: number, what: [string, string]): string {
  const first = bins[i] ?? i;
  const last = (i + 1 < bins.length ? bins[i + 1] : tokens.length) - 1;
  if (last <= first) return `${what[0]} ${first}: ${quoteToken(tokens[first])}`;
  return `${what[1]} ${first}–${last}: ${quoteToken(tokens[first])} … ${quoteToken(tokens[last])}`;
}

function readThumbs(model: AnyModel<AttentionModel>): ThumbData {
  const layerLabels = model.get("layer_labels") ?? [];
  return {
    rows: layerLabels.length,
    cols: Math.max(0, Number(model.get("n_heads")) || 0),
    n: Math.max(0, Number(model.get("overview_size")) || 0),
    values: toFloat32(model.get("overview")),
    colormap: "viridis",
    vmax: 1, // weights are probabilities: one scale for every view
    rowLabels: layerLabels,
  };
}

function render({ model, el }: RenderProps<AttentionModel>): () => void {
  const shell = createShell(model, el, "attention", { figure: gridFigure(model), promptResets: { query: null } });
  const d = shell.disposer;
  const tokens = () => model.get("tokens") ?? [];

  // --- query: a position (negative counts from the end), blank for the last token; committed on Enter, change or blur
  const query = createElement("input", "aw-query");
  query.type = "number";
  query.step = "1";
  query.placeholder = "last";
  const queryToken = createElement("span", "aw-query-token");
  shell.controls.append(labelled("from token", query), queryToken, createCancelButton(model, d, "Stop the forward at its next block"));
  const commitQuery = () => {
    const text = query.value.trim();
    const v = text === "" ? null : Number(text);
    const bad = v !== null && !Number.isInteger(v);
    query.classList.toggle("aw-invalid", bad);
    if (!bad && v !== (model.get("query") ?? null)) {
      model.set("query", v);
      model.save_changes();
    }
  };
  d.listen(query, "keydown", (ev) => {
    if (ev.key === "Enter" && !ev.isComposing) {
      ev.preventDefault();
      commitQuery();
    }
  });
  d.listen(query, "change", commitQuery);
  const syncQuery = () => {
    const q = model.get("query");
    if (document.activeElement !== query) query.value = q === null || q === undefined ? "" : String(q);
    queryToken.textContent = tokens().length ? quoteToken(tokens()[Number(model.get("query_index")) || 0]) : "";
  };
  for (const t of ["query", "query_index", "tokens"]) d.onModel(model, `change:${t}`, syncQuery);
  syncQuery();

  // --- the three views
  const views = createElement("div", "aw-grids aw-attn-views");
  const overviewPanel = createElement("div", "aw-panel aw-overview-panel");
  const overviewTitle = createElement("div", "aw-panel-title");
  overviewTitle.textContent = "every head (layers ↓, heads →): click one";
  const overviewWrap = createElement("div", "aw-overview-wrap");
  const thumbs = createElement("canvas", "aw-overview");
  thumbs.setAttribute("role", "img");
  overviewWrap.append(thumbs);
  const thumbTip = createTooltip(overviewWrap);
  overviewPanel.append(overviewTitle, overviewWrap);

  const patternPanel = createElement("div", "aw-panel aw-pattern-panel");
  const patternTitle = createElement("div", "aw-panel-title aw-pattern-title");
  patternPanel.append(patternTitle);
  let square: { bins: Int32Array; values: Float32Array; n: number } = { bins: new Int32Array(0), values: new Float32Array(0), n: 0 };
  const big = new SquareView(patternPanel, {
    maxSide: 420,
    labelMinCell: 12,
    tooltip: ({ row, col }) => {
      const lines = [span(tokens(), square.bins, row, ["query", "queries"]), span(tokens(), square.bins, col, ["key", "keys"])];
      const v = square.values[row * square.n + col] ?? NaN;
      lines.push(Number.isNaN(v) ? "weight: — (after the query: masked)" : `weight: ${formatPercent(v)}`);
      if (square.n < tokens().length) lines.push("(summed over the key tokens, averaged over the queries)");
      return lines;
    },
    onSelect: ({ row }) => {
      model.set("query", square.bins[row] ?? row);
      model.save_changes();
    },
  });
  d.add(() => big.destroy());
  const patternBar = new Colorbar(patternPanel);
  d.add(() => patternBar.destroy());

  const fromPanel = createElement("div", "aw-panel aw-from-panel");
  const fromTitle = createElement("div", "aw-panel-title aw-from-title");
  fromPanel.append(fromTitle);
  views.append(overviewPanel, patternPanel);
  shell.body.append(views, fromPanel);

  // --- overview: thumbnails, hover, click -> head
  let thumbData = readThumbs(model);
  let layout = thumbLayout(thumbData.rows, thumbData.cols);
  let off: HTMLCanvasElement | null = null;
  let hover: ThumbCell | null = null;
  const selectedThumb = (): ThumbCell | null => {
    const h = pair(model.get("head"));
    const row = h ? thumbData.rowLabels.indexOf(String(h[0])) : -1;
    return h && row >= 0 ? { row, col: h[1] } : null;
  };
  const drawOverview = () => {
    const ctx = context2d(thumbs);
    if (ctx) drawThumbnails(ctx, off, thumbData, layout, { selected: selectedThumb(), hover, theme: readTheme(overviewWrap), dpr: thumbs.width / Math.max(1, thumbCanvasSize(thumbData, layout).width) });
  };
  const refreshOverview = () => {
    thumbData = readThumbs(model);
    layout = thumbLayout(thumbData.rows, thumbData.cols);
    off = paintThumbnails(thumbData);
    const { width, height } = thumbCanvasSize(thumbData, layout);
    const dpr = Math.max(1, globalThis.devicePixelRatio || 1);
    thumbs.width = Math.round(width * dpr);
    thumbs.height = Math.round(height * dpr);
    thumbs.style.width = `${width}px`;
    thumbs.style.height = `${height}px`;
    hover = null;
    drawOverview();
  };
  const thumbAtEvent = (ev: MouseEvent) => {
    const rect = thumbs.getBoundingClientRect();
    return thumbAt(thumbData, layout, ev.clientX - rect.left, ev.clientY - rect.top);
  };
  d.listen(thumbs, "mousemove", (ev) => {
    const cell = thumbAtEvent(ev);
    if (!cell) return hideTooltip(thumbTip);
    if (!hover || hover.row !== cell.row || hover.col !== cell.col) {
      hover = cell;
      drawOverview();
    }
    showTooltip(thumbTip, overviewWrap, ev, [`layer ${thumbData.rowLabels[cell.row]} · head ${cell.col}`, "click to show it large"]);
  });
  d.listen(thumbs, "mouseleave", () => {
    hideTooltip(thumbTip);
    hover = null;
    drawOverview();
  });
  d.listen(thumbs, "click", (ev) => {
    const cell = thumbAtEvent(ev);
    const layer = cell ? Number(thumbData.rowLabels[cell.row]) : NaN;
    if (!cell || !Number.isInteger(layer)) return;
    model.set("head", [layer, cell.col]);
    model.save_changes();
    drawOverview(); // the outline moves at once; the large view follows when Python answers
  });

  // --- the selected head, large
  const refreshPattern = () => {
    const n = Math.max(0, Number(model.get("pattern_size")) || 0);
    const values = toFloat32(model.get("pattern"));
    square = { n, values, bins: toInt32(model.get("pattern_bins")) };
    big.setData({ n, values, bins: square.bins, tokens: tokens(), colormap: "viridis", vmin: 0, vmax: 1 });
    const q = Number(model.get("query_index")) || 0;
    let row = -1;
    for (let i = 0; i < square.bins.length && square.bins[i] <= q; i++) row = i;
    big.markRow(row);
    const h = pair(model.get("pattern_head"));
    const pooled = n > 0 && n < tokens().length ? ` · pooled to ${n} bins of ${square.bins[1] ?? 1} tokens` : "";
    patternTitle.textContent = h ? `layer ${h[0]} · head ${h[1]}${pooled}: click a row to look from that token` : "";
    patternBar.update({ colormap: "viridis", vmin: 0, vmax: 1, label: "attention weight" });
  };

  // --- from this token: the shared grid (rows: heads of the selected layer)
  let grid: GridData = readGridData(model);
  const fromTooltip = ({ row, col }: { row: number; col: number }) => {
    const h = pair(model.get("pattern_head"));
    const q = Number(model.get("query_index")) || 0;
    const v = grid.values[row * grid.cols + col] ?? NaN;
    return [
      `key ${col}: ${quoteToken(grid.tokens[col])}`,
      `query ${q}: ${quoteToken(grid.tokens[q])}`,
      `layer ${h ? h[0] : "?"} · head ${row}`,
      Number.isNaN(v) ? "weight: — (after the query: masked)" : `weight: ${formatPercent(v)}`,
    ];
  };
  const fromBar = new Colorbar(fromPanel);
  d.add(() => fromBar.destroy());
  bindGrid(model, shell, { parent: fromPanel, fitCellWidth: 48, maxCellWidth: 96, cellHeight: 18, tooltip: fromTooltip }, ["pattern_head", "query_index"], (g) => {
    grid = readGridData(model);
    g.setData(grid);
    const h = pair(model.get("pattern_head"));
    const q = Number(model.get("query_index")) || 0;
    fromTitle.textContent = h && grid.tokens.length ? `from token ${q} ${quoteToken(grid.tokens[q])}: each head of layer ${h[0]} (click a row to show that head)` : "";
    fromBar.update({ colormap: grid.colormap, vmin: grid.vmin, vmax: grid.vmax, label: model.get("value_label") ?? "" });
  });
  fromPanel.append(fromBar.el); // below the grid

  let alive = true; // a coalesced redraw may come after cleanup
  d.add(() => (alive = false));
  const overviewUpdate = coalesce(() => alive && refreshOverview());
  const patternUpdate = coalesce(() => alive && refreshPattern());
  for (const t of OVERVIEW_TRAITS) d.onModel(model, `change:${t}`, overviewUpdate);
  for (const t of PATTERN_TRAITS) d.onModel(model, `change:${t}`, patternUpdate);
  refreshOverview();
  refreshPattern();
  return () => d.dispose();
}

// `satisfies`: tsc checks the export against anywidget's own widget type, which loads it.
export default { render } satisfies AnyWidget<AttentionModel>;
