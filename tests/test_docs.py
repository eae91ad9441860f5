"""`make docs`: the site builds, and in headless Chromium with the network off every actwidgets
figure on a notebook page draws itself from its snapshot (hover works), no request leaves the
machine on the home page, a notebook page or the API reference, and readers without scripts
get each figure's PNG. Without a browser: no page or stylesheet of the site names anything to
load from another server, and formulas are MathML.

The pages are visited on a thread of their own: Playwright's sync API runs one instance per
thread, and the browser tests' session-wide one may be alive on this thread.
"""
from __future__ import annotations

import os
import re
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from browser.harness import CHROMIUM, CHROMIUM_ARGS, screenshot
from browser.test_quickstart import CANVAS_PIXELS

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT_MIME = "application/vnd.actwidgets.snapshot+json"
NOTEBOOK = "06_attention_and_dla"  # attention, logit attribution and a heads patching grid
API_OBJECTS = ["actwidgets.load", "actwidgets.wrap", "actwidgets.widgets._base.JobWidget.to_html",
               *[f"actwidgets.{w}" for w in ("Heatmap", "LogitLens", "Attention", "LogitAttribution", "Steering",
                                             "PatchingGrid")],
               *[f"actwidgets.methods.{m}" for m in ("activations", "lens", "attention", "dla", "patching", "steering")]]
LOCAL_SCHEMES = {"file", "data", "blob", "about"}

# The largest share of painted pixels over a figure's canvases.
_PAINTED = ("(root) => Math.max(0, ...Array.from(root.querySelectorAll('canvas'))"
            ".filter(c => c.width && c.height).map(c => (" + CANVAS_PIXELS + ")(c).painted))")
_IMAGES_LOADED = "() => Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"


