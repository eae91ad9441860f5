// Draw a saved widget (`application/vnd.actwidgets.snapshot+json`) with no kernel.
// A snapshot is a widget's synced traits at its last completed run, its arrays packed
// compactly (float16 where that loses nothing visible). We rebuild a read-only model
// from it and hand it to the live widget's own `render`, so a snapshot looks exactly
// like the figure it was taken from; then every control is disabled and a badge says
// it is a snapshot. Used by the JupyterLab extension and by `widget.to_html()`.
import attention from "./attention";
import dla from "./dla";
import heatmap from "./heatmap";
import lens from "./lens";
import patching from "./patching";
import steering from "./steering";
import type { AnyModel, RenderProps } from "./lib/types";

/** One packed array: little-endian `dtype` ("<f2", "<f4", "<i2", "<i4", "|u1"), base64 bytes. */
export interface PackedArray {
  dtype: string;
  data: string;
}

export interface Snapshot {
  format: "actwidgets.snapshot";
  version: number;
  widget: string; // "attention" | "dla" | "heatmap" | "lens" | "patching" | "steering"
  title?: string;
  model?: string; // the language model's name
  saved?: string; // ISO time of the run it shows
  state: Record<string, unknown>;
  buffers: Record<string, PackedArray>;
}

type Renderer = { render(props: RenderProps<never>): (() => void) | void };

const RENDERERS: Record<string, Renderer> = {
  attention: attention as unknown as Renderer,
  dla: dla as unknown as Renderer,
  heatmap: heatmap as unknown as Renderer,
  lens: lens as unknown as Renderer,
  patching: patching as unknown as Renderer,
  steering: steering as unknown as Renderer,
};

export function isSnapshot(value: unknown): value is Snapshot {
  const s = value as Snapshot | null;
  return !!s && s.format === "actwidgets.snapshot" && typeof s.widget === "string" && typeof s.state === "object";
}

function base64Bytes(text: string): Uint8Array {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

/** IEEE 754 half -> float, NaN and infinities included. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/**
 * Widen a packed array to the little-endian float32 / int32 bytes the live widgets
 * decode (what a `Bytes` trait carries), so the renderers need no snapshot branch.
 */
export function unpack(packed: PackedArray): DataView {
  const bytes = base64Bytes(packed.data);
  const src = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const kind = packed.dtype.slice(1);
  const size = Number(kind.slice(1));
  if (!["f2", "f4", "i2", "i4", "u1"].includes(kind)) throw new Error(`unknown snapshot dtype ${packed.dtype}`);
  const n = Math.floor(bytes.byteLength / size);
  const out = new DataView(new ArrayBuffer(n * 4));
  for (let i = 0; i < n; i++) {
    const o = i * size;
    if (kind === "f2") out.setFloat32(i * 4, halfToFloat(src.getUint16(o, true)), true);
    else if (kind === "f4") out.setFloat32(i * 4, src.getFloat32(o, true), true);
    else if (kind === "i2") out.setInt32(i * 4, src.getInt16(o, true), true);
    else if (kind === "i4") out.setInt32(i * 4, src.getInt32(o, true), true);
    else out.setInt32(i * 4, src.getUint8(o), true);
  }
  return out;
}

/** A model that answers `get` from the snapshot and ignores every write: nothing can re-run. */
export function snapshotModel(snapshot: Snapshot): AnyModel<Record<string, unknown>> {
  const state: Record<string, unknown> = { ...snapshot.state };
  for (const [name, packed] of Object.entries(snapshot.buffers ?? {})) state[name] = unpack(packed);
  return {
    get: (key) => state[key as string],
    set: () => {},
    on: () => {},
    off: () => {},
    save_changes: () => {},
    send: () => {},
    widget_manager: { get_model: () => Promise.reject(new Error("a snapshot has no kernel, so no other models")) },
  };
}

function badge(snapshot: Snapshot): HTMLDivElement {
  const note = document.createElement("div");
  note.className = "aw-snapshot-badge";
  // Inline: the badge sits outside the widget root, where style.ts's sheet applies.
  note.style.cssText =
    "font: 11px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color2, #555);" +
    "border-left: 3px solid #f9a825; background: rgba(249, 168, 37, 0.12); padding: 2px 8px; margin: 2px 0 4px;";
  const when = snapshot.saved ? ` of ${snapshot.saved.replace("T", " ").slice(0, 16)} UTC` : "";
  const what = snapshot.model ? ` (${snapshot.model})` : "";
  // textContent only: the model name and title are untrusted text.
  note.textContent = `Snapshot${when}${what}: read-only. Run the notebook to make it live again.`;
  note.title = snapshot.title ?? "";
  return note;
}

/** Draw `snapshot` into `el`; returns the cleanup function. */
export function renderSnapshot(el: HTMLElement, snapshot: Snapshot): () => void {
  const host = document.createElement("div");
  host.className = "aw-snapshot";
  host.dataset.snapshot = snapshot.widget;
  el.append(host);
  const renderer = RENDERERS[snapshot.widget];
  if (!renderer) {
    host.textContent = `actwidgets: this snapshot is of an unknown widget "${snapshot.widget}"; upgrade actwidgets to draw it.`;
    return () => host.remove();
  }
  host.append(badge(snapshot));
  const body = document.createElement("div");
  host.append(body);
  const cleanup = renderer.render({ model: snapshotModel(snapshot) as never, el: body });
  for (const control of body.querySelectorAll<HTMLInputElement>("input, select, textarea, button")) {
    control.disabled = true;
  }
  body.querySelector<HTMLElement>(".aw-root")?.setAttribute("data-snapshot", "true");
  return () => {
    if (typeof cleanup === "function") cleanup();
    host.remove();
  };
}
