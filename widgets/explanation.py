"""``ExplanationPanel``: CLEANN's minimal explanation sets of the model's prediction."""
from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
from matplotlib.figure import Figure

from analysis import abcd
from analysis.causal import ALGORITHMS
from analysis.figures import draw_graph, explanation_figure
from analysis.figures.text import output_probs
from analysis.models import REMOVALS
from widgets.base import Panel, head_control, layer_slider, model_line, row


class ExplanationPanel(Panel):
    """Runs ``analysis.abcd.explain``: the smallest token sets (from the PDS-tree of the
    target in the learned PAG) whose removal changes the prediction, highlighted in the text,
    with the prediction before and after removing each, beside the attention baseline.

    Explaining re-runs the model on every candidate, so it runs on ``.run_button`` (and when
    the text or model changes), not on every control change.
    """

    title = "Explanation"

    def __init__(self, model: Any = None, text: str | None = None, *, layer: int = -1, head: int | str = 0,
                 algorithm: str = "icd", alpha: float = 0.01, max_set_size: int = 3, removal: str = "delete",
                 **kwargs: Any) -> None:
        super().__init__(model, text, **kwargs)
        self.explanation: Any = None
        self._initial = (layer, head, None)
        self._build_controls(algorithm, alpha, max_set_size, removal)
        self._layout(self._rows, [self.sets_image, self.table, self.graph_box])

    def _build_controls(self, algorithm: str, alpha: float, max_set_size: int, removal: str) -> None:
        self.layer = layer_slider()
        self.head = head_control(self.session.model.n_heads, pooled=True)
        self.algorithm = W.ToggleButtons(options=list(ALGORITHMS), value=algorithm, style={"button_width": "60px"})
        self.alpha = W.FloatLogSlider(value=alpha, base=10, min=-8, max=-0.31, step=0.1, description="alpha",
                                      readout_format=".1e", continuous_update=False, layout=W.Layout(width="300px"))
        self.n_samples = W.IntSlider(value=32, min=4, max=4096, description="n_samples", continuous_update=False,
                                     layout=W.Layout(width="320px"))
        self.nodes = W.ToggleButtons(options=[("content tokens", "content"), ("all tokens", "all")], value="content",
                                     style={"button_width": "110px"})
        self.max_set_size = W.IntSlider(value=max_set_size, min=1, max=6, description="max size",
                                        continuous_update=False, layout=W.Layout(width="230px"))
        self.removal = W.Dropdown(options=list(REMOVALS), value=removal, description="removal",
                                  layout=W.Layout(width="200px"))
        self.run_button = W.Button(description="explain", icon="play", button_style="primary")
        self.run_button.on_click(lambda _: self.run())
        self.sets_image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.table = W.HTML()
        self.graph_image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.graph_box = W.Accordion(children=[self.graph_image], titles=("graph and PDS-tree of the target",))
        self._rows = [row(self.layer, self.head, self.algorithm, self.nodes),
                      row(self.alpha, self.n_samples, self.max_set_size, self.removal, self.run_button)]

    # ------------------------------------------------------------------ computing
    def _refresh(self) -> None:
        self.explanation = None
        trace = self.session.trace()
        problem = None
        with self.holding():
            problem = self.take_graph_view(trace)
        self._explain()
        if problem is not None:
            raise problem

    def settings(self) -> dict:
        """The keyword arguments of ``analysis.abcd.explain`` for the current controls."""
        return dict(layer=self.layer.value, head=self.head.value, algorithm=self.algorithm.value,
                    alpha=float(self.alpha.value), n_samples=float(self.n_samples.value), nodes=self.nodes.value,
                    max_set_size=int(self.max_set_size.value), removal=self.removal.value)

    def run(self) -> None:
        """Explain the prediction with the current settings."""
        with self.working("explaining"):
            self._explain()
        self._after_update()

    def _explain(self) -> None:
        self.explanation = None
        self.session.trace()                     # a bad text fails here, with the model's message
        with self.session.using_model():
            self.explanation = abcd.explain(self.session.model, self.session.text, **self.settings())
        self._draw()

    def _draw(self) -> None:
        e = self.explanation
        self.show_png(self.sets_image, explanation_figure(e, labels=self.session.model.labels, width=8.0))
        self.table.value = self._table_html()
        ax = Figure(figsize=(min(12.0, 1.5 + 0.6 * e.graph.n_nodes), 4.0)).add_subplot()
        self.show_png(self.graph_image, draw_graph(e.graph, ax=ax, highlight=e.tree))

    def _table_html(self) -> str:
        e = self.explanation
        labels = self.session.model.labels
        name = lambda k: html.escape(labels[k] if k < len(labels) else f"class {k}")  # noqa: E731
        orig = e.prediction
        rows = [("original", "", name(orig), f"{float(output_probs(e.probs)[orig]):.3f}", "")]
        for s in e.sets:
            c = next(c for c in e.checks if list(c.positions) == list(s))
            rows.append((f"set {len(rows)}", _words(e.tokens, s), name(c.prediction), f"{float(c.probs[orig]):.3f}",
                         "yes" if c.changed else "no"))
        b = e.baseline
        if b.checks:
            c = b.checks[-1]
            rows.append(("attention top-k", _words(e.tokens, c.positions), name(c.prediction),
                         f"{float(c.probs[orig]):.3f}", "yes" if c.changed else "no"))
        head = "<tr><th></th><th>removed</th><th>prediction</th><th>p(original class)</th><th>changed</th></tr>"
        body = "".join("<tr>" + "".join(f"<td style='padding:0 8px'>{v}</td>" for v in r) + "</tr>" for r in rows)
        base = f"size {b.size}" if b.size else "no prefix changed the output"
        summary = (f"<div style='color:#555'>{len(e.checks)} candidate sets checked in {e.seconds:.2f} s; "
                   f"attention baseline: {base}; graph: {e.graph.n_tests} CI tests</div>")
        return f"<table>{head}{body}</table>{summary}"

    # ------------------------------------------------------------------ figure, results, code
    def figure(self, *, paper: bool = False) -> Figure:
        if self.explanation is None:
            raise ValueError("no explanation to draw yet: press explain")
        return explanation_figure(self.explanation, labels=self.session.model.labels)

    def name(self) -> str:
        return f"explanation_l{self.layer.value}_h{self.head.value}"

    def results(self) -> dict:
        e = self.explanation
        if e is None:
            raise ValueError("no explanation to export yet: press explain")
        return {"model": self.session.model.name, "text": self.session.text, "settings": e.settings,
                "tokens": e.tokens, "target": e.target, "prediction": e.prediction, "probs": output_probs(e.probs),
                "sets": e.sets, "words": e.words, "size": e.size, "seconds": e.seconds,
                "checks": [{"positions": c.positions, "prediction": c.prediction, "changed": c.changed,
                            "probs": c.probs} for c in e.checks],
                "baseline": {"ranking": e.baseline.ranking, "size": e.baseline.size, "set": e.baseline.set}}

    def rows(self) -> list[dict]:
        e = self.explanation
        if e is None:
            raise ValueError("no explanation to export yet: press explain")
        minimal = {tuple(s) for s in e.sets}
        out = [{"kind": "candidate", "positions": list(c.positions), "tokens": _words(e.tokens, c.positions),
                "depth_sum": c.depth_sum, "prediction": c.prediction, "p_original": float(c.probs[e.prediction]),
                "changed": c.changed, "minimal": tuple(c.positions) in minimal} for c in e.checks]
        out += [{"kind": "baseline", "positions": list(c.positions), "tokens": _words(e.tokens, c.positions),
                 "depth_sum": c.depth_sum, "prediction": c.prediction, "p_original": float(c.probs[e.prediction]),
                 "changed": c.changed, "minimal": False} for c in e.baseline.checks]
        return out

    def code(self, *, include_model: bool = True) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        lines = ["import analysis", "from analysis import abcd", "from analysis.figures import explanation_figure"]
        lines += [model_line(self.session.model)] if include_model else []
        lines += [f"explanation = abcd.explain(model, {self.session.text!r}, {args})",
                  "print(explanation)",
                  "fig = explanation_figure(explanation, labels=model.labels)"]
        return "\n".join(lines)


def _words(tokens: Any, positions: Any) -> str:
    return " ".join(f"{tokens[i]}@{i}" for i in positions)

