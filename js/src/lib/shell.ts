// The chrome every widget shares: prompt box (optional), status, progress, error, and
// a slot for widget-specific controls; plus the text-box binding the prompt uses.
// It only mirrors model traits; all state lives in the model so a second view of the
// same widget stays in sync.
import { Disposer } from "./dispose";
import { injectStyle } from "./style";
import type { AnyModel, BaseModel, ModelState, StatusModel } from "./types";

export const PROMPT_DEBOUNCE_MS = 400;

export interface Shell {
  root: HTMLDivElement;
  /** The top bar: the prompt box, or a widget's own text inputs when it has no prompt. */
  inputs: HTMLDivElement;
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

/** Whether a widget has a figure on screen: read from its traits, re-read when any of `traits` change. */
export interface FigurePresence {
  traits: readonly string[];
  present(): boolean;
}

export interface ShellOptions {
  /** false: no `textarea.aw-prompt` (a widget whose inputs are other traits, e.g. patching). */
  prompt?: boolean;
  /** Lets the shell mark the figure stale, but only when there is one to mark. */
  figure: FigurePresence;
  /** Traits a prompt typed in the box sets back, in the same message: a clicked position
   * belongs to the prompt it was clicked in. */
  promptResets?: Record<string, unknown>;
}

export const STALE_LABEL = "Figure from the previous input";

/** The keys the widget's own controls use: a prompt box's Enter, a slider's or a grid's arrows. */
const OWN_KEYS = new Set(["Enter", "ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight", "Home", "End", "PageUp", "PageDown"]);
const SUPPRESS_SHORTCUTS = "lmSuppressShortcuts"; // data-lm-suppress-shortcuts

let guarding = false;
/** JupyterLab matches its shortcuts in a capture listener on the document, before a widget sees
 * the key (Shift+Enter would run the cell, an arrow on a focused slider move between cells);
 * Lumino skips an element marked data-lm-suppress-shortcuts. A capture listener on the window
 * runs first and marks the widget for that one key, so Ctrl+S and Escape still reach the notebook. */
function guardOwnKeys(): void {
  if (guarding) return;
  guarding = true;
  window.addEventListener("keydown", (ev) => {
    const root = ev.target instanceof Element ? ev.target.closest<HTMLElement>(".aw-root") : null;
    if (!root || !OWN_KEYS.has(ev.key) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    root.dataset[SUPPRESS_SHORTCUTS] = "true";
    setTimeout(() => delete root.dataset[SUPPRESS_SHORTCUTS], 0);
  }, true);
}

// A local "queued" waits for the one model's worker; without a reason it reads like a hang.
const QUEUED = "queued: the model is busy";
const QUEUED_TITLE = "Another widget's run is using this model; this one starts when it ends. Cancel drops this request.";

/** A run is asked for and not over: queued behind another widget's job, or running. */
export const inFlight = (status: unknown): boolean => status === "running" || status === "queued";

/** How a text box reads and writes its trait(s); see bindText. */
export interface TextBinding {
  /** The text the model holds now. */
  get(): string;
  /** Write an edited text to the model (save_changes follows). Only called for a real change. */
  set(text: string): void;
  /** Traits whose change events should refresh the box. */
  traits: readonly string[];
  /** Commit this long after the last keystroke; undefined: only on Enter or blur. */
  debounceMs?: number;
}

/**
 * Two-way bind a text box. Edits commit after a typing pause (when debounceMs is set),
 * at once on Enter without Shift (Shift+Enter keeps its newline in a textarea), or on
 * blur; and only when the text differs from the model's, because every commit re-runs
 * the model in Python. Model changes never overwrite text the user is still editing.
 */
export function bindText<T extends ModelState>(model: AnyModel<T>, d: Disposer, box: HTMLTextAreaElement | HTMLInputElement, b: TextBinding): void {
  let dirty = false; // the user typed something not yet sent
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cancel = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  const commit = () => {
    cancel();
    dirty = false;
    const text = box.value;
    // Only a real change re-runs the model; blur after no edit must not.
    if (text !== b.get()) {
      b.set(text);
      model.save_changes();
    }
  };
  d.add(cancel);
  d.listen(box, "input", () => {
    dirty = true;
    cancel();
    if (b.debounceMs !== undefined) timer = setTimeout(commit, b.debounceMs);
  });
  d.listen(box, "keydown", (ev) => {
    if (ev.key !== "Enter" || ev.isComposing) return;
    ev.preventDefault();
    if (!ev.shiftKey) {
      commit(); // Enter runs
    } else if (box instanceof HTMLTextAreaElement) {
      // Shift+Enter is a newline, put in here: JupyterLab cancels one typed inside a cell's output
      box.setRangeText("\n", box.selectionStart, box.selectionEnd, "end");
      box.dispatchEvent(new Event("input", { bubbles: true }));
    }
  });
  d.listen(box, "blur", () => {
    if (dirty) commit();
  });
  const sync = () => {
    const text = b.get();
    if (!dirty && box.value !== text) box.value = text; // .value: never parsed as HTML
  };
  for (const t of b.traits) d.onModel(model, `change:${t}`, sync);
  sync();
}

/** bindText for a plain string trait, e.g. `prompt`, `clean`. */
export function bindTextTrait<T extends ModelState>(
  model: AnyModel<T>,
  d: Disposer,
  box: HTMLTextAreaElement | HTMLInputElement,
  trait: keyof T & string,
  debounceMs?: number,
  resets: Record<string, unknown> = {},
): void {
  const m = model as unknown as AnyModel<ModelState>;
  bindText(model, d, box, {
    get: () => String(model.get(trait) ?? ""),
    set: (text) => {
      model.set(trait, text as T[typeof trait]);
      for (const [other, value] of Object.entries(resets)) m.set(other, value); // sent with it
    },
    traits: [trait],
    debounceMs,
  });
}

/** A multi-line prompt box (Enter runs, Shift+Enter is a newline). */
export function createPromptBox(className: string, label: string, placeholder: string): HTMLTextAreaElement {
  const box = createElement("textarea", className);
  box.rows = 2;
  box.spellcheck = false;
  box.placeholder = placeholder;
  box.setAttribute("aria-label", label);
  return box;
}

export function createShell<T extends BaseModel>(model: AnyModel<T>, host: HTMLElement, widget: string, opts: ShellOptions & { prompt?: true }): Shell;
export function createShell<T extends StatusModel>(model: AnyModel<T>, host: HTMLElement, widget: string, opts: ShellOptions & { prompt: false }): Shell;
export function createShell<T extends StatusModel>(model: AnyModel<T>, host: HTMLElement, widget: string, opts: ShellOptions): Shell {
  const d = new Disposer();
  const root = createElement("div", "aw-root");
  root.dataset.widget = widget;
  injectStyle(root);
  guardOwnKeys();

  const inputs = createElement("div", "aw-bar aw-inputs");
  if (opts.prompt !== false) {
    const prompt = createPromptBox("aw-prompt", "prompt", "Prompt (Enter to run, Shift+Enter for a new line)");
    inputs.append(prompt);
    // The overloads guarantee a `prompt` trait whenever the box exists.
    bindTextTrait(model as unknown as AnyModel<BaseModel>, d, prompt, "prompt", PROMPT_DEBOUNCE_MS, opts.promptResets);
  }

  const statusBar = createElement("div", "aw-bar");
  const controls = createElement("div", "aw-controls");
  const status = createElement("span", "aw-status");
  status.setAttribute("role", "status");
  const progress = createElement("progress", "aw-progress");
  progress.max = 1;
  statusBar.append(controls, status, progress);

  const error = createElement("div", "aw-error");
  error.setAttribute("role", "alert");
  // Python keeps the last figure when a run fails: beside the new, bad input it would
  // read as that input's result, so it is dimmed and this note says whose it is.
  const staleNote = createElement("div", "aw-stale-note");
  staleNote.textContent = STALE_LABEL;
  const body = createElement("div", "aw-body");

  root.append(inputs, statusBar, error, staleNote, body);
  host.append(root);
  d.add(() => root.remove());

  const syncStatus = () => {
    const s = String(model.get("status") ?? "idle");
    root.dataset.status = s;
    const p = Number(model.get("progress") ?? 0);
    const running = s === "running";
    // A remote job says where it is (queued, its position, running, downloading).
    const shown = (running && String(model.get("remote_status") ?? "")) || (s === "queued" ? QUEUED : s);
    status.textContent = running && p > 0 ? `${shown} ${Math.round(p * 100)}%` : shown;
    status.title = s === "queued" ? QUEUED_TITLE : "";
    progress.value = Number.isFinite(p) ? Math.min(1, Math.max(0, p)) : 0;
    progress.hidden = !running;
  };
  const syncError = () => {
    const msg = String(model.get("error") ?? "");
    error.textContent = msg;
    error.hidden = msg === "";
  };
  // Python says whose figure it is (`stale`): after an error, or a cancel before the run drew.
  const syncStale = () => {
    const stale = (model.get("stale") ?? model.get("status") === "error") && opts.figure.present();
    body.classList.toggle("aw-stale", stale);
    staleNote.hidden = !stale;
  };
  d.onModel(model, "change:status", syncStatus);
  d.onModel(model, "change:progress", syncStatus);
  d.onModel(model, "change:remote_status", syncStatus);
  d.onModel(model, "change:error", syncError);
  for (const t of ["status", "stale", ...opts.figure.traits]) d.onModel(model, `change:${t}`, syncStale);
  syncStatus();
  syncError();
  syncStale();

  return { root, inputs, controls, body, disposer: d };
}

/** A select option: a value shown as itself, or `[value, label]`. */
export type SelectOption = string | readonly [value: string, label: string];

/** A labelled <select> whose value is two-way bound to a string trait. */
export function bindSelect<T extends ModelState>(
  model: AnyModel<T>,
  d: Disposer,
  select: HTMLSelectElement,
  trait: keyof T & string,
  options: () => readonly SelectOption[],
  optionsTrait?: keyof T & string,
): void {
  const sync = () => {
    const opts = options().map((o): readonly [string, string] => (typeof o === "string" ? [o, o] : [String(o[0]), String(o[1])]));
    const current = String(model.get(trait) ?? "");
    if (current !== "" && !opts.some(([v]) => v === current)) opts.push([current, current]); // never hide the live value
    const same =
      select.options.length === opts.length &&
      opts.every(([v, label], i) => select.options[i].value === v && select.options[i].textContent === label);
    if (!same) {
      select.replaceChildren(
        ...opts.map(([v, label]) => {
          const opt = document.createElement("option");
          opt.value = v;
          opt.textContent = label;
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
