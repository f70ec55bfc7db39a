"""``StabilityPanel``: the range of ABCD graphs that the same head output allows (raw vs efficient)."""
from __future__ import annotations

import html
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import ipywidgets as W
from matplotlib.figure import Figure

from analysis.figures.panels import PAGE_WIDTH
from analysis.figures.stability import KINDS, stability_view
from widgets.base import Panel, model_line, row
from widgets.controls import GraphControls, head_options

if TYPE_CHECKING:
    from analysis.models.base import TracedModel


class StabilityPanel(Panel):
    """For one head, ``analysis.stability.graph_stability`` generates attention matrices ``A'``
    with the same head output as ``A`` (``.n_extreme`` LP extreme points, ``.n_mix`` mixtures,
    ``.seed``), learns the raw (``C = A A^T``) and efficient (``C = A_eff A_eff^T``) ABCD graph of
    each, and checks the logits through the model. Shows ``A`` and the ``A'`` picked by ``.index``,
    the graph of each for ``.attention`` (raw / efficient), where every ``A'`` lies (skeleton SHD),
    and how many ``A'`` change the skeleton and the [CLS] neighbours for raw vs efficient ABCD.

    The ABCD controls are the shared :class:`~widgets.controls.GraphControls` (``.controls``; one
    head, no pooling). Results are cached per settings.
    """

    title = "Graph stability"

    def __init__(self, model: TracedModel | None = None, text: str | None = None, *, layer: int = -1,
                 head: int = 0, attention: str = "raw", basis: str = "value", algorithm: str = "icd",
                 alpha: float = 0.01, n_samples: int | None = None, nodes: str = "content", n_extreme: int = 4,
                 n_mix: int = 4, seed: int = 0, layout: str = "arc", **kwargs: Any) -> None:
        if isinstance(head, str):
            raise ValueError(f"StabilityPanel takes one head (an int), not {head!r}: output-preserving attention "
                             "is found per head")
        super().__init__(model, text, **kwargs)
        self.result: Any = None
        self._results: OrderedDict[tuple, Any] = OrderedDict()
        self._initial = (layer, head, n_samples)
        self._layout_name = layout
        self._build_controls(attention, basis, algorithm, alpha, nodes, n_extreme, n_mix, seed)
        self._layout(self._rows, [self.image, self.summary])

    def _build_controls(self, attention: str, basis: str, algorithm: str, alpha: float, nodes: str,
                        n_extreme: int, n_mix: int, seed: int) -> None:
        self.controls = GraphControls(self.session.model.n_heads, algorithm=algorithm, alpha=alpha,
                                      nodes=nodes, attention=attention, basis=basis, model=self.session.model)
        c = self.controls
        self.layer, self.head, self.attention, self.basis = c.layer, c.head, c.attention, c.basis
        self.head.options = head_options(self.session.model.n_heads, pooled=False)
        for name, value in (("n_extreme", n_extreme), ("n_mix", n_mix)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 32:
                raise ValueError(f"{name} must be an integer in 0..32, not {value!r}")
        self.n_extreme = W.IntSlider(value=n_extreme, min=0, max=32, description="extremes", continuous_update=False,
                                     layout=W.Layout(width="260px"))
        self.n_mix = W.IntSlider(value=n_mix, min=0, max=32, description="mixtures", continuous_update=False,
                                 layout=W.Layout(width="260px"))
        self.seed = W.IntText(value=seed, description="seed", layout=W.Layout(width="150px"))
        self.index = W.IntSlider(value=0, min=0, max=max(n_extreme + n_mix - 1, 0), description="show A'",
                                 continuous_update=False, layout=W.Layout(width="320px"))
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.summary = W.HTML()
        for control in [w for w in c.controls if w is not self.attention] + [self.n_extreme, self.n_mix, self.seed]:
            self.on_change(control, self._generate, "generating output-preserving attention")
        for control in (self.attention, self.index):
            self.on_change(control, self._draw)
        self._rows = [self.controls, row(self.n_extreme, self.n_mix, self.seed, self.index)]

    # ------------------------------------------------------------------ computing
    def _refresh(self) -> None:
        self.result = None
        trace = self.session.trace()
        self._results.clear()
        self.controls.model = self.session.model
        with self.holding():
            problem = self.controls.fit(trace, self._initial)
            self.head.options = head_options(trace.n_heads, pooled=False)
            self._initial = None
        self._generate()
        if problem is not None:
            raise problem

    def settings(self) -> dict:
        """The keyword arguments of ``analysis.stability.graph_stability`` for the current controls
        (``model=`` when the basis needs it; the model is ``graph_stability``'s first argument)."""
        out = {k: v for k, v in self.controls.settings(model=False).items() if k != "attention"}
        out.update(n_extreme=int(self.n_extreme.value), n_mix=int(self.n_mix.value), seed=int(self.seed.value))
        return out

    def _generate(self) -> None:
        from analysis.stability import graph_stability

        self.result = None
        trace = self.session.trace()
        settings = self.settings()
        if settings["n_extreme"] + settings["n_mix"] == 0:
            raise ValueError("choose at least one extreme point or mixture to generate")
        key = (self.session.model.name, self.session.text, *settings.items())
        result = self._results.get(key)
        if result is None:
            with self.session.using_model():
                result = graph_stability(self.session.model, self.session.input, trace=trace, **settings)
            self._results[key] = result
            while len(self._results) > 16:
                self._results.popitem(last=False)
        self.result = result
        with self.holding():
            count = len(result.generated.samples)
            self.index.max = max(count - 1, 0)
            self.index.value = min(self.index.value, count - 1)
        self._draw()

    def _draw(self) -> None:
        if self.result is None:
            raise ValueError("nothing generated yet: fix the problem above first")
        fig = stability_view(self.result, self.index.value, attention=self.attention.value,
                             tokens=self.session.trace().tokens, fig=Figure(figsize=(10.0, 7.5), layout="constrained"),
                             layout=self._layout_name)
        self.show_png(self.image, fig)
        self.summary.value = _summary_html(self.result)

    # ------------------------------------------------------------------ figure, results, code
    def figure(self, *, paper: bool = False) -> Figure:
        if self.result is None:
            raise ValueError("nothing generated to draw yet")
        size = (PAGE_WIDTH, PAGE_WIDTH * 0.8) if paper else (10.0, 7.5)
        return stability_view(self.result, self.index.value, attention=self.attention.value,
                              tokens=self.session.trace().tokens, fig=Figure(figsize=size, layout="constrained"),
                              layout=self._layout_name)

    def name(self) -> str:
        return f"stability_l{self.layer.value}_h{self.head.value}_{self.attention.value}"

    def results(self) -> dict:
        r = self.result
        if r is None:
            raise ValueError("nothing generated to export yet")
        return {"model": self.session.model.name, "text": self.session.text, "settings": self.settings(),
                "summary": r.summary(), "target": r.target, "nullity": r.generated.nullity,
                "attention": r.generated.attention, "samples": r.generated.samples,
                "kinds": list(r.generated.kinds), "rows": r.rows(),
                "graphs": {k: [g.edge_strings() for g in (getattr(r, f"{k}_graph"), *r.graphs[k])] for k in KINDS}}

    def rows(self) -> list[dict]:
        if self.result is None:
            raise ValueError("nothing generated to export yet")
        return self.result.rows()

    def code(self, *, include_model: bool = True) -> str:
        args = ", ".join(f"{k}=model" if k == "model" else f"{k}={v!r}" for k, v in self.settings().items())
        lines = ["import analysis", "from analysis.stability import graph_stability",
                 "from analysis.figures.stability import stability_view"]
        lines += [model_line(self.session.model)] if include_model else []
        lines += [f"trace = model.trace({self.input_repr})",
                  f"result = graph_stability(model, {self.input_repr}, trace=trace, {args})",
                  "print(result, result.summary())",
                  f"fig = stability_view(result, {self.index.value}, attention={self.attention.value!r}, "
                  f"tokens=trace.tokens, layout={self._layout_name!r})"]
        return "\n".join(lines)


def _summary_html(r: Any) -> str:
    """The counts of ``StabilityResult.summary()`` as a small table."""
    s = r.summary()
    head = ("<tr><th>ABCD on</th><th>A' whose skeleton changed</th><th>marks changed</th>"
            "<th>target neighbours changed</th><th>skeleton SHD / edges (mean)</th><th>edges of graph(A)</th></tr>")
    body = "".join(
        f"<tr><td>{kind} attention</td><td>{v['skeleton_changed']} / {v['samples']}</td>"
        f"<td>{v['marks_changed']} / {v['samples']}</td><td>{v['target_changed']} / {v['samples']}</td>"
        f"<td>{v['shd_per_edge']:.2f}</td><td>{v['edges']}</td></tr>" for kind, v in s.items())
    g = r.generated
    lc = s["raw"]["max_logit_change"]
    note = (f"layer {g.layer}, head {g.head}, {html.escape(str(g.basis))} basis: n = {g.n}, nullity {g.nullity}; "
            f"{len(g.extremes)} extreme points + {len(g.mixtures)} mixtures, max row TVD from A "
            f"{g.tvd.max() if len(g.samples) else 0:.3f}; largest |logit change| with A' in the model {lc:.1e}; "
            f"target token {r.target}")
    if g.nullity == 0:
        note += ". Nullity 0: every A' is A (a longer text has a null space)"
    return f"<table style='font-size:90%'>{head}{body}</table><div style='color:#555'>{note}</div>"
