// One place that remembers every listener a widget registers, so render()'s
// cleanup can undo all of them; a leaked model.on keeps a dead view redrawing.
import type { AnyModel, ModelState } from "./types";

type Callback = (...args: unknown[]) => void;

export class Disposer {
  private undo: Array<() => void> = [];

  /** model.on with its matching model.off queued for cleanup. */
  onModel<T extends ModelState>(model: AnyModel<T>, event: string, cb: Callback): void {
    model.on(event, cb);
    this.undo.push(() => model.off(event, cb));
  }

  listen<K extends keyof HTMLElementEventMap>(
    target: HTMLElement,
    type: K,
    cb: (ev: HTMLElementEventMap[K]) => void,
    opts?: AddEventListenerOptions,
  ): void {
    target.addEventListener(type, cb, opts);
    this.undo.push(() => target.removeEventListener(type, cb, opts));
  }

  add(fn: () => void): void {
    this.undo.push(fn);
  }

  dispose(): void {
    // Last registered first, like a stack of acquired resources.
    for (const fn of this.undo.splice(0).reverse()) fn();
  }
}

/** Run `fn` once after the current burst of synchronous calls. */
export function coalesce(fn: () => void): () => void {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    queueMicrotask(() => {
      pending = false;
      fn();
    });
  };
}
