// Direct-logit-attribution widget: how much the embedding, each layer's attention and MLP
// output (a narrow strip) and each head (a layer x head grid beside it) add to one token's
// logit at one position. Both grids share one diverging scale centred on 0 and an "emb" top
// row (blank in the head grid), so a layer reads across both. Clicking a prompt token moves
// the attribution there. Python owns the numbers; token text is untrusted (textContent only).
import { Colorbar } from "./lib/colorbar";
import { coalesce } from "./lib/dispose";
import { asNumber, formatSigned } from "./lib/format";
import type { GridData } from "./lib/grid";
import { GRID_TRAITS, gridFigure, selectionToCell } from "./lib/gridModel";
import { Grid } from "./lib/gridView";
import { type Cell, labelWidthFor } from "./lib/layout";
import { bindTextTrait, createElement, createShell, labelled } from "./lib/shell";
import { toFloat32 } from "./lib/tensor";
import { quoteToken } from "./lib/tokens";
import type { AnyModel, AnyWidget, LogitAttributionModel, RenderProps } from "./lib/types";

type Model = AnyModel<LogitAttributionModel>;

const STRIP = { fitCellWidth: 44, maxCellWidth: 64, cellHeight: 18 };
const HEADS = { fitCellWidth: 48, maxCellWidth: 96, cellHeight: 18 };
const STRIP_MIN_WIDTH = 120; // room for the zoom buttons on one line (style.ts hides the px/token label)
const SIGNED = (v: number) => (Number.isFinite(v) ? formatSigned(v, 3) : "—");

/** The wire's arrays as two grids with an "emb" top row: the strip's holds the embedding, the heads' is blank. */
function dlaGrids(model: Model): { strip: GridData; heads: GridData } {
  const shape = model.get("shape") ?? [0, 0];
  const layers = Math.max(0, Math.floor(Number(shape[0]) || 0));
  const nHeads = Math.max(0, Math.floor(Number(shape[1]) || 0));
  const heads = toFloat32(model.get("values"));
  const comps = toFloat32(model.get("components"));
  const rows = heads.length >= layers * nHeads && comps.length >= layers * 2 && layers > 0 ? layers + 1 : 0;
  const stripValues = new Float32Array(rows * 2).fill(NaN);
  const headValues = new Float32Array(rows * nHeads).fill(NaN);
  if (rows > 0) {
    stripValues[0] = asNumber(model.get("embed"));
    stripValues.set(comps.subarray(0, layers * 2), 2);
    headValues.set(heads.subarray(0, layers * nHeads), nHeads);
  }
  const labels = (model.get("row_labels") ?? []).slice(0, layers);
  const common = {
    rows,
    vmin: Number(model.get("vmin") ?? -1),
    vmax: Number(model.get("vmax") ?? 1),
    colormap: String(model.get("colormap") || "rdbu"),
    scale: "linear" as const,
  };
  return {
    strip: { ...common, cols: 2, values: stripValues, tokens: ["attn", "mlp"], rowLabels: ["emb", ...labels] },
    heads: {
      ...common,
      cols: nHeads,
      values: headValues,
      tokens: Array.from({ length: nHeads }, (_, h) => `H${h}`),
      rowLabels: ["", ...labels],
    },
  };
}

/** `logit(' Paris') at token 9 “ of”`: what is attributed, and where. */
function whatLine(model: Model): string {
  const i = Number(model.get("token_index") ?? -1);
  const tokens = model.get("tokens") ?? [];
  const at = i >= 0 && i < tokens.length ? ` at token ${i} ${quoteToken(tokens[i])}` : "";
  return `${model.get("metric_label") || ""}${at}`;
}

/** `model +12.842 · sum of parts +12.842 · embedding −0.053 · final-norm bias 0.000`. */
function summaryText(model: Model): string {
  const logit = asNumber(model.get("logit"));
  if (!Number.isFinite(logit)) return "";
  const parts = [`model ${SIGNED(logit)}`, `sum of parts ${SIGNED(asNumber(model.get("total")))}`];
  parts.push(`embedding ${SIGNED(asNumber(model.get("embed")))}`, `final-norm bias ${SIGNED(asNumber(model.get("norm_bias")))}`);
  return parts.join(" · ");
}

