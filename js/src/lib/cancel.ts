// The cancel button of widgets whose Python job runs in chunks (patching, steering, lens):
// enabled only while a run is in flight (queued or running), it sends the custom message {type: "cancel"}
// and Python stops within one chunk.
import type { Disposer } from "./dispose";
import { createElement, inFlight } from "./shell";
import type { AnyModel, StatusModel } from "./types";

export function createCancelButton<T extends StatusModel>(model: AnyModel<T>, d: Disposer, title: string): HTMLButtonElement {
  const cancel = createElement("button", "aw-cancel");
  cancel.type = "button";
  cancel.textContent = "cancel";
  cancel.title = title;
  d.listen(cancel, "click", () => {
    // Re-checked here: a click can land just after the run finished.
    if (inFlight(model.get("status"))) model.send({ type: "cancel" });
  });
  const sync = () => {
    cancel.disabled = !inFlight(model.get("status"));
  };
  d.onModel(model, "change:status", sync);
  sync();
  return cancel;
}
