"""Shared pieces of the exercise checkers: :class:`Feedback`, the ``_checker`` wrapper that turns
placeholders and unreadable answers into feedback, and the answer readers (numbers, matrices,
node names, pairs, edges). Pure python + numpy."""
from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: ``ok``, a one-paragraph ``message`` and optional ``details``
    (one line per sub-answer). ``answered`` is False for a placeholder. Renders as HTML,
    Markdown or text; ``bool(feedback)`` is ``feedback.ok``."""

    task: str
    ok: bool
    message: str
    details: tuple[str, ...] = ()
    answered: bool = True

    def __bool__(self) -> bool:
        return self.ok

    @property
    def status(self) -> str:
        """"correct", "not quite" or "not answered yet"."""
        return "correct" if self.ok else ("not quite" if self.answered else "not answered yet")

    def _text(self) -> str:
        return self.message[:1].upper() + self.message[1:]

    def _icon(self) -> str:
        return "✅" if self.ok else ("❌" if self.answered else "✏️")

    def __str__(self) -> str:
        lines = [f"{self._icon()} {self.task}: {self.status}. {self._text()}"]
        lines += [f"   - {d}" for d in self.details]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_markdown_(self) -> str:
        lines = [f"{self._icon()} **{self.task}: {self.status}.** {self._text()}"]
        if self.details:
            lines.append("")
            lines += [f"- {d}" for d in self.details]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.ok else ("#b35900" if self.answered else "#555")
        back = "#eefbf0" if self.ok else ("#fff4e5" if self.answered else "#f4f4f4")
        items = "".join(f"<li>{html.escape(d)}</li>" for d in self.details)
        items = f"<ul style='margin:4px 0 0 0'>{items}</ul>" if items else ""
        return (f"<div style='border-left:4px solid {colour};background:{back};padding:6px 10px;"
                f"margin:4px 0'>{self._icon()} <b>{html.escape(self.task)}: {self.status}.</b> "
                f"{html.escape(self._text())}{items}</div>")


class _BadAnswer(Exception):
    """An answer that cannot be read (wrong type or shape): becomes a 'could not read' Feedback."""


def _is_placeholder(answer: Any) -> bool:
    return answer is None or answer is Ellipsis


def _checker(task: str, what: str) -> Callable:
    """Wrap a checker: placeholders give 'not answered yet', unreadable answers 'could not read'."""
    def wrap(fn: Callable[..., Feedback]) -> Callable[..., Feedback]:
        @functools.wraps(fn)
        def run(answer: Any, *args: Any, **kwargs: Any) -> Feedback:
            if _is_placeholder(answer):
                return Feedback(task, False, f"replace the placeholder ({answer!r}) with {what}.", answered=False)
            try:
                return fn(answer, *args, **kwargs)
            except _BadAnswer as exc:
                return Feedback(task, False, f"I could not read your answer: {exc} Expected {what}.")
            except (TypeError, ValueError, IndexError, KeyError) as exc:
                return Feedback(task, False, f"I could not read your answer ({type(exc).__name__}: "
                                             f"{exc}). Expected {what}.")
        return run
    return wrap


# ----------------------------------------------------------------------- reading answers
_TRUE = {"true", "yes", "y", "1", "separated", "d-separated", "independent", "moves", "changes"}
_FALSE = {"false", "no", "n", "0", "connected", "d-connected", "dependent", "same", "stays"}


def _as_bool(x: Any) -> bool:
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)) and int(x) in (0, 1):
        return bool(x)
    if isinstance(x, str) and x.strip().lower() in _TRUE | _FALSE:
        return x.strip().lower() in _TRUE
    raise _BadAnswer(f"{x!r} is not True or False.")


def _as_float(x: Any) -> float:
    if isinstance(x, (bool, np.bool_)):
        raise _BadAnswer(f"{x!r} is a truth value, not a number.")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise _BadAnswer(f"{x!r} is not a number.") from None
    if arr.size != 1:
        raise _BadAnswer(f"got an array of shape {arr.shape}, not a single number.")
    value = float(arr.reshape(()))
    if not np.isfinite(value):
        raise _BadAnswer(f"{value} is not a finite number.")
    return value


def _as_matrix(x: Any, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise _BadAnswer(f"{type(x).__name__} is not a numeric array.") from None
    if arr.shape != tuple(shape):
        raise _BadAnswer(f"your array has shape {arr.shape}, expected {tuple(shape)}.")
    if not np.all(np.isfinite(arr)):
        raise _BadAnswer("your array has NaN or infinite entries.")
    return arr


def _as_int(x: Any) -> int:
    if isinstance(x, (bool, np.bool_)):
        raise _BadAnswer(f"{x!r} is a truth value, not an integer.")
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return int(x)
    raise _BadAnswer(f"{x!r} is not an integer.")


class _Names:
    """Node names <-> indices for a DAG or graph (accepts either form in answers)."""

    def __init__(self, names: Sequence[Hashable] | None, n: int) -> None:
        self.names = [str(v) for v in names] if names is not None else [str(k) for k in range(n)]
        if len(self.names) != n:
            raise ValueError(f"names has {len(self.names)} entries for {n} nodes")
        self._lookup = {nm.lower(): k for k, nm in enumerate(self.names)}

    def index(self, x: Any) -> int:
        if isinstance(x, str):
            k = self._lookup.get(x.strip().lower())
            if k is None and x.strip().isdigit():
                return self.index(int(x.strip()))
            if k is None:
                raise _BadAnswer(f"{x!r} is not a node; nodes are {', '.join(self.names)}.")
            return k
        if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
            if 0 <= int(x) < len(self.names):
                return int(x)
            raise _BadAnswer(f"node index {int(x)} is out of range 0..{len(self.names) - 1}.")
        raise _BadAnswer(f"{x!r} is not a node name or index.")

    def __call__(self, k: int) -> str:
        return self.names[k]

    def set(self, xs: Iterable[int]) -> str:
        return "{" + ", ".join(self.names[k] for k in sorted(xs)) + "}"

    def node_set(self, x: Any) -> frozenset[int]:
        if isinstance(x, str):
            parts = [p for p in re.split(r"[\s,{}()\[\]]+", x) if p]
            return frozenset(self.index(p) for p in parts)
        if isinstance(x, (int, np.integer)):
            return frozenset({self.index(x)})
        try:
            return frozenset(self.index(p) for p in x)
        except TypeError:
            raise _BadAnswer(f"{x!r} is not a set of nodes.") from None


def _pair(x: Any, names: _Names) -> frozenset[int]:
    """An unordered pair of nodes from ("A", "B"), (0, 1), "A-B", "A -> B", "A o-> B"."""
    if isinstance(x, str):
        parts = [p for p in re.split(r"[\s,]+", x.strip()) if p]
        if len(parts) != 2:
            try:
                a, _, _, b = _parse_edge(x)
            except _BadAnswer:
                raise _BadAnswer(f"{x!r} is not a pair of nodes such as 'A - B'.") from None
            parts = [a, b]
        items = parts
    else:
        try:
            items = list(x)
        except TypeError:
            raise _BadAnswer(f"{x!r} is not a pair of nodes.") from None
    if len(items) != 2:
        raise _BadAnswer(f"{x!r} does not name exactly two nodes.")
    a, b = names.index(items[0]), names.index(items[1])
    if a == b:
        raise _BadAnswer(f"{x!r} joins a node to itself.")
    return frozenset({a, b})


def _collection(x: Any) -> list:
    if isinstance(x, (str, bytes)) or not isinstance(x, Iterable):
        raise _BadAnswer(f"{x!r} is not a list or set.")
    return list(x.keys() if isinstance(x, dict) else x)


_SYM_RE = re.compile(r"^\s*(\w+?)\s*([<o]?-+[>o]?)\s*(\w+)\s*$")


def _parse_edge(text: str) -> tuple[str, str, str, str]:
    """'A o-> B' -> ('A', 'o', '>', 'B'); the left char is '<', 'o' or '-', the right '>', 'o' or '-'."""
    text = text.replace("\u2014", "--").replace("\u2192", "->").replace("\u2190", "<-")
    parts = text.split()
    if len(parts) == 3 and re.fullmatch(r"[<o]?-+[>o]?", parts[1]):
        a, sym, b = parts
    else:
        m = _SYM_RE.match(text)
        if m is None:
            raise _BadAnswer(f"{text!r} is not an edge like 'A o-> B' (node, mark-dashes-mark, node).")
        a, sym, b = m.groups()
    left = sym[0] if sym[0] in "<o" else "-"
    right = sym[-1] if sym[-1] in ">o" else "-"
    return a, left, right, b


def _dag(dag: np.ndarray) -> np.ndarray:
    adj = np.asarray(dag) != 0
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"dag must be a square adjacency matrix, got shape {adj.shape}")
    return adj
