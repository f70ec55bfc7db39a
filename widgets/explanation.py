"""``ExplanationPanel``: CLEANN's minimal explanation sets of the model's prediction (for a
recommender: of its top-1 recommendation, through the abductive step)."""
from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as W
from matplotlib.figure import Figure

from analysis import abcd
from analysis.figures import draw_graph, explanation_figure
from analysis.figures.text import output_probs, ranked_items_html
from analysis.models import REMOVALS
from widgets.base import model_line, row
from widgets.controls import GraphControls
from widgets.items import TOP_K, is_recommender, item_name, predicts_next_token
from widgets.jobs import JobPanel

if TYPE_CHECKING:
    from analysis.models.base import TracedModel


class ExplanationPanel(JobPanel):
    """Runs ``analysis.abcd.explain``: the smallest token sets (from the PDS-tree of the
    target in the learned PAG) whose removal changes the prediction, highlighted in the text,
    with the prediction before and after removing each, beside the attention baseline. The
    graph settings are the shared :class:`~widgets.controls.GraphControls` (``.controls``;
    ``.layer``, ``.head``, ``.algorithm``, ``.alpha``, ``.n_samples``, ``.nodes``,
    ``.attention``, ``.basis``); the attention the graph was learned from is shown.

    Explaining re-runs the model on every candidate, so it runs on ``.run_button`` (and when
    the text or model changes), not on every control change, in the background: a progress
    bar, a cancel button, and an explicit budget (``max_calls`` candidate checks, default
    ``analysis.abcd.DEFAULT_MAX_CALLS``; ``max_set_size``, 0 or None: no size cap). Editing
    the text cancels a running search (it stops within one batch of checks) and starts a new
    one; the status line says when the budget ran out. ``.explanation`` waits for a running
    search (scripts and tests); ``run(block=True)`` too.

    For a recommender the sets are items of the history (by title and id); the table says
    whether the top-1 recommendation changed, the new top-1 and its rank in the original
    ranking (inside the original top-10 or not), beside the attention baseline and the
    original top-10.
    """

    title = "Explanation"

    def __init__(self, model: TracedModel | None = None, text: str | None = None, *, layer: int = -1, head: int | str = 0,
                 algorithm: str = "icd", alpha: float = 0.01, max_set_size: int | None = None,
                 max_calls: int = abcd.DEFAULT_MAX_CALLS, removal: str = "delete", nodes: str = "content",
                 attention: str = "raw", basis: str = "value", **kwargs: Any) -> None:
        self._explanation: Any = None
        self._job_text: str | None = None
        super().__init__(model, text, **kwargs)
        self._initial = (layer, head, None)
        self._build_controls(algorithm, alpha, max_set_size, max_calls, removal, nodes, attention, basis)
        self._layout(self._rows, [self.sets_image, self.table, self.attention_note, self.graph_box])

    @property
    def explanation(self) -> Any:
        """The current :class:`analysis.abcd.Explanation` (None: none yet); waits for a running search."""
        if self.running and threading.current_thread() is not self._job:
            self.wait()
        return self._explanation

    def _build_controls(self, algorithm: str, alpha: float, max_set_size: int | None, max_calls: int,
                        removal: str, nodes: str, attention: str, basis: str) -> None:
        self.controls = GraphControls(self.session.model.n_heads, algorithm=algorithm, alpha=alpha, nodes=nodes,
                                      attention=attention, basis=basis, model=self.session.model)
        c = self.controls
        self.layer, self.head, self.algorithm, self.alpha = c.layer, c.head, c.algorithm, c.alpha
        self.n_samples, self.nodes, self.attention, self.basis = c.n_samples, c.nodes, c.attention, c.basis
        if max_set_size is not None and (not isinstance(max_set_size, int) or max_set_size < 0):
            raise ValueError(f"max_set_size must be a positive integer, or 0 / None for no size cap, "
                             f"not {max_set_size!r}")
        abcd.Budget(max_calls, None)             # a clear error for a bad call budget
        self.max_set_size = W.IntSlider(value=max_set_size or 0, min=0, max=max(8, max_set_size or 0),
                                        description="max size", continuous_update=False,
                                        layout=W.Layout(width="230px"), tooltip="0: no size cap")
        self.max_calls = W.BoundedIntText(value=max_calls, min=1, max=1_000_000, description="max calls",
                                          layout=W.Layout(width="190px"))
        self.removal = W.Dropdown(options=list(REMOVALS), value=removal, description="removal",
                                  layout=W.Layout(width="200px"))
        self.run_button = W.Button(description="explain", icon="play", button_style="primary")
        self.run_button.on_click(lambda _: self._safely(self.run))
        self.budget_note = W.HTML()
        self.sets_image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.table = W.HTML()
        self.attention_note = W.HTML()
        self.graph_image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.graph_box = W.Accordion(children=[self.graph_image], titles=("graph and PDS-tree of the target",))
        self._rows = [self.controls, row(self.max_set_size, self.max_calls, self.removal),
                      row(self.run_button, self.budget_note)]

    # ------------------------------------------------------------------ computing
    def _refresh(self) -> None:
        self.stop()                              # a new text or model: the running search is stale
        self._explanation = None
        trace = self.session.any_trace()
        self.controls.model = self.session.model
        with self.holding():
            problem = self.controls.fit(trace, self._initial)
            self._initial = None
        self.run()
        if problem is not None:
            raise problem

    def stop(self, timeout: float = 5.0) -> bool:
        """Cancel a running search and wait (at most ``timeout`` s) until it has stopped."""
        if self.running:
            self.cancel()
            self.wait(timeout)
        return not self.running

    def settings(self) -> dict:
        """The keyword arguments of ``analysis.abcd.explain`` for the current controls (the
        shared graph controls, then the budget and the removal)."""
        return dict(self.controls.settings(model=False), max_set_size=int(self.max_set_size.value) or None,
                    max_calls=int(self.max_calls.value), removal=self.removal.value)

    def run(self, *, block: bool = False) -> None:
        """Explain the prediction with the current settings, in the background (``block``: wait)."""
        self.stop()
        self.session.any_trace()                     # a bad text fails here, with the model's message
        model, value, text, settings = self.session.model, self.session.input, self.session.text, self.settings()
        self._job_text = text
        budget = abcd.Budget(settings["max_calls"], settings["max_set_size"])
        self.budget_note.value = f"<span style='color:#555'>budget: {html.escape(str(budget))}</span>"

        def work(report: Any) -> Any:
            try:
                return abcd.explain(model, value, **settings, progress=report)
            except abcd.Cancelled:
                return None

        self.start_job("explaining", work, lambda e: self._finish(e, text))
        if block:
            self.wait()

    def _finish(self, e: Any, text: str) -> None:
        if e is None or text != self.session.text:   # cancelled in the graph, or a newer search follows
            return
        self._explanation = e
        self._draw()
        note = {"calls": f"budget ran out: all {e.budget.max_calls} model calls spent without a flip "
                         f"(sets up to size {e.searched_size} fully checked); raise max calls",
                "size": f"budget ran out: no set of up to {e.budget.max_set_size} tokens flips the output",
                "cancelled": "cancelled before a flipping set was found",
                "exhausted": "no candidate set from the PDS-tree flips the output"}.get(e.stopped)
        if note:
            self.budget_note.value = (f"<span style='color:#D55E00'><b>{html.escape(note)}</b> "
                                      f"(budget: {html.escape(str(e.budget))})</span>")

    def _draw(self) -> None:
        e = self._explanation
        self.show_png(self.sets_image, explanation_figure(e, labels=abcd.output_names(self.session.model), width=8.0))
        self.table.value = self._table_html()
        self.attention_note.value = (f"<span style='color:#555'>graph learned from "
                                     f"{html.escape(e.graph.attention)}</span>" if e.graph.attention else "")
        ax = Figure(figsize=(min(12.0, 1.5 + 0.6 * e.graph.n_nodes), 4.0)).add_subplot()
        self.show_png(self.graph_image, draw_graph(e.graph, ax=ax, highlight=e.tree))

    def _table_html(self) -> str:
        if is_recommender(self.session.model):
            return self._recommendation_html()
        e, model = self._explanation, self.session.model
        name = lambda k: html.escape(abcd.output_name(model, k))  # noqa: E731
        what = "next token" if predicts_next_token(model) else "prediction"
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
        original = "next token" if what == "next token" else "class"
        head = (f"<tr><th></th><th>removed</th><th>{what}</th><th>p(original {original})</th>"
                "<th>changed</th></tr>")
        body = "".join("<tr>" + "".join(f"<td style='padding:0 8px'>{v}</td>" for v in r) + "</tr>" for r in rows)
        base = f"size {b.size}" if b.size else "no prefix changed the output"
        summary = (f"<div style='color:#555'>explaining {html.escape(e.output or str(orig))} at "
                   f"{html.escape(e.tokens[e.target])}@{e.target}: "
                   f"{html.escape(e.status)}; {len(e.checks)} candidate sets checked in "
                   f"{e.seconds:.2f} s (budget: {html.escape(str(e.budget))}); attention baseline: {base}; "
                   f"graph: {e.graph.n_tests} CI tests</div>")
        return f"<table>{head}{body}</table>{summary}"

    def _position_names(self) -> list[str]:
        """``title (#id)`` per position of the explained input: the history, then the appended
        recommended item (the abductive trace)."""
        e, model = self._explanation, self.session.model
        items = list(self.session.input) + [e.prediction]
        if len(items) != len(e.tokens):          # not the abductive form: tokens as they are
            return list(e.tokens)
        return [item_name(model, i) for i in items]

    def _recommendation_html(self) -> str:
        """The explanation of a top-1 recommendation: sets as items, whether the top-1 changed,
        the new top-1 and its rank in the original ranking, the attention baseline, the top-10."""
        e, model = self._explanation, self.session.model
        names = self._position_names()
        items = lambda ps: html.escape(", ".join(f"{names[p]}@{p}" for p in ps))  # noqa: E731
        orig = e.prediction
        rows = [("recommended (top-1)", "", html.escape(item_name(model, orig)), "1",
                 f"{float(output_probs(e.probs)[orig]):.3f}", "")]

        def check_row(label: str, c: Any) -> tuple[str, ...]:
            where = "inside" if c.rank <= TOP_K else "outside"
            rank = f"{c.rank} ({where} the original top-{TOP_K})" if c.changed else "1"
            return (label, items(c.positions), html.escape(item_name(model, c.prediction)), rank,
                    f"{float(c.probs[orig]):.3f}", "yes" if c.changed else "no")

        for k, s in enumerate(e.sets):
            rows.append(check_row(f"CLEANN set {k + 1}", next(c for c in e.checks if list(c.positions) == list(s))))
        b = e.baseline
        if b.checks:
            rows.append(check_row(f"attention baseline (k={len(b.checks[-1].positions)})", b.checks[-1]))
        head = ("<tr><th></th><th>items removed</th><th>top-1 after</th><th>its rank before</th>"
                "<th>p(recommended item)</th><th>top-1 changed</th></tr>")
        body = "".join("<tr>" + "".join(f"<td style='padding:0 8px'>{v}</td>" for v in r) + "</tr>" for r in rows)
        limit = e.settings.get("max_set_size")
        found = (f"<b>top-1 changed</b> by removing {e.size} item(s) ({len(e.sets)} minimal set(s)); new top-1 "
                 f"ranked {e.new_rank} before" if e.changed else
                 f"<b>top-1 unchanged</b>: no set of up to {limit} items from the graph changed it"
                 if e.stopped == "size" else f"<b>top-1 unchanged</b>: {html.escape(e.status)}")
        base = (f"the {b.size} most attended item(s) change it" if b.size else
                "removing the most attended items never changed it")
        summary = (f"<div style='color:#333'>{found}. Attention baseline: {base}.</div>"
                   f"<div style='color:#555'>{len(e.checks)} candidate sets checked in {e.seconds:.2f} s; "
                   f"graph: {e.graph.n_tests} CI tests</div>")
        top = ranked_items_html(e.probs, model.labels, k=TOP_K, marked=[c.prediction for c in e.checks if c.changed],
                                title=f"original top-{TOP_K} (bold: a new top-1 after some removal)")
        return f"<table>{head}{body}</table>{summary}{top}"

    # ------------------------------------------------------------------ figure, results, code
    def figure(self, *, paper: bool = False) -> Figure:
        if self.explanation is None:
            raise ValueError("no explanation to draw yet: press explain")
        return explanation_figure(self.explanation, labels=abcd.output_names(self.session.model))

    def name(self) -> str:
        return f"explanation_l{self.layer.value}_h{self.head.value}"

    def results(self) -> dict:
        e = self.explanation
        if e is None:
            raise ValueError("no explanation to export yet: press explain")
        return {"model": self.session.model.name, "text": self.session.text, "settings": e.settings,
                "tokens": e.tokens, "target": e.target, "prediction": e.prediction, "probs": output_probs(e.probs),
                "sets": e.sets, "words": e.words, "size": e.size, "seconds": e.seconds, "new_rank": e.new_rank,
                "budget": {"max_calls": e.budget.max_calls, "max_set_size": e.budget.max_set_size},
                "stopped": e.stopped, "status": e.status,
                "checks": [{"positions": c.positions, "prediction": c.prediction, "changed": c.changed,
                            "rank": c.rank, "probs": c.probs} for c in e.checks],
                "baseline": {"ranking": e.baseline.ranking, "size": e.baseline.size, "set": e.baseline.set,
                             "new_rank": e.baseline.new_rank}}

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
        lines += [f"explanation = abcd.explain(model, {self.input_repr}, {args})",
                  "print(explanation)",
                  "fig = explanation_figure(explanation, labels=abcd.output_names(model))"]
        return "\n".join(lines)


def _words(tokens: Any, positions: Any) -> str:
    return " ".join(f"{tokens[i]}@{i}" for i in positions)

