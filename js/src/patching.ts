// Activation-patching widget: how much of the clean-vs-corrupted logit difference each
// (layer, token) or (layer, head) carries. Python sweeps the grid in chunks, so cells
// arrive over time (NaN = not computed yet, drawn as an empty hatch); an approximate
// method can be drawn beside the exact grid it approximates, on the same colour scale.
import { createCancelButton } from "./lib/cancel";
import { Colorbar } from "./lib/colorbar";
import { asNumber, formatNumber, formatSigned } from "./lib/format";
import type { GridData } from "./lib/grid";
import { Grid } from "./lib/gridView";
import { baseTooltip, bindGrid, gridColorbar, gridFigure, readGridData, selectionToCell } from "./lib/gridModel";
import type { Cell } from "./lib/layout";
import {
  bindSelect,
  bindText,
  bindTextTrait,
  createElement,
  createPromptBox,
  createShell,
  labelled,
  PROMPT_DEBOUNCE_MS,
} from "./lib/shell";
import { toFloat32, toInt32 } from "./lib/tensor";
import type { AnyModel, AnyWidget, PatchingModel, RenderProps } from "./lib/types";

const GRID_SIZE = { fitCellWidth: 32, maxCellWidth: 64, cellHeight: 18 };

/** `LD clean +6.12 · LD corrupted −5.49 · r(exact) 0.91`, leaving out what is NaN (not run yet). */
function summaryText(model: AnyModel<PatchingModel>): string {
  const parts: string[] = [];
  const clean = asNumber(model.get("ld_clean"));
  const corrupted = asNumber(model.get("ld_corrupted"));
  const r = asNumber(model.get("correlation"));
  if (Number.isFinite(clean)) parts.push(`LD clean ${formatSigned(clean)}`);
  if (Number.isFinite(corrupted)) parts.push(`LD corrupted ${formatSigned(corrupted)}`);
  if (Number.isFinite(r)) parts.push(`r(exact) ${r < 0 ? "−" : ""}${Math.abs(r).toFixed(2)}`);
  return parts.join(" · ");
}

/** The answer pair as two strings, whatever shape the trait has right now. */
function answerPair(model: AnyModel<PatchingModel>): [string, string] {
  const a = model.get("answer") ?? [];
  return [String(a[0] ?? ""), String(a[1] ?? "")];
}

