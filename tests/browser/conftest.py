"""Fixtures for the browser tests: real JupyterLab + system Chromium (Playwright).

    jupyter_server  (session) a private `jupyter lab` on 127.0.0.1, random port/token;
                    .add_notebook(nb_or_path) copies a notebook into its root_dir.
                    For saved-notebook, JupyterLab/Notebook 7 UI and labextension tests.
    widget_server   (session) the light mode: a bare `jupyter server` (no Lab, no server
                    extensions) serving tests/browser/light/aw_light.html, which draws
                    widgets live (their real _esm modules) from a real kernel. For
                    widget-only checks: run_code_notebook and kernel_exec work on it.
    browser         (session) headless /usr/bin/chromium (AW_CHROMIUM overrides);
                    if it cannot start the test fails (never skips)
    page            (function) a fresh context+page; every request/websocket URL is
                    recorded in page.aw_requests; a screenshot is saved on failure

Helpers (open_notebook, run_all_cells, save_notebook, screenshot,
assert_only_local_requests, ...) are in tests/browser/harness.py; the light page's
(open_widget_page, run_widget_cells) in tests/browser/light.py.
"""

from __future__ import annotations

import os

import pytest

from .harness import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, screenshot, start_jupyter_server
from .light import LightServer


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"aw_rep_{rep.when}", rep)


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory):
    server = start_jupyter_server(tmp_path_factory.mktemp("jupyter"))
    print(f"\njupyter lab ready in {server.startup_s:.1f}s at {server.base_url}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def widget_server(tmp_path_factory):
    server = start_jupyter_server(tmp_path_factory.mktemp("widgets"), LightServer)
    print(f"\nlight widget server ready in {server.startup_s:.1f}s at {server.base_url}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _playwright():
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        yield pw
    finally:
        pw.stop()


@pytest.fixture(scope="session")
def browser(_playwright):
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it (apt-get install -y chromium chromium-driver; "
            "`make test` does this as root) or set AW_CHROMIUM",
            pytrace=False,
        )
    try:
        b = _playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"Chromium at {CHROMIUM} did not start: {e}", pytrace=False)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    context.set_default_timeout(60_000)
    p = context.new_page()
    p.aw_requests = []
    p.aw_console = []
    # context-level: also sees workers and popups
    context.on("request", lambda r: p.aw_requests.append(r.url))
    p.on("websocket", lambda ws: p.aw_requests.append(ws.url))
    p.on("console", lambda m: p.aw_console.append(f"{m.type}: {m.text}"))
    p.on("pageerror", lambda e: p.aw_console.append(f"pageerror: {e}"))
    try:
        yield p
    finally:
        rep = getattr(request.node, "aw_rep_call", None)
        if rep is not None and rep.failed:
            try:
                screenshot(p, f"FAILED-{request.node.name}")
            except Exception:  # noqa: BLE001
                pass
            try:
                (ARTIFACTS / f"FAILED-{request.node.name}.console.txt").write_text("\n".join(p.aw_console))
            except Exception:  # noqa: BLE001
                pass
        context.close()
