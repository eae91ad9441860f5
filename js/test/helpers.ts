// Test doubles: a model that behaves like anywidget's (Backbone-style events,
// counted on/off/save_changes), a fake canvas context, byte encoders, and the cancel
// button's contract every long-running widget keeps.
import { expect, vi } from "vitest";
import type { AnyModel, ModelState, StatusModel } from "../src/lib/types";

// never[]: holds every handler shape anywidget's `on` overloads accept; fire() passes no arguments.
type Cb = (...args: never[]) => void;

export interface MockModel<T extends ModelState> extends AnyModel<T> {
  saves: number;
  onCalls: number;
  offCalls: number;
  listenerCount(): number;
  /** Simulate Python changing a trait (fires change:<key> like a comm update). */
  pySet<K extends keyof T>(key: K, value: T[K]): void;
}

export function mockModel<T extends ModelState>(init: T): MockModel<T> {
  const state = { ...init } as T;
  const listeners = new Map<string, Set<Cb>>();
  const fire = (event: string) => {
    for (const cb of [...(listeners.get(event) ?? [])]) cb();
  };
  const m: MockModel<T> = {
    saves: 0,
    onCalls: 0,
    offCalls: 0,
    get: (k) => state[k],
    set: (k, v) => {
      state[k] = v;
      fire(`change:${String(k)}`); // Backbone fires change events for local sets too
    },
    pySet: (k, v) => {
      state[k] = v;
      fire(`change:${String(k)}`);
    },
    on: (event, cb) => {
      m.onCalls++;
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event)!.add(cb);
    },
    off: (event, cb) => {
      m.offCalls++;
      if (event && cb) listeners.get(event)?.delete(cb);
      else if (event) listeners.delete(event);
      else listeners.clear();
    },
    save_changes: () => {
      m.saves++;
    },
    send: () => {},
    widget_manager: { get_model: () => Promise.reject(new Error("mock model: no widget manager")) },
    listenerCount: () => [...listeners.values()].reduce((n, s) => n + s.size, 0),
  };
  return m;
}

export interface FakeContext {
  calls: Array<[string, unknown[]]>;
  [key: string]: unknown;
}

export function fakeContext(): FakeContext {
  const calls: Array<[string, unknown[]]> = [];
  const record =
    (name: string, ret?: (...a: any[]) => unknown) =>
    (...args: unknown[]) => {
      calls.push([name, args]);
      return ret?.(...args);
    };
  return {
    calls,
    fillStyle: "",
    strokeStyle: "",
    lineWidth: 1,
    font: "",
    textAlign: "start",
    textBaseline: "alphabetic",
    globalAlpha: 1,
    imageSmoothingEnabled: true,
    setTransform: record("setTransform"),
    clearRect: record("clearRect"),
    fillRect: record("fillRect"),
    strokeRect: record("strokeRect"),
    drawImage: record("drawImage"),
    putImageData: record("putImageData"),
    fillText: record("fillText"),
    createImageData: record("createImageData", (w: number, h: number) => ({ width: w, height: h, data: new Uint8ClampedArray(w * h * 4) })),
    measureText: (s: string) => ({ width: s.length * 6 }),
  };
}

/** Every canvas gets its own fake context; `contexts` maps canvas -> context for inspection. */
export const contexts = new Map<HTMLCanvasElement, FakeContext>();

export function installFakeCanvas(): void {
  contexts.clear();
  HTMLCanvasElement.prototype.getContext = function (this: HTMLCanvasElement) {
    let ctx = contexts.get(this);
    if (!ctx) contexts.set(this, (ctx = fakeContext()));
    return ctx;
  } as unknown as HTMLCanvasElement["getContext"];
}

export function f32(values: number[]): DataView {
  return new DataView(new Float32Array(values).buffer);
}

export function i32(values: number[]): DataView {
  return new DataView(new Int32Array(values).buffer);
}

export const EMPTY = new DataView(new ArrayBuffer(0));

/** Type `text` into a text box and press Enter, as a person does. */
export function typeAndEnter(box: HTMLTextAreaElement | HTMLInputElement, text: string): void {
  box.value = text;
  box.dispatchEvent(new Event("input"));
  box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
}

/** Let coalesced (microtask) redraws run. */
export const flush = () => new Promise<void>((r) => setTimeout(r, 0));

/** The widget's cancel button is disabled unless a run is in flight (queued or running), and a click asks Python to stop. */
export function expectCancelButton<T extends StatusModel>(model: MockModel<T>, root: Element): void {
  model.send = vi.fn();
  const cancel = root.querySelector<HTMLButtonElement>("button.aw-cancel")!;
  expect(cancel.disabled).toBe(true);
  model.pySet("status", "running");
  expect(cancel.disabled).toBe(false);
  cancel.click();
  expect(model.send).toHaveBeenCalledTimes(1);
  expect(model.send).toHaveBeenCalledWith({ type: "cancel" });
  model.pySet("status", "cancelled");
  expect(cancel.disabled).toBe(true);
  cancel.dispatchEvent(new MouseEvent("click")); // a click that races the end of the run sends nothing
  expect(model.send).toHaveBeenCalledTimes(1);
  model.pySet("status", "queued"); // waiting behind another widget's job: that wait can be cancelled too
  expect(cancel.disabled).toBe(false);
  cancel.click();
  expect(model.send).toHaveBeenCalledTimes(2);
}
