"""The state panels share: the model, the text, a cache of traces, the last learned graph."""
from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import traitlets

from widgets.items import default_text, history_text, is_history, model_input

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

DEFAULT_TEXT = "a gripping, beautifully acted film that never lets go of you."
#: ``capture="auto"``: an input whose attention weights (every head) take more bytes than this is
#: traced selectively, only the heads a panel shows; a smaller one once for every head
FULL_CAPTURE_BYTES = 256 * 2**20
CAPTURES = ("auto", "full", "selective")


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
    by the CI panel).

    Panels ask ``trace(heads=[(layer, head)])`` or ``trace(layers=[layer])`` for what they show.
    ``capture`` decides what the model run keeps: ``"full"`` every head, once per input (stepping
    layers and heads then reads the cache), ``"selective"`` only the heads asked (one run per new
    head or layer; for models too large to hold every head), ``"auto"`` (default) selective when
    the input's attention weights would take more than :data:`FULL_CAPTURE_BYTES`, else full. A
    cached trace serves every later request it covers; ``n_forward`` counts the model runs.
    """

    model = traitlets.Any()
    text = TextOrHistory(DEFAULT_TEXT)
    graph = traitlets.Any(None, allow_none=True)

    def __init__(self, model: TracedModel | None = None, text: str | None = None, *, max_traces: int = 32,
                 capture: str = "auto") -> None:
        if capture not in CAPTURES:
            raise ValueError(f"capture must be one of {', '.join(CAPTURES)}, not {capture!r}")
        if model is None:
            from analysis import load_model

            model = load_model()
        if text is None:
            text = default_text(model) or DEFAULT_TEXT
        super().__init__(model=model, text=text)
        self.max_traces = max_traces
        self.capture = capture
        self.n_forward = 0                      # model runs made by trace() (the cache misses)
        self._traces: OrderedDict[tuple[str, Any, frozenset | None], Any] = OrderedDict()   # name, input, heads held
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

    def trace(self, text: str | None = None, *, heads: Sequence[tuple[int, int]] | None = None,
              layers: Sequence[int] | None = None) -> Any:
        """The model's trace of ``text`` (default: the session's), cached per parsed input, holding
        at least ``heads`` / ``layers`` (both None: every head). See the class doc for ``capture``."""
        value = model_input(self.model, self.text if text is None else text)
        wanted = self._wanted(heads, layers)
        for key in reversed(self._traces):
            if key[:2] == (self.model.name, value) and _covers(key[2], wanted):
                self._traces.move_to_end(key)
                return self._traces[key]
        keep = None if wanted is None or not self._selective(value) else wanted
        kwargs = {} if keep is None else {"heads": sorted(keep)}
        with self.using_model():
            trace = self.model.trace(value, **kwargs)
        self.n_forward += 1
        self._traces[(self.model.name, value, keep)] = trace
        while len(self._traces) > self.max_traces:
            self._traces.popitem(last=False)
        return trace

    def any_trace(self, text: str | None = None) -> Any:
        """A trace of ``text`` for what every trace holds (tokens, sizes, the output): the latest
        cached one of this input, whatever heads it keeps, else one holding the last layer."""
        value = model_input(self.model, self.text if text is None else text)
        for key in reversed(self._traces):
            if key[:2] == (self.model.name, value):
                self._traces.move_to_end(key)
                return self._traces[key]
        return self.trace(text, layers=[-1])

    def _wanted(self, heads: Sequence[tuple[int, int]] | None, layers: Sequence[int] | None) -> frozenset | None:
        """The (layer, head) pairs asked for (None: every head), checked by the model."""
        keep = self.model.check_capture(heads, layers)
        return None if keep is None else frozenset((lay, h) for lay, hs in keep.items() for h in hs)

    def _selective(self, value: Any) -> bool:
        """Whether a trace of ``value`` keeps only the heads asked (``capture``; "auto": by size)."""
        if self.capture != "auto":
            return self.capture == "selective"
        n = len(self.model.encode(value).input_ids)
        return self.model.n_layers * self.model.n_heads * n * n * 4 > FULL_CAPTURE_BYTES

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


def _covers(captured: frozenset | None, wanted: frozenset | None) -> bool:
    """Whether a trace holding ``captured`` (None: every head) serves a request for ``wanted``."""
    return captured is None or (wanted is not None and wanted <= captured)
