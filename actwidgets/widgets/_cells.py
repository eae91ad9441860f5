"""Which notebook cells a widget belongs to, so re-running a cell releases the widgets it made.

ipywidgets keeps every widget in its registry until `close()`, so a cell that makes a
figure and is re-run 100 times keeps 100 widgets, their results and their comms alive.
Front-ends send the id of the cell being run (`cellId` in the execute request's metadata:
JupyterLab, Notebook 7, VS Code); IPython hands it to `pre_run_cell` hooks as
`info.cell_id`. A widget belongs to the cell it was made in and to every cell that
displayed it. When one of those cells runs again its output, and the widget in it, is
replaced, so the cell is crossed off; a widget left with no cell is on no screen and
is closed. A widget made outside a notebook (a script, a terminal IPython) has no
cell and is never closed for you.
"""
from __future__ import annotations

import threading
import weakref

_lock = threading.Lock()
_current: str | None = None  # the cell now running
_owners: "weakref.WeakKeyDictionary[object, set[str]]" = weakref.WeakKeyDictionary()
_hooked = False


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return None
    return get_ipython()


def _hook() -> None:
    global _hooked, _current
    if _hooked:
        return
    shell = _shell()
    if shell is None:
        return
    shell.events.register("pre_run_cell", _pre_run_cell)
    _hooked = True
    _current = _cell_from_kernel(shell)  # this cell's hook call has already gone by


def _cell_from_kernel(shell) -> str | None:
    try:
        return shell.kernel.get_parent()["metadata"].get("cellId")
    except Exception:  # not a kernel (terminal IPython), or a kernel without parents
        return None


def _pre_run_cell(info) -> None:
    global _current
    cell = getattr(info, "cell_id", None)
    with _lock:
        _current = cell
        if cell is None:
            return
        released = []
        for widget, cells in list(_owners.items()):
            if cell in cells:
                cells.discard(cell)
                if not cells:
                    released.append(widget)
                    del _owners[widget]
    for widget in released:
        widget.close()


def belongs_here(widget) -> None:
    """Record that the running cell made or displayed `widget`."""
    _hook()
    with _lock:
        if _current is not None:
            _owners.setdefault(widget, set()).add(_current)
