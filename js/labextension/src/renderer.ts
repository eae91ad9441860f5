// One actwidgets output in JupyterLab: the snapshot, or the live widget when the kernel
// has it. The decision is LiveSnapshotSwitch's (js/src/lib/liveswitch.ts, unit-tested);
// this file only adapts it to Lumino and to ipywidgets' renderer.
import type { IRenderMime } from "@jupyterlab/rendermime-interfaces";
import { Panel, Widget } from "@lumino/widgets";
import { LiveSnapshotSwitch, type Bundle, type LiveSlot } from "../../src/lib/liveswitch";
import { WIDGET_VIEW_MIME } from "../../src/lib/mime";
import { isSnapshot, renderSnapshot } from "../../src/snapshot";

/** What a notebook gives its outputs for the live view. */
export interface LiveSource {
  /** Resolves ipywidgets' widget-view renderer factory of the notebook, or null. */
  factory(): Promise<IRenderMime.IRendererFactory | null>;
  /** The set of callbacks run when the kernel loses its widget models (restart, ...). */
  readonly kernelLost: Set<() => void>;
}

function drawSnapshot(el: HTMLElement, snapshot: unknown): () => void {
  if (isSnapshot(snapshot)) return renderSnapshot(el, snapshot);
  el.textContent = "actwidgets: this output's snapshot is not in a format this version can draw.";
  return () => {};
}

/** `widgets` of a Lumino Panel (ipywidgets' WidgetRenderer is one), else null. */
function panelChildren(widget: Widget): readonly Widget[] | null {
  const children = (widget as unknown as { widgets?: unknown }).widgets;
  return Array.isArray(children) ? (children as Widget[]) : null;
}

export class LiveOrSnapshot extends Panel implements IRenderMime.IRenderer {
  readonly switch: LiveSnapshotSwitch;

  private readonly onKernelLost = () => this.switch.liveGone();

  /** Without `live` it only ever draws the snapshot (the app-wide mime renderer). */
  constructor(
    private readonly options: IRenderMime.IRendererOptions,
    private readonly live?: LiveSource,
  ) {
    super();
    this.addClass("aw-output");
    this.node.dataset.awRenderer = live ? "notebook" : "snapshot";
    live?.kernelLost.add(this.onKernelLost);
    const snapshot = new Widget();
    snapshot.addClass("aw-output-snapshot");
    this.addWidget(snapshot);
    this.switch = new LiveSnapshotSwitch({
      host: this.node,
      snapshotNode: snapshot.node,
      drawSnapshot,
      createLive: live ? () => this.createLive(live) : undefined,
    });
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    return this.switch.update(model.data as Bundle, model.trusted);
  }

  dispose(): void {
    if (this.isDisposed) return;
    this.live?.kernelLost.delete(this.onKernelLost);
    this.switch.dispose();
    super.dispose();
  }

  private async createLive(live: LiveSource): Promise<LiveSlot | null> {
    const factory = await live.factory();
    if (!factory || this.isDisposed) return null;
    const renderer = factory.createRenderer({ ...this.options, mimeType: WIDGET_VIEW_MIME });
    renderer.addClass("aw-output-live");
    renderer.setHidden(true);
    this.addWidget(renderer);
    const hasView = () => {
      const children = panelChildren(renderer);
      return children ? children.some((w) => !w.isDisposed) : renderer.node.childElementCount > 0;
    };
    return {
      node: renderer.node,
      hasView,
      // ipywidgets' WidgetRenderer writes these when it gives up (8.x, JupyterLab 4):
      // "Error displaying widget: model not found" / "Error displaying widget".
      failed: () => !hasView() && (renderer.node.textContent ?? "").includes("Error displaying widget"),
      // A copy: ipywidgets blanks the model_id of the data it rendered when the view
      // closes; the notebook's own output data stays as the kernel sent it.
      render: (bundle) => {
        const view = bundle[WIDGET_VIEW_MIME] as Record<string, unknown>;
        return renderer.renderModel({
          trusted: true,
          data: { ...bundle, [WIDGET_VIEW_MIME]: { ...view } } as IRenderMime.IMimeModel["data"],
          metadata: {},
          setData: () => {},
        });
      },
      setVisible: (visible) => renderer.setHidden(!visible),
      dispose: () => renderer.dispose(),
    };
  }
}
