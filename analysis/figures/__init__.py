"""Figures with one paper style: every panel's picture is a function here first.

Each function draws on a given ``ax`` (or a new figure) and returns the ``Figure``.
"""
from analysis.figures.attention import attention_heatmap
from analysis.figures.style import PALETTE, paper_style, save_figure

__all__ = ["attention_heatmap", "paper_style", "save_figure", "PALETTE"]

# widget-panel pictures (graphs, highlighted text, panels)
from analysis.figures.graphs import LAYOUTS, draw_graph, graph_layout  # noqa: E402
from analysis.figures.panels import (AttentionView, adversarial_figure, attention_grid,  # noqa: E402
                                     attention_view, ci_test_plot, draw_attention_view, intervention_figure,
                                     intervention_summary, prediction_bars)
from analysis.figures.text import (explanation_figure, token_highlight, token_highlight_html,  # noqa: E402
                                   token_sets)

__all__ += ["draw_graph", "graph_layout", "LAYOUTS", "AttentionView", "attention_view", "draw_attention_view",
            "attention_grid", "ci_test_plot", "prediction_bars", "adversarial_figure", "intervention_figure",
            "intervention_summary", "token_highlight", "token_highlight_html", "token_sets", "explanation_figure"]

# the two reproductions' paper figures (drawn from analysis.experiments tables)
from analysis.figures.paper import (adversarial_scatter, example_graphs, explanation_graph,  # noqa: E402
                                    explanation_size_hist, flip_rate_grid, nullity_length, raw_vs_efficient,
                                    sweep_figure, wasserstein_bars)

__all__ += ["explanation_graph", "example_graphs", "explanation_size_hist", "flip_rate_grid", "sweep_figure",
            "nullity_length", "raw_vs_efficient", "adversarial_scatter", "wasserstein_bars"]
