// Wires a Grid to the grid traits every grid widget shares (shape, values, tokens,
// selection...). Python sets these inside hold_sync(), but Backbone still fires one
// change:<trait> per trait, so redraws are coalesced into one per message.
import type { ColorbarSpec } from "./colorbar";
import { coalesce } from "./dispose";
import { formatNumber } from "./format";
import type { GridData } from "./grid";
import { Grid, type GridOptions } from "./gridView";
import type { Cell } from "./layout";
import type { FigurePresence, Shell } from "./shell";
import { toFloat32 } from "./tensor";
import { quoteToken } from "./tokens";
import type { AnyModel, GridTraits, Selection } from "./types";

export const GRID_TRAITS = ["shape", "values", "tokens", "row_labels", "vmin", "vmax", "colormap", "scale", "aux", "aux_label", "value_label"] as const;

export function readGridData<T extends GridTraits>(model: AnyModel<T>): GridData {
  const shape = model.get("shape") ?? [0, 0];
  const rows = Math.max(0, Math.floor(Number(shape[0]) || 0));
  const cols = Math.max(0, Math.floor(Number(shape[1]) || 0));
  return {
    rows,
    cols,
    values: toFloat32(model.get("values")),
    vmin: Number(model.get("vmin") ?? 0),
    vmax: Number(model.get("vmax") ?? 1),
    colormap: String(model.get("colormap") ?? "viridis"),
    scale: model.get("scale") === "log" ? "log" : "linear",
    tokens: model.get("tokens") ?? [],
    rowLabels: model.get("row_labels") ?? [],
  };
}

/** What a grid's colour bar shows: the grid's colormap, range and scale, and the value's name. */
export function gridColorbar<T extends GridTraits>(model: AnyModel<T>, data: GridData): ColorbarSpec {
  return { colormap: data.colormap, vmin: data.vmin, vmax: data.vmax, scale: data.scale, label: model.get("value_label") ?? "" };
}

/** A grid widget has a figure once it has cells (the stale-figure rule in shell.ts). */
export function gridFigure<T extends GridTraits>(model: AnyModel<T>): FigurePresence {
  return {
    traits: ["shape"],
    present: () => {
      const { rows, cols } = readGridData(model);
      return rows * cols > 0;
    },
  };
}

/** `{row, col}` as a Cell, or null for `{}` / anything malformed. */
export function selectionToCell(sel: Selection | null | undefined): Cell | null {
  if (!sel || !Number.isInteger(sel.row) || !Number.isInteger(sel.col)) return null;
  return { row: sel.row!, col: sel.col! };
}

/**
 * Create the grid inside the shell and keep it in sync with the model.
 * `refresh` runs (coalesced) whenever any of GRID_TRAITS or `extraTraits` change,
 * after the widget's own caches should be rebuilt; it must call grid.setData.
 * `parent` (default shell.body) lets a widget lay several grids out side by side.
 */
export function bindGrid<T extends GridTraits>(
  model: AnyModel<T>,
  shell: Shell,
  opts: Omit<GridOptions, "onSelect"> & { parent?: HTMLElement },
  extraTraits: readonly string[],
  refresh: (grid: Grid) => void,
): Grid {
  const d = shell.disposer;
  const { parent, ...gridOpts } = opts;
  const grid = new Grid(parent ?? shell.body, {
    ...gridOpts,
    onSelect: (cell) => {
      model.set("selected", { row: cell.row, col: cell.col } as T["selected"]);
      model.save_changes();
      grid.setSelected(cell); // immediate feedback; change:selected confirms it
    },
  });
  let alive = true;
  d.add(() => {
    alive = false;
    grid.destroy();
  });
  const update = coalesce(() => {
    if (alive) refresh(grid);
  });
  for (const t of [...GRID_TRAITS, ...extraTraits]) d.onModel(model, `change:${t}`, update);
  d.onModel(model, "change:selected", () => grid.setSelected(selectionToCell(model.get("selected"))));
  grid.setSelected(selectionToCell(model.get("selected")));
  refresh(grid);
  return grid;
}

/** The tooltip lines every grid widget starts with: token, layer, value, and aux when present. */
export function baseTooltip<T extends GridTraits>(model: AnyModel<T>, data: GridData, aux: Int32Array, cell: Cell): string[] {
  const i = cell.row * data.cols + cell.col;
  const lines = [
    `token ${cell.col}: ${quoteToken(data.tokens[cell.col])}`,
    `layer: ${data.rowLabels[cell.row] ?? cell.row}`,
    `${model.get("value_label") || "value"}: ${formatNumber(data.values[i] ?? NaN)}`,
  ];
  if (i < aux.length) lines.push(`${model.get("aux_label") || "aux"}: ${aux[i]}`);
  return lines;
}
