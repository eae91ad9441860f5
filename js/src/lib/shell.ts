// The chrome every widget shares: prompt box, status, progress, error, and a slot
// for widget-specific controls. It only mirrors model traits; all state lives in
// the model so a second view of the same widget stays in sync.
import { Disposer } from "./dispose";
import { injectStyle } from "./style";
import type { AnyModel, BaseModel } from "./types";

export const PROMPT_DEBOUNCE_MS = 400;

export interface Shell {
  root: HTMLDivElement;
  /** Where a widget puts its selects / inputs, beside the status. */
  controls: HTMLDivElement;
  /** Where a widget puts its grid and colour bar. */
  body: HTMLDivElement;
  disposer: Disposer;
}

export function createElement<K extends keyof HTMLElementTagNameMap>(tag: K, className: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  return node;
}

export function createShell<T extends BaseModel>(model: AnyModel<T>, host: HTMLElement, widget: string): Shell {
  const d = new Disposer();
  const root = createElement("div", "aw-root");
  root.dataset.widget = widget;
  injectStyle(root);

  const promptBar = createElement("div", "aw-bar");
  const prompt = createElement("textarea", "aw-prompt");
  prompt.rows = 2;
  prompt.spellcheck = false;
  prompt.placeholder = "Prompt (Enter to run, Shift+Enter for a new line)";
  prompt.setAttribute("aria-label", "prompt");
  promptBar.append(prompt);

  const statusBar = createElement("div", "aw-bar");
  const controls = createElement("div", "aw-controls");
  const status = createElement("span", "aw-status");
  status.setAttribute("role", "status");
  const progress = createElement("progress", "aw-progress");
  progress.max = 1;
  statusBar.append(controls, status, progress);

  const error = createElement("div", "aw-error");
  error.setAttribute("role", "alert");
  const body = createElement("div", "aw-body");

  root.append(promptBar, statusBar, error, body);
  host.append(root);
  d.add(() => root.remove());

  // --- prompt: user edits -> model (debounced), model -> textarea unless mid-edit
  let dirty = false; // the user typed something not yet sent
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cancel = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  const commit = () => {
    cancel();
    dirty = false;
    const text = prompt.value;
    // Only a real change re-runs the model; blur after no edit must not.
    if (text !== (model.get("prompt") ?? "")) {
      model.set("prompt", text as T["prompt"]);
      model.save_changes();
    }
  };
  d.add(cancel);
  d.listen(prompt, "input", () => {
    dirty = true;
    cancel();
    timer = setTimeout(commit, PROMPT_DEBOUNCE_MS);
  });
  d.listen(prompt, "keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault(); // Enter runs; Shift+Enter keeps its newline
      commit();
    }
  });
  d.listen(prompt, "blur", () => {
    if (dirty) commit();
  });

  const syncPrompt = () => {
    const text = model.get("prompt") ?? "";
    if (!dirty && prompt.value !== text) prompt.value = text; // .value: never parsed as HTML
  };
  const syncStatus = () => {
    const s = String(model.get("status") ?? "idle");
    root.dataset.status = s;
    const p = Number(model.get("progress") ?? 0);
    const running = s === "running";
    status.textContent = running && p > 0 ? `${s} ${Math.round(p * 100)}%` : s;
    progress.value = Number.isFinite(p) ? Math.min(1, Math.max(0, p)) : 0;
    progress.hidden = !running;
  };
  const syncError = () => {
    const msg = String(model.get("error") ?? "");
    error.textContent = msg;
    error.hidden = msg === "";
  };
  d.onModel(model, "change:prompt", syncPrompt);
  d.onModel(model, "change:status", syncStatus);
  d.onModel(model, "change:progress", syncStatus);
  d.onModel(model, "change:error", syncError);
  syncPrompt();
  syncStatus();
  syncError();

  return { root, controls, body, disposer: d };
}

/** A labelled <select> whose value is two-way bound to a string trait. */
export function bindSelect<T>(
  model: AnyModel<T>,
  d: Disposer,
  select: HTMLSelectElement,
  trait: keyof T & string,
  options: () => string[],
  optionsTrait?: keyof T & string,
): void {
  const sync = () => {
    const opts = options();
    const current = String(model.get(trait) ?? "");
    if (current !== "" && !opts.includes(current)) opts.push(current); // never hide the live value
    const same = select.options.length === opts.length && opts.every((o, i) => select.options[i].value === o);
    if (!same) {
      select.replaceChildren(
        ...opts.map((o) => {
          const opt = document.createElement("option");
          opt.value = o;
          opt.textContent = o;
          return opt;
        }),
      );
    }
    select.value = current;
  };
  d.listen(select, "change", () => {
    if (select.value !== model.get(trait)) {
      model.set(trait, select.value as T[typeof trait]);
      model.save_changes();
    }
  });
  d.onModel(model, `change:${trait}`, sync);
  if (optionsTrait) d.onModel(model, `change:${optionsTrait}`, sync);
  sync();
}

export function labelled(text: string, control: HTMLElement): HTMLLabelElement {
  const label = document.createElement("label");
  label.append(document.createTextNode(text), control);
  return label;
}
