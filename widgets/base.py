"""The chrome every panel shares: title, text box, status and busy indicator, errors shown
inside, save / export / copy-as-code, over a shared :class:`Session`. Controls live in
:mod:`widgets.controls`, background jobs in :mod:`widgets.jobs`, file writing in
:mod:`analysis.files`."""
from __future__ import annotations

import functools
import html
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import traitlets
from matplotlib.figure import Figure

from analysis.figures import save_figure
from analysis.files import (
    csv_text,
    export_paths,
    figure_paths,
    jsonable,
    output_path,
    unique_paths,
    write_atomic,
)
from widgets.items import history_note, is_recommender
from widgets.render import figure_png
from widgets.session import Session

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

FIGURE_FORMATS = {"png": ["png"], "svg": ["svg"], "pdf": ["pdf"], "png + svg + pdf": ["png", "svg", "pdf"]}
_ERROR_STYLE = ("background:#fdecea;border-left:4px solid #D55E00;padding:6px 10px;margin:4px 0;"
                "color:#611a15;white-space:pre-wrap")


# --------------------------------------------------------------------------- helpers
def error_text(exc: BaseException) -> str:
    """A one-paragraph description of a user error (no traceback)."""
    kind = {IndexError: "Out of range", KeyError: "Not found", ValueError: "Invalid input",
            TypeError: "Invalid input"}
    label = next((v for k, v in kind.items() if isinstance(exc, k)), None)
    if type(exc).__name__ == "ModelBusy":
        label = "Busy"
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return f"{label or type(exc).__name__}: {message or type(exc).__name__}"


def error_html(exc: BaseException) -> str:
    """:func:`error_text` as a red box."""
    return f"<div class='attnlab-error' style='{_ERROR_STYLE}'>&#9888; {html.escape(error_text(exc))}</div>"


def row(*children: W.Widget) -> W.HBox:
    """Controls side by side, wrapping on narrow screens."""
    return W.HBox(list(children), layout=W.Layout(flex_flow="row wrap"))


def text_box_labels(model: TracedModel) -> tuple[str, str]:
    """(description, placeholder) of the text box for ``model``: a history of item ids for a
    recommender, a sentence otherwise."""
    if is_recommender(model):
        return "history", f"item ids 0..{model.n_items - 1} separated by spaces or commas, e.g. 3 17 42"
    return "text", "type a sentence, then click outside the box"


def model_line(model: TracedModel) -> str:
    """The code line that loads ``model`` again."""
    name = getattr(model, "name", None)
    return f"model = analysis.load_model({name!r})" if name else "model = analysis.load_model()"


def input_note_html(model: TracedModel, text: str) -> str:
    """How a recommender reads the text box, as a grey line ("" for text models or bad input:
    the panels report bad input themselves)."""
    try:
        note = history_note(model, text)
    except ValueError:
        return ""
    return f"<span style='color:#666;font-size:90%'>{html.escape(note)}</span>" if note else ""


