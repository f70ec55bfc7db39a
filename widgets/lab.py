"""``Lab``: every panel in tabs over one session: one text box, one model picker."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING

import ipywidgets as W

from widgets.adversarial import AdversarialPanel
from widgets.attention import AttentionExplorer
from widgets.base import Panel, error_html, input_note_html, text_box_labels
from widgets.citest import CITestPanel
from widgets.explanation import ExplanationPanel
from widgets.graph import CausalGraphPanel
from widgets.intervention import InterventionPanel
from widgets.stability import StabilityPanel
from widgets.items import default_text, fits, is_recommender, predicts_next_token
from widgets.session import DEFAULT_TEXT, Session

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

PANELS: tuple[tuple[str, type[Panel]], ...] = (
    ("Attention", AttentionExplorer), ("CI test", CITestPanel), ("Causal graph", CausalGraphPanel),
    ("Explanation", ExplanationPanel), ("Adversarial", AdversarialPanel), ("Interventions", InterventionPanel),
    ("Graph stability", StabilityPanel))


def zoo_names() -> list[str]:
    """Names of the embedded models ``analysis.load_model`` builds offline."""
    from analysis.zoo import ZOO

    return list(ZOO)


class Lab(W.VBox):
    """All panels in ``ipywidgets.Tab`` sharing one :class:`Session`: edit ``.text`` once and
    every panel follows; ``.model_picker`` (a zoo name, a local folder or a hub id) + ``load``
    swaps the model. Only the visible tab recomputes; the others catch up when selected.
    """

    def __init__(self, model: TracedModel | None = None, text: str | None = None, *, session: Session | None = None) -> None:
        super().__init__()
        self.session = session if session is not None else Session(model, text)
        self.text = W.Textarea(value=self.session.text, description="text", continuous_update=False,
                               layout=W.Layout(width="98%", height="56px"))
        import traitlets

        traitlets.link((self.session, "text"), (self.text, "value"))
        names = zoo_names()
        current = self.session.model.name
        self.model_picker = W.Combobox(value=current, options=sorted(set(names) | {current}), description="model",
                                       ensure_option=False, layout=W.Layout(width="360px"))
        self.load_button = W.Button(description="load", icon="upload", layout=W.Layout(width="90px"))
        self.load_button.on_click(lambda _: self.load_model())
        self._picker_problem = False     # the message shown is check_picked's own
        self.model_picker.observe(lambda change: self.check_picked(change["new"]), names="value")
        self.model_info = W.HTML()
        self.input_note = W.HTML()
        self.error = W.HTML()
        self.panels = [cls(session=self.session, active=False, show_text=False) for _, cls in PANELS]
        self.tabs = W.Tab(children=self.panels, titles=tuple(title for title, _ in PANELS))
        self.tabs.observe(self._tab_changed, names="selected_index")
        self.session.observe(lambda _: self._show_model(), names="model")
        self.session.observe(lambda _: self._show_note(), names="text")
        picker = W.HBox([self.model_picker, self.load_button, self.model_info])
        self.children = [picker, self.text, self.input_note, self.error, self.tabs]
        self._show_model()
        self.tabs.selected_index = 0
        self.panels[0].activate()

    def __getitem__(self, name: str) -> Panel:
        """The panel of a tab by title (e.g. ``lab["CI test"]``) or class name."""
        for (title, cls), panel in zip(PANELS, self.panels):
            if name in (title, cls.__name__):
                return panel
        raise KeyError(f"no panel {name!r}; panels: {', '.join(t for t, _ in PANELS)}")

    def _tab_changed(self, change: dict) -> None:
        for k, panel in enumerate(self.panels):
            panel.active = k == change["new"]
        if change["new"] is not None:
            self.panels[change["new"]].activate()

    def select(self, name: str) -> Panel:
        """Show the tab of panel ``name`` and return the panel."""
        panel = self[name]
        self.tabs.selected_index = self.panels.index(panel)
        return panel

    def check_picked(self, name: str) -> bool:
        """Check the picker's value before loading: a local folder must hold a model's config
        and tokenizer files (``analysis.models.loading.check_model_folder``); a problem shows
        as a message at once. True when nothing is wrong (or ``name`` is not a folder)."""
        import os

        from analysis.models.loading import check_model_folder

        try:
            if name and name not in zoo_names() and os.path.isdir(os.path.expanduser(name)):
                check_model_folder(name)
        except ValueError as exc:
            self.error.value, self._picker_problem = error_html(exc), True
            return False
        if self._picker_problem:         # the problem was fixed: clear its message, no other
            self.error.value, self._picker_problem = "", False
        return True

    def load_model(self, name: str | None = None) -> None:
        """Load ``name`` (default: the picker's value) with ``analysis.load_model`` and switch
        every panel to it; a failure shows as a message and keeps the current model. Switching
    between a text model and a recommender also swaps a text that does not fit the new model
    (a sentence vs a history of item ids) for the new model's default."""
        from analysis import load_model

        name = self.model_picker.value if name is None else name
        self.error.value = ""
        if not self.check_picked(name):     # a folder without tokenizer files: say so, keep the model
            return
        self.model_info.value = f"<span style='color:#0072B2'>&#8987; loading {html.escape(name)}&hellip;</span>"
        try:
            if name != self.session.model.name:
                model = load_model(name or None)
                with self.session.hold_trait_notifications():
                    self.session.model = model
                    if not fits(model, self.session.text):
                        self.session.text = default_text(model) or DEFAULT_TEXT
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.error.value = error_html(exc)
        self._show_model()

    def _show_model(self) -> None:
        m = self.session.model
        self.model_picker.value = m.name
        self.text.description, self.text.placeholder = text_box_labels(m)
        if is_recommender(m):      # a catalogue, not a handful of classes: say how big it is
            what = f" · recommender over {m.n_items} items (ids 0..{m.n_items - 1})"
        else:
            what = f" · classes: {html.escape(', '.join(m.labels))}" if m.labels else (
                " · language model: predicts the next token" if predicts_next_token(m) else "")
        self.model_info.value = f"<span style='color:#555'>{m.n_layers} layers &times; {m.n_heads} heads{what}</span>"
        self._show_note()

    def _show_note(self) -> None:
        """How a recommender reads the text box (the panels' own notes are hidden in the Lab)."""
        self.input_note.value = input_note_html(self.session.model, self.session.text)
