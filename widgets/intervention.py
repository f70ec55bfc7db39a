"""``InterventionPanel``: edit a head's attention (or remove tokens), re-run, compare predictions."""
from __future__ import annotations

import html
import inspect
from typing import TYPE_CHECKING, Any, Callable

import ipywidgets as W
from matplotlib.figure import Figure

from analysis import abcd, interventions
from analysis.efficient import BASES
from analysis.figures import intervention_figure, intervention_summary
from analysis.figures.panels import PAGE_WIDTH
from analysis.models import REMOVALS
from widgets.base import model_line, row
from widgets.controls import head_options, initial_view, layer_slider, token_options
from widgets.jobs import JobPanel

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

ALL = "compare all"


def call_intervention(fn: Callable[..., Any], model: TracedModel, text: str, trace: Any, params: dict) -> Any:
    """Call one intervention with the parameters it takes (and the cached trace if it takes one)."""
    accepted = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in params.items() if k in accepted}
    if "trace" in accepted:
        kwargs["trace"] = trace
    return fn(model, text, **kwargs)


class InterventionPanel(JobPanel):
    """Runs ``analysis.interventions`` (efficient, add_null, shift_efficient, uniform, zero,
    remove_tokens; or all of them) in the background with progress and cancel; shows the
    head's attention before and after, the prediction before and after and its TVD, and for
    "compare all" the prediction shift of every intervention on one log scale.
    """

    title = "Interventions"

    def __init__(self, model: TracedModel | None = None, text: str | None = None, *, intervention: str = "add_null",
                 layer: int = -1, head: int | str = 0, scale: float = 1.0, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(model, text, **kwargs)
        self.outcomes: list[Any] = []
        self._initial = (layer, head)
        self._build_controls(intervention, scale, seed)
        self._layout(self._rows, [self.image, self.table])

    def _build_controls(self, intervention: str, scale: float, seed: int) -> None:
        self.intervention = W.Dropdown(options=list(interventions.INTERVENTIONS) + [ALL], value=intervention,
                                       description="intervention", layout=W.Layout(width="280px"))
        self.layer = layer_slider()
        self.head = W.Dropdown(options=head_options(self.session.model.n_heads, False) + [("all heads", "all")],
                               value=0, description="head", layout=W.Layout(width="190px"))
        self.scale = W.FloatSlider(value=scale, min=0.0, max=5.0, step=0.05, description="scale",
                                   continuous_update=False, layout=W.Layout(width="260px"))
        self.seed = W.IntText(value=seed, description="seed", layout=W.Layout(width="150px"))
        self.basis = W.Dropdown(options=list(BASES), value="value", description="basis", layout=W.Layout(width="220px"))
        self.positions = W.SelectMultiple(options=[("0", 0)], description="remove", rows=4,
                                          layout=W.Layout(width="240px"))
        self.removal = W.Dropdown(options=list(REMOVALS), value="delete", description="removal",
                                  layout=W.Layout(width="200px"))
        self.run_button = W.Button(description="run", icon="play", button_style="primary")
        self.run_button.on_click(lambda _: self._safely(self.run))
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.table = W.HTML("<i>press run to apply the intervention</i>")
        self._rows = [row(self.intervention, self.layer, self.head),
                      row(self.scale, self.seed, self.basis),
                      row(self.positions, self.removal, self.run_button)]

    # ------------------------------------------------------------------ computing
    def _refresh(self) -> None:
        self.outcomes = []
        trace = self.session.any_trace()
        self.image.value = b""
        self.table.value = "<i>press run to apply the intervention</i>"
        with self.holding():
            self.layer.max = trace.n_layers - 1
            self.head.options = head_options(trace.n_heads, False) + [("all heads", "all")]
            self.positions.options = token_options(trace, skip_query=True)
            self.positions.value = ()
            problem = initial_view(self.layer, self.head, trace, self._initial)
            self._initial = None
        if problem is not None:
            raise problem

    def settings(self) -> dict:
        """Every parameter an intervention may take (each takes the ones it needs)."""
        return dict(layer=self.layer.value, head=self.head.value, scale=float(self.scale.value),
                    seed=int(self.seed.value), basis=self.basis.value, positions=list(self.positions.value),
                    removal=self.removal.value)

    def chosen(self) -> list[str]:
        """Names of the interventions the next run applies."""
        if self.intervention.value != ALL:
            return [self.intervention.value]
        return [n for n in interventions.INTERVENTIONS if n != "remove_tokens" or self.positions.value]

    def run(self, *, block: bool = False) -> None:
        """Apply the chosen intervention(s) in the background (``block``: wait, for scripts)."""
        names, params = self.chosen(), self.settings()
        trace = self.session.trace(**abcd.capture(self.session.model, params["layer"], params["head"]))
        if names == ["remove_tokens"] and not params["positions"]:
            raise ValueError("remove_tokens needs tokens to remove: select some in 'remove'")
        model, text, value = self.session.model, self.session.text, self.session.input

        def work(report: Any) -> list[Any]:
            done = []
            for k, name in enumerate(names):
                done.append(call_intervention(interventions.INTERVENTIONS[name], model, value, trace, params))
                if not report((k + 1) / len(names)):
                    break
            return done

        what = "intervention" if len(names) == 1 else f"{len(names)} interventions"
        self.start_job(what, work, lambda outcomes: self._finish(outcomes, text))
        if block:
            self.wait()

    def _finish(self, outcomes: list[Any], text: str) -> None:
        if text != self.session.text:
            raise ValueError("the text changed while the interventions ran: press run again")
        self.outcomes = outcomes
        self.show_png(self.image, self._figure(Figure(figsize=(9.0, 3.8))))
        self.table.value = _table_html(outcomes)

    def _figure(self, fig: Figure) -> Figure:
        if not self.outcomes:
            raise ValueError("no intervention result to draw yet: press run")
        if len(self.outcomes) == 1:
            edited = sorted(self.outcomes[0].override or ())        # the heads drawn: those edited
            trace = self.session.trace(heads=edited) if edited else self.session.any_trace()
            return intervention_figure(self.outcomes[0], trace, labels=abcd.output_names(self.session.model), fig=fig)
        return intervention_summary(self.outcomes, ax=fig.add_subplot())

    # ------------------------------------------------------------------ figure, results, code
    def figure(self, *, paper: bool = False) -> Figure:
        return self._figure(Figure(figsize=(PAGE_WIDTH, PAGE_WIDTH * 0.42)))

    def name(self) -> str:
        what = "all" if self.intervention.value == ALL else self.intervention.value
        return f"intervention_{what}_l{self.layer.value}_h{self.head.value}"

    def results(self) -> dict:
        if not self.outcomes:
            raise ValueError("no intervention result to export yet: press run")
        return {"model": self.session.model.name, "text": self.session.text, "settings": self.settings(),
                "results": [_outcome(r) for r in self.outcomes]}

    def rows(self) -> list[dict]:
        return [{k: v for k, v in _outcome(r).items() if k not in ("probs", "original")} for r in self.results_list()]

    def results_list(self) -> list[Any]:
        if not self.outcomes:
            raise ValueError("no intervention result to export yet: press run")
        return list(self.outcomes)

    def code(self, *, include_model: bool = True) -> str:
        params = self.settings()
        lines = ["import analysis", "from analysis import abcd, interventions",
                 "from analysis.figures import intervention_figure, intervention_summary"]
        lines += [model_line(self.session.model)] if include_model else []
        lines += [f"text = {self.input_repr}", "trace = model.trace(text)", "results = []"]
        for name in self.chosen():
            fn = interventions.INTERVENTIONS[name]
            accepted = inspect.signature(fn).parameters
            args = ", ".join(f"{k}={v!r}" for k, v in params.items() if k in accepted)
            trace_arg = ", trace=trace" if "trace" in accepted else ""
            lines.append(f"results.append(interventions.{name}(model, text, {args}{trace_arg}))")
        if len(self.chosen()) == 1:
            lines.append("fig = intervention_figure(results[0], trace, labels=abcd.output_names(model))")
        else:
            lines.append("fig = intervention_summary(results)")
        return "\n".join(lines)


def _outcome(r: Any) -> dict:
    return {"name": r.name, "tvd": r.tvd, "jsd": r.jsd, "max_abs_logit_change": r.max_abs_logit_change,
            "prediction_changed": r.prediction_changed, "probs": r.probs, "original": r.original,
            "removed": list(r.removed), "removal": r.removal, "message": r.message}


def _table_html(outcomes: list[Any]) -> str:
    head = ("<tr><th>intervention</th><th>prediction TVD</th><th>max |&Delta; logit|</th><th>changed</th>"
            "<th>what was done</th></tr>")
    body = "".join(f"<tr><td>{html.escape(r.name)}</td><td>{r.tvd:.3g}</td><td>{r.max_abs_logit_change:.3g}</td>"
                   f"<td>{'yes' if r.prediction_changed else 'no'}</td><td style='font-size:90%'>"
                   f"{html.escape(r.message)}</td></tr>" for r in outcomes)
    return f"<table style='font-size:90%'>{head}{body}</table>"
