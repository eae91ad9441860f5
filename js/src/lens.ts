// Logit-lens widget: what each layer would predict at each position. Cells are
// coloured by top-1 probability, entropy or a target token's probability, and
// wide cells show the top-1 token inside them.
import { createCancelButton } from "./lib/cancel";
import { contrastText } from "./lib/colormap";
import { Colorbar } from "./lib/colorbar";
import { formatNumber, formatPercent } from "./lib/format";
import type { CellPainter } from "./lib/grid";
import { baseTooltip, bindGrid, gridColorbar, gridFigure, readGridData } from "./lib/gridModel";
import { bindSelect, createElement, createShell, inFlight, labelled } from "./lib/shell";
import { toFloat32, toInt32 } from "./lib/tensor";
import { throttle } from "./lib/throttle";
import { displayToken, quoteToken } from "./lib/tokens";
import type { AnyWidget, LensModel, RenderProps } from "./lib/types";

const TEXT_MIN_CELL_PX = 28; // narrower cells cannot fit a readable token
const VIEW_SEND_MS = 250; // a scroll tells Python where the user looks at most this often

/** Decoded lens tables, rebuilt once per update rather than per hover. */
interface LensData {
  k: number;
  table: string[];
  index: Int32Array;
  prob: Float32Array;
  entropy: Float32Array;
  targetProb: Float32Array;
  targetRank: Int32Array;
}

function readLens(model: RenderProps<LensModel>["model"]): LensData {
  return {
    k: Math.max(0, Math.floor(Number(model.get("k")) || 0)),
    table: model.get("text_table") ?? [],
    index: toInt32(model.get("topk_index")),
    prob: toFloat32(model.get("topk_prob")),
    entropy: toFloat32(model.get("entropy")),
    targetProb: toFloat32(model.get("target_prob")),
    targetRank: toInt32(model.get("target_rank")),
  };
}

/** Shorten text with an ellipsis until it fits `width` px. */
function fitText(ctx: CanvasRenderingContext2D, text: string, width: number): string {
  if (ctx.measureText(text).width <= width) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ctx.measureText(`${text.slice(0, mid)}…`).width <= width) lo = mid;
    else hi = mid - 1;
  }
  return lo > 0 ? `${text.slice(0, lo)}…` : "";
}

