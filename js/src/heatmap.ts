// Heatmap widget: one statistic of the residual stream per (layer, token), e.g. its
// L2 norm, with a stat picker, zoomable scrolling grid and colour bar; a second prompt in
// the compare box shows the difference (prompt minus compare) on a diverging scale.
import { createCancelButton } from "./lib/cancel";
import { Colorbar } from "./lib/colorbar";
import { baseTooltip, bindGrid, gridColorbar, gridFigure, readGridData } from "./lib/gridModel";
import { bindSelect, bindTextTrait, createElement, createPromptBox, createShell, labelled, PROMPT_DEBOUNCE_MS } from "./lib/shell";
import { toInt32 } from "./lib/tensor";
import type { AnyWidget, HeatmapModel, RenderProps } from "./lib/types";

function render({ model, el }: RenderProps<HeatmapModel>): () => void {
  const shell = createShell(model, el, "heatmap", { figure: gridFigure(model) });
  const d = shell.disposer;

  const compare = createPromptBox("aw-compare", "compare with", "Compare with another prompt of the same token length (optional)");
  shell.inputs.append(compare);
  bindTextTrait(model, d, compare, "compare", PROMPT_DEBOUNCE_MS);

  const stat = createElement("select", "aw-stat");
  shell.controls.append(labelled("stat", stat), createCancelButton(model, d, "Stop the forward at its next block"));
  bindSelect(model, d, stat, "stat", () => [...(model.get("stat_options") ?? [])], "stat_options");

  let data = readGridData(model);
  let aux: Int32Array = new Int32Array(0);
  const colorbar = new Colorbar(shell.body);
  d.add(() => colorbar.destroy());

  bindGrid(
    model,
    shell,
    {
      fitCellWidth: 28,
      maxCellWidth: 48,
      cellHeight: 18,
      tooltip: (cell) => baseTooltip(model, data, aux, cell),
    },
    [],
    (grid) => {
      data = readGridData(model);
      aux = toInt32(model.get("aux"));
      grid.setData(data);
      colorbar.update(gridColorbar(model, data));
    },
  );

  shell.body.append(colorbar.el); // below the grid, next to the token labels it explains

  return () => d.dispose();
}

// `satisfies`: tsc checks the export against anywidget's own widget type, which loads it.
export default { render } satisfies AnyWidget<HeatmapModel>;
