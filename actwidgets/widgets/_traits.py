"""Trait types of our own (as lonboard keeps its traits in one module).

`Array`: a numpy array on the wire as one binary buffer, little-endian `dtype`, row-major,
which `js/src/lib/tensor.ts` decodes by the `dtype` tag (and `_snapshot.py` packs by it).
Assign an array (or `b""`/None for none): it is cast here, once, so no widget converts by
hand and no buffer can go out in the wrong dtype. The shape travels beside it (a grid's
`shape`; a 1-D curve's length is its own).

`Prompt`: text, or a chat (a list of role/content messages), which becomes the text the model
reads (`Model.chat`): the widget shows, saves and re-runs that text.

`Token`: a token by its text (' Paris') or its id (7042). An id becomes the label the widgets
show for it, which `Model.single_token` reads back as that id (a piece of a character too); an
id whose label names another token (a tokenizer may decode two tokens alike) is refused.
"""
from __future__ import annotations

import numpy as np
import traitlets as t

from ..errors import InputError


class Array(t.Bytes):
    def __init__(self, dtype: str = "<f4", **kwargs) -> None:
        super().__init__(b"", **kwargs)
        self.tag(sync=True, dtype=dtype)

    def validate(self, obj, value):
        if value is None:
            return b""
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        try:
            return np.ascontiguousarray(value, dtype=self.metadata["dtype"]).tobytes()
        except (TypeError, ValueError):
            self.error(obj, value)


PromptText = str | list[dict]  # a parameter's type: text, or a chat of role/content messages


class Prompt(t.Unicode):
    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.tag(sync=True)

    def validate(self, obj, value):
        if isinstance(value, (list, tuple)):
            value = obj.model.chat(value, self.name)
        return super().validate(obj, value)


class Token(t.Unicode):
    def __init__(self, default: str = "", *, what: str | None = None, **kwargs) -> None:
        super().__init__(default, **kwargs)
        self.what = what  # how a message names it where it has no name of its own (a list's item)
        self.tag(sync=True)

    def validate(self, obj, value):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            model, name = obj.model, self.name or self.what
            token = model.single_token(value, name)
            label = model.token_texts([token])[0]
            try:
                back = model.single_token(label)
            except InputError:
                back = None
            if back != token:
                raise InputError(f"{name}: token id {token} shows as {label!r}, which names "
                                 f"{'another token' if back is None else f'token {back}'}; give the token as text.")
            value = label
        return super().validate(obj, value)
