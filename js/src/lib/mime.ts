// The mime types of an actwidgets display bundle (js/WIRE.md), defined once for the
// widgets, the snapshot renderer and the JupyterLab extension. Python's copies live in
// actwidgets/widgets/_snapshot.py; tests/test_contract.py checks the two agree.
export const WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json";
export const SNAPSHOT_MIME = "application/vnd.actwidgets.snapshot+json";
