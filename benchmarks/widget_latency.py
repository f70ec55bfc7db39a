"""Step latency of the attention explorer on the default model (prints a table).

Sets ``.layer.value`` / ``.head.value`` the way a user steps through heads and times each
synchronous redraw (trace cached, only the heatmap redrawn, PNG encoded, ``Image.value``
set). Reference: the same view drawn from scratch by the figure function (new figure, full
render), as a panel without blitting or caching would. Goal: median step < 150 ms.

    python benchmarks/widget_latency.py [--text "..."] [--rounds 2]
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

LONG_TEXT = ("an ambitious, sprawling and often beautiful film whose quiet performances and patient "
             "camera work reward the viewer, even if the final act loses some of the tension that the "
             "first hour builds so carefully and so well.")


def _stats(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1000.0
    return float(np.median(ms)), float(np.percentile(ms, 90))


def _timed_set(control: Any, value: Any) -> float:
    """Seconds to set a control's value (its observer redraws synchronously)."""
    start = time.perf_counter()
    control.value = value
    return time.perf_counter() - start


def reference_ms(trace: Any) -> float:
    """Median time to draw a view from scratch with the figure function and encode it."""
    from analysis.figures import attention_view, draw_attention_view
    from widgets.render import figure_png

    times = []
    for layer, head in [(0, 0), (trace.n_layers // 2, trace.n_heads // 2), (-1, -1)]:
        start = time.perf_counter()
        figure_png(draw_attention_view(attention_view(trace, layer, head)))
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000.0


def sweep(panel: Any, label: str) -> tuple[str, float, float, int]:
    """Step through every (layer, head) once; (label, median ms, p90 ms, steps)."""
    times = []
    for layer in range(panel.layer.max + 1):
        times.append(_timed_set(panel.layer, layer))
        times += [_timed_set(panel.head, head) for head in range(panel.head.max + 1)]
    return (label, *_stats(times), len(times))


def measure(model: Any, text: str, rounds: int) -> list[tuple[str, float, float, int, float]]:
    """Rows of the table for one text: raw and efficient parts, first pass and revisits, grid;
    each with the text's reference time (ms)."""
    from widgets import AttentionExplorer

    panel = AttentionExplorer(model, text)
    n = panel.session.trace().n_tokens
    ref = reference_ms(panel.session.trace())
    rows = []
    for part in ("raw", "efficient"):
        panel.part.value = part
        for rnd in range(rounds):
            rows.append(sweep(panel, f"{n} tokens, {part}, {'first pass' if rnd == 0 else 'revisit (cached)'}"))
    panel.mode.value = "grid"
    times = [_timed_set(panel.layer, layer) for layer in range(panel.layer.max + 1)]
    rows.append((f"{n} tokens, all-heads grid, per layer", *_stats(times), len(times)))
    if panel.error_message or panel.session.n_forward != 1:
        raise SystemExit(f"unexpected: error {panel.error_message!r}, {panel.session.n_forward} forward passes")
    return [(*r, ref) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default="a gripping, beautifully acted film that never lets go of you.")
    parser.add_argument("--rounds", type=int, default=2, help="passes over every (layer, head)")
    args = parser.parse_args()

    from analysis import load_model

    model = load_model(progress=False)
    rows = measure(model, args.text, args.rounds) + measure(model, LONG_TEXT, 1)
    print(f"model {model.name}: {model.n_layers} layers x {model.n_heads} heads; one forward pass per text")
    print("reference: the single-head view drawn from scratch by the figure function (median of 3)")
    print(f"{'steps':<44}{'median ms':>10}{'p90 ms':>9}{'n':>6}{'ref ms':>8}{'ref/median':>12}")
    for label, med, p90, n, ref in rows:
        print(f"{label:<44}{med:>10.1f}{p90:>9.1f}{n:>6}{ref:>8.0f}{ref / med:>12.1f}")
    first = rows[0][1]
    print(f"goal: median step < 150 ms -> {'met' if first < 150 else 'NOT met'} ({first:.0f} ms, first pass)")


if __name__ == "__main__":
    main()
