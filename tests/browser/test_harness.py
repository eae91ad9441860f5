"""Smoke test of the browser harness: an inline anywidget renders in real JupyterLab."""

from __future__ import annotations

import time

import nbformat
from playwright.sync_api import expect

from .harness import assert_only_local_requests, is_local_url, open_notebook, run_all_cells, save_notebook, screenshot

CELL = '''\
import anywidget

class W(anywidget.AnyWidget):
    _esm = "export default { render({model, el}) { el.textContent = 'hello-aw'; } }"

W()
'''


def test_inline_anywidget_renders(jupyter_server, page):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    path = jupyter_server.add_notebook(nb, "harness_smoke.ipynb")

    t0 = time.monotonic()
    open_notebook(page, jupyter_server, path)
    t_open = time.monotonic() - t0
    errors = run_all_cells(page)
    assert errors == [], errors

    out = page.locator(".jp-OutputArea-output").filter(has_text="hello-aw")
    expect(out).to_have_count(1, timeout=30_000)
    t_render = time.monotonic() - t0
    print(f"\nnotebook open+kernel idle {t_open:.1f}s, widget rendered {t_render:.1f}s")
    screenshot(page, "harness_smoke")

    save_notebook(page)
    saved = jupyter_server.read_notebook(path)
    mimes = [k for o in saved.cells[0].outputs for k in o.get("data", {})]
    assert "application/vnd.jupyter.widget-view+json" in mimes, mimes

    # the recorder saw the page load (lab assets, API calls, the kernel websocket)
    assert len(page.aw_requests) > 20, page.aw_requests
    assert any(u.startswith("ws://127.0.0.1") for u in page.aw_requests), page.aw_requests
    assert_only_local_requests(page)


def test_is_local_url():
    assert is_local_url("http://127.0.0.1:8888/lab")
    assert is_local_url("ws://localhost:1/api/kernels/x/channels")
    assert is_local_url("blob:http://127.0.0.1:8888/1234")
    assert is_local_url("data:image/png;base64,AAAA")
    assert not is_local_url("https://cdn.jsdelivr.net/npm/x")
    assert not is_local_url("http://127.0.0.1.evil.com/")