def _local(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or parts.hostname == "127.0.0.1"


def _figures_in(notebook: str) -> int:
    nb = nbformat.read(REPO / "notebooks" / f"{notebook}.ipynb", as_version=4)
    return sum(SNAPSHOT_MIME in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def site(tmp_path_factory, monkeypatch_module):
    """`make docs`, in this process (which has imported actwidgets and torch already: the build's
    hook needs them), into a scratch folder. mkdocs.yml's `strict` turns any warning into a failure."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    out = tmp_path_factory.mktemp("site")
    start = time.perf_counter()
    monkeypatch_module.setenv("NO_MKDOCS_2_WARNING", "1")
    monkeypatch_module.chdir(REPO)
    config = load_config(str(REPO / "mkdocs.yml"), site_dir=str(out))
    config.plugins.on_startup(command="build", dirty=False)
    try:
        build(config)
    finally:
        config.plugins.on_shutdown()
    print(f"\nmkdocs build: {time.perf_counter() - start:.1f} s")
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _open(browser, url: str, **options):
    context = browser.new_context(offline=True, viewport={"width": 1300, "height": 1000}, **options)
    page = context.new_page()
    page.aw_requests, page.aw_problems = [], []
    context.on("request", lambda r: page.aw_requests.append(r.url))
    page.on("pageerror", lambda e: page.aw_problems.append(f"pageerror: {e}"))
    page.on("console", lambda m: page.aw_problems.append(m.text) if m.type == "error" else None)
    page.goto(url)
    return context, page


def _visit(site: Path) -> dict:
    """Every observation the tests assert on, gathered in one Chromium."""
    from playwright.sync_api import expect, sync_playwright

    if not os.path.exists(CHROMIUM):
        raise AssertionError(f"Chromium not found at {CHROMIUM}: install it (`make chromium`) or set AW_CHROMIUM")
    seen: dict = {"requests": {}, "problems": {}}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            def visit(name, path, look, **options):
                context, page = _open(browser, (site / path).as_uri(), **options)
                try:
                    look(page)
                    page.wait_for_timeout(300)  # late requests (a worker, a font) get recorded too
                finally:
                    seen["requests"][name], seen["problems"][name] = page.aw_requests, page.aw_problems
                    context.close()

            def notebook(page):
                roots = page.locator(".aw-root[data-snapshot]")
                expect(roots).to_have_count(_figures_in(NOTEBOOK))
                seen["painted"] = [root.evaluate(_PAINTED) for root in roots.all()]
                first = roots.first.locator("canvas.aw-grid").first
                first.scroll_into_view_if_needed()
                box = first.bounding_box()
                page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6)
                seen["tooltip"] = roots.first.locator(".aw-tooltip").first.is_visible()
                seen["screenshot"] = screenshot(page, "docs-notebook")

            def without_scripts(page):
                seen["noscript_pngs"] = page.locator('img[src^="data:image/png"]').count()
                seen["noscript_loaded"] = page.evaluate(_IMAGES_LOADED)

            def home(page):
                seen["home_title"] = page.locator("h1").first.inner_text()
                seen["home_images"] = page.evaluate(_IMAGES_LOADED)
                seen["home_links"] = page.locator('a[href$="notebooks/01_quickstart.html"]').count()

            def api(page):
                seen["api_ids"] = [i for i in API_OBJECTS if page.locator(f'[id="{i}"]').count()]

            visit("notebook", f"notebooks/{NOTEBOOK}.html", notebook)
            visit("notebook without scripts", f"notebooks/{NOTEBOOK}.html", without_scripts, java_script_enabled=False)
            visit("home", "index.html", home)
            visit("api", "api.html", api)
        finally:
            browser.close()
    return seen


@pytest.fixture(scope="module")
def seen(site):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_visit, site).result(timeout=240)


def test_every_figure_draws_from_its_snapshot(seen):
    assert seen["painted"] and all(p > 0.3 for p in seen["painted"]), seen["painted"]
    assert seen["tooltip"], "hovering a figure showed no tooltip"
    assert seen["screenshot"].stat().st_size > 10_000


def test_no_request_leaves_the_machine(seen):
    for page, urls in seen["requests"].items():
        assert urls, f"{page}: no request recorded at all"
        remote = sorted({u for u in urls if not _local(u)})
        assert not remote, f"{page} requested {remote}"


def test_pages_show_no_script_errors(seen):
    assert seen["problems"] == {page: [] for page in seen["problems"]}


def test_without_scripts_each_figure_is_its_png(seen):
    assert seen["noscript_pngs"] == _figures_in(NOTEBOOK)
    assert seen["noscript_loaded"] and all(seen["noscript_loaded"])


def test_home_is_the_readme(seen):
    assert seen["home_title"].strip().startswith("actwidgets")
    assert len(seen["home_images"]) >= 3 and all(seen["home_images"]), seen["home_images"]
    assert seen["home_links"] >= 1, "the README's notebook names are not links to their pages"


def test_api_reference_documents_the_public_api(seen):
    assert seen["api_ids"] == API_OBJECTS


# Anything a browser loads by itself: scripts, stylesheets, icons, images, frames, CSS urls,
# a script's import().
_LOADS_REMOTE = re.compile(r"<(?:script|img|link|iframe|source|embed|object)\b[^>]*\b(?:src|href|data)=[\"']?(?:https?:)?//"
                           r"|url\(\s*[\"']?(?:https?:)?//|@import\s+[\"']?(?:url\()?[\"']?(?:https?:)?//"
                           r"|\bimport\(\s*[\"'](?:https?:)?//", re.I)


def test_no_page_loads_anything_from_another_server(site):
    """Every page and stylesheet of the site, not only the three the browser opened."""
    files = [*site.rglob("*.html"), *site.rglob("*.css")]
    assert len(files) > 8
    remote = {str(f.relative_to(site)): m.group(0) for f in files
              if (m := _LOADS_REMOTE.search(f.read_text(encoding="utf-8", errors="replace")))}
    assert not remote, remote


def test_formulas_are_mathml_not_mathjax(site):
    page = (site / "notebooks" / "02_heatmaps_and_lens.html").read_text(encoding="utf-8")
    text = re.sub(r"<script\b.*?</script>", "", page, flags=re.S)  # MathJax's unused config names "$$"
    assert text.count("<math ") == 3 and "$$" not in text
