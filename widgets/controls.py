"""Controls shared by the panels: index sliders, head and token pickers, and
:class:`GraphControls`, the one widget behind the ABCD settings of the CI-test, graph and
explanation panels (``.settings()`` gives ``analysis.abcd`` keyword arguments)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import ipywidgets as W

from analysis import abcd
from analysis.causal import ALGORITHMS
from analysis.efficient import BASES
from analysis.types import Algorithm, AttentionKind, Basis, NodeSet
from widgets.items import position_options

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

#: every ABCD setting, in the order the controls are laid out and ``settings()`` lists them
FIELDS = ("layer", "head", "algorithm", "alpha", "n_samples", "nodes", "attention", "basis")
#: the settings the CI-test panel needs (it tests one pair; no algorithm, no node set)
TEST_FIELDS = ("layer", "head", "alpha", "n_samples", "attention", "basis")
NODE_OPTIONS = (("all tokens", "all"), ("content tokens", "content"))
ATTENTION_OPTIONS = (("raw A", "raw"), ("efficient A P", "efficient"))
#: bases that read the model's weights or gradients: ``settings()`` then adds ``model=``
MODEL_BASES: tuple[Basis, ...] = ("value_output", "jacobian")


def layer_slider(description: str = "layer") -> W.IntSlider:
    """An integer slider for an index (layer, head); its range is set when a trace is known."""
    return W.IntSlider(value=0, min=0, max=1, description=description, continuous_update=False,
                       layout=W.Layout(width="260px"))


def head_options(n_heads: int, pooled: bool) -> list[tuple[str, Any]]:
    """Dropdown options for heads 0..H-1, plus ``("all (pooled)", "all")`` when ``pooled``."""
    return [(str(h), h) for h in range(n_heads)] + ([("all (pooled)", "all")] if pooled else [])


def head_control(n_heads: int, *, pooled: bool = False) -> W.Dropdown:
    """Heads 0..H-1, plus "all (pooled)" when ``pooled``."""
    return W.Dropdown(options=head_options(n_heads, pooled), value=0, description="head",
                      layout=W.Layout(width="190px"))


def token_options(tokens: Sequence[str] | Any, *, skip_query: bool = False) -> list[tuple[str, int]]:
    """Dropdown options ``("3: token", 3)``; given a trace, a recommender's items read
    ``"3: title (#id)"`` (``skip_query``: without its appended query)."""
    if hasattr(tokens, "tokens"):
        return position_options(tokens, skip_query=skip_query)
    return [(f"{i}: {t}", i) for i, t in enumerate(tokens)]


def initial_view(layer: W.ValueWidget, head: W.ValueWidget, trace: Any, initial: tuple | None,
                 extra: Callable[..., None] | None = None) -> Exception | None:
    """Apply a constructor's ``(layer, head, *rest)`` to the ``layer`` / ``head`` controls once.

    The last layer is set first, so a bad value leaves a valid view; the error is returned
    (not raised) so the caller draws that view, then reports it. ``extra(*rest)`` sets the
    panel's other initial controls (it may raise IndexError/ValueError too).
    """
    if initial is None:
        return None
    lay, hd, *rest = initial
    layer.value = trace.n_layers - 1
    try:
        layer.value, head.value = abcd.check_head(trace.n_layers, trace.n_heads, lay, hd)   # any trace
        if extra is not None:
            extra(*rest)
    except (IndexError, ValueError) as exc:
        return exc
    return None


class GraphControls(W.VBox):
    """The ABCD controls as one widget: ``.layer``, ``.head`` (or pooled), ``.algorithm``,
    ``.alpha``, ``.n_samples``, ``.nodes``, ``.attention`` (raw / efficient) and ``.basis``;
    ``fields`` picks which of them exist (in :data:`FIELDS` order).

    ``settings()`` returns the keyword arguments of ``analysis.abcd.learn_graph`` (and, less
    ``model``, of ``abcd.explain``), with ``model=`` added when the basis needs the model.
    """

    def __init__(self, n_heads: int, *, fields: Sequence[str] = FIELDS, algorithm: Algorithm = "icd",
                 alpha: float = 0.01, nodes: NodeSet = "content", attention: AttentionKind = "raw", basis: Basis = "value",
                 model: TracedModel | None = None) -> None:
        unknown = [f for f in fields if f not in FIELDS]
        if unknown:
            raise ValueError(f"unknown graph controls {unknown}: choose from {', '.join(FIELDS)}")
        if "algorithm" in fields and algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
        if "nodes" in fields and nodes not in dict(map(reversed, NODE_OPTIONS)):
            raise ValueError(f"nodes must be one of {', '.join(v for _, v in NODE_OPTIONS)}, not {nodes!r}")
        if "attention" in fields and attention not in abcd.ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(abcd.ATTENTIONS)}, not {attention!r}")
        if "basis" in fields and basis not in BASES:
            raise ValueError(f"basis must be one of {', '.join(BASES)}, not {basis!r}")
        super().__init__()
        self.fields = tuple(f for f in FIELDS if f in fields)
        self.model = model
        self.layer = layer_slider()
        self.head = head_control(n_heads, pooled=True)
        self.algorithm = W.ToggleButtons(options=list(ALGORITHMS), value=algorithm, description="algorithm",
                                         style={"button_width": "60px"})
        self.alpha = W.FloatLogSlider(value=alpha, base=10, min=-8, max=-0.31, step=0.1, description="alpha",
                                      readout_format=".1e", continuous_update=False, layout=W.Layout(width="300px"))
        self.n_samples = W.IntSlider(value=32, min=4, max=4096, description="n_samples", continuous_update=False,
                                     layout=W.Layout(width="320px"))
        self.nodes = W.ToggleButtons(options=list(NODE_OPTIONS), value=nodes, description="nodes",
                                     style={"button_width": "110px"})
        self.attention = W.ToggleButtons(options=list(ATTENTION_OPTIONS), value=attention, description="attention",
                                         style={"button_width": "110px"},
                                         tooltips=["the attention matrix A itself",
                                                   "A P: the part of A that reaches the head's output (basis)"])
        self.basis = W.Dropdown(options=list(BASES), value=basis, description="basis",
                                layout=W.Layout(width="220px"))
        rows = [[name for name in group if name in self.fields]
                for group in (("algorithm", "nodes"), ("layer", "head", "alpha", "n_samples"), ("attention", "basis"))]
        self.children = [W.HBox([getattr(self, n) for n in group], layout=W.Layout(flex_flow="row wrap"))
                         for group in rows if group]

    @property
    def controls(self) -> list[W.ValueWidget]:
        """The value widgets of ``fields``, in order (observe their ``value``)."""
        return [getattr(self, name) for name in self.fields]

    def settings(self, *, model: bool = True) -> dict[str, Any]:
        """The ``abcd`` keyword arguments of the current values (``n_samples`` as a float);
        ``model=`` too when the basis needs it and ``model`` is True (False: for ``abcd.explain``,
        which takes the model as its first argument)."""
        out: dict[str, Any] = {}
        for name in self.fields:
            value = getattr(self, name).value
            out[name] = float(value) if name in ("alpha", "n_samples") else value
        if model and out.get("basis") in MODEL_BASES:
            out["model"] = self.model
        return out

    def code_args(self, *, model: bool = True) -> str:
        """:meth:`settings` as Python keyword arguments (``model=model``: the code's own model)."""
        return ", ".join(f"{k}=model" if k == "model" else f"{k}={v!r}"
                         for k, v in self.settings(model=model).items())

    def fit(self, trace: Any, initial: tuple | None = None) -> Exception | None:
        """Fit the ranges to ``trace`` (layers, heads or pooled, n_samples up to 4x its default);
        with ``initial = (layer, head, n_samples)`` (a constructor's view, applied on the first
        draw) also set those, n_samples defaulting to the hidden size. A bad layer or head is
        returned, not raised (see :func:`initial_view`)."""
        default = int(abcd.resolve_n_samples(trace, None))
        self.layer.max = trace.n_layers - 1
        self.head.options = head_options(trace.n_heads, pooled=True)
        self.n_samples.max = max(4096, 4 * default)
        if initial is None:
            return None
        self.n_samples.value = default
        return initial_view(self.layer, self.head, trace, initial, lambda n_samples: setattr(
            self.n_samples, "value", int(abcd.resolve_n_samples(trace, n_samples))))