function render({ model, el }: RenderProps<LensModel>): () => void {
  const shell = createShell(model, el, "lens", { figure: gridFigure(model) });
  const d = shell.disposer;

  // target: committed on Enter or blur, not per keystroke (each commit re-runs the lens).
  const target = createElement("input", "aw-target");
  target.type = "text";
  target.placeholder = "target token";
  target.spellcheck = false;
  shell.controls.append(labelled("target", target));
  let targetDirty = false;
  const commitTarget = () => {
    targetDirty = false;
    if (target.value !== (model.get("target") ?? "")) {
      model.set("target", target.value);
      model.save_changes();
    }
  };
  d.listen(target, "input", () => (targetDirty = true));
  d.listen(target, "keydown", (ev) => {
    if (ev.key === "Enter" && !ev.isComposing) {
      ev.preventDefault();
      commitTarget();
    }
  });
  d.listen(target, "blur", () => {
    if (targetDirty) commitTarget();
  });
  const syncTarget = () => {
    const v = model.get("target") ?? "";
    if (!targetDirty && target.value !== v) target.value = v;
  };
  d.onModel(model, "change:target", syncTarget);
  syncTarget();

  const colorBy = createElement("select", "aw-color-by");
  // A long prompt's lens takes minutes on a small CPU: Python stops before its next chunk.
  const cancel = createCancelButton(model, d, "Stop the lens before its next chunk of positions");
  shell.controls.append(labelled("colour by", colorBy), cancel);
  // Options come from Python; a snapshot saved before they were synced lists only its value.
  bindSelect(model, d, colorBy, "color_by", () => model.get("color_by_options") ?? [], "color_by_options");

  // While a long lens fills in, Python computes the columns on screen next: a scroll to the
  // middle of 8,192 tokens fills in there within a chunk, not minutes later in order.
  let view: [number, number] = [0, 0];
  const send = throttle(() => {
    const sent = model.get("view_columns") ?? [];
    if (sent[0] === view[0] && sent[1] === view[1]) return;
    model.set("view_columns", [...view]);
    model.save_changes();
  }, VIEW_SEND_MS);
  const sendView = () => {
    if (inFlight(model.get("status"))) send(); // idle, nothing is steered by it
  };
  d.add(() => send.cancel());
  d.onModel(model, "change:status", sendView);

  let data = readGridData(model);
  let lens = readLens(model);
  let aux: Int32Array = new Int32Array(0);
  const colorbar = new Colorbar(shell.body);
  d.add(() => colorbar.destroy());

  const top1 = (i: number): string | undefined => {
    const j = lens.index[i * lens.k];
    return lens.k > 0 && j !== undefined ? lens.table[j] : undefined;
  };

  const paintCell: CellPainter = (ctx, { row, col }, box, fill) => {
    const text = top1(row * data.cols + col);
    if (text === undefined) return;
    ctx.font = `${Math.min(12, box.h - 6)}px ${getComputedFont(shell.root)}`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillStyle = fill[3] === 0 ? "#888" : contrastText(fill[0], fill[1], fill[2]);
    const s = fitText(ctx, displayToken(text), box.w - 4);
    if (s) ctx.fillText(s, box.x + box.w / 2, box.y + box.h / 2 + 0.5);
  };

  bindGrid(
    model,
    shell,
    {
      fitCellWidth: 56,
      maxCellWidth: 120,
      cellHeight: 22,
      paintCell,
      paintCellMinWidth: TEXT_MIN_CELL_PX,
      onView: (first, last) => {
        view = [first, last];
        sendView();
      },
      tooltip: ({ row, col }) => {
        const i = row * data.cols + col;
        const lines = baseTooltip(model, data, aux, { row, col });
        // A long prompt's lens fills in: this position is not computed yet (or never will be).
        if (i < lens.entropy.length && Number.isNaN(lens.entropy[i]))
          return [...lines, inFlight(model.get("status")) ? "computing…" : "not computed: the run was stopped"];
        for (let r = 0; r < lens.k; r++) {
          const j = lens.index[i * lens.k + r];
          if (j === undefined || j < 0) break;
          lines.push(`  ${r + 1}. ${quoteToken(lens.table[j])} ${formatPercent(lens.prob[i * lens.k + r] ?? NaN)}`);
        }
        if (i < lens.entropy.length) lines.push(`entropy: ${formatNumber(lens.entropy[i])} nats`);
        const tgt = model.get("target") ?? "";
        if (i < lens.targetProb.length) {
          // the trait counts the tokens above it (0 = top); the list above counts from 1
          const rank = i < lens.targetRank.length ? ` (rank ${lens.targetRank[i] + 1})` : "";
          lines.push(`target ${quoteToken(tgt)}: ${formatPercent(lens.targetProb[i])}${rank}`);
        }
        return lines;
      },
    },
    ["k", "text_table", "topk_index", "topk_prob", "entropy", "target_prob", "target_rank"],
    (grid) => {
      data = readGridData(model);
      lens = readLens(model);
      aux = toInt32(model.get("aux"));
      grid.setData(data);
      colorbar.update(gridColorbar(model, data));
    },
  );

  shell.body.append(colorbar.el); // below the grid, next to the token labels it explains

  return () => d.dispose();
}

// Resolved once per root: the canvas cannot read CSS variables itself.
const fontCache = new WeakMap<Element, string>();
function getComputedFont(root: Element): string {
  let f = fontCache.get(root);
  if (f === undefined) {
    try {
      f = getComputedStyle(root).getPropertyValue("--aw-mono").trim() || "monospace";
    } catch {
      f = "monospace";
    }
    fontCache.set(root, f);
  }
  return f;
}

// `satisfies`: tsc checks the export against anywidget's own widget type, which loads it.
export default { render } satisfies AnyWidget<LensModel>;
