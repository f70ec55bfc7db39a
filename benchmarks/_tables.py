"""The plain-text table every benchmark prints (benchmarks are scripts: ``python benchmarks/x.py``
puts this folder on the path, so they import it as ``from _tables import table``)."""
from __future__ import annotations

import numpy as np


def table(title: str, headers: list[str], rows: list[list], notes: str = "") -> None:
    """Print a plain-text table: floats to 3 significant digits, columns right-aligned."""
    cells = [[f"{c:.3g}" if isinstance(c, (float, np.floating)) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n## {title}\n")
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    for r in cells:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    if notes:
        print(notes)
