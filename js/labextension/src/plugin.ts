// Per notebook: a renderer for actwidgets outputs that shows the live widget when the
// kernel has it and the snapshot otherwise (js/WIRE.md, "Live or snapshot").
//
// ipywidgets registers its widget-view factory on each notebook's own rendermime at
// rank -10 once the kernel session is ready, and renders "Error displaying widget:
// model not found" when the model is gone. This plugin registers, on the same
// per-notebook rendermime, a snapshot factory at rank -20 (so it is chosen for every
// actwidgets bundle, trusted or not); for trusted outputs it creates ipywidgets'
// renderer itself, looked up when needed, and shows it as soon as it has a view.
import type { JupyterFrontEndPlugin } from "@jupyterlab/application";
import { INotebookTracker, type NotebookPanel } from "@jupyterlab/notebook";
import { IRenderMimeRegistry } from "@jupyterlab/rendermime";
import type { IRenderMime } from "@jupyterlab/rendermime-interfaces";
import { SNAPSHOT_MIME, WIDGET_VIEW_MIME } from "../../src/lib/mime";
import { LiveOrSnapshot, type LiveSource } from "./renderer";

export const NOTEBOOK_RANK = -20;

/**
 * ipywidgets' per-notebook widget-view factory, once it exists. Before the session is
 * ready the notebook only has the app-wide factory cloned from the app registry, whose
 * renderers never get a widget manager; so "ready" means: a factory other than the
 * app registry's. Polls (50 ms, backing off to 1 s) until then or until the panel closes.
 */
function liveFactoryOf(
  panel: NotebookPanel,
  appRendermime: IRenderMimeRegistry | null,
): () => Promise<IRenderMime.IRendererFactory | null> {
  const current = () => {
    const factory = panel.content.rendermime.getFactory(WIDGET_VIEW_MIME);
    return factory && factory !== appRendermime?.getFactory(WIDGET_VIEW_MIME) ? factory : null;
  };
  let waiting: Promise<IRenderMime.IRendererFactory | null> | null = null;
  return () => {
    const now = current();
    if (now || panel.isDisposed) return Promise.resolve(now);
    waiting ??= new Promise<IRenderMime.IRendererFactory | null>((resolve) => {
      let delay = 50;
      const poll = () => {
        const factory = current();
        if (factory || panel.isDisposed) {
          waiting = null;
          resolve(factory);
          return;
        }
        delay = Math.min(delay * 1.5, 1000);
        setTimeout(poll, delay);
      };
      setTimeout(poll, delay);
    });
    return waiting;
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: "actwidgets:live-or-snapshot",
  description: "In notebooks: the live actwidgets widget when the kernel has it, its snapshot otherwise.",
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IRenderMimeRegistry],
  activate(_app, tracker: INotebookTracker, appRendermime: IRenderMimeRegistry | null) {
    const seen = new WeakSet<NotebookPanel>();
    const register = (panel: NotebookPanel) => {
      if (seen.has(panel)) return;
      seen.add(panel);
      const live: LiveSource = { factory: liveFactoryOf(panel, appRendermime), kernelLost: new Set() };
      // After a restart (or a kernel change, or a dead kernel) the widget models are gone;
      // ipywidgets leaves their views on screen, working but talking to nobody. Show the
      // latest snapshot instead.
      const lost = () => [...live.kernelLost].forEach((fn) => fn());
      panel.sessionContext.statusChanged.connect((_sender, status) => {
        if (status === "restarting" || status === "autorestarting" || status === "dead") lost();
      });
      panel.sessionContext.kernelChanged.connect((_sender, change) => {
        if (change.oldValue) lost();
      });
      panel.content.rendermime.addFactory(
        {
          safe: true, // untrusted outputs get the snapshot only: the live view needs `trusted`
          mimeTypes: [SNAPSHOT_MIME],
          defaultRank: NOTEBOOK_RANK,
          createRenderer: (options) => new LiveOrSnapshot(options, live),
        },
        NOTEBOOK_RANK,
      );
    };
    tracker.forEach(register);
    tracker.widgetAdded.connect((_sender, panel) => register(panel));
  },
};

export default plugin;
