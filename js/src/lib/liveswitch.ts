// Live widget or saved snapshot: which one an actwidgets output shows.
//
// An actwidgets display bundle carries the live view (`application/vnd.jupyter.widget-view+json`,
// drawn by ipywidgets' renderer when the kernel still has the model) and a snapshot
// (`application/vnd.actwidgets.snapshot+json`, drawn by `renderSnapshot` with no kernel).
// The rule (js/WIRE.md): show the live view whenever it has one; otherwise (loading,
// model not found, untrusted output, no ipywidgets, view closed, kernel restarted)
// show the snapshot.
//
// This class is the whole state machine, free of JupyterLab: the labextension wraps it
// in a Lumino widget and supplies `createLive` (ipywidgets' renderer behind `LiveSlot`).
// `update` is called for the first render and for every re-render of the same output
// (update_display_data, trust change); a re-render never touches a live view that is
// showing (no duplicate, no flicker), it only stores the newer snapshot, which is drawn
// when the snapshot is next shown.

import { SNAPSHOT_MIME, WIDGET_VIEW_MIME } from "./mime";

export type Bundle = Readonly<Record<string, unknown>>;
export type Showing = "live" | "snapshot";
/**
 * Where the live view stands (`data-aw-live`): "none" (not wanted: untrusted output or
 * no widget-view entry), "pending" (waiting for ipywidgets or its answer), "live",
 * "failed" (no view: model not found, no renderer; retried on the next re-render),
 * "gone" (the kernel lost its models; never live again for this model id).
 */
export type LiveState = "none" | "pending" | "live" | "failed" | "gone";

/** A live renderer for one output (in JupyterLab: ipywidgets' WidgetRenderer). */
export interface LiveSlot {
  /** Watched for child changes: a view appearing or going away. */
  readonly node: HTMLElement;
  /** Whether a live view is on screen (not "Loading widget..." / an error text). */
  hasView(): boolean;
  /** Whether it gave up ("Error displaying widget..."), as opposed to still loading. */
  failed(): boolean;
  /** Render the bundle's widget-view entry (called again only while there is no view). */
  render(bundle: Bundle): Promise<void>;
  setVisible(visible: boolean): void;
  dispose(): void;
}

export interface SwitchOptions {
  /** Gets `data-aw-showing="live" | "snapshot"` and `data-aw-live=<LiveState>`. */
  host: HTMLElement;
  /** Where the snapshot is drawn; hidden while the live view shows. */
  snapshotNode: HTMLElement;
  /** Draw a snapshot (the bundle's SNAPSHOT_MIME value) into `el`; returns its cleanup. */
  drawSnapshot(el: HTMLElement, snapshot: unknown): () => void;
  /**
   * A live renderer for this output, or null when there is none (no ipywidgets, no
   * kernel yet/ever). May wait (e.g. until the notebook's widget manager exists).
   * Absent: snapshot only.
   */
  createLive?(): LiveSlot | null | Promise<LiveSlot | null>;
}

/** The widget model id of the bundle's live view; null when it has none. */
export function liveModelId(bundle: Bundle): string | null {
  const view = bundle[WIDGET_VIEW_MIME] as { model_id?: unknown } | null | undefined;
  return view && typeof view.model_id === "string" && view.model_id !== "" ? view.model_id : null;
}

export class LiveSnapshotSwitch {
  private bundle: Bundle = {};
  private live: LiveSlot | null = null;
  /** The model id the live slot is for (or is being created for). */
  private liveId: string | null = null;
  /** A model id whose kernel is gone (`liveGone`). */
  private goneId: string | null = null;
  private state: LiveState = "none";
  private generation = 0;
  private pending: Promise<void> | null = null;
  private rendering = false;
  private observer: MutationObserver | null = null;
  private drawnKey: string | null = null;
  private cleanup: (() => void) | null = null;
  private disposed = false;
  showing: Showing | null = null;
  /** How many times a snapshot was (re)drawn: for tests. */
  snapshotDraws = 0;

  constructor(private readonly options: SwitchOptions) {}

  /**
   * Show `bundle`. A trusted bundle with a widget-view entry gets a live renderer (one
   * per model id); the snapshot shows until that renderer has a view. Resolves once the
   * snapshot/live choice is on screen; the live view may arrive later (`settled`).
   */
  update(bundle: Bundle, trusted: boolean): Promise<void> {
    if (this.disposed) return Promise.resolve();
    this.bundle = bundle;
    let id = trusted && this.options.createLive ? liveModelId(bundle) : null;
    const gone = id !== null && id === this.goneId;
    if (gone) id = null;
    if (id !== this.liveId) this.dropLive();
    if (id === null) this.state = gone ? "gone" : "none";
    else if (this.liveId === null) this.createLive(id);
    else if (this.live && !this.live.hasView() && !this.rendering) this.pending = this.renderLive(this.live);
    this.refresh();
    return Promise.resolve();
  }

