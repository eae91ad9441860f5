// The traits each widget syncs with Python, as TypeScript sees them.
// WIRE.md is the contract; these interfaces mirror it one trait per field so a
// misspelt trait name is a compile error here rather than a silent `undefined`.
// tests/test_contract.py reads this file and fails when a field and the Python
// trait set disagree, so keep one `name: type;` per line.

import type { AnyModel, AnyWidget, RenderProps as AnywidgetRenderProps } from "@anywidget/types";

export type { AnyModel, AnyWidget };

/** anywidget's bound on a model's state (its `ObjectHash`, which the package does not export). */
export type ModelState = Record<string, any>;

/**
 * The part of anywidget's render props our widgets read. Narrower than anywidget's
 * because `renderSnapshot` calls the same `render` with no kernel: no host, no signal.
 */
export type RenderProps<T extends ModelState> = Pick<AnywidgetRenderProps<T>, "model" | "el">;

/** Anywidget delivers a `Bytes` trait as a DataView; empty means "absent". */
export type Bytes = DataView;

/** "queued": asked for, waiting for the model's worker (another widget's job may hold it). */
export type Status = "idle" | "queued" | "running" | "done" | "error" | "cancelled";

/** The run-state traits every widget has, whatever its inputs are. */
export interface StatusModel {
  status: Status;
  progress: number;
  error: string;
  /** Where a remote (NDIF) job is while running ("queued (position 2)", ...); "" when local. */
  remote_status: string;
  /** The figure is an earlier input's: this input's run failed, or was cancelled before it drew.
   * Absent from snapshots saved before it existed (then "error" alone meant it). */
  stale?: boolean;
}

/** Traits common to every widget (`actwidgets/widgets/_base.py`). */
export interface BaseModel extends StatusModel {
  prompt: string;
}

/** `{}` when nothing is selected. */
export interface Selection {
  row?: number;
  col?: number;
}

/**
 * The grid traits alone. Split from GridModel because PatchingGrid draws a grid but
 * takes two prompts instead of `prompt`, so grid code must not require `prompt`.
 */
export interface GridTraits extends StatusModel {
  tokens: string[];
  row_labels: string[];
  shape: [number, number];
  values: Bytes; // f32 rows*cols, NaN = empty cell
  vmin: number;
  vmax: number;
  colormap: "viridis" | "magma" | "rdbu" | string;
  scale: "linear" | "log";
  value_label: string;
  aux: Bytes; // i32 rows*cols or empty
  aux_label: string;
  selected: Selection;
}

/** Grid widgets driven by one prompt (Heatmap, LogitLens). */
export interface GridModel extends BaseModel, GridTraits {}

export interface HeatmapModel extends GridModel {
  stat: "norm" | "max_abs" | "delta" | "direction" | string;
  compare: string; // "" or a second prompt of the same token length: values are prompt minus compare
  stat_options: string[];
}

export type ColorBy = "top_prob" | "entropy" | "target_prob";

export interface LensModel extends GridModel {
  target: string;
  color_by: ColorBy | string;
  color_by_options: [ColorBy | string, string][]; // [value, label], in menu order
  k: number;
  text_table: string[];
  topk_index: Bytes; // i32 rows*cols*k
  topk_prob: Bytes; // f32 rows*cols*k
  entropy: Bytes; // f32 rows*cols
  target_prob: Bytes; // f32 rows*cols or empty
  target_rank: Bytes; // i32 rows*cols or empty
  view_columns?: number[]; // js -> py: [first, last) on screen while running
}

/**
 * Attention: every head's pattern, one head large, and "from this token" (the grid traits:
 * rows = heads of the large head's layer, cols = key tokens, values = weights from `query_index`).
 */
export interface AttentionModel extends GridModel {
  head: number[]; // [layer, head] to show large (both); [] = the default
  query: number | null; // query position (both); null = the last token, negative from the end
  query_index: number; // the query position shown, 0-based
  n_heads: number;
  layer_labels: string[]; // the overview's rows: block indices as text
  overview: Bytes; // f32 layers*heads*n*n, each head pooled; NaN above the diagonal (masked)
  overview_size: number; // n
  overview_bins: Bytes; // i32 n: first token of each bin
  pattern: Bytes; // f32 p*p: the large head, NaN above the diagonal
  pattern_size: number; // p: tokens, or bins when pooled (over 512 tokens)
  pattern_bins: Bytes; // i32 p: first token of each bin
  pattern_head: number[]; // [layer, head] that `pattern` shows
}

/** LogitAttribution: direct logit attribution at one token (grid rows = layers, cols = heads). */
export interface LogitAttributionModel extends GridModel {
  target: string;
  wrong: string; // "" = attribute the logit itself, else the difference target - wrong
  position: number; // as given; negative counts from the end
  token_index: number; // the attributed token, 0-based; -1 before a run
  metric_label: string; // e.g. "logit(' Mary') − logit(' John')"
  components: Bytes; // f32 layers*2: each layer's attention output, MLP output
  attn_bias: Bytes; // f32 layers: the output projection's bias term
  embed: number; // NaN (null over JSON) before a run
  norm_bias: number;
  logit: number; // the model's own logit (or difference), before any soft-cap or scaling
  total: number; // the sum of the parts
  note: string;
}

export type PatchSite = "resid" | "attn" | "mlp" | "heads";
export type PatchMethod = "exact" | "attribution" | "relp";

/** PatchingGrid: activation patching from a corrupted run into a clean one. */
export interface PatchingModel extends GridTraits {
  prompt: string; // inherited by the Python class and synced, but unused (always ""): clean and corrupted are the inputs
  clean: string;
  corrupted: string;
  answer: [string, string]; // [correct, wrong]
  site: PatchSite | string;
  site_options: string[];
  method: PatchMethod | string;
  method_options: string[];
  normalized: boolean;
  ld_clean: number; // NaN before the first run (may arrive as null over JSON)
  ld_corrupted: number;
  reference_values: Bytes; // f32 rows*cols (the exact grid) or empty
  correlation: number; // Pearson r against exact, NaN when none
  col_label: "token" | "head" | string;
}

export type SteeringMethod = "asc" | "east";
export type SteeringOperation = "add" | "ablate";

/** Steering: a continuation with and without a steering vector, and what it cost in KL. */
export interface SteeringModel extends BaseModel {
  strength: number; // signed; the slider's value
  strength_min: number;
  strength_max: number;
  strength_step: number;
  gamma_max: number; // closed-form bound's strength for the budget, NaN (or null) when none
  calibrated: number; // strength whose measured KL meets the budget, NaN (or null) when none
  calibration_note: string; // why there is no calibrated strength (the KL levels off below the budget), or ""
  kl_budget: number;
  unsteered_tokens: string[]; // grow while generating
  steered_tokens: string[];
  kl_per_token: Bytes; // f32 per unsteered token, nats, or empty
  entropy_unsteered: Bytes; // f32, same positions, or empty
  entropy_steered: Bytes;
  measured_kl: number; // mean of kl_per_token, NaN when none
  method: SteeringMethod | string; // "east" adds the action-entropy curves
  operation: SteeringOperation | string; // "ablate": strength is the fraction of the direction removed
  curve_beta: Bytes; // EAST: f32 x and y of "action entropy vs beta", or empty
  curve_entropy_beta: Bytes;
  curve_temperature: Bytes; // f32 x and y of "action entropy vs temperature", or empty
  curve_entropy_temperature: Bytes;
}
