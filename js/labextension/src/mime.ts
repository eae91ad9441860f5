// The mime renderer for `application/vnd.actwidgets.snapshot+json`, registered app-wide.
// Safe (it only draws saved data, text via textContent), so it renders untrusted
// notebooks, where ipywidgets' (unsafe) renderer is never used. Its rank is below
// image/png's 90 (and text/html's 50), so the snapshot wins over the PNG, and above
// ipywidgets' -10, so a trusted live widget still wins where the notebook plugin
// (plugin.ts, rank -20 per notebook) does not reach, e.g. a code console.
import type { IRenderMime } from "@jupyterlab/rendermime-interfaces";
import { SNAPSHOT_MIME } from "../../src/lib/mime";
import { LiveOrSnapshot } from "./renderer";

export const SNAPSHOT_RANK = 0;

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [SNAPSHOT_MIME],
  defaultRank: SNAPSHOT_RANK,
  createRenderer: (options) => new LiveOrSnapshot(options),
};

const extension: IRenderMime.IExtension = {
  id: "actwidgets:snapshot",
  description: "Draws saved actwidgets figures (snapshots) with no kernel, read-only.",
  rendererFactory,
  rank: SNAPSHOT_RANK,
  dataType: "json",
};

export default extension;
