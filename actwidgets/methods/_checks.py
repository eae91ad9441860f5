"""Checks of what a user passes, shared by methods and widgets.

Each raises InputError with one sentence naming the parameter, what it allows and the
value given, so a widget can show it as it is. Booleans are not numbers here (True
would silently mean 1), and numpy scalars are numbers.
"""
from __future__ import annotations

import math
import numbers
import unicodedata

from ..errors import InputError

# Characters that draw nothing: format controls (zero-width space, joiners, BOM), other
# controls, separators, and the letters that are blank by design (Hangul fillers, braille blank).
_BLANK_CATEGORIES = {"Cc", "Cf", "Zs", "Zl", "Zp"}
_BLANK_LETTERS = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}


def shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def whole(value, name: str, low: int, high: int | None = None) -> int:
    """A whole number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
            low <= value and (high is None or value <= high)):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise InputError(f"{name} must be a whole number {span}, not {shown(value)}.")
    return int(value)


def real(value, name: str, *, above: float | None = None, below: float | None = None, unit: str = "") -> float:
    """A finite number (above `above` and below `below`, when given)."""
    number = None
    if not isinstance(value, (str, bytes, bool)):
        try:  # numpy and torch scalars too
            number = float(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    if (number is None or not math.isfinite(number) or (above is not None and not number > above)
            or (below is not None and not number < below)):
        span = (f" between {above:g} and {below:g}" if above is not None and below is not None
                else f" above {above:g}" if above is not None else f" below {below:g}" if below is not None else "")
        raise InputError(f"{name} must be a finite number{span}{unit}, not {shown(value)}.")
    return number


def interval(value, name: str) -> tuple[float, float]:
    """(low, high): two finite numbers, low below high."""
    message = f"{name} must be two finite numbers (low, high) with low below high, not {shown(value)}."
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise InputError(message)
    low, high = (real(v, f"{name}'s bounds") for v in value)
    if not low < high:
        raise InputError(message)
    return low, high


def choice(value, options, name: str):
    """One of `options` (strings)."""
    if not isinstance(value, str) or value not in options:
        raise InputError(f"{name} must be one of {', '.join(map(repr, options))}, not {shown(value)}.")
    return value


def text(value, name: str = "prompt") -> str:
    """Text with something visible in it."""
    if not isinstance(value, str):
        raise InputError(f"The {name} must be text, not {type(value).__name__}.")
    if all(ch in _BLANK_LETTERS or unicodedata.category(ch) in _BLANK_CATEGORIES for ch in value):
        what = "empty" if not value.strip() else "only invisible characters (zero-width, control or filler)"
        raise InputError(f"The {name} is {what}: type some text to run the model on.")
    return value


def keywords(widget: str, given, listed, accepted=()) -> None:
    """Reject keyword arguments a widget does not have, naming the ones it does (`listed`;
    `accepted` adds names that are valid but not worth listing, e.g. ipywidgets' own traits)."""
    import difflib

    unknown = sorted(set(given) - set(listed) - {a for a in accepted if not a.startswith("_")})
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, listed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TypeError(f"{widget}() got an unexpected keyword argument {name!r}{hint}. "
                    f"Its keyword arguments are: {', '.join(listed)}.")
