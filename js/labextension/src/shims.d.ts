// The few JupyterLab types this extension uses. The packages themselves come from
// JupyterLab at run time (shared singletons); installing them only for their types
// would cost hundreds of MB of node_modules, so their used surface is declared here.
declare module "@jupyterlab/application" {
  import type { Token } from "@lumino/coreutils";

  export interface JupyterFrontEnd {
    readonly name: string;
  }
  export interface JupyterFrontEndPlugin<T> {
    id: string;
    description?: string;
    autoStart?: boolean;
    requires?: Token<unknown>[];
    optional?: Token<unknown>[];
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    activate(app: JupyterFrontEnd, ...args: any[]): T;
  }
}

declare module "@jupyterlab/rendermime" {
  import type { Token } from "@lumino/coreutils";
  import type { IRenderMime } from "@jupyterlab/rendermime-interfaces";

  export interface IRenderMimeRegistry {
    readonly mimeTypes: readonly string[];
    getFactory(mimeType: string): IRenderMime.IRendererFactory | undefined;
    addFactory(factory: IRenderMime.IRendererFactory, rank?: number): void;
    getRank(mimeType: string): number | undefined;
  }
  export const IRenderMimeRegistry: Token<IRenderMimeRegistry>;
}

declare module "@jupyterlab/notebook" {
  import type { Token } from "@lumino/coreutils";
  import type { ISignal } from "@lumino/signaling";
  import type { Widget } from "@lumino/widgets";
  import type { IRenderMimeRegistry } from "@jupyterlab/rendermime";

  export interface Notebook extends Widget {
    readonly rendermime: IRenderMimeRegistry;
  }
  export interface ISessionContext {
    /** The kernel's status: "restarting", "autorestarting", "dead", "idle", ... */
    readonly statusChanged: ISignal<ISessionContext, string>;
    readonly kernelChanged: ISignal<ISessionContext, { oldValue: unknown; newValue: unknown }>;
  }
  export interface NotebookPanel extends Widget {
    readonly content: Notebook;
    readonly sessionContext: ISessionContext;
  }
  export interface INotebookTracker {
    forEach(fn: (panel: NotebookPanel) => void): void;
    readonly widgetAdded: ISignal<INotebookTracker, NotebookPanel>;
  }
  export const INotebookTracker: Token<INotebookTracker>;
}
