"""The Python/TypeScript contract, checked from the Python side with no node and no model.

Python is the source of truth: a widget's synced traits are the wire. The front-end's
copy is js/src/lib/types.ts (one `name: type;` field per trait), which is hand-written
and so can drift. These tests read both and fail on any difference, in both
directions: a trait TS does not declare, a TS field Python does not sync, a trait whose
TS type is of another kind, a status value one side lacks, an option list TS spells
differently, or a mime type defined twice or differently.
"""
from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import anywidget
import pytest
import traitlets as t

import actwidgets as aw
from actwidgets.widgets import _snapshot
from actwidgets.widgets.lens import COLOR_BY

ROOT = Path(__file__).resolve().parents[2]
JS_SRC = ROOT / "js" / "src"
TYPES_TS = JS_SRC / "lib" / "types.ts"
WIRE_MD = ROOT / "js" / "WIRE.md"
WIDGETS = (aw.Attention, aw.Heatmap, aw.LogitAttribution, aw.LogitLens, aw.PatchingGrid, aw.Steering)
# ipywidgets' own traits (layout, tooltip, _view_name...) are the framework's, not ours.
BASE_TRAITS = frozenset(anywidget.AnyWidget.class_trait_names(sync=True))

# Python trait class -> the TS type family anywidget delivers it as. A new trait class
# fails loudly (see py_family) rather than passing unchecked.
PY_FAMILIES = ((t.Bytes, "bytes"), (t.Bool, "boolean"), ((t.Float, t.Int), "number"),
               (t.Unicode, "string"), ((t.List, t.Tuple), "array"), (t.Dict, "object"))
TS_BYTES = {"DataView", "ArrayBuffer", "Uint8Array"}


# --- the Python side ---------------------------------------------------------------
def synced_traits(cls) -> dict[str, t.TraitType]:
    return {name: trait for name, trait in cls.class_traits(sync=True).items()
            if name not in BASE_TRAITS and not name.startswith("_")}


def py_family(trait: t.TraitType) -> str:
    for kinds, family in PY_FAMILIES:
        if isinstance(trait, kinds):
            return family
    return f"unmapped trait class {type(trait).__name__} (add it to PY_FAMILIES)"


def python_statuses() -> set[str]:
    """Every value the widgets' code can give `status`, read from the source (ast), so a
    new `self.status = "..."` anywhere in actwidgets/widgets/ is seen without running it."""
    found: set[str] = set()
    unreadable: list[str] = []

    def take(value: ast.AST | None, where: str) -> None:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            found.add(value.value)
        else:
            unreadable.append(where)

    for path in sorted((ROOT / "actwidgets" / "widgets").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "set_trait":
                if node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "status":
                    take(node.args[1] if len(node.args) > 1 else None, where)
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts))
                elif isinstance(target, ast.Tuple):
                    pairs = [(elt, None) for elt in target.elts]  # `a, self.status = f()`: unreadable
                else:
                    pairs = [(target, node.value)]
                for name, value in pairs:
                    if isinstance(name, ast.Attribute) and name.attr == "status":
                        take(value, where)
                    elif isinstance(name, ast.Name) and name.id == "status":  # the trait's default
                        while (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                               and value.func.attr == "tag"):
                            value = value.func.value  # t.Unicode("idle").tag(sync=True)
                        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                                and value.func.attr == "Unicode"):
                            take(value.args[0] if value.args else None, where)
    assert not unreadable, f"status set to something other than a string literal at {unreadable}"
    return found


# --- the TypeScript side -----------------------------------------------------------
_INTERFACE = re.compile(r"^export interface (\w+)(?:<[^>{]*>)?(?:\s+extends\s+([^{]+))?\s*\{(?:\s*\}|(.*?)^\})", re.M | re.S)
_FIELD = re.compile(r"^\s*(\w+)\??\s*:\s*(.+?);\s*$", re.M)
_ALIAS = re.compile(r"^export type (\w+)(?:<[^=]*>)?\s*=\s*(.+?);\s*$", re.M)


