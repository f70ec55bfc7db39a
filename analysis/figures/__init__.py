"""Figures with one paper style: every panel's picture is a function here first.

Each function draws on a given ``ax`` (or a new figure) and returns the ``Figure``.
"""
from analysis.figures.attention import attention_heatmap
from analysis.figures.style import PALETTE, paper_style, save_figure

__all__ = ["attention_heatmap", "paper_style", "save_figure", "PALETTE"]
