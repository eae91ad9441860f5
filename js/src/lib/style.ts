// The widgets' only stylesheet, injected as a <style> inside each root: no external
// CSS, no CDN, and it works whether anywidget renders into a shadow root or not.
// Colours come from JupyterLab's CSS variables (with fallbacks for classic Notebook,
// VS Code and Colab) so light and dark themes both read well.

const CSS = `
.aw-root {
  --aw-fg: var(--jp-ui-font-color1, var(--vscode-editor-foreground, #222));
  --aw-fg-dim: var(--jp-ui-font-color2, #666);
  --aw-bg: var(--jp-layout-color1, var(--vscode-editor-background, #fff));
  --aw-bg-alt: var(--jp-layout-color2, rgba(127,127,127,0.08));
  --aw-border: var(--jp-border-color1, rgba(127,127,127,0.35));
  --aw-accent: var(--jp-brand-color1, #1976d2);
  --aw-error-fg: var(--jp-error-color0, #b71c1c);
  --aw-error-bg: var(--jp-error-color3, rgba(211,47,47,0.1));
  --aw-mono: var(--jp-code-font-family, ui-monospace, SFMono-Regular, Menlo, Consolas, monospace);
  font-family: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  font-size: var(--jp-ui-font-size1, 13px);
  color: var(--aw-fg);
  display: flex; flex-direction: column; gap: 6px;
  max-width: 100%; box-sizing: border-box; padding: 4px 0;
}
.aw-root *, .aw-root *::before, .aw-root *::after { box-sizing: border-box; }
.aw-root [hidden] { display: none !important; }
.aw-bar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; }
.aw-prompt, .aw-clean, .aw-corrupted {
  flex: 1 1 320px; min-height: 2.4em; resize: vertical;
  font-family: var(--aw-mono); font-size: 12px; padding: 4px 6px;
  color: var(--aw-fg); background: var(--aw-bg);
  border: 1px solid var(--aw-border); border-radius: 3px;
}
.aw-prompt:focus, .aw-clean:focus, .aw-corrupted:focus, .aw-target:focus, .aw-answer-correct:focus,
.aw-answer-wrong:focus, .aw-root select:focus { outline: 2px solid var(--aw-accent); outline-offset: -1px; }
.aw-controls { display: flex; align-items: center; gap: 6px; flex-wrap: wrap; }
.aw-controls label { display: inline-flex; align-items: center; gap: 4px; color: var(--aw-fg-dim); }
.aw-root select, .aw-target, .aw-answer-correct, .aw-answer-wrong, .aw-root button {
  font: inherit; color: var(--aw-fg); background: var(--aw-bg);
  border: 1px solid var(--aw-border); border-radius: 3px; padding: 2px 6px;
}
.aw-target, .aw-answer-correct, .aw-answer-wrong { font-family: var(--aw-mono); width: 10em; }
.aw-field { display: flex; flex-direction: column; gap: 2px; flex: 1 1 320px; color: var(--aw-fg-dim); font-size: 11px; }
.aw-field > textarea { flex: 1 1 auto; }
.aw-answers { display: flex; flex-direction: column; gap: 4px; }
.aw-answers label { display: flex; justify-content: space-between; align-items: center; gap: 4px; color: var(--aw-fg-dim); font-size: 11px; }
.aw-root button:disabled, .aw-root button:disabled:hover { cursor: default; opacity: 0.5; background: var(--aw-bg); }
.aw-summary { font-family: var(--aw-mono); font-size: 12px; }
.aw-grids { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.aw-panel { flex: 1 1 360px; min-width: 0; display: flex; flex-direction: column; gap: 2px; }
.aw-panel-title { font-size: 11px; font-weight: 600; color: var(--aw-fg-dim); }
/* Patching fills its grid in as chunks finish: cells not computed yet (NaN, drawn
   transparent) show this hatch, so they never read as the diverging scale's white 0. */
.aw-root[data-widget="patching"] .aw-grid {
  background: repeating-linear-gradient(45deg, rgba(127,127,127,0.25) 0 2px, transparent 2px 6px), var(--aw-bg);
}
/* LogitAttribution: a click on a prompt token attributes there (the outlined one is shown). */
.aw-dla-tokens { max-height: 6em; }
.aw-dla-tokens .aw-tok { cursor: pointer; border-radius: 2px; }
.aw-dla-tokens .aw-tok:hover { background: var(--aw-bg-alt); }
.aw-dla-tokens .aw-tok.aw-hl { outline: 2px solid var(--aw-accent); }
.aw-note { color: var(--aw-fg-dim); font-size: 11px; font-style: italic; }
/* The narrow strip's columns are not tokens: no "px/token", and its zoom bar stays one line
   high, as the head grid's beside it, so the two grids' rows line up. */
.aw-dla-strip .aw-zoom-label { display: none; }
.aw-root button { cursor: pointer; min-width: 26px; }
.aw-root button:hover { background: var(--aw-bg-alt); }
.aw-status { color: var(--aw-fg-dim); font-size: 11px; }
.aw-root[data-status="running"] .aw-status, .aw-root[data-status="queued"] .aw-status { color: var(--aw-accent); }
.aw-root[data-status="error"] .aw-status { color: var(--aw-error-fg); }
.aw-progress { width: 100px; height: 8px; }
.aw-error {
  color: var(--aw-error-fg); background: var(--aw-error-bg);
  border-left: 3px solid var(--aw-error-fg); padding: 4px 8px;
  white-space: pre-wrap; font-family: var(--aw-mono); font-size: 12px;
}
/* After an error the figure on screen is the previous input's (shell.ts). Hover stays
   on so its cells can still be read; hovering brings it halfway back. */
.aw-stale-note { color: var(--aw-fg-dim); font-size: 11px; font-style: italic; }
.aw-stale-note::before { content: "↓ "; font-style: normal; }
.aw-body.aw-stale { opacity: 0.4; filter: grayscale(0.6); transition: opacity 120ms; }
.aw-body.aw-stale:hover { opacity: 0.75; }
.aw-grid-wrap { position: relative; display: flex; flex-direction: column; gap: 2px; }
.aw-zoom { display: flex; gap: 4px; align-items: center; color: var(--aw-fg-dim); font-size: 11px; }
.aw-scroll {
  overflow-x: auto; overflow-y: hidden; max-width: 100%;
  border: 1px solid var(--aw-border); border-radius: 3px; background: var(--aw-bg);
}
.aw-content { position: relative; }
.aw-grid, .aw-tokens { position: sticky; left: 0; display: block; }
.aw-grid { cursor: crosshair; }
.aw-grid:focus { outline: none; }
.aw-tokens { overflow: hidden; }
.aw-token {
  position: absolute; top: 0; overflow: hidden; white-space: pre; text-overflow: ellipsis;
  font-family: var(--aw-mono); font-size: 11px; line-height: 16px; text-align: center;
  color: var(--aw-fg);
}
.aw-token.aw-rot { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; line-height: normal; }
.aw-token.aw-sel { color: var(--aw-accent); font-weight: 600; }
.aw-tooltip {
  position: absolute; z-index: 10; pointer-events: none; max-width: 360px;
  background: var(--jp-layout-color0, var(--aw-bg)); color: var(--aw-fg);
  border: 1px solid var(--aw-border); border-radius: 3px; padding: 4px 8px;
  box-shadow: 0 2px 6px rgba(0,0,0,0.25); font-size: 12px; white-space: pre;
}
.aw-tooltip .aw-tip-head { font-family: var(--aw-mono); font-weight: 600; }
.aw-colorbar-wrap { display: flex; align-items: center; gap: 6px; font-size: 11px; color: var(--aw-fg-dim); }
.aw-colorbar { border: 1px solid var(--aw-border); height: 10px; width: 160px; }
/* Steering: slider with budget markers, the two continuations, per-token KL, EAST curves. */
.aw-root {
  --aw-warn: var(--jp-warn-color0, var(--jp-error-color1, #e65100));
  --aw-diff-bg: var(--jp-warn-color3, rgba(255,167,38,0.3));
}
.aw-strength-group { display: inline-flex; align-items: center; gap: 6px; }
.aw-strength-track { position: relative; display: inline-block; width: 220px; }
.aw-strength { display: block; width: 100%; margin: 0; }
/* --aw-at is 0..1 along the range; the thumb's centre travels 16 px less than the width. */
.aw-gamma-marker, .aw-calibrated-marker {
  /* under the thumb near 0: a drag must reach the slider (the slider's title names them) */
  pointer-events: none;
  position: absolute; top: -3px; bottom: -3px; width: 2px; margin-left: -1px;
  left: calc(8px + var(--aw-at, 0) * (100% - 16px));
}
.aw-gamma-marker { background: var(--aw-warn); }
.aw-calibrated-marker { background: var(--aw-accent); }
.aw-strength-value { font-family: var(--aw-mono); min-width: 4.5em; text-align: right; }
.aw-budget {
  width: 6em; font: inherit; font-family: var(--aw-mono); color: var(--aw-fg); background: var(--aw-bg);
  border: 1px solid var(--aw-border); border-radius: 3px; padding: 2px 4px;
}
.aw-budget:focus { outline: 2px solid var(--aw-accent); outline-offset: -1px; }
.aw-budget.aw-invalid, .aw-budget.aw-invalid:focus { outline: 2px solid var(--aw-error-fg); outline-offset: -1px; }
.aw-kl { font-family: var(--aw-mono); font-size: 12px; }
.aw-kl.aw-over-budget { color: var(--aw-warn); font-weight: 600; }
.aw-tok-text {
  white-space: pre-wrap; overflow-wrap: anywhere; font-family: var(--aw-mono); font-size: 12px;
  line-height: 1.5; padding: 4px 6px; min-height: 2.5em; max-height: 24em; overflow-y: auto;
  border: 1px solid var(--aw-border); border-radius: 3px; background: var(--aw-bg);
}
.aw-tok.aw-diff { background: var(--aw-diff-bg); border-radius: 2px; }
.aw-tok.aw-hl { outline: 1px solid var(--aw-accent); }
.aw-kl-strip-label { color: var(--aw-fg-dim); font-size: 11px; margin-top: 4px; }
.aw-kl-strip {
  display: flex; align-items: flex-end; gap: 1px; height: 28px; overflow-x: auto;
  border-bottom: 1px solid var(--aw-border);
}
.aw-kl-bar { flex: 0 0 4px; min-height: 1px; background: var(--aw-warn); }
.aw-kl-bar.aw-missing { min-height: 0; }
.aw-kl-bar:hover { background: var(--aw-accent); }
.aw-curves { display: flex; flex-wrap: wrap; gap: 12px; }
.aw-curve { display: flex; flex-direction: column; gap: 2px; }
.aw-curve svg { overflow: visible; }
.aw-curve .aw-axis { stroke: var(--aw-border); stroke-width: 1; }
.aw-curve .aw-curve-line { stroke: var(--aw-accent); stroke-width: 1.5; }
.aw-curve text { fill: var(--aw-fg-dim); font-size: 10px; }
/* Attention: thumbnails per head, the selected head large (squareView.ts) with token labels. */
.aw-overview-panel, .aw-pattern-panel { flex: 0 0 auto; }
.aw-overview-wrap { position: relative; }
.aw-overview { display: block; cursor: pointer; }
.aw-square { position: relative; display: grid; align-items: start; }
.aw-square-rows, .aw-square-cols { position: relative; overflow: hidden; }
.aw-token.aw-square-row { left: 0; width: calc(100% - 4px); text-align: right; text-overflow: ellipsis; }
.aw-pattern { display: block; cursor: crosshair; }
.aw-query { width: 5em; font: inherit; font-family: var(--aw-mono); color: var(--aw-fg); background: var(--aw-bg);
  border: 1px solid var(--aw-border); border-radius: 3px; padding: 2px 4px; }
.aw-query.aw-invalid { outline: 2px solid var(--aw-error-fg); outline-offset: -1px; }
.aw-query-token { font-family: var(--aw-mono); font-size: 12px; white-space: pre; }
`;

/** Add the stylesheet to `root` once (re-rendering the same root does not stack copies). */
export function injectStyle(root: HTMLElement): void {
  if (root.querySelector(":scope > style[data-aw-style]")) return;
  const style = document.createElement("style");
  style.dataset.awStyle = "";
  style.textContent = CSS;
  root.prepend(style);
}
