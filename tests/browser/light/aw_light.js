// A minimal widget page for the light browser harness (tests/browser/light.py).
//
// It runs the real anywidget front-end modules (the `_esm` each widget sends, e.g.
// actwidgets/static/*.js) against a real ipykernel behind a bare `jupyter server`:
// no JupyterLab, no ipywidgets bundle. It speaks the kernel websocket protocol
// (jupyter_server's default JSON/binary framing: aw_light_wire.js) and the Jupyter
// widget message protocol 2.1 (comm_open / update / echo_update / custom / comm_close),
// and gives each module the anywidget model API (get, set, save_changes, on, off, send,
// widget_manager).
//
// Tests drive it through window.awLight: start(), run(code), exec(code).

import { decodeBinary, encodeBinary, putBuffers, removeBuffers, sameValue } from "./aw_light_wire.js";

const params = new URLSearchParams(location.search);
const TOKEN = params.get("token") || "";
const statusEl = document.getElementById("awl-status");
const cellsEl = document.getElementById("awl-cells");

function uuid() {
  return crypto.randomUUID ? crypto.randomUUID() : Math.random().toString(16).slice(2) + Date.now().toString(16);
}

async function api(path, method = "GET", body = undefined) {
  const r = await fetch(`/api/${path}`, {
    method,
    headers: { Authorization: `token ${TOKEN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${method} /api/${path}: ${r.status}`);
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}

// ---------------------------------------------------------------- kernel
class Kernel {
  constructor() {
    this.session = uuid();
    this.handlers = new Map(); // parent msg_id -> fn(msg)
    this.commOpen = null;
    this.commMsg = new Map(); // comm_id -> fn(msg)
  }

  async start() {
    const k = await api("kernels", "POST", { name: "python3" });
    this.id = k.id;
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const url = `${proto}://${location.host}/api/kernels/${k.id}/channels?session_id=${this.session}&token=${TOKEN}`;
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    await new Promise((res, rej) => { this.ws.onopen = res; this.ws.onerror = () => rej(new Error("websocket failed")); });
    this.ws.onmessage = (ev) => this.receive(typeof ev.data === "string" ? JSON.parse(ev.data) : decodeBinary(ev.data));
    // kernel_info until it answers (the kernel may still be starting)
    for (let i = 0; i < 600; i++) {
      const ok = await Promise.race([
        new Promise((res) => this.request("shell", "kernel_info_request", {}, { reply: () => res(true) })),
        new Promise((res) => setTimeout(() => res(false), 1000)),
      ]);
      if (ok) return;
    }
    throw new Error("kernel did not answer kernel_info");
  }

  receive(msg) {
    const type = msg.header.msg_type;
    if (type === "comm_open") { if (this.commOpen) this.commOpen(msg); return; }
    if (type === "comm_msg" || type === "comm_close") {
      const fn = this.commMsg.get(msg.content.comm_id);
      if (fn) fn(msg);
      return;
    }
    const parent = msg.parent_header && msg.parent_header.msg_id;
    const h = parent && this.handlers.get(parent);
    if (h) h(msg);
  }

  send(channel, msgType, content, { buffers = [], metadata = {} } = {}) {
    const msg = {
      header: { msg_id: uuid(), username: "awlight", session: this.session, msg_type: msgType, version: "5.3", date: new Date().toISOString() },
      parent_header: {}, metadata, content, channel,
    };
    this.ws.send(buffers.length ? encodeBinary(msg, buffers) : JSON.stringify(msg));
    return msg.header.msg_id;
  }

  /** Send a request; `on.iopub(msg)` for its iopub messages, `on.reply(msg)`, `on.idle()`. */
  request(channel, msgType, content, on = {}) {
    const header = { msg_id: uuid() };
    let replied = false, idle = false;
    const done = () => { if (replied && idle) this.handlers.delete(header.msg_id); };
    this.handlers.set(header.msg_id, (msg) => {
      if (msg.channel === "shell" || msg.channel === "control") { replied = true; on.reply && on.reply(msg); done(); return; }
      if (msg.channel === "iopub") {
        if (msg.header.msg_type === "status" && msg.content.execution_state === "idle") { idle = true; on.idle && on.idle(); done(); return; }
        on.iopub && on.iopub(msg);
      }
    });
    const msg = {
      header: { msg_id: header.msg_id, username: "awlight", session: this.session, msg_type: msgType, version: "5.3", date: new Date().toISOString() },
      parent_header: {}, metadata: {}, content, channel,
    };
    this.ws.send(JSON.stringify(msg));
    return header.msg_id;
  }

  /** Execute code; resolves with {stdout, errors} once the reply arrived and the kernel went idle. */
  execute(code, onOutput = null) {
    return new Promise((resolve) => {
      let stdout = "", replied = false, idle = false;
      const errors = [];
      const finish = () => { if (replied && idle) resolve({ stdout, errors }); };
      this.request("shell", "execute_request",
        { code, silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true },
        {
          iopub: (msg) => {
            const t = msg.header.msg_type, c = msg.content;
            if (t === "stream") stdout += c.text;
            if (t === "error") errors.push(`${c.ename}: ${c.evalue}`);
            if (onOutput) onOutput(msg);
          },
          reply: (msg) => { if (msg.content.status === "error" && !errors.length) errors.push(`${msg.content.ename}: ${msg.content.evalue}`); replied = true; finish(); },
          idle: () => { idle = true; finish(); },
        });
    });
  }
}

// ---------------------------------------------------------------- widget models
class Model {
  constructor(manager, commId, state) {
    this.manager = manager;
    this.widget_manager = manager;
    this.comm_id = commId;
    this.model_id = commId;
    this.attributes = state;
    this.listeners = new Map(); // event -> [fn]
    this.dirty = {};
    this.closed = false;
  }

  get(name) { return this.attributes[name]; }

  set(name, value) {
    if (typeof name === "object") { for (const [k, v] of Object.entries(name)) this.set(k, v); return; }
    const old = this.attributes[name];
    this.attributes[name] = value;
    this.dirty[name] = value;
    if (!sameValue(old, value)) { this.emit(`change:${name}`, this, value); this.emit("change", this); }
  }

  on(event, cb) {
    for (const e of event.split(/\s+/).filter(Boolean)) {
      if (!this.listeners.has(e)) this.listeners.set(e, []);
      this.listeners.get(e).push(cb);
    }
  }

  off(event, cb) {
    if (!event) { this.listeners.clear(); return; }
    for (const e of event.split(/\s+/).filter(Boolean)) {
      if (!cb) this.listeners.delete(e);
      else this.listeners.set(e, (this.listeners.get(e) || []).filter((f) => f !== cb));
    }
  }

  emit(event, ...args) {
    for (const cb of [...(this.listeners.get(event) || [])]) {
      try { cb(...args); } catch (e) { console.error(`awlight: ${event} listener`, e); }
    }
  }

  save_changes() {
    const changed = this.dirty;
    this.dirty = {};
    if (!Object.keys(changed).length || this.closed) return;
    const { state, buffers, buffer_paths } = removeBuffers(changed);
    this.manager.kernel.send("shell", "comm_msg",
      { comm_id: this.comm_id, data: { method: "update", state, buffer_paths } }, { buffers });
  }

  send(content, callbacks, buffers = []) {
    this.manager.kernel.send("shell", "comm_msg", { comm_id: this.comm_id, data: { method: "custom", content } }, { buffers });
  }

  /** A message from the kernel for this comm. */
  receive(msg) {
    if (msg.header.msg_type === "comm_close") { this.closed = true; this.emit("destroy"); return; }
    const data = msg.content.data;
    if (data.method === "update") {
      const state = { ...data.state };
      putBuffers(state, data.buffer_paths, msg.buffers || []);
      const changed = [];
      for (const [k, v] of Object.entries(state)) {
        const old = this.attributes[k];
        this.attributes[k] = v;
        if (!sameValue(old, v)) changed.push([k, v]);
      }
      for (const [k, v] of changed) this.emit(`change:${k}`, this, v);
      if (changed.length) this.emit("change", this);
    } else if (data.method === "custom") {
      this.emit("msg:custom", data.content, msg.buffers || []);
    }
    // echo_update: the kernel confirming a value this page sent; nothing to do
  }
}

async function loadModule(esm) {
  if (/^(https?:)?\/\//.test(esm) || esm.startsWith("/")) return import(esm);
  const url = URL.createObjectURL(new Blob([esm], { type: "text/javascript" }));
  try { return await import(url); } finally { URL.revokeObjectURL(url); }
}

class Manager {
  constructor(kernel) {
    this.kernel = kernel;
    this.models = new Map(); // id -> Promise<{model, widget}>
    kernel.commOpen = (msg) => this.open(msg);
  }

  get_model(id) { return this.models.get(id).then((m) => m.model); }

  open(msg) {
    const c = msg.content;
    if (c.target_name !== "jupyter.widget") return;
    const state = { ...c.data.state };
    putBuffers(state, c.data.buffer_paths, msg.buffers || []);
    const model = new Model(this, c.comm_id, state);
    this.kernel.commMsg.set(c.comm_id, (m) => model.receive(m));
    const ready = (async () => {
      let widget = null;
      if (typeof state._esm === "string") {
        if (typeof state._css === "string" && state._css) {
          const style = document.createElement("style");
          style.textContent = state._css;
          document.head.appendChild(style);
        }
        const mod = await loadModule(state._esm);
        widget = mod.default;
        if (typeof widget === "function") widget = await widget();
        if (widget && widget.initialize) await widget.initialize({ model, experimental: {} });
      }
      return { model, widget };
    })();
    ready.catch((e) => console.error("awlight: model", c.comm_id, e));
    this.models.set(c.comm_id, ready);
  }

  async render(modelId, el) {
    const p = this.models.get(modelId);
    if (!p) { el.textContent = `awlight: no model ${modelId}`; el.dataset.awlView = "missing"; return; }
    const { model, widget } = await p;
    if (!widget || !widget.render) { el.textContent = `awlight: model ${modelId} has no anywidget module`; el.dataset.awlView = "none"; return; }
    el.classList.add("awl-widget");
    const cleanup = await widget.render({ model, el, experimental: {} });
    el.dataset.awlView = "live";
    model.on("destroy", () => { if (typeof cleanup === "function") cleanup(); el.replaceChildren(); });
  }
}

// ---------------------------------------------------------------- outputs
const VIEW_MIME = "application/vnd.jupyter.widget-view+json";

function renderOutput(manager, area, msg, renders) {
  const t = msg.header.msg_type, c = msg.content;
  const div = document.createElement("div");
  div.className = "awl-output";
  if (t === "stream") {
    const pre = document.createElement("pre");
    pre.textContent = c.text;
    div.appendChild(pre);
  } else if (t === "error") {
    const pre = document.createElement("pre");
    pre.className = "awl-error";
    pre.textContent = `${c.ename}: ${c.evalue}`;
    div.appendChild(pre);
  } else if (t === "display_data" || t === "execute_result") {
    const data = c.data || {};
    if (data[VIEW_MIME]) {
      renders.push(manager.render(data[VIEW_MIME].model_id, div).catch((e) => {
        div.dataset.awlView = "failed";
        div.textContent = `awlight: render failed: ${e}`;
        throw e;
      }));
    } else if (data["text/plain"]) {
      const pre = document.createElement("pre");
      pre.textContent = data["text/plain"];
      div.appendChild(pre);
    }
  } else {
    return;
  }
  area.appendChild(div);
}

let kernel = null, manager = null;

window.awLight = {
  async start() {
    kernel = new Kernel();
    await kernel.start();
    manager = new Manager(kernel);
    statusEl.dataset.state = "ready";
    statusEl.textContent = `kernel ${kernel.id} ready`;
    return kernel.id;
  },
  /** Run code as a cell: its outputs (widgets drawn live) go on the page; returns the error texts. */
  async run(code) {
    const cell = document.createElement("div");
    cell.className = "awl-cell";
    cellsEl.appendChild(cell);
    const renders = [];
    const { errors } = await kernel.execute(code, (msg) => renderOutput(manager, cell, msg, renders));
    const results = await Promise.allSettled(renders);
    for (const r of results) if (r.status === "rejected") errors.push(`render: ${r.reason}`);
    return errors;
  },
  /** Run code off the page (like a console); returns its stdout and error texts. */
  async exec(code) {
    const { stdout, errors } = await kernel.execute(code);
    return stdout + errors.join("\n");
  },
};

statusEl.dataset.state = "loaded";
statusEl.textContent = "loaded";
