"""Item histories in the panels: a recommender's input typed as text ("3 17 42"), items named
by title and id. Text models pass their text through unchanged.

A recommender (``analysis.zoo.bert4rec.Recommender``, ``model.input_kind == "items"``)
takes a history, a tuple of item ids; the panels keep the session's ``text`` a string, so
the text box shows the history as ids separated by spaces and :func:`model_input` parses it.
"""
from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from analysis.models import InputError

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

#: separators accepted between item ids: spaces, commas, semicolons, new lines, brackets
_SEPARATORS = re.compile(r"[\s,;()\[\]]+")
#: how many recommendations the panels list (instead of every item of the catalogue)
TOP_K = 10
#: the default history for a recommender when no text is given: the first items of the catalogue
DEFAULT_HISTORY_LENGTH = 8


def is_recommender(model: TracedModel | None) -> bool:
    """Whether ``model`` takes item histories (``input_kind == "items"``: a recommender) rather than text."""
    return model is not None and model.input_kind == "items"


def predicts_next_token(model: TracedModel | None) -> bool:
    """Whether ``model``'s prediction is a next token (a causal LM, or an encoder-decoder's next
    decoder token) rather than a class or an item: the panels then name it by its string."""
    return model is not None and not getattr(model, "labels", ()) and model.task in ("causal-lm", "seq2seq-lm")


def is_history(value: Any) -> bool:
    """A sequence of ints (a history given as a tuple or list rather than as text)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        return False
    return all(isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_)) for i in value)


def history_text(items: Sequence[int]) -> str:
    """A history as the text box shows it: ids separated by spaces (``(3, 17) -> "3 17"``)."""
    return " ".join(str(int(i)) for i in items)


def parse_history(text: str, n_items: int) -> tuple[int, ...]:
    """Item ids from text such as ``"3 17 42"``, ``"3, 17, 42"`` or ``"(3, 17, 42)"``.

    Raises InputError naming the valid id range for an empty history, a word, or an unknown id.
    """
    valid = f"item ids 0..{n_items - 1}"
    parts = [p for p in _SEPARATORS.split(str(text).strip()) if p]
    if not parts:
        raise InputError(f"the history is empty: type {valid} separated by spaces or commas, e.g. '3 17 42'")
    items = []
    for p in parts:
        if not re.fullmatch(r"[+-]?\d+", p):
            raise InputError(f"{p!r} is not an item id: a history is {valid} separated by spaces or commas, "
                             "e.g. '3 17 42'")
        i = int(p)
        if not 0 <= i < n_items:
            raise InputError(f"unknown item id {i}: this catalogue has {valid}")
        items.append(i)
    return tuple(items)


def model_input(model: TracedModel, text: str) -> str | tuple[int, ...]:
    """What ``model`` is called with for the panel text: the text itself, or for a recommender
    the parsed history (its most recent ``max_length - 1`` items, as the model keeps them)."""
    if not is_recommender(model):
        return text
    items = parse_history(text, model.n_items)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # the panels say it themselves (history_note)
        return model.history(items)


def default_text(model: TracedModel) -> str | None:
    """The text a new session starts with for ``model``: a short history for a recommender,
    None (the session's default sentence) otherwise."""
    if not is_recommender(model):
        return None
    n = min(DEFAULT_HISTORY_LENGTH, model.n_items, model.max_length - 1)
    return history_text(range(n))


def fits(model: TracedModel, text: str) -> bool:
    """Whether ``text`` is a plausible input for ``model``: a valid history for a recommender,
    anything but a bare list of ids for a text model (used when the Lab switches models)."""
    if is_recommender(model):
        try:
            parse_history(text, model.n_items)
        except InputError:
            return False
        return True
    parts = [p for p in _SEPARATORS.split(str(text).strip()) if p]
    return not parts or not all(re.fullmatch(r"[+-]?\d+", p) for p in parts)


def item_name(model: TracedModel, item: int) -> str:
    """``"title (#id)"`` for a recommender's item; the label (or ``"class k"``) otherwise."""
    labels = getattr(model, "labels", ()) or ()
    if is_recommender(model):
        return f"{model.title(int(item))} (#{int(item)})"
    return labels[item] if 0 <= item < len(labels) else f"class {item}"


def position_names(trace: Any) -> list[str]:
    """One display name per position of ``trace``: ``"title (#id)"`` for the items of a
    recommender's trace, the token itself otherwise (text, ``[MASK]``)."""
    items = getattr(trace, "items", None)
    if not items:
        return list(trace.tokens)
    return [f"{t} (#{i})" if i >= 0 else t for t, i in zip(trace.tokens, items)]


def position_options(trace: Any, *, skip_query: bool = False) -> list[tuple[str, int]]:
    """Dropdown options ``("3: title (#id)", 3)`` for the positions of ``trace``; ``skip_query``
    leaves out a recommender's appended query (it cannot be removed)."""
    names = position_names(trace)
    n = len(names) - 1 if skip_query and getattr(trace, "items", None) else len(names)
    return [(f"{p}: {names[p]}", p) for p in range(n)]


def history_note(model: TracedModel, text: str) -> str:
    """A line saying how a recommender reads the text (or "" for text models): the number of
    items kept and the catalogue's id range."""
    if not is_recommender(model):
        return ""
    typed = parse_history(text, model.n_items)
    kept = model_input(model, text)
    cut = (f"; the {len(typed)} items typed are more than this model reads: kept the {len(kept)} most recent"
           if len(kept) < len(typed) else "")
    return f"history of {len(kept)} items (ids 0..{model.n_items - 1}; most recent last){cut}"
