"""``CausalGraphPanel``: learn a causal graph over the tokens of one head and draw its PAG."""
from __future__ import annotations

import html
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import ipywidgets as W
from matplotlib.figure import Figure

from analysis import abcd
from analysis.causal import pds_tree
from analysis.figures import LAYOUTS, draw_graph
from widgets.base import Panel, model_line, row
from widgets.controls import GraphControls

if TYPE_CHECKING:
    from analysis.models.base import TracedModel


class CausalGraphPanel(Panel):
    """PC / FCI / ICD over the tokens of one head (or a pooled layer): ``.algorithm``,
    ``.layer``, ``.head``, ``.alpha``, ``.n_samples``, ``.nodes``, ``.attention``, ``.basis`` (the
    shared :class:`~widgets.controls.GraphControls`, ``.controls``), ``.layout``; ``.select``
    a node to highlight its neighbourhood and its PDS-tree. Shows the number of CI tests and
    the time taken and the attention the graph was learned from; the learned graph becomes the session's ``graph`` (its test log is shown
    by the CI panel). Graphs are cached per settings.
    """

    title = "Causal graph"

    def __init__(self, model: TracedModel | None = None, text: str | None = None, *, algorithm: str = "icd", layer: int = -1,
                 head: int | str = 0, alpha: float = 0.01, n_samples: int | None = None, nodes: str = "content",
                 layout: str = "arc", attention: str = "raw", basis: str = "value", **kwargs: Any) -> None:
        super().__init__(model, text, **kwargs)
        self.graph: Any = None
        self._graphs: OrderedDict[tuple, Any] = OrderedDict()
        self._initial = (layer, head, n_samples)
        self._build_controls(algorithm, alpha, nodes, layout, attention, basis)
        self._layout(self._rows, [self.image, self.info, self.edges_box])

    def _build_controls(self, algorithm: str, alpha: float, nodes: str, layout: str, attention: str,
                        basis: str) -> None:
        self.controls = GraphControls(self.session.model.n_heads, algorithm=algorithm, alpha=alpha, nodes=nodes,
                                      attention=attention, basis=basis, model=self.session.model)
        c = self.controls
        self.layer, self.head, self.algorithm, self.alpha = c.layer, c.head, c.algorithm, c.alpha
        self.n_samples, self.nodes, self.attention, self.basis = c.n_samples, c.nodes, c.attention, c.basis
        self.layout_choice = W.ToggleButtons(options=list(LAYOUTS), value=layout, description="layout",
                                             style={"button_width": "70px"})
        self.select = W.Dropdown(options=[("none", None)], value=None, description="highlight",
                                 layout=W.Layout(width="240px"))
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.info = W.HTML()
        self.edges = W.HTML()
        self.edges_box = W.Accordion(children=[self.edges], titles=("edges",))
        for control in self.controls.controls:
            self.on_change(control, self._learn, "learning graph")
        for control in (self.layout_choice, self.select):
            self.on_change(control, self._draw)
        self._rows = [self.controls, row(self.layout_choice, self.select)]

    # ------------------------------------------------------------------ computing
    def _refresh(self) -> None:
        self.graph = None
        trace = self.session.any_trace()
        self._graphs.clear()
        self.controls.model = self.session.model
        with self.holding():
            problem = self.controls.fit(trace, self._initial)
            self._initial = None
        self._learn()
        if problem is not None:
            raise problem

    def settings(self) -> dict:
        """The keyword arguments of ``analysis.abcd.learn_graph`` for the current controls
        (``model=`` when the basis needs it)."""
        return self.controls.settings()

    def _learn(self) -> None:
        self.graph = None
        settings = self.settings()
        trace = self.session.trace(**abcd.capture(self.session.model, settings["layer"], settings["head"]))
        key = (self.session.model.name, self.session.text,
               *(v for k, v in settings.items() if k != "model"))
        graph = self._graphs.get(key)
        if graph is None:
            graph = abcd.learn_graph(trace, **settings)
            self._graphs[key] = graph
            while len(self._graphs) > 64:
                self._graphs.popitem(last=False)
        self.graph = graph
        self.session.graph = graph
        selected = self.select.value
        with self.holding():
            labels = graph.labels or graph.nodes
            self.select.options = [("none", None)] + [(str(lab), v) for v, lab in zip(graph.nodes, labels)]
            self.select.value = selected if selected in graph.nodes else None
        self._draw()

    def _draw(self) -> None:
        if self.graph is None:
            raise ValueError("no graph yet: fix the problem above first")
        fig = self._figure(Figure(figsize=_screen_size(self.graph, self.layout_choice.value)).add_subplot())
        self.show_png(self.image, fig)
        self.info.value = self._info_html()
        self.edges.value = "<pre style='font-size:90%'>" + html.escape("\n".join(self.graph.edge_strings())) + "</pre>"

    def _figure(self, ax: Any = None) -> Figure:
        return draw_graph(self.graph, ax=ax, layout=self.layout_choice.value, highlight=self.select.value)

    def _info_html(self) -> str:
        g = self.graph
        r = f", r = {g.r}" if g.r is not None else ""
        text = (f"<b>{g.kind.upper()}</b> over {g.n_nodes} nodes, {len(g)} edges · <b>{g.n_tests}</b> CI tests · "
                f"<b>{1000 * (g.seconds or 0):.0f} ms</b> ({g.algorithm}, alpha={g.alpha:g}, "
                f"n_samples={g.n_samples:g}{r})")
        if g.attention:
            text += f"<br><span style='color:#555'>from {html.escape(g.attention)}</span>"
        v = self.select.value
        if v is not None:
            label = lambda u: html.escape(str(g.labels[g.position(u)]) if g.labels else str(u))  # noqa: E731
            tree = pds_tree(g, v)
            text += (f"<br>{label(v)}: adjacent to {', '.join(label(u) for u in g.adjacent(v)) or 'nothing'}; "
                     f"PDS-tree reaches {', '.join(label(u) for u in sorted(tree.members)) or 'nothing'}")
        return text

    # ------------------------------------------------------------------ figure, results, code
    def figure(self, *, paper: bool = False) -> Figure:
        if self.graph is None:
            raise ValueError("no graph to draw yet")
        return self._figure()

    def name(self) -> str:
        return f"graph_{self.algorithm.value}_l{self.layer.value}_h{self.head.value}"

    def results(self) -> dict:
        g = self.graph
        if g is None:
            raise ValueError("no graph to export yet")
        return {"model": self.session.model.name, "text": self.session.text,
                "settings": self.controls.settings(model=False), "attention": g.attention,
                "kind": g.kind, "nodes": list(g.nodes), "labels": list(g.labels or ()), "marks": g.to_matrix(),
                "edges": g.edge_strings(), "n_tests": g.n_tests, "seconds": g.seconds, "r": g.r,
                "sepsets": [{"a": a, "b": b, "set": list(s)} for (a, b), s in g.sepsets.items()]}

    def rows(self) -> list[dict]:
        g = self.graph
        if g is None:
            raise ValueError("no graph to export yet")
        label = lambda u: str(g.labels[g.position(u)]) if g.labels else str(u)  # noqa: E731
        return [{"a": e.a, "b": e.b, "a_token": label(e.a), "b_token": label(e.b), "mark_a": e.mark_a.name.lower(),
                 "mark_b": e.mark_b.name.lower(), "edge": e.symbol} for e in g.edges()]

    def code(self, *, include_model: bool = True) -> str:
        args = self.controls.code_args()
        lines = ["import analysis", "from analysis import abcd", "from analysis.figures import draw_graph"]
        lines += [model_line(self.session.model)] if include_model else []
        lines += [f"trace = model.trace({self.input_repr})",
                  f"graph = abcd.learn_graph(trace, {args})",
                  "print(graph)   # edges, graph.n_tests, graph.seconds, graph.tests (the CI-test log)",
                  f"fig = draw_graph(graph, layout={self.layout_choice.value!r}, highlight={self.select.value!r})"]
        return "\n".join(lines)


def _screen_size(graph: Any, layout: str) -> tuple[float, float]:
    p = graph.n_nodes
    if layout == "arc":
        return (min(12.0, 1.5 + 0.6 * p), min(6.0, 1.8 + 0.25 * p))
    return (min(8.0, 3.0 + 0.3 * p),) * 2

