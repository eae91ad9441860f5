"""mkdocs hooks for `make docs` (see mkdocs.yml): the README as the home page, and the executed
teaching notebooks with every actwidgets figure drawn by the widgets' own front-end code.

A saved figure's output carries its snapshot. Here it gains a text/html rendering, the very
markup `widget.to_html()` writes (actwidgets.widgets._snapshot.figure_html): the snapshot and
the drawing code inlined, the PNG in <noscript> for readers without scripts. mkdocs-jupyter
prefers text/html to the PNG, so the page draws each figure itself: hover works, and there is
no kernel, no CDN and no network. The drawing code is inlined once per page.

The notebooks' few display formulas ($$...$$) become MathML, which browsers draw themselves,
in place of MathJax from a CDN; nbconvert's Mermaid loader, another CDN import, is dropped.
"""
from __future__ import annotations

import html
import re
import shutil
import tempfile
from pathlib import Path

import nbformat
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT_MIME = "application/vnd.actwidgets.snapshot+json"
_scratch: Path | None = None


def notebook_with_figures(path: Path):
    """The notebook with a self-drawing text/html beside each snapshot output."""
    from actwidgets.widgets._snapshot import figure_html  # imports torch: only when building

    nb = nbformat.read(path, as_version=4)
    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if SNAPSHOT_MIME in data and "image/png" in data:
                data["text/html"] = figure_html(data, element_id=f"aw-figure-{count}", code=count == 0)
                count += 1
    return nb


def readme_as_home() -> str:
    """README.md, with its links made to work from the site's root, and no remote badge image."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    text = text.replace("](docs/", "](")  # the pictures live in docs/, the site's root
    # A badge is an image on someone else's server: keep its words and its link, not the request.
    text = re.sub(r"!\[([^\]]*)\]\(https?://[^)]*\)", r"\1", text)
    # The notebooks named in the text are pages of the site.
    return re.sub(r"`(notebooks/\w+\.ipynb)`", r"[`\1`](\1)", text)


@event_priority(50)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files, config):
    global _scratch
    _scratch = Path(tempfile.mkdtemp(prefix="actwidgets-docs-"))
    (_scratch / "notebooks").mkdir()
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nbformat.write(notebook_with_figures(path), _scratch / "notebooks" / path.name)
        files.append(File(f"notebooks/{path.name}", src_dir=str(_scratch), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    files.append(File.generated(config, "index.md", content=readme_as_home()))
    return files


_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
_SCRIPT = re.compile(r"(<script\b.*?</script>)", re.S | re.I)  # the drawing code may hold "$$"


def on_page_content(content, page, config, files):
    if not page.file.src_uri.endswith(".ipynb"):
        return content
    from latex2mathml.converter import convert

    parts = _SCRIPT.split(content)  # odd items are the scripts
    for i in range(0, len(parts), 2):
        parts[i] = _DISPLAY_MATH.sub(lambda m: convert(html.unescape(m.group(1)), display="block"), parts[i])
    # nbconvert's Mermaid loader would import Mermaid from a CDN if a diagram ever appeared.
    return "".join(part for i, part in enumerate(parts) if not (i % 2 and "mermaid.esm" in part))


def on_post_build(config):
    if _scratch is not None:
        shutil.rmtree(_scratch, ignore_errors=True)
