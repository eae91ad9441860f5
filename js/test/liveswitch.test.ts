import { describe, expect, it, vi } from "vitest";
import {
  LiveSnapshotSwitch,
  liveModelId,
  type Bundle,
  type LiveSlot,
} from "../src/lib/liveswitch";
import { SNAPSHOT_MIME, WIDGET_VIEW_MIME } from "../src/lib/mime";

const flush = () => new Promise((resolve) => setTimeout(resolve, 0));

/** What ipywidgets' renderer does with a bundle, reduced to its DOM effects. */
type Outcome = "view" | "not-found";

interface FakeSlot extends LiveSlot {
  renders: number;
  visible: boolean | null;
  disposed: boolean;
  outcome: Outcome;
  closeView(): void;
}

function fakeSlot(outcome: Outcome = "view"): FakeSlot {
  const node = document.createElement("div");
  const slot: FakeSlot = {
    node,
    renders: 0,
    visible: null,
    disposed: false,
    outcome,
    hasView: () => !!node.querySelector(".view"),
    failed: () => (node.textContent ?? "").includes("Error displaying widget"),
    async render(bundle: Bundle) {
      slot.renders++;
      node.textContent = "Loading widget...";
      await flush();
      if (slot.outcome === "view") {
        node.textContent = "";
        const view = document.createElement("div");
        view.className = "view";
        view.textContent = String(liveModelId(bundle));
        node.append(view);
      } else {
        node.textContent = "Error displaying widget: model not found";
      }
    },
    setVisible(v: boolean) {
      slot.visible = v;
    },
    dispose() {
      slot.disposed = true;
      node.remove();
    },
    closeView() {
      node.querySelector(".view")?.remove();
    },
  };
  return slot;
}

function bundle(modelId: string | null, prompt = "p"): Bundle {
  const b: Record<string, unknown> = {
    [SNAPSHOT_MIME]: { format: "actwidgets.snapshot", widget: "heatmap", state: { prompt }, buffers: {} },
    "text/plain": "Heatmap",
  };
  if (modelId !== null) b[WIDGET_VIEW_MIME] = { version_major: 2, version_minor: 0, model_id: modelId };
  return b;
}

function setup(slots: (LiveSlot | null)[] = [fakeSlot()]) {
  const host = document.createElement("div");
  const snapshotNode = document.createElement("div");
  host.append(snapshotNode);
  const drawn: unknown[] = [];
  const cleanups = { count: 0 };
  const drawSnapshot = vi.fn((el: HTMLElement, snapshot: unknown) => {
    drawn.push(snapshot);
    const d = document.createElement("div");
    d.className = "snap";
    d.textContent = String((snapshot as { state: { prompt: string } }).state.prompt);
    el.append(d);
    return () => {
      cleanups.count++;
      d.remove();
    };
  });
  const queue = [...slots];
  const createLive = vi.fn(() => {
    const slot = queue.shift() ?? null;
    if (slot) host.append(slot.node);
    return slot;
  });
  const sw = new LiveSnapshotSwitch({ host, snapshotNode, drawSnapshot, createLive });
  const snapText = () => (snapshotNode.style.display === "none" ? null : snapshotNode.textContent);
  return { sw, host, snapshotNode, drawn, drawSnapshot, createLive, cleanups, snapText };
}

async function settle(sw: LiveSnapshotSwitch) {
  await sw.settled();
  await flush(); // MutationObserver callbacks
}

describe("liveModelId", () => {
  it("reads a non-empty model id", () => {
    expect(liveModelId(bundle("abc"))).toBe("abc");
    expect(liveModelId(bundle(null))).toBeNull();
    expect(liveModelId({ [WIDGET_VIEW_MIME]: { model_id: "" } })).toBeNull();
    expect(liveModelId({ [WIDGET_VIEW_MIME]: null })).toBeNull();
    expect(liveModelId({ [WIDGET_VIEW_MIME]: { model_id: 3 } })).toBeNull();
  });
});

