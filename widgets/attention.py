"""``AttentionExplorer``: step through layers and heads of one traced input."""
from __future__ import annotations

import html
import importlib.util
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import ipywidgets as W
import numpy as np
from matplotlib.figure import Figure

from analysis import abcd
from analysis.figures import attention_view, draw_attention_view, token_highlight_html
from analysis.figures.panels import AttentionView
from analysis.figures.text import output_probs, ranked_items_html
from widgets.base import Panel, model_line, row
from widgets.controls import initial_view, layer_slider, token_options
from widgets.items import TOP_K, is_recommender, predicts_next_token
from widgets.render import GridCanvas, HeatmapCanvas

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

HAS_EFFICIENT = importlib.util.find_spec("analysis.efficient") is not None
MODE_OPTIONS = [("single head", "head"), ("mean over heads", "mean"), ("all heads", "grid")]


class AttentionExplorer(Panel):
    """Attention heatmaps of one input: ``.layer`` and ``.head`` sliders, previous / next,
    single head, mean over heads or all heads, a query token's row as highlighted text, and
    the raw, efficient or null-space part of the head (with its nullity).

    The model runs once per text (the session caches the trace); steps redraw only the
    heatmap image (blitting) and cache the PNG of every view already seen.
    """

    title = "Attention explorer"

    def __init__(self, model: TracedModel | None = None, text: str | None = None, *, layer: int = -1, head: int = 0,
                 mode: str = "head", part: str = "raw", query: int = 0, max_cache: int = 256, **kwargs: Any) -> None:
        super().__init__(model, text, **kwargs)
        self.timings: list[float] = []          # seconds per draw (benchmarks read this)
        self._pngs: OrderedDict[tuple, bytes] = OrderedDict()
        self._max_cache = max_cache
        self._canvas: HeatmapCanvas | None = None
        self._grid: GridCanvas | None = None
        self._view: AttentionView | None = None
        self._nullity: dict[tuple, Any] = {}
        self._build_controls(mode, part)
        self._initial = (layer, head, query)
        self._layout([self._row1, self._row2], [self.image, self.row, self.info])

    # ------------------------------------------------------------------ controls
    def _build_controls(self, mode: str, part: str) -> None:
        self.layer = layer_slider()
        self.head = layer_slider(description="head")
        self.prev_button = W.Button(description="", icon="step-backward", tooltip="previous head",
                                    layout=W.Layout(width="40px"))
        self.next_button = W.Button(description="", icon="step-forward", tooltip="next head",
                                    layout=W.Layout(width="40px"))
        self.mode = W.ToggleButtons(options=MODE_OPTIONS, value=mode, style={"button_width": "120px"})
        parts = ["raw", "efficient", "null"] if HAS_EFFICIENT else ["raw"]
        self.part = W.ToggleButtons(options=parts, value=part, style={"button_width": "80px"},
                                    layout=W.Layout(display="" if HAS_EFFICIENT else "none"))
        self.query = W.Dropdown(options=[("0", 0)], value=0, description="query", layout=W.Layout(width="230px"))
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.row = W.HTML()
        self.info = W.HTML()
        self.prev_button.on_click(lambda _: self.step(-1))
        self.next_button.on_click(lambda _: self.step(+1))
        for control in (self.layer, self.head, self.query, self.part):
            self.on_change(control, self._draw)
        self.on_change(self.mode, self._mode_changed)
        self._row1 = row(self.layer, self.head, self.prev_button, self.next_button, self.query)
        self._row2 = row(self.mode, self.part)

    def _mode_changed(self) -> None:
        with self.holding():
            if self.mode.value == "mean":
                self.part.value = "raw"
            self.part.disabled = self.mode.value == "mean"
        self._draw()

    def step(self, delta: int) -> None:
        """Go to the previous (-1) or next (+1) head, across layers, wrapping around."""
        with self.working("stepping"):
            n_heads = self.head.max + 1
            flat = (self.layer.value * n_heads + self.head.value + delta) % ((self.layer.max + 1) * n_heads)
            with self.holding():
                self.layer.value, self.head.value = divmod(flat, n_heads)
            self._draw()
        self._after_update()

    def set_view(self, *, layer: int | None = None, head: int | None = None, query: int | None = None) -> None:
        """Show ``layer``/``head``/``query`` (negative layer counts from the end); a value out of
        range shows an error in the panel and changes nothing."""
        with self.working("drawing"):
            trace = self.session.any_trace()
            lay, hd = abcd.check_head(trace.n_layers, trace.n_heads, self.layer.value if layer is None else layer,
                                      self.head.value if head is None else head)
            if query is not None and not -trace.n_tokens <= query < trace.n_tokens:
                raise IndexError(f"query {query} is out of range: the input has {trace.n_tokens} tokens "
                                 f"(0..{trace.n_tokens - 1})")
            with self.holding():
                self.layer.value, self.head.value = lay, hd
                if query is not None:
                    self.query.value = query % trace.n_tokens
            self._draw()
        self._after_update()

    # ------------------------------------------------------------------ drawing
    def _refresh(self) -> None:
        trace = self.session.any_trace()
        self._canvas, self._grid, self._view = None, None, None
        problem = None
        with self.holding():
            self.layer.max, self.head.max = trace.n_layers - 1, trace.n_heads - 1
            query = self.query.value
            self.query.options = token_options(trace)
            self.query.value = query if query is not None and query < trace.n_tokens else 0
            if self._initial is not None:       # first draw: the constructor's layer/head/query
                self.head.value = 0
            problem = initial_view(self.layer, self.head, trace, self._initial,
                                   lambda query: self._set_query(trace, query))
            self._initial = None
        self._mode_changed()
        if problem is not None:                 # drawn the default view; now say what was wrong
            raise problem

    def _set_query(self, trace: Any, query: int) -> None:
        if not -trace.n_tokens <= query < trace.n_tokens:
            raise IndexError(f"query {query} is out of range: the input has {trace.n_tokens} tokens "
                             f"(0..{trace.n_tokens - 1})")
        self.query.value = query % trace.n_tokens

    def _layer_trace(self) -> Any:
        """The session's trace holding the shown layer: every head of it (the grid and the mean
        need them; stepping heads within the layer then reads the cache)."""
        return self.session.trace(layers=[self.layer.value])

    def _cache_key(self) -> tuple:
        mode = self.mode.value
        head = self.head.value if mode == "head" else None
        query = self.query.value if mode != "grid" else None
        return (self.session.model.name, self.session.text, mode, self.part.value, self.layer.value, head, query)

    def current_view(self) -> AttentionView:
        """What is shown now (matrices [k, n, n], titles, note)."""
        trace = self._layer_trace()
        return attention_view(trace, self.layer.value, self.head.value, mode=self.mode.value, part=self.part.value)

    def _draw(self) -> None:
        start = time.perf_counter()
        view = self._view = self.current_view()
        key = self._cache_key()
        png = self._pngs.get(key)
        if png is None:
            png = self._render(view)
            self._pngs[key] = png
            while len(self._pngs) > self._max_cache:
                self._pngs.popitem(last=False)
        else:
            self._pngs.move_to_end(key)
        self.image.value = png
        self._draw_text(view)
        self.timings.append(time.perf_counter() - start)

    def _render(self, view: AttentionView) -> bytes:
        bound = view.scale if view.signed else None
        if view.mode == "grid":
            grid = self._grid
            n_heads = len(view.matrices)
            if grid is None or grid.tokens != view.tokens or grid.signed != view.signed or grid.n_heads != n_heads:
                grid = self._grid = GridCanvas(view.tokens, n_heads, signed=view.signed)
            return grid.frame(view.matrices, view.titles, bound)
        canvas = self._canvas
        if canvas is None or canvas.tokens != view.tokens or canvas.signed != view.signed:
            canvas = self._canvas = HeatmapCanvas(view.tokens, signed=view.signed)
        return canvas.frame(view.matrices[0], view.titles[0], self.query.value, bound)

    def _draw_text(self, view: AttentionView) -> None:
        q = self.query.value
        k = self.head.value if view.mode == "grid" else 0
        row = view.matrices[k][q]
        where = view.titles[k]
        self.row.value = token_highlight_html(view.tokens, row, marked=[q], vmax=None,
                                              title=f"row of query {view.tokens[q]}@{q} ({where})")
        self.info.value = self._info(view)

    def _info(self, view: AttentionView) -> str:
        trace = self.session.any_trace()
        parts, ranked = [], ""
        if is_recommender(self.session.model):   # a catalogue: its top-k as a list under the line
            ranked = ranked_items_html(trace.probs, trace.labels, k=TOP_K,
                                       title=f"top-{TOP_K} recommendations (at the query [MASK])")
        elif trace.labels:
            parts.append(f"prediction: <b>{trace.label}</b> ({float(np.max(trace.probs)):.3f})")
        elif predicts_next_token(self.session.model):   # a decoder: the next token after the last one
            p = output_probs(trace.probs)
            k = int(np.argmax(p))
            name = html.escape(abcd.output_name(self.session.model, k))
            parts.append(f"next token: <b>{name}</b> (id {k}, {float(p[k]):.3f})")
        if view.note:
            parts.append(view.note)
        elif HAS_EFFICIENT and view.mode == "head":
            parts.append(f"nullity of this head: {self._head_nullity(view.layer, view.head)}")
        return "<span style='color:#444'>" + " · ".join(parts) + "</span>" + ranked

    def _head_nullity(self, layer: int, head: int) -> int:
        key = (self.session.model.name, self.session.text, layer, head)
        if key not in self._nullity:
            from analysis.efficient import decompose

            self._nullity[key] = decompose(self.session.trace(heads=[(layer, head)]), layer, head).nullity
        return self._nullity[key]

    # ------------------------------------------------------------------ figure, results, code
    def figure(self, *, paper: bool = False) -> Figure:
        return draw_attention_view(self.current_view())

    def name(self) -> str:
        head = {"head": f"h{self.head.value}", "mean": "mean", "grid": "all"}[self.mode.value]
        part = "" if self.part.value == "raw" else f"_{self.part.value}"
        return f"attention_l{self.layer.value}_{head}{part}"

    def results(self) -> dict:
        view = self.current_view()
        return {"model": self.session.model.name, "text": self.session.text, "tokens": list(view.tokens),
                "layer": view.layer, "head": view.head, "mode": view.mode, "part": view.part,
                "query": self.query.value, "titles": list(view.titles), "note": view.note,
                "matrices": view.matrices}

    def rows(self) -> list[dict]:
        view = self.current_view()
        heads = [view.head] if view.mode != "grid" else list(range(len(view.matrices)))
        return [{"layer": view.layer, "head": h, "part": view.part, "query": q, "query_token": view.tokens[q],
                 "key": k, "key_token": view.tokens[k], "weight": float(m[q, k])}
                for h, m in zip(heads, view.matrices) for q in range(len(view.tokens)) for k in range(len(view.tokens))]

    def code(self, *, include_model: bool = True) -> str:
        layer, head, q = self.layer.value, self.head.value, self.query.value
        mode, part = self.mode.value, self.part.value
        lines = ["import analysis", "from analysis.figures import attention_heatmap, attention_grid, token_highlight"]
        if part != "raw":
            lines += ["import numpy as np", "from analysis.efficient import decompose, decompose_layer"]
        lines += [model_line(self.session.model)] if include_model else []
        lines.append(f"trace = model.trace({self.input_repr})")
        if mode == "grid":
            if part == "raw":
                lines += [f"matrices = trace.attentions[{layer}]", "fig = attention_grid(matrices, trace.tokens)"]
            else:
                lines += [f"matrices = np.stack([p.{_attr(part)} for p in decompose_layer(trace, {layer})])",
                          f"bound = max(abs(matrices).max(), trace.attentions[{layer}].max())   # attention's scale",
                          "fig = attention_grid(matrices, trace.tokens, bound=bound)"]
            lines.append(f"row = token_highlight(trace.tokens, matrices[{head}][{q}], marked=[{q}])")
            return "\n".join(lines)
        colours = ""
        if mode == "mean":
            lines.append(f"matrix = trace.attentions[{layer}].mean(0)")
            title = f"layer {layer}, mean over heads"
        elif part == "raw":
            lines.append(f"matrix = trace.attentions[{layer}, {head}]")
            title = f"layer {layer}, head {head}"
        else:
            lines += [f"part = decompose(trace, {layer}, {head})   # part.nullity, part.message",
                      f"matrix = part.{_attr(part)}",
                      f"bound = max(abs(matrix).max(), trace.attentions[{layer}, {head}].max())   # attention's scale"]
            title = self.current_view().titles[0]
            colours = ", vmin=-bound, vmax=bound, cmap='RdBu_r'"
        lines.append(f"fig = attention_heatmap(matrix, trace.tokens, title={title!r}{colours})")
        lines.append(f"row = token_highlight(trace.tokens, matrix[{q}], marked=[{q}])")
        return "\n".join(lines)


def _attr(part: str) -> str:
    return "effective" if part == "efficient" else "null"