# --------------------------------------------------------------------------- the panel
class Panel(W.VBox):
    """A displayable panel over one :class:`Session`.

    Subclasses build their controls (shared ones from :mod:`widgets.controls`) and views,
    pass them to ``_layout``, and implement ``_refresh`` (recompute and
    redraw), ``figure`` (the current picture, a new Figure), ``results``/``rows`` (export),
    ``code`` (the analysis calls that reproduce the view) and ``name``.
    """

    title = "panel"

    def __init__(self, model: TracedModel | None = None, text: str | None = None, *, session: Session | None = None,
                 active: bool = True, show_text: bool = True) -> None:
        super().__init__()
        self.session = session if session is not None else Session(model, text)
        if session is not None and model is not None and model is not session.model:
            session.model = model
        if session is not None and text is not None:
            session.text = text
        self.active = active
        self.last_error: BaseException | None = None
        self._stale = True
        self._holding = 0
        self._auto_name = ""
        self._build_common(show_text)
        self.add_class("attnlab-panel")
        self.session.observe(self._session_changed, names=["text", "model"])

    # ------------------------------------------------------------------ layout
    def _build_common(self, show_text: bool) -> None:
        self.header = W.HTML()
        self.text_box = W.Textarea(value=self.session.text, description="text", continuous_update=False,
                                   layout=W.Layout(width="98%", height="48px", display="" if show_text else "none"))
        traitlets.link((self.session, "text"), (self.text_box, "value"))
        self.input_note = W.HTML(layout=W.Layout(display="" if show_text else "none"))
        self.error = W.HTML(layout=W.Layout(width="98%"))
        self.status = W.HTML()
        self.filename = W.Text(value="", description="file", layout=W.Layout(width="260px"))
        self.folder = W.Text(value="", description="folder", placeholder="this notebook's folder",
                             layout=W.Layout(width="260px"))
        self.overwrite = W.Checkbox(value=False, description="overwrite", indent=False,
                                    layout=W.Layout(width="100px"))
        self.figure_format = W.Dropdown(options=list(FIGURE_FORMATS), value="png", layout=W.Layout(width="140px"))
        self.save_button = W.Button(description="save figure", icon="image", layout=W.Layout(width="130px"))
        self.export_button = W.Button(description="export results", icon="download", layout=W.Layout(width="140px"))
        self.code_button = W.ToggleButton(description="copy as code", icon="code", layout=W.Layout(width="130px"))
        self.code_area = W.Textarea(layout=W.Layout(width="98%", height="170px", display="none"))
        self.save_button.on_click(lambda _: self._safely(self.save_figure))
        self.export_button.on_click(lambda _: self._safely(self.export))
        self.code_button.observe(lambda _: self._safely(self._show_code), names="value")
        self.toolbar = row(self.filename, self.figure_format, self.save_button, self.export_button, self.code_button,
                           self.folder, self.overwrite)

    def _layout(self, controls: Sequence[W.Widget], views: Sequence[W.Widget]) -> None:
        """Arrange the panel: header, text, controls, messages, views, toolbar, code."""
        self.children = [self.header, self.text_box, self.input_note, *controls, self.error,
                         W.HBox(self._status_row()), *views,
                         self.toolbar, self.code_area]
        self._update_header()
        if self.active:
            self.refresh()

    def _status_row(self) -> list[W.Widget]:
        """The widgets of the status line (a job panel adds its progress bar and cancel)."""
        return [self.status]

    def _update_header(self) -> None:
        self.header.value = (f"<b style='font-size:115%'>{html.escape(self.title)}</b> "
                             f"<span style='color:#666'>· {html.escape(str(self.session.model.name))}</span>")
        self.text_box.description, self.text_box.placeholder = text_box_labels(self.session.model)

    def _update_note(self) -> None:
        self.input_note.value = input_note_html(self.session.model, self.session.text)

    @property
    def input_repr(self) -> str:
        """The session's model input as Python source (for copy as code)."""
        return repr(self.session.input)

    # ------------------------------------------------------------------ errors and busy state
    def show_error(self, exc: BaseException) -> None:
        """Show a readable message for ``exc`` inside the panel (no traceback)."""
        self.last_error = exc
        self.error.value = error_html(exc)

    def clear_error(self) -> None:
        self.last_error = None
        self.error.value = ""

    @property
    def error_message(self) -> str:
        """The error shown now, as plain text ("" when none)."""
        return error_text(self.last_error) if self.last_error is not None else ""

    @contextmanager
    def working(self, what: str = "working") -> Iterator[None]:
        """Busy indicator around work; an exception ends the work and shows as a message."""
        busy = self.status.value = f"<span style='color:#0072B2'>&#8987; {html.escape(what)}&hellip;</span>"
        start = time.perf_counter()
        try:
            self.clear_error()
            yield
            if self.status.value == busy:       # the work did not leave a message of its own
                took = 1000 * (time.perf_counter() - start)
                self.status.value = f"<span style='color:#888'>{html.escape(what)}: {took:.0f} ms</span>"
        except Exception as exc:  # noqa: BLE001 - every user-facing failure becomes a message
            self.status.value = ""
            self.show_error(exc)

    def _safely(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a callback; any exception shows as a message in the panel."""
        with self.working(getattr(fn, "__name__", "working").strip("_").replace("_", " ")):
            fn(*args)

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Change controls without triggering their callbacks."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1

    def on_change(self, widget: W.Widget, handler: Callable[[], None], what: str = "drawing") -> None:
        """Call ``handler`` (guarded, busy-indicated) when ``widget.value`` changes."""
        def callback(_: Any) -> None:
            if not self._holding:
                with self.working(what):
                    handler()
                self._after_update()
        widget.observe(callback, names="value")

    # ------------------------------------------------------------------ refresh
    def _session_changed(self, change: dict) -> None:
        if change["name"] == "model":
            self._update_header()
        self._stale = True
        if self.active:
            self.refresh()

    def activate(self, active: bool = True) -> None:
        """Make the panel (in)active; an active stale panel refreshes now (the Lab's tabs)."""
        self.active = active
        if active and self._stale:
            self.refresh()

    def refresh(self) -> None:
        """Recompute and redraw everything for the session's current model and text."""
        self._stale = False
        self._update_note()
        with self.working("updating"):
            self._refresh()
        self._after_update()

    def _after_update(self) -> None:
        """Keep the automatic file name and the visible code in step with the view."""
        if not self.filename.value or self.filename.value == self._auto_name:
            self._auto_name = self.filename.value = self._safe_name()
        if self.code_button.value:
            try:
                self._show_code()
            except Exception as exc:  # noqa: BLE001 - no view, no code: say why
                self.code_area.value = f"# no code for this view: {error_text(exc)}"

    def _safe_name(self) -> str:
        try:
            return self.name()
        except Exception:  # noqa: BLE001 - a name is a convenience
            return "attnlab_figure"

    # ------------------------------------------------------------------ for subclasses
    def _refresh(self) -> None:
        raise NotImplementedError

    def figure(self, *, paper: bool = False) -> Figure:
        """The current picture as a new Figure (``paper``: at publication size)."""
        raise NotImplementedError

    def results(self) -> dict:
        """The current results and settings, JSON-ready."""
        raise NotImplementedError

    def rows(self) -> list[dict]:
        """The current results as table rows (CSV)."""
        raise NotImplementedError

    def code(self, *, include_model: bool = True) -> str:
        """Python that reproduces the current view with the ``analysis`` package."""
        raise NotImplementedError

    def name(self) -> str:
        """A file name (no suffix) describing the current view."""
        return self.title.lower().replace(" ", "_")

    # ------------------------------------------------------------------ save, export, code
    @property
    def output_folder(self) -> Path:
        """The folder file names resolve in: the ``folder`` box (``~`` expands), else the
        current working folder (a notebook's own folder)."""
        return Path(self.folder.value.strip() or os.getcwd()).expanduser().resolve()

    def _targets(self, path: str | os.PathLike | None, paths: Callable[[Path], list[Path]]) -> tuple[list[Path], str]:
        """Where save/export write: the file box's name (kept inside the output folder) or
        ``path`` given in code (anywhere), the full name kept; numbered unless overwrite."""
        typed = path is None
        name = (self.filename.value.strip() or self._safe_name()) if typed else path
        wanted = paths(output_path(name, self.output_folder, confine=typed))
        if self.overwrite.value:
            return wanted, ""
        chosen = unique_paths(wanted)
        note = "" if chosen == wanted else f" ({wanted[0].name} exists: kept, tick overwrite to replace it)"
        return chosen, note

    def _written(self, verb: str, paths: Sequence[Path], note: str) -> None:
        self.status.value = (f"<span style='color:#555'>{verb} " + ", ".join(html.escape(str(p)) for p in paths)
                             + html.escape(note) + "</span>")

    def save_figure(self, path: str | os.PathLike | None = None, formats: Sequence[str] | None = None) -> list[Path]:
        """Save the current picture at publication size (PNG/SVG/PDF, atomically) under the full
        name typed (``exp_alpha0.01`` -> ``exp_alpha0.01.png``; a .png/.svg/.pdf suffix picks
        the format) inside the output folder; an existing file is never replaced unless
        ``overwrite`` is ticked: the new one is numbered (``name-1.png``). Returns the paths."""
        def paths(target: Path) -> list[Path]:
            own = target.suffix.lower().lstrip(".") in FIGURE_FORMATS["png + svg + pdf"]
            return figure_paths(target, formats if formats is not None or own else FIGURE_FORMATS[self.figure_format.value])
        targets, note = self._targets(path, paths)
        fig = self.figure(paper=True)
        try:
            written = [p for t in targets for p in save_figure(fig, t, overwrite=self.overwrite.value)]
        finally:
            plt.close(fig)
        self._written("saved", written, note)
        return written

    def export(self, path: str | os.PathLike | None = None) -> list[Path]:
        """Write the results as ``<name>.json`` and ``<name>.csv`` (atomically; the full name
        kept, inside the output folder, numbered rather than replacing a file unless
        ``overwrite`` is ticked). Returns the two paths."""
        (json_path, csv_path), note = self._targets(path, export_paths)
        results, rows = json.dumps(jsonable(self.results()), indent=1), csv_text(self.rows())
        replace = self.overwrite.value
        written = [write_atomic(json_path, results, overwrite=replace), write_atomic(csv_path, rows, overwrite=replace)]
        self._written("exported", written, note)
        return written

    def _show_code(self) -> None:
        visible = self.code_button.value
        self.code_area.layout.display = "" if visible else "none"
        if visible:
            self.code_area.value = self.code()

    def show_png(self, image: W.Image, fig: Figure) -> None:
        """Render ``fig`` into ``image`` (and close it)."""
        image.value = figure_png(fig)


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: the method's exceptions show inside the panel instead of escaping."""
    @functools.wraps(method)
    def wrapper(self: Panel, *args: Any, **kwargs: Any) -> Any:
        with self.working(method.__name__.strip("_").replace("_", " ")):
            return method(self, *args, **kwargs)
    return wrapper