def _without_comments(source: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", source, flags=re.S))


@functools.cache
def ts_declarations() -> tuple[dict[str, tuple[list[str], dict[str, str]]], dict[str, str]]:
    """types.ts as {interface: (bases, {field: type})} and {type alias: type}."""
    source = _without_comments(TYPES_TS.read_text())
    aliases = {m[1]: m[2].strip() for m in _ALIAS.finditer(source)}
    interfaces = {}
    for m in _INTERFACE.finditer(source):
        bases = [re.sub(r"<.*", "", b).strip() for b in (m[2] or "").split(",") if b.strip()]
        interfaces[m[1]] = (bases, dict(_FIELD.findall(m[3] or "")))
    return interfaces, aliases


def ts_fields(interface: str) -> dict[str, str]:
    """An interface's fields, its `extends` chain's included (later bases and own fields win)."""
    interfaces, _ = ts_declarations()
    assert interface in interfaces, f"{interface} is not an interface declared in {TYPES_TS.name}"
    bases, own = interfaces[interface]
    fields: dict[str, str] = {}
    for base in bases:
        fields.update(ts_fields(base))
    return {**fields, **own}


def _union(ts_type: str) -> list[str]:
    """Split at the top-level `|` only: `[A | string, string][]` is one member."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(ts_type):
        depth += (ch in "<[({") - (ch in ">])}")
        if ch == "|" and depth == 0:
            parts.append(ts_type[start:i])
            start = i + 1
    return [p.strip() for p in [*parts, ts_type[start:]] if p.strip()]


def ts_family(ts_type: str) -> set[str]:
    interfaces, aliases = ts_declarations()
    families: set[str] = set()
    for part in _union(ts_type):
        if part in ("null", "undefined"):
            continue
        if part.endswith("[]") or part.startswith("[") or re.match(r"(Readonly)?Array<", part):
            families.add("array")
        elif part == "string" or re.fullmatch(r'"[^"]*"', part):
            families.add("string")
        elif part in ("number", "boolean"):
            families.add(part)
        elif part in ("true", "false"):
            families.add("boolean")
        elif part in TS_BYTES:
            families.add("bytes")
        elif part.startswith(("Record<", "{")) or part in interfaces:
            families.add("object")
        elif part in aliases:
            families |= ts_family(aliases[part])
        else:
            families.add(f"unknown TS type {part}")
    return families


def ts_literals(ts_type: str) -> set[str]:
    """The string literals a TS type names, through aliases (`ColorBy | string` -> ColorBy's)."""
    _, aliases = ts_declarations()
    out: set[str] = set()
    for part in _union(ts_type):
        if re.fullmatch(r'"[^"]*"', part):
            out.add(part[1:-1])
        elif part in aliases:
            out |= ts_literals(aliases[part])
    return out


def model_interface(cls) -> str:
    """The interface the widget's front-end module declares itself against, so the check
    follows what `render` really reads rather than a name table kept here."""
    module = JS_SRC / f"{cls.snapshot_kind}.ts"
    m = re.search(r"satisfies AnyWidget<(\w+)>", module.read_text())
    assert m, f"{module.relative_to(ROOT)} must end `export default {{ render }} satisfies AnyWidget<Model>;`"
    return m[1]


# --- the checks --------------------------------------------------------------------
def test_every_widget_is_checked():
    exported = {name for name in aw.__all__ if isinstance(getattr(aw, name), type)
                and issubclass(getattr(aw, name), anywidget.AnyWidget)}
    assert exported == {cls.__name__ for cls in WIDGETS}


@pytest.mark.parametrize("cls", WIDGETS, ids=lambda cls: cls.__name__)
def test_synced_traits_are_the_typescript_fields(cls):
    interface = model_interface(cls)
    python, ts = synced_traits(cls), ts_fields(interface)
    untyped, unsynced = sorted(python.keys() - ts.keys()), sorted(ts.keys() - python.keys())
    assert not untyped, f"{cls.__name__} syncs {untyped}, which {interface} lacks (add to types.ts and WIRE.md)"
    assert not unsynced, f"{interface} declares {unsynced}, which {cls.__name__} does not sync"
    wrong = {name: (py_family(trait), sorted(ts_family(ts[name]))) for name, trait in python.items()
             if ts_family(ts[name]) != {py_family(trait)}}
    assert not wrong, f"{interface}: trait kind (Python) vs TS type family: {wrong}"


@pytest.mark.parametrize("cls", WIDGETS, ids=lambda cls: cls.__name__)
def test_option_lists_name_the_same_values(cls):
    """`x_options` is Python's list of choices for `x`; a literal union TS gives `x` must match it."""
    python, ts = synced_traits(cls), ts_fields(model_interface(cls))
    for name in [n for n in python if n.endswith("_options") and n.removesuffix("_options") in python]:
        default = python[name].default()
        values = {o if isinstance(o, str) else o[0] for o in default}  # "value" or [value, label]
        literals = ts_literals(ts[name.removesuffix("_options")])
        assert not literals or literals == values, f"{cls.__name__}.{name}: Python {sorted(values)}, TS {sorted(literals)}"


def test_lens_options_come_from_color_by():
    assert aw.LogitLens.class_traits()["color_by_options"].default() == [[k, v] for k, v in COLOR_BY.items()]
    # "entropy" and "target_prob" are also trait names, so only "top_prob" betrays a copied list.
    copies = [p.relative_to(ROOT).as_posix() for p in JS_SRC.rglob("*.ts")
              if p != TYPES_TS and '"top_prob"' in p.read_text()]
    assert not copies, f"{copies} spell out colour-by values: draw the menu from color_by_options"


def test_status_values_agree():
    python = python_statuses()
    _, aliases = ts_declarations()
    wire_row = next(line for line in WIRE_MD.read_text().splitlines() if line.startswith("| `status` |"))
    assert python >= {"idle", "running", "done", "error"}, python  # the parse found the real ones
    ts, wire = ts_literals(aliases["Status"]), set(re.findall(r'"(\w+)"', wire_row))
    assert ts == python, f"types.ts `Status` is {sorted(ts)}; Python sets {sorted(python)}"
    assert wire == python, f"WIRE.md's status row lists {sorted(wire)}; Python sets {sorted(python)}"


def test_mime_types_defined_once_and_equal_to_python():
    sources = [p for d in (JS_SRC, ROOT / "js" / "labextension" / "src") for p in d.rglob("*.ts")]
    for mime in (_snapshot.SNAPSHOT_MIME, _snapshot.WIDGET_MIME):
        defining = [p.relative_to(ROOT).as_posix() for p in sources if f'"{mime}"' in p.read_text()]
        assert defining == ["js/src/lib/mime.ts"], f"{mime} as a string literal in {defining}"


def test_the_stale_figure_label_reads_the_same_in_the_png_and_the_page():
    from actwidgets.widgets._figure import STALE_LABEL

    shell = (JS_SRC / "lib" / "shell.ts").read_text(encoding="utf-8")
    labels = re.findall(r'export const STALE_LABEL = "([^"]+)"', shell)
    assert len(labels) == 1 and labels[0].lower() == STALE_LABEL.lower()


@pytest.mark.parametrize("cls", WIDGETS, ids=lambda cls: cls.__name__)
def test_every_widget_has_what_the_others_have(cls):
    """Its numbers (`data`), a figure for a paper, a page, a cancel, and a front-end module."""
    for member in ("data", "figure", "to_html", "cancel", "wait", "snapshot_kind"):
        assert hasattr(cls, member), f"{cls.__name__} has no {member}"
    assert isinstance(cls.data, property) and cls.snapshot_kind