describe("LiveSnapshotSwitch", () => {
  it("untrusted: draws the snapshot and never asks for a live renderer", async () => {
    const t = setup();
    await t.sw.update(bundle("m1"), false);
    await settle(t.sw);
    expect(t.createLive).not.toHaveBeenCalled();
    expect(t.host.dataset.awShowing).toBe("snapshot");
    expect(t.host.dataset.awLive).toBe("none");
    expect(t.snapText()).toBe("p");
  });

  it("trusted with a live model: snapshot meanwhile, then the live view", async () => {
    const slot = fakeSlot("view");
    const t = setup([slot]);
    await t.sw.update(bundle("m1"), true);
    expect(t.host.dataset.awShowing).toBe("snapshot"); // before the view exists
    expect(t.snapText()).toBe("p");
    await settle(t.sw);
    expect(t.host.dataset.awShowing).toBe("live");
    expect(slot.visible).toBe(true);
    expect(t.snapshotNode.style.display).toBe("none");
    expect(slot.node.querySelectorAll(".view")).toHaveLength(1);
  });

  it("re-render while live keeps the view and only stores the newer snapshot", async () => {
    const slot = fakeSlot("view");
    const t = setup([slot]);
    await t.sw.update(bundle("m1", "first"), true);
    await settle(t.sw);
    const view = slot.node.querySelector(".view");
    const draws = t.sw.snapshotDraws;

    await t.sw.update(bundle("m1", "second"), true); // update_display_data
    await settle(t.sw);
    expect(t.createLive).toHaveBeenCalledTimes(1);
    expect(slot.renders).toBe(1);
    expect(slot.node.querySelectorAll(".view")).toHaveLength(1);
    expect(slot.node.querySelector(".view")).toBe(view);
    expect(t.host.dataset.awShowing).toBe("live");
    expect(t.sw.snapshotDraws).toBe(draws); // not redrawn while hidden

    // the view goes away (kernel restarted / widget closed): the latest snapshot shows
    slot.closeView();
    await flush();
    expect(t.host.dataset.awShowing).toBe("snapshot");
    expect(t.host.dataset.awLive).toBe("pending");
    expect(slot.visible).toBe(false);
    expect(t.snapText()).toBe("second");
  });

  it("model not found: keeps the snapshot, drops the error; a later re-render asks again", async () => {
    const slot = fakeSlot("not-found");
    const retry = fakeSlot("view");
    const t = setup([slot, retry]);
    await t.sw.update(bundle("m1"), true);
    expect(t.host.dataset.awLive).toBe("pending");
    await settle(t.sw);
    expect(slot.renders).toBe(1);
    expect(t.host.dataset.awShowing).toBe("snapshot");
    expect(t.host.dataset.awLive).toBe("failed");
    expect(slot.disposed).toBe(true); // no hidden "Error displaying widget" left behind
    expect(t.host.textContent).not.toContain("Error displaying widget");
    expect(t.snapText()).toBe("p");

    await t.sw.update(bundle("m1"), true); // e.g. update_display_data from a live kernel
    await settle(t.sw);
    expect(t.createLive).toHaveBeenCalledTimes(2);
    expect(retry.renders).toBe(1);
    expect(t.host.dataset.awShowing).toBe("live");
    expect(t.host.dataset.awLive).toBe("live");
  });

  it("still loading (no answer yet) keeps waiting for the view", async () => {
    const slot = fakeSlot("view");
    slot.render = async () => {
      slot.renders++;
      slot.node.textContent = "Loading widget..."; // ipywidgets waits for its manager to restore
    };
    const t = setup([slot]);
    await t.sw.update(bundle("m1"), true);
    await settle(t.sw);
    expect(t.host.dataset.awLive).toBe("pending");
    expect(slot.disposed).toBe(false);
    expect(slot.visible).toBe(false); // "Loading widget..." is not shown
    // the manager restored: ipywidgets re-renders on its own
    slot.node.textContent = "";
    const view = document.createElement("div");
    view.className = "view";
    slot.node.append(view);
    await flush();
    expect(t.host.dataset.awShowing).toBe("live");
    expect(t.host.dataset.awLive).toBe("live");
  });

  it("does not re-render the live view while a render is in flight", async () => {
    const slot = fakeSlot("view");
    const t = setup([slot]);
    await t.sw.update(bundle("m1"), true);
    await flush(); // createLive resolved, render pending
    await t.sw.update(bundle("m1", "again"), true);
    await settle(t.sw);
    expect(slot.renders).toBe(1);
    expect(slot.node.querySelectorAll(".view")).toHaveLength(1);
  });

  it("a different model id replaces the live renderer", async () => {
    const a = fakeSlot("view");
    const b = fakeSlot("view");
    const t = setup([a, b]);
    await t.sw.update(bundle("m1"), true);
    await settle(t.sw);
    await t.sw.update(bundle("m2"), true);
    await settle(t.sw);
    expect(a.disposed).toBe(true);
    expect(b.node.querySelector(".view")?.textContent).toBe("m2");
    expect(t.host.dataset.awShowing).toBe("live");
  });

  it("becoming trusted (re-render) creates the live view; becoming untrusted drops it", async () => {
    const slot = fakeSlot("view");
    const t = setup([slot]);
    await t.sw.update(bundle("m1"), false);
    await settle(t.sw);
    expect(t.createLive).not.toHaveBeenCalled();
    await t.sw.update(bundle("m1"), true);
    await settle(t.sw);
    expect(t.host.dataset.awShowing).toBe("live");
    await t.sw.update(bundle("m1"), false);
    await settle(t.sw);
    expect(slot.disposed).toBe(true);
    expect(t.host.dataset.awShowing).toBe("snapshot");
  });

  it("no live renderer to be had: snapshot, and the next update asks again", async () => {
    const slot = fakeSlot("view");
    const t = setup([null, slot]);
    await t.sw.update(bundle("m1"), true);
    await settle(t.sw);
    expect(t.host.dataset.awShowing).toBe("snapshot");
    expect(t.host.dataset.awLive).toBe("failed");
    await t.sw.update(bundle("m1"), true);
    await settle(t.sw);
    expect(t.createLive).toHaveBeenCalledTimes(2);
    expect(t.host.dataset.awShowing).toBe("live");
  });

  it("a bundle without a widget view is a snapshot only", async () => {
    const t = setup();
    await t.sw.update(bundle(null), true);
    await settle(t.sw);
    expect(t.createLive).not.toHaveBeenCalled();
    expect(t.host.dataset.awShowing).toBe("snapshot");
  });

  it("an identical snapshot is not redrawn; a changed one is", async () => {
    const t = setup([fakeSlot("not-found"), fakeSlot("not-found")]);
    await t.sw.update(bundle("m1", "a"), true);
    await t.sw.update(bundle("m1", "a"), true);
    await settle(t.sw);
    expect(t.sw.snapshotDraws).toBe(1);
    await t.sw.update(bundle("m1", "b"), true);
    expect(t.sw.snapshotDraws).toBe(2);
    expect(t.cleanups.count).toBe(1);
    expect(t.snapText()).toBe("b");
  });

  it("a snapshot that fails to draw becomes a message, not an exception", async () => {
    const host = document.createElement("div");
    const snapshotNode = document.createElement("div");
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const sw = new LiveSnapshotSwitch({
      host,
      snapshotNode,
      drawSnapshot: () => {
        throw new Error("bad dtype");
      },
    });
    await sw.update(bundle(null), true);
    expect(snapshotNode.textContent).toContain("bad dtype");
    expect(host.dataset.awShowing).toBe("snapshot");
    warn.mockRestore();
  });

  it("without createLive (the untrusted mime renderer) it is snapshot-only even when trusted", async () => {
    const host = document.createElement("div");
    const snapshotNode = document.createElement("div");
    const sw = new LiveSnapshotSwitch({ host, snapshotNode, drawSnapshot: () => () => {} });
    await sw.update(bundle("m1"), true);
    await settle(sw);
    expect(host.dataset.awShowing).toBe("snapshot");
  });

  it("dispose cleans up the snapshot and the live renderer, including one still being created", async () => {
    const slot = fakeSlot("view");
    let resolve: (s: LiveSlot) => void = () => {};
    const host = document.createElement("div");
    const snapshotNode = document.createElement("div");
    let cleaned = 0;
    const sw = new LiveSnapshotSwitch({
      host,
      snapshotNode,
      drawSnapshot: () => () => cleaned++,
      createLive: () => new Promise<LiveSlot>((r) => (resolve = r)),
    });
    await sw.update(bundle("m1"), true);
    sw.dispose();
    resolve(slot);
    await settle(sw);
    expect(cleaned).toBe(1);
    expect(slot.disposed).toBe(true);
    expect(slot.renders).toBe(0);
  });

  it("a live renderer that throws while rendering leaves the snapshot", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const slot = fakeSlot("view");
    slot.render = async () => {
      throw new Error("boom");
    };
    const t = setup([slot]);
    await t.sw.update(bundle("m1"), true);
    await settle(t.sw);
    expect(t.host.dataset.awShowing).toBe("snapshot");
    expect(t.host.dataset.awLive).toBe("failed");
    expect(slot.disposed).toBe(true);
    warn.mockRestore();
  });
});

