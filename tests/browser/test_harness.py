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


LIGHT_CELL = '''\
import anywidget, traitlets

class W(anywidget.AnyWidget):
    _esm = """
    export default { render({model, el}) {
      const b = document.createElement('button');
      const show = () => { b.textContent = `n=${model.get('n')} bytes=${model.get('data').byteLength}`; };
      b.onclick = () => { model.set('n', model.get('n') + 1); model.save_changes(); };
      model.on('change:n', show); model.on('change:data', show); show();
      model.on('msg:custom', (msg, buffers) => { el.dataset.got = `${msg.x}:${buffers[0].byteLength}`;
        model.send({echo: msg.x}, undefined, [new Uint8Array([1, 2, 3])]); });
      el.appendChild(b);
    } }"""
    n = traitlets.Int(0).tag(sync=True)
    data = traitlets.Bytes(b"ab").tag(sync=True)

w = W()
got = []
w.on_msg(lambda _w, content, buffers: got.append((content, [bytes(b) for b in buffers])))
w
'''


def test_light_widget_page_round_trips(widget_server, page):
    """The light page: a live anywidget, state and custom messages (with buffers) both ways."""
    from .harness import kernel_exec
    from .light import open_widget_page, run_widget_cells

    t0 = time.monotonic()
    open_widget_page(page, widget_server)
    t_open = time.monotonic() - t0
    assert run_widget_cells(page, LIGHT_CELL) == []
    button = page.locator(".awl-widget button")
    expect(button).to_have_text("n=0 bytes=2", timeout=30_000)
    print(f"\nlight page open+kernel ready {t_open:.1f}s, widget rendered {time.monotonic() - t0:.1f}s")

    button.click()  # JS -> Python
    expect(button).to_have_text("n=1 bytes=2")
    assert kernel_exec(page, "print(w.n)").strip() == "1"
    kernel_exec(page, "w.n = 5; w.data = b'xyz!'")  # Python -> JS, a buffer included
    expect(button).to_have_text("n=5 bytes=4")
    kernel_exec(page, "w.send({'x': 7}, [b'1234567'])")  # custom message with a buffer, and back
    expect(page.locator(".awl-widget[data-got='7:7']")).to_have_count(1)
    page.wait_for_function("async () => (await window.awLight.exec('print(len(got))')).trim() === '1'", polling=200)
    assert kernel_exec(page, "print(got)").strip() == "[({'echo': 7}, [b'\\x01\\x02\\x03'])]"
    assert run_widget_cells(page, "1/0") == ["ZeroDivisionError: division by zero"]
    assert any(u.startswith("ws://127.0.0.1") for u in page.aw_requests), page.aw_requests
    assert_only_local_requests(page)
