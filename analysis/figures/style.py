"""The house style: font sizes, a colour-blind-safe palette, vector output, atomic saving."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib as mpl
from matplotlib.figure import Figure

from analysis.files import atomic_path, figure_paths

#: Okabe & Ito's colour-blind-safe palette
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
SEQUENTIAL = "viridis"

RC = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "legend.fontsize": 8, "figure.dpi": 100, "savefig.dpi": 300, "savefig.bbox": "tight",
    "pdf.fonttype": 42, "svg.fonttype": "none", "axes.spines.top": False, "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
}


@contextmanager
def paper_style() -> Iterator[None]:
    """Matplotlib settings of the house style, inside a ``with`` block."""
    with mpl.rc_context(RC):
        yield


def save_figure(fig: Figure, path: str | os.PathLike, formats: Sequence[str] | None = None, *,
                overwrite: bool = True) -> list[Path]:
    """Save ``fig`` to ``path`` (its suffix picks the format) or to ``path.<fmt>`` for each of
    ``formats`` (the full name kept: ``exp_alpha0.01`` -> ``exp_alpha0.01.png``); each file is
    written to a temporary name and renamed, never half-written; ``overwrite=False`` raises
    FileExistsError rather than replace a file."""
    written = []
    for target in figure_paths(path, formats):
        with atomic_path(target, overwrite=overwrite) as tmp, mpl.rc_context(RC):
            fig.savefig(tmp, format=target.suffix.lstrip(".").lower())
        written.append(target)
    return written