describe("LiveSnapshotSwitch.liveGone (kernel restarted)", () => {
  it("drops the live view, shows the latest snapshot, and keeps that model id dead", async () => {
    const slot = fakeSlot("view");
    const again = fakeSlot("view");
    const t = setup([slot, again]);
    await t.sw.update(bundle("m1", "v1"), true);
    await settle(t.sw);
    await t.sw.update(bundle("m1", "v2"), true);
    expect(t.host.dataset.awShowing).toBe("live");

    t.sw.liveGone();
    expect(slot.disposed).toBe(true);
    expect(t.host.dataset.awShowing).toBe("snapshot");
    expect(t.host.dataset.awLive).toBe("gone");
    expect(t.snapText()).toBe("v2");

    await t.sw.update(bundle("m1", "v3"), true); // a later re-render of the same output
    await settle(t.sw);
    expect(t.createLive).toHaveBeenCalledTimes(1);
    expect(t.host.dataset.awShowing).toBe("snapshot");
    expect(t.host.dataset.awLive).toBe("gone");
    expect(t.snapText()).toBe("v3");

    await t.sw.update(bundle("m2"), true); // a new model (the cell ran again) is live
    await settle(t.sw);
    expect(t.createLive).toHaveBeenCalledTimes(2);
    expect(t.host.dataset.awShowing).toBe("live");
  });

  it("is a no-op without a live renderer", async () => {
    const t = setup();
    await t.sw.update(bundle("m1"), false);
    t.sw.liveGone();
    await t.sw.update(bundle("m1"), true);
    await settle(t.sw);
    expect(t.createLive).toHaveBeenCalledTimes(1);
    expect(t.host.dataset.awShowing).toBe("live");
  });
});