function render({ model, el }: RenderProps<PatchingModel>): () => void {
  const shell = createShell(model, el, "patching", { prompt: false, figure: gridFigure(model) });
  const d = shell.disposer;

  // --- inputs: both prompts commit like the prompt box (each commit re-runs the sweep)
  const clean = createPromptBox("aw-clean", "clean prompt", "Clean prompt (Enter to run, Shift+Enter for a new line)");
  const corrupted = createPromptBox("aw-corrupted", "corrupted prompt", "Corrupted prompt (same length in tokens)");
  const cleanField = labelled("clean", clean);
  const corruptedField = labelled("corrupted", corrupted);
  cleanField.className = corruptedField.className = "aw-field";
  bindTextTrait(model, d, clean, "clean", PROMPT_DEBOUNCE_MS);
  bindTextTrait(model, d, corrupted, "corrupted", PROMPT_DEBOUNCE_MS);

  // Answers commit on Enter or blur only: a half-typed token is not worth a re-run.
  const answers = createElement("div", "aw-answers");
  (["correct", "wrong"] as const).forEach((which, i) => {
    const input = createElement("input", `aw-answer-${which}`);
    input.type = "text";
    input.spellcheck = false;
    input.placeholder = `${which} answer token`;
    answers.append(labelled(which, input));
    bindText(model, d, input, {
      get: () => answerPair(model)[i],
      set: (text) => {
        const next = answerPair(model); // a new array, so the change is seen and synced
        next[i] = text;
        model.set("answer", next);
      },
      traits: ["answer"],
    });
  });
  shell.inputs.append(cleanField, corruptedField, answers);

  // --- controls
  const site = createElement("select", "aw-site");
  const method = createElement("select", "aw-method");
  const normalized = createElement("input", "aw-normalized");
  normalized.type = "checkbox";
  normalized.title = "Colour by the normalized score instead of the raw logit difference";
  const cancel = createCancelButton(model, d, "Stop the sweep after the current chunk");
  shell.controls.append(labelled("site", site), labelled("method", method), labelled("normalized", normalized), cancel);
  bindSelect(model, d, site, "site", () => [...(model.get("site_options") ?? [])], "site_options");
  bindSelect(model, d, method, "method", () => [...(model.get("method_options") ?? [])], "method_options");

  d.listen(normalized, "change", () => {
    if (normalized.checked !== Boolean(model.get("normalized"))) {
      model.set("normalized", normalized.checked);
      model.save_changes();
    }
  });
  const syncNormalized = () => {
    normalized.checked = Boolean(model.get("normalized"));
  };
  d.onModel(model, "change:normalized", syncNormalized);
  syncNormalized();

  // --- summary line
  const summary = createElement("div", "aw-summary");
  const syncSummary = () => {
    summary.textContent = summaryText(model);
    summary.hidden = summary.textContent === "";
  };
  for (const t of ["ld_clean", "ld_corrupted", "correlation"]) d.onModel(model, `change:${t}`, syncSummary);
  syncSummary();

  // --- grids: the method's grid, and the exact one beside it when there is one
  const grids = createElement("div", "aw-grids");
  const mainPanel = createElement("div", "aw-panel aw-main");
  const mainTitle = createElement("div", "aw-panel-title");
  const refPanel = createElement("div", "aw-panel aw-reference");
  const refTitle = createElement("div", "aw-panel-title");
  refTitle.textContent = "exact";
  mainPanel.append(mainTitle);
  refPanel.append(refTitle);
  grids.append(mainPanel, refPanel);
  shell.body.append(summary, grids);
  const syncTitle = () => {
    mainTitle.textContent = String(model.get("method") ?? "");
  };
  d.onModel(model, "change:method", syncTitle);
  syncTitle();

  let data: GridData = readGridData(model);
  let aux: Int32Array = new Int32Array(0);
  let reference: Float32Array = new Float32Array(0);

  /** Tooltip for one grid: its own value, then the other grid's value at the same cell. */
  const tooltip = (cell: Cell, own: Float32Array, other: { name: string; values: Float32Array } | null): string[] => {
    const lines = baseTooltip(model, { ...data, values: own }, aux, cell);
    if (model.get("col_label") === "head") lines[0] = `head ${cell.col}`; // "H3" would only repeat it
    if (other) lines.push(`${other.name}: ${formatNumber(other.values[cell.row * data.cols + cell.col] ?? NaN)}`);
    return lines;
  };
  const select = (cell: Cell) => {
    model.set("selected", { row: cell.row, col: cell.col });
    model.save_changes();
  };

  // Read-only: it has no inputs of its own, a click only selects the cell in both grids.
  const refGrid = new Grid(refPanel, {
    ...GRID_SIZE,
    tooltip: (cell) => tooltip(cell, reference, { name: String(model.get("method") || "approximation"), values: data.values }),
    onSelect: (cell) => {
      select(cell);
      refGrid.setSelected(cell); // immediate feedback; change:selected confirms it
    },
  });
  d.add(() => refGrid.destroy());
  const syncRefSelection = () => refGrid.setSelected(selectionToCell(model.get("selected")));
  d.onModel(model, "change:selected", syncRefSelection);
  syncRefSelection();

  const colorbar = new Colorbar(shell.body);
  d.add(() => colorbar.destroy());

  bindGrid(
    model,
    shell,
    {
      ...GRID_SIZE,
      parent: mainPanel,
      tooltip: (cell) => tooltip(cell, data.values, reference.length > 0 ? { name: "exact", values: reference } : null),
    },
    ["reference_values"],
    (grid) => {
      data = readGridData(model);
      if (!model.get("colormap")) data.colormap = "rdbu"; // logit differences are signed: centre on 0
      aux = toInt32(model.get("aux"));
      reference = toFloat32(model.get("reference_values"));
      grid.setData(data);
      const hasReference = reference.length > 0;
      refPanel.hidden = !hasReference;
      mainTitle.hidden = !hasReference; // a lone grid needs no name; beside "exact" it does
      // Unhidden first, so the grid fits the width it actually has. Same shape and
      // scale as the main grid (its vmin/vmax), so equal colours mean equal numbers.
      if (hasReference) refGrid.setData({ ...data, values: reference });
      colorbar.update(gridColorbar(model, data));
    },
  );

  shell.body.append(colorbar.el); // below the grids, shared by both

  return () => d.dispose();
}

// `satisfies`: tsc checks the export against anywidget's own widget type, which loads it.
export default { render } satisfies AnyWidget<PatchingModel>;