function render({ model, el }: RenderProps<LogitAttributionModel>): () => void {
  const shell = createShell(model, el, "dla", { figure: gridFigure(model), promptResets: { position: -1 } });
  const d = shell.disposer;

  // target and wrong commit on Enter or blur (each commit re-runs the attribution)
  const target = createElement("input", "aw-target");
  const wrong = createElement("input", "aw-target aw-wrong");
  for (const [box, hint] of [[target, "target token"], [wrong, "wrong token"]] as const) {
    box.type = "text";
    box.spellcheck = false;
    box.placeholder = hint;
  }
  shell.controls.append(labelled("target", target), labelled("minus", wrong));
  bindTextTrait(model, d, target, "target");
  bindTextTrait(model, d, wrong, "wrong");

  // The prompt's tokens: the attributed one is outlined; a click attributes at that token.
  const tokenRow = createElement("div", "aw-tok-text aw-dla-tokens");
  tokenRow.title = "Click a token to attribute the logit predicted there";
  d.listen(tokenRow, "click", (ev) => {
    const pos = (ev.target as HTMLElement).closest<HTMLElement>("span.aw-tok")?.dataset.pos;
    if (pos === undefined || Number(pos) === model.get("token_index")) return; // already shown
    model.set("position", Number(pos));
    model.save_changes();
  });
  const what = createElement("div", "aw-summary aw-dla-what");
  const summary = createElement("div", "aw-summary aw-dla-sum");
  const note = createElement("div", "aw-note");

  const grids = createElement("div", "aw-grids");
  const panel = (cls: string, title: string) => {
    const p = createElement("div", `aw-panel ${cls}`);
    const t = createElement("div", "aw-panel-title");
    t.textContent = title;
    p.append(t);
    grids.append(p);
    return p;
  };
  const stripPanel = panel("aw-dla-strip", "layer outputs");
  const headPanel = panel("aw-dla-heads", "heads");
  shell.body.append(tokenRow, what, summary, note, grids);

  let data = dlaGrids(model);
  let bias = toFloat32(model.get("attn_bias"));
  const value = (g: GridData, c: Cell) => g.values[c.row * g.cols + c.col] ?? NaN;
  const where = () => `on ${whatLine(model)}`;
  const embedLines = () => ["embedding", `direct effect: ${SIGNED(data.strip.values[0] ?? NaN)}`, where()];

  const strip = new Grid(stripPanel, {
    ...STRIP,
    tooltip: (c) => {
      if (c.row === 0) return embedLines();
      const layer = c.row - 1;
      const lines = [`layer ${data.strip.rowLabels[c.row]} ${c.col === 0 ? "attention" : "MLP"} output`];
      lines.push(`direct effect: ${SIGNED(value(data.strip, c))}`);
      if (c.col === 0) {
        const b = bias[layer] ?? NaN;
        lines.push(`heads ${SIGNED(value(data.strip, c) - b)} · output bias ${SIGNED(b)}`);
      }
      return [...lines, where()];
    },
    onSelect: () => {}, // the strip has nothing to select: heads are the grid's cells
  });
  const heads = new Grid(headPanel, {
    ...HEADS,
    tooltip: (c) => {
      if (c.row === 0) return embedLines();
      const layer = data.heads.rowLabels[c.row];
      return [
        `layer ${layer}, head ${c.col}`,
        `direct effect: ${SIGNED(value(data.heads, c))}`,
        `layer ${layer} attention output: ${SIGNED(value(data.strip, { row: c.row, col: 0 }))}`,
        where(),
      ];
    },
    onSelect: (c) => {
      if (c.row === 0) return;
      model.set("selected", { row: c.row - 1, col: c.col });
      model.save_changes();
      heads.setSelected(c); // immediate feedback; change:selected confirms it
    },
  });
  d.add(() => strip.destroy());
  d.add(() => heads.destroy());
  const syncSelection = () => {
    const cell = selectionToCell(model.get("selected"));
    heads.setSelected(cell ? { row: cell.row + 1, col: cell.col } : null);
  };
  d.onModel(model, "change:selected", syncSelection);

  const colorbar = new Colorbar(shell.body);
  d.add(() => colorbar.destroy());

  let alive = true;
  d.add(() => (alive = false));
  const draw = () => {
    if (!alive) return;
    data = dlaGrids(model);
    bias = toFloat32(model.get("attn_bias"));
    // Two cells at the strip's width, and its zoom bar on one line as the head grid's is,
    // so both grids start at the same height and their rows line up.
    const stripWidth = Math.max(STRIP_MIN_WIDTH, labelWidthFor(data.strip.rowLabels) + 2 * STRIP.fitCellWidth + 6);
    stripPanel.style.flex = `0 0 ${stripWidth}px`;
    // The head grid's box hugs its cells at their fitted width (a narrower page shrinks them).
    headPanel.style.maxWidth = `${labelWidthFor(data.heads.rowLabels) + data.heads.cols * HEADS.fitCellWidth + 6}px`;
    strip.setData(data.strip);
    heads.setData(data.heads);
    syncSelection();
    const tokens = model.get("tokens") ?? [];
    const at = Number(model.get("token_index") ?? -1);
    tokenRow.replaceChildren(
      ...tokens.map((text, i) => {
        const span = createElement("span", i === at ? "aw-tok aw-hl" : "aw-tok");
        span.textContent = text; // untrusted model text: never markup
        span.dataset.pos = String(i);
        return span;
      }),
    );
    tokenRow.hidden = tokens.length === 0;
    what.textContent = whatLine(model);
    summary.textContent = summaryText(model);
    summary.hidden = summary.textContent === "";
    note.textContent = String(model.get("note") ?? "");
    note.hidden = note.textContent === "";
    colorbar.update({ colormap: data.strip.colormap, vmin: data.strip.vmin, vmax: data.strip.vmax, label: model.get("value_label") ?? "" });
  };
  // Python sets the traits in one hold_sync, but each fires its own change event: one redraw.
  const refresh = coalesce(draw);
  const traits = [...GRID_TRAITS, "components", "attn_bias", "embed", "norm_bias", "logit", "total", "note", "metric_label", "token_index"];
  for (const t of traits) d.onModel(model, `change:${t}`, refresh);
  draw();

  shell.body.append(colorbar.el); // below both grids, shared by them

  return () => d.dispose();
}

// `satisfies`: tsc checks the export against anywidget's own widget type, which loads it.
export default { render } satisfies AnyWidget<LogitAttributionModel>;
