"""The state panels share: the model, the text, a cache of traces, the last learned graph."""
from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import traitlets

from widgets.items import default_text, history_text, is_history, model_input

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

DEFAULT_TEXT = "a gripping, beautifully acted film that never lets go of you."


class ModelBusy(RuntimeError):
    """The model is running a background job (e.g. an adversarial search)."""


class TextOrHistory(traitlets.Unicode):
    """A text trait that also takes a history (a sequence of item ids), stored as ``"3 17 42"``."""

    def validate(self, obj: Any, value: Any) -> str:
        if is_history(value):
            value = history_text(value)
        return super().validate(obj, value)


class Session(traitlets.HasTraits):
    """Model + text + traces cached per (model name, input); panels observe ``text``/``model``.

    ``text`` is what the text box shows; ``input`` is what the model is called with (the text,
    or for a recommender the history parsed from ``"3 17 42"``; a tuple of ids may be given as
    ``text`` too). ``graph`` holds the last causal graph a panel learned (its test log is shown
    by the CI panel). ``trace()`` runs the model once per input; stepping layers and heads reads
    the cache.
    """

    model = traitlets.Any()
    text = TextOrHistory(DEFAULT_TEXT)
    graph = traitlets.Any(None, allow_none=True)

    def __init__(self, model: TracedModel | None = None, text: str | None = None, *, max_traces: int = 32) -> None:
        if model is None:
            from analysis import load_model

            model = load_model()
        if text is None:
            text = default_text(model) or DEFAULT_TEXT
        super().__init__(model=model, text=text)
        self.max_traces = max_traces
        self.n_forward = 0                      # model runs made by trace() (the cache misses)
        self._traces: OrderedDict[tuple[str, Any], Any] = OrderedDict()
        self._lock = threading.RLock()

    @traitlets.observe("model")
    def _model_changed(self, change: dict) -> None:
        old = change["old"]
        if old is not None and old is not change["new"]:
            name = getattr(old, "name", "")
            for key in [k for k in self._traces if k[0] == name]:
                del self._traces[key]
        self.graph = None

    @traitlets.observe("text")
    def _text_changed(self, change: dict) -> None:
        self.graph = None

    @property
    def input(self) -> str | tuple[int, ...]:
        """What the model is called with: the text, or a recommender's history (tuple of item
        ids; raises InputError naming the valid ids when the text is not a history)."""
        return model_input(self.model, self.text)

    def trace(self, text: str | None = None) -> Any:
        """The model's trace of ``text`` (default: the session's), cached per parsed input."""
        value = model_input(self.model, self.text if text is None else text)
        key = (self.model.name, value)
        if key in self._traces:
            self._traces.move_to_end(key)
            return self._traces[key]
        with self.using_model():
            trace = self.model.trace(value)
        self.n_forward += 1
        self._traces[key] = trace
        while len(self._traces) > self.max_traces:
            self._traces.popitem(last=False)
        return trace

    @contextmanager
    def using_model(self, *, wait: bool = False) -> Iterator[Any]:
        """Hold the model for a run: its attention hooks serve one forward pass at a time.

        Without ``wait`` a busy model (a background job holds it) raises :class:`ModelBusy`.
        """
        acquired = self._lock.acquire() if wait else self._lock.acquire(timeout=0.5)
        if not acquired:
            raise ModelBusy("the model is busy with a running job (e.g. an adversarial search): "
                            "wait for it to finish or press cancel")
        try:
            yield self.model
        finally:
            self._lock.release()
