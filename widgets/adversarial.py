"""``AdversarialPanel``: Jain & Wallace's adversarial attention for one head, with progress and cancel."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as W
from matplotlib.figure import Figure

from analysis.figures import adversarial_figure
from analysis.figures.panels import PAGE_WIDTH
from widgets.base import model_line, row
from widgets.controls import head_control, head_options, initial_view, layer_slider
from widgets.jobs import JobPanel

if TYPE_CHECKING:
    from analysis.models.base import TracedModel


class AdversarialPanel(JobPanel):
    """Runs ``analysis.adversarial.search`` in the background (progress bar, cancel button):
    ``k`` attention matrices for ``.layer``/``.head`` as far from the original as possible while
    the prediction moves less than ``eps`` (TVD). Shows original vs adversarial attention
    (``.index`` picks the adversary), JSD/TVD per adversary, and raw vs efficient-attention
    distances (Naim & Asher: adversaries that keep the prediction keep the efficient part).
    """

    title = "Adversarial attention"

    def __init__(self, model: TracedModel | None = None, text: str | None = None, *, layer: int = -1, head: int | str = 0,
                 k: int = 5, eps: float = 0.01, steps: int = 500, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(model, text, **kwargs)
        self.result: Any = None
        self._initial = (layer, head)
        self._build_controls(k, eps, steps, seed)
        self._layout(self._rows, [self.image, self.table])

    def _build_controls(self, k: int, eps: float, steps: int, seed: int) -> None:
        self.layer = layer_slider()
        self.head = head_control(self.session.model.n_heads, pooled=False)
        self.head.options = head_options(self.session.model.n_heads, pooled=False) + [("all heads", "all")]
        self.k = W.IntSlider(value=k, min=1, max=12, description="k", continuous_update=False,
                             layout=W.Layout(width="220px"))
        self.eps = W.FloatLogSlider(value=eps, base=10, min=-4, max=-0.31, step=0.1, description="eps (TVD)",
                                    readout_format=".1e", continuous_update=False, layout=W.Layout(width="300px"))
        self.steps = W.IntSlider(value=steps, min=1, max=3000, step=1, description="steps", continuous_update=False,
                                 layout=W.Layout(width="300px"))
        self.seed = W.IntText(value=seed, description="seed", layout=W.Layout(width="150px"))
        self.run_button = W.Button(description="search", icon="play", button_style="primary")
        self.run_button.on_click(lambda _: self._safely(self.run))
        self.index = W.IntSlider(value=0, min=0, max=max(k - 1, 0), description="show", continuous_update=False,
                                 layout=W.Layout(width="220px"))
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.table = W.HTML("<i>press search to look for adversarial attention</i>")
        self.on_change(self.index, self._draw)
        self._rows = [row(self.layer, self.head, self.k, self.eps),
                      row(self.steps, self.seed, self.run_button, self.index)]

    # ------------------------------------------------------------------ computing
    def _refresh(self) -> None:
        self.result = None
        trace = self.session.any_trace()
        self.image.value = b""
        self.table.value = "<i>press search to look for adversarial attention</i>"
        with self.holding():
            self.layer.max = trace.n_layers - 1
            self.head.options = head_options(trace.n_heads, pooled=False) + [("all heads", "all")]
            problem = initial_view(self.layer, self.head, trace, self._initial)
            self._initial = None
        if problem is not None:
            raise problem

    def settings(self) -> dict:
        """The keyword arguments of ``analysis.adversarial.search`` for the current controls."""
        return dict(layer=self.layer.value, head=self.head.value, k=int(self.k.value), eps=float(self.eps.value),
                    steps=int(self.steps.value), seed=int(self.seed.value))

    def run(self, *, block: bool = False) -> None:
        """Start the search in the background (``block``: wait for it, for scripts and tests)."""
        from analysis.adversarial import search

        self.session.any_trace()                     # a bad text fails here, at once
        model, text, settings = self.session.model, self.session.text, self.settings()
        value = self.session.input               # the text, or a recommender's history

        def work(report: Any) -> Any:
            steps = settings["steps"]
            return search(model, value, **settings, progress=False,
                          callback=lambda step, _: report((step + 1) / steps))

        self.start_job("adversarial search", work, lambda result: self._finish(result, text))
        if block:
            self.wait()

    def _finish(self, result: Any, text: str) -> None:
        if text != self.session.text:
            raise ValueError("the text changed while the search ran: press search again")
        self.result = result
        with self.holding():
            self.index.max = max(result.k - 1, 0)
            self.index.value = min(self.index.value, result.k - 1)
        self._draw()

    def _draw(self) -> None:
        if self.result is None:
            return
        fig = adversarial_figure(self.result, self.index.value, fig=Figure(figsize=(9.0, 5.8)))
        self.show_png(self.image, fig)
        self.table.value = _table_html(self.result)

    # ------------------------------------------------------------------ figure, results, code
    def figure(self, *, paper: bool = False) -> Figure:
        if self.result is None:
            raise ValueError("no search result to draw yet: press search")
        return adversarial_figure(self.result, self.index.value, fig=Figure(figsize=(PAGE_WIDTH, PAGE_WIDTH * 0.62)))

    def name(self) -> str:
        return f"adversarial_l{self.layer.value}_h{self.head.value}"

    def results(self) -> dict:
        r = self.result
        if r is None:
            raise ValueError("no search result to export yet: press search")
        keep = ("attentions", "original_attention", "probs", "original", "jsd", "pairwise_jsd", "tvd", "feasible",
                "raw_distance", "efficient_distance", "raw_row_tvd", "efficient_row_tvd", "tokens", "layer", "head",
                "heads", "eps", "steps", "steps_run", "cancelled", "seed", "loss")
        return {"model": self.session.model.name, "text": self.session.text, **{k: getattr(r, k) for k in keep}}

    def rows(self) -> list[dict]:
        r = self.result
        if r is None:
            raise ValueError("no search result to export yet: press search")
        return [{"adversary": i, "jsd": r.jsd[i], "tvd": r.tvd[i], "feasible": bool(r.feasible[i]),
                 "raw_distance": r.raw_distance[i], "efficient_distance": r.efficient_distance[i],
                 "efficient_share": r.efficient_share[i], "prediction": int(r.probs[i].argmax())} for i in range(r.k)]

    def code(self, *, include_model: bool = True) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        lines = ["import analysis", "from analysis.adversarial import search",
                 "from analysis.figures import adversarial_figure"]
        lines += [model_line(self.session.model)] if include_model else []
        lines += [f"result = search(model, {self.input_repr}, {args})",
                  "print(result)",
                  f"fig = adversarial_figure(result, {self.index.value})"]
        return "\n".join(lines)


def _table_html(r: Any) -> str:
    head = ("<tr><th>adversary</th><th>attention JSD</th><th>prediction TVD</th><th>feasible</th>"
            "<th>raw distance</th><th>efficient distance</th><th>efficient / raw</th></tr>")
    body = "".join(
        f"<tr><td>{i}</td><td>{r.jsd[i]:.3f}</td><td>{r.tvd[i]:.4f}</td><td>{'yes' if r.feasible[i] else 'no'}</td>"
        f"<td>{r.raw_distance[i]:.3f}</td><td>{r.efficient_distance[i]:.3f}</td>"
        f"<td>{r.efficient_share[i]:.3f}</td></tr>"
        for i in range(r.k))
    note = (f"<div style='color:#555'>{r.steps_run}/{r.steps} steps{', cancelled' if r.cancelled else ''}; "
            f"eps = {r.eps:g}; seed {r.seed}</div>")
    return f"<table style='font-size:90%'>{head}{body}</table>{note}"
