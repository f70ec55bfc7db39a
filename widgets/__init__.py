"""ipywidgets panels over the analysis package (no maths here).

Each panel is an ``ipywidgets.VBox`` (display it as is) over a shared :class:`Session`
(model, text, cached traces). Pictures come from ``analysis.figures``; errors show inside
the panel; every panel can save its figure, export its results and show the code that
reproduces its view.

    >>> from widgets import Lab
    >>> Lab(model, "a gripping film")            # every panel in tabs, one text box
    >>> Lab(load_model("bert4rec"), (3, 17, 42))  # a recommender: a history of item ids ("3 17 42")
"""
from widgets.adversarial import AdversarialPanel
from widgets.attention import AttentionExplorer
from widgets.base import Panel
from widgets.citest import CITestPanel
from widgets.controls import GraphControls
from widgets.explanation import ExplanationPanel
from widgets.graph import CausalGraphPanel
from widgets.intervention import InterventionPanel
from widgets.jobs import JobPanel
from widgets.lab import Lab
from widgets.session import Session
from widgets.stability import StabilityPanel

__all__ = ["AttentionExplorer", "CITestPanel", "CausalGraphPanel", "ExplanationPanel", "AdversarialPanel",
           "InterventionPanel", "Lab", "Panel", "JobPanel", "GraphControls", "Session",
           "StabilityPanel"]