  /**
   * The kernel lost its widget models (restart, kernel change, dead kernel): drop the
   * live view, show the latest snapshot, and never make this model id live again (a
   * widget manager keeps a dead model's views working on screen but talking to nobody).
   */
  liveGone(): void {
    if (this.disposed || this.liveId === null) return;
    this.goneId = this.liveId;
    this.dropLive();
    this.state = "gone";
    this.refresh();
  }

  /** Resolves when no live renderer is being created or rendered (tests). */
  async settled(): Promise<void> {
    while (this.pending) {
      const p = this.pending;
      await p;
      if (this.pending === p) this.pending = null;
    }
  }

  /** Re-decide what shows (also called whenever the live renderer's children change). */
  refresh(): void {
    if (this.disposed) return;
    if (this.live && !this.rendering && !this.live.hasView() && this.live.failed()) {
      // ipywidgets gave up ("model not found"): drop its renderer (and its error text);
      // the next re-render of this output asks again.
      this.dropLive();
      this.state = "failed";
    }
    const live = !!this.live && this.live.hasView();
    if (!live) this.drawSnapshot();
    this.options.snapshotNode.style.display = live ? "none" : "";
    this.live?.setVisible(live);
    if (live) this.state = "live";
    else if (this.state === "live") this.state = "pending"; // the view went; the renderer stays
    const showing: Showing = live ? "live" : "snapshot";
    const host = this.options.host.dataset;
    if (host.awShowing !== showing) host.awShowing = showing;
    if (host.awLive !== this.state) host.awLive = this.state;
    this.showing = showing;
  }

  dispose(): void {
    if (this.disposed) return;
    this.dropLive();
    this.clearSnapshot();
    this.disposed = true;
  }

  // ------------------------------------------------------------------ live
  private createLive(id: string): void {
    const generation = ++this.generation;
    this.liveId = id;
    this.state = "pending";
    this.pending = (async () => {
      let slot: LiveSlot | null = null;
      try {
        slot = (await this.options.createLive?.()) ?? null;
      } catch (err) {
        console.warn("actwidgets: no live renderer", err);
      }
      if (generation !== this.generation || this.disposed) {
        slot?.dispose();
        return;
      }
      if (!slot) {
        this.liveId = null; // none to be had now: the next update asks again
        this.state = "failed";
        this.refresh();
        return;
      }
      this.live = slot;
      slot.setVisible(false);
      if (typeof MutationObserver !== "undefined") {
        this.observer = new MutationObserver(() => this.refresh());
        this.observer.observe(slot.node, { childList: true });
      }
      await this.renderLive(slot);
    })();
  }

  private async renderLive(slot: LiveSlot): Promise<void> {
    this.rendering = true;
    this.state = "pending";
    let threw = false;
    try {
      await slot.render(this.bundle);
    } catch (err) {
      threw = true;
      console.warn("actwidgets: the live view did not render", err);
    }
    if (slot !== this.live) return;
    this.rendering = false;
    if (threw && !slot.hasView()) {
      this.dropLive();
      this.state = "failed";
    }
    this.refresh();
  }

  private dropLive(): void {
    this.generation++;
    this.observer?.disconnect();
    this.observer = null;
    const live = this.live;
    this.live = null;
    this.liveId = null;
    this.rendering = false;
    live?.dispose();
  }

  // ------------------------------------------------------------------ snapshot
  /** Draw the current bundle's snapshot unless exactly that one is already drawn. */
  private drawSnapshot(): void {
    const snapshot = this.bundle[SNAPSHOT_MIME];
    let key: string;
    try {
      key = JSON.stringify(snapshot) ?? "undefined";
    } catch {
      key = String(Math.random());
    }
    if (key === this.drawnKey) return;
    this.clearSnapshot();
    this.drawnKey = key;
    this.snapshotDraws++;
    const el = this.options.snapshotNode;
    try {
      this.cleanup = this.options.drawSnapshot(el, snapshot);
    } catch (err) {
      console.warn("actwidgets: could not draw the snapshot", err);
      el.textContent = `actwidgets: could not draw this snapshot (${String(err)}).`;
    }
  }

  private clearSnapshot(): void {
    const cleanup = this.cleanup;
    this.cleanup = null;
    this.drawnKey = null;
    try {
      cleanup?.();
    } catch (err) {
      console.warn("actwidgets: snapshot cleanup failed", err);
    }
    this.options.snapshotNode.textContent = "";
  }
}
