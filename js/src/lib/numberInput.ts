// A number box two-way bound to a float trait that must stay positive (e.g. the KL
// budget). It commits on Enter, blur or change, never per keystroke (every commit
// re-runs Python). Invalid text (empty, non-numeric, <= 0) is never sent: the box is
// outlined red instead and keeps the text so the user can fix it.
import type { Disposer } from "./dispose";
import type { AnyModel, ModelState } from "./types";

export function bindPositiveNumber<T extends ModelState>(model: AnyModel<T>, d: Disposer, box: HTMLInputElement, trait: keyof T & string): void {
  let dirty = false; // typed, not yet committed
  const current = () => Number(model.get(trait));
  const title = box.title;
  const setInvalid = (bad: boolean) => {
    box.classList.toggle("aw-invalid", bad);
    // the outline says something is wrong; the title (and a screen reader) says what
    box.title = bad ? `${title ? title + ": " : ""}a number above 0, not “${box.value.trim()}”` : title;
    if (bad) box.setAttribute("aria-invalid", "true");
    else box.removeAttribute("aria-invalid");
  };
  const commit = () => {
    dirty = false;
    const text = box.value.trim();
    const v = Number(text);
    if (text === "" || !Number.isFinite(v) || v <= 0) {
      setInvalid(true);
      return;
    }
    setInvalid(false);
    if (v !== current()) {
      model.set(trait, v as T[typeof trait]);
      model.save_changes();
    }
  };
  d.listen(box, "input", () => {
    dirty = true;
  });
  d.listen(box, "keydown", (ev) => {
    if (ev.key === "Enter" && !ev.isComposing) {
      ev.preventDefault();
      commit();
    }
  });
  d.listen(box, "change", commit);
  d.listen(box, "blur", () => {
    if (dirty) commit();
  });
  const sync = () => {
    if (dirty) return; // never overwrite what the user is still typing
    const v = current();
    const text = Number.isFinite(v) ? String(v) : "";
    if (box.value !== text) box.value = text;
    setInvalid(false); // the model's value is by definition the accepted one
  };
  d.onModel(model, `change:${trait}`, sync);
  sync();
}
