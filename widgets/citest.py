"""``CITestPanel``: test conditional independence between two tokens, given a set of tokens."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Sequence

import ipywidgets as W
from matplotlib.figure import Figure

from analysis import abcd
from analysis.causal import FisherZTest
from analysis.figures import ci_test_plot
from widgets.base import Panel, model_line
from widgets.controls import TEST_FIELDS, GraphControls, token_options

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

ROLES = ("X", "Y", "condition")
_STYLE = {"X": "info", "Y": "warning", "condition": "success"}
MAX_LOG_ROWS = 300


class CITestPanel(Panel):
    """Fisher z test of ``X _||_ Y | S`` on the attention correlation of one head (or a pooled
    layer): pick X, Y and S by clicking tokens (or set ``.x``, ``.y``, ``.cond``), choose
    ``.layer``, ``.head``, ``.alpha``, ``.n_samples``, ``.attention`` and ``.basis`` (the shared
    :class:`~widgets.controls.GraphControls`, ``.controls``); shows the partial correlation, the
    statistic, the p-value and the decision, and the test log of the session's last graph.
    """

    title = "Conditional independence test"

    def __init__(self, model: TracedModel | None = None, text: str | None = None, *, layer: int = -1, head: int | str = 0,
                 alpha: float = 0.01, n_samples: int | None = None, attention: str = "raw", basis: str = "value",
                 **kwargs: Any) -> None:
        super().__init__(model, text, **kwargs)
        self.result: Any = None
        self._initial = (layer, head, n_samples)
        self._token_buttons: list[W.Button] = []
        self._build_controls(alpha, attention, basis)
        self.session.observe(lambda _: self._safely(self._show_log), names="graph")
        self._layout(self._rows, [W.HBox([self.numbers, self.image]), self.log_box])

    # ------------------------------------------------------------------ controls
    def _build_controls(self, alpha: float, attention: str, basis: str) -> None:
        self.controls = GraphControls(self.session.model.n_heads, fields=TEST_FIELDS, alpha=alpha,
                                      attention=attention, basis=basis, model=self.session.model)
        c = self.controls
        self.layer, self.head, self.alpha, self.n_samples = c.layer, c.head, c.alpha, c.n_samples
        self.attention, self.basis = c.attention, c.basis
        self.x = W.Dropdown(options=[("0", 0)], description="X", layout=W.Layout(width="200px"))
        self.y = W.Dropdown(options=[("0", 0)], description="Y", layout=W.Layout(width="200px"))
        self.cond = W.SelectMultiple(options=[("0", 0)], description="given", rows=4, layout=W.Layout(width="220px"))
        self.role = W.ToggleButtons(options=list(ROLES), value="X", description="click sets",
                                    style={"button_width": "80px"})
        self.tokens_box = W.HBox(layout=W.Layout(flex_flow="row wrap", width="98%"))
        self.numbers = W.HTML(layout=W.Layout(min_width="260px"))
        self.image = W.Image(format="png", layout=W.Layout(max_width="640px"))
        self.only_pair = W.Checkbox(value=False, description="only tests of X and Y", indent=False)
        self.test_log = W.HTML()
        self.log_box = W.Accordion(children=[W.VBox([self.only_pair, self.test_log])],
                                   titles=("test log of the last graph run",))
        for control in (*self.controls.controls, self.x, self.y, self.cond):
            self.on_change(control, self._test, "testing")
        self.on_change(self.only_pair, self._show_log)
        self._rows = [self.controls, self.role, self.tokens_box, W.HBox([self.x, self.y, self.cond])]

    def _token_buttons_for(self, tokens: Sequence[str]) -> None:
        buttons = []
        for i, tok in enumerate(tokens):
            b = W.Button(description=f"{tok}", tooltip=f"position {i}", layout=W.Layout(width="auto", margin="1px"))
            b.on_click(lambda _, i=i: self._safely(self.click, i))
            buttons.append(b)
        self._token_buttons = buttons
        self.tokens_box.children = buttons

    def click(self, position: int) -> None:
        """Give token ``position`` the role chosen in ``.role`` (X, Y, or toggle in the condition set)."""
        role = self.role.value
        with self.holding():
            cond = [c for c in self.cond.value if c != position]
            if role == "condition":
                if position not in self.cond.value and position not in (self.x.value, self.y.value):
                    cond.append(position)
            elif role == "X":
                if position == self.y.value:
                    self.y.value = self.x.value
                self.x.value = position
            else:
                if position == self.x.value:
                    self.x.value = self.y.value
                self.y.value = position
            self.cond.value = tuple(sorted(cond))
        self._test()

    def _paint_buttons(self) -> None:
        roles = {self.x.value: "X", self.y.value: "Y", **{c: "condition" for c in self.cond.value}}
        for i, b in enumerate(self._token_buttons):
            b.button_style = _STYLE.get(roles.get(i, ""), "")

    # ------------------------------------------------------------------ computing
    def _refresh(self) -> None:
        self.result = None
        trace = self.session.any_trace()
        problem = None
        self.controls.model = self.session.model
        with self.holding():
            problem = self.controls.fit(trace, self._initial)
            self._initial = None
            options = token_options(trace)
            content = [i for i in range(trace.n_tokens) if not trace.special[i]] or list(range(trace.n_tokens))
            for dd in (self.x, self.y, self.cond):
                dd.options = options
            self.x.value, self.y.value, self.cond.value = content[0], content[min(1, len(content) - 1)], ()
            self._token_buttons_for(trace.tokens)
        self._show_log()
        self._test()
        if problem is not None:
            raise problem

    def _test(self) -> None:
        self._paint_buttons()
        self.result = None
        s = self.controls.settings()
        trace = self.session.trace(**abcd.capture(self.session.model, s["layer"], s["head"]))   # that head only
        corr = abcd.attention_correlation(trace, s["layer"], s["head"], attention=s["attention"], basis=s["basis"],
                                          model=s.get("model"))
        test = FisherZTest(corr, s["n_samples"], s["alpha"])
        if self.x.value == self.y.value:
            raise ValueError("X and Y are the same token: pick two different tokens")
        self.result = test(self.x.value, self.y.value, tuple(self.cond.value))
        self.numbers.value = self._numbers_html(trace.tokens)
        self.show_png(self.image, self._plot())

    def _plot(self, *, paper: bool = False) -> Figure:
        trace = self.session.any_trace()
        ax = None if paper else Figure(figsize=(6.0, 2.6)).add_subplot()
        return ci_test_plot(self.result, alpha=self.alpha.value, tokens=trace.tokens,
                            n_samples=self.n_samples.value, ax=ax)

    def _numbers_html(self, tokens: Sequence[str]) -> str:
        r = self.result
        name = lambda i: html.escape(f"{tokens[i]}@{i}")  # noqa: E731
        cond = ", ".join(name(c) for c in r.cond) or "&empty;"
        verdict = ("<b style='color:#009E73'>independent</b>" if r.independent
                   else "<b style='color:#D55E00'>dependent</b>")
        rows = [("test", f"{name(r.i)} &perp; {name(r.j)} | {cond}"), ("partial correlation", f"{r.rho:+.4f}"),
                ("Fisher z", f"{r.z:.3f}"), ("p-value", f"{r.p:.4g}"), ("alpha", f"{self.alpha.value:.2g}"),
                ("n_samples", f"{self.n_samples.value}"),
                ("attention", html.escape(f"{self.attention.value} ({self.basis.value} basis)")),
                ("decision", verdict)]
        body = "".join(f"<tr><td style='padding-right:10px;color:#555'>{k}</td><td>{v}</td></tr>" for k, v in rows)
        return f"<table>{body}</table>"

    def _show_log(self) -> None:
        graph = self.session.graph
        if graph is None:
            self.test_log.value = "<i>no graph learned yet for this text (use the causal graph panel)</i>"
            return
        trace = self.session.any_trace()
        tests = list(graph.tests)
        if self.only_pair.value:
            pair = {self.x.value, self.y.value}
            tests = [t for t in tests if {t.i, t.j} == pair]
        self.test_log.value = _log_html(tests, trace.tokens, graph, MAX_LOG_ROWS)

    # ------------------------------------------------------------------ figure, results, code
    def figure(self, *, paper: bool = False) -> Figure:
        if self.result is None:
            raise ValueError("no test result to draw yet")
        return self._plot(paper=True)

    def name(self) -> str:
        return f"citest_l{self.layer.value}_h{self.head.value}_{self.x.value}_{self.y.value}"

    def results(self) -> dict:
        if self.result is None:
            raise ValueError("no test result to export yet")
        trace = self.session.any_trace()
        return {"model": self.session.model.name, "text": self.session.text, "tokens": trace.tokens,
                "layer": self.layer.value, "head": self.head.value, "alpha": self.alpha.value,
                "n_samples": self.n_samples.value, "attention": self.attention.value, "basis": self.basis.value,
                "test": self.result,
                "graph_tests": list(self.session.graph.tests) if self.session.graph is not None else []}

    def rows(self) -> list[dict]:
        res = self.results()
        rows = [{"source": "panel", **_row(self.result)}]
        rows += [{"source": "graph", **_row(t)} for t in res["graph_tests"]]
        return rows

    def code(self, *, include_model: bool = True) -> str:
        s = self.controls.settings()
        basis = f", basis={s['basis']!r}" + (", model=model" if "model" in s else "")
        lines = ["import analysis", "from analysis.abcd import attention_correlation",
                 "from analysis.causal import FisherZTest", "from analysis.figures import ci_test_plot"]
        lines += [model_line(self.session.model)] if include_model else []
        lines += [f"trace = model.trace({self.input_repr})",
                  f"corr = attention_correlation(trace, {s['layer']!r}, {s['head']!r}, "
                  f"attention={s['attention']!r}{basis})",
                  f"test = FisherZTest(corr, n_samples={float(self.n_samples.value)!r}, alpha={self.alpha.value!r})",
                  f"result = test({self.x.value}, {self.y.value}, {tuple(self.cond.value)!r})",
                  "print(result)   # rho, z, p, independent",
                  f"fig = ci_test_plot(result, alpha={self.alpha.value!r}, tokens=trace.tokens, "
                  f"n_samples={self.n_samples.value})"]
        return "\n".join(lines)


def _row(t: Any) -> dict:
    return {"i": t.i, "j": t.j, "cond": list(t.cond), "rho": t.rho, "z": t.z, "p": t.p, "independent": t.independent}


def _log_html(tests: Sequence[Any], tokens: Sequence[str], graph: Any, limit: int) -> str:
    """The CI-test log as a scrollable HTML table (first ``limit`` rows)."""
    name = lambda i: html.escape(f"{tokens[i]}@{i}") if 0 <= i < len(tokens) else str(i)  # noqa: E731
    head = (f"<div style='color:#555'>{graph.algorithm} on {graph.n_nodes} nodes: {graph.n_tests} tests requested, "
            f"{len(tests)} shown{' (first ' + str(limit) + ')' if len(tests) > limit else ''}</div>")
    rows = "".join(
        f"<tr><td>{name(t.i)}</td><td>{name(t.j)}</td><td>{', '.join(name(c) for c in t.cond) or '&empty;'}</td>"
        f"<td>{t.rho:+.3f}</td><td>{t.z:.2f}</td><td>{t.p:.3g}</td><td>{'indep' if t.independent else 'dep'}</td></tr>"
        for t in tests[:limit])
    table = ("<table style='font-size:90%'><tr><th>X</th><th>Y</th><th>given</th><th>rho</th><th>z</th><th>p</th>"
             f"<th></th></tr>{rows}</table>")
    return f"{head}<div style='max-height:260px;overflow:auto'>{table}</div>"
