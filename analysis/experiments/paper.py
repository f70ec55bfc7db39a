"""The paper-figure registry: name -> (what it shows, draw(run) -> Figure), shared by
``python -m analysis.figures`` and ``notebooks/05_paper_figures.ipynb``.

A :class:`PaperRun` computes each result once, on first use, and caches it (so figures that
share a table share its computation): the default model and Rotten Tomatoes / IMDB for ABCD,
and also the single-attention classifier for efficient and adversarial attention. ``Sizes``
fixes the sample sizes: :data:`FULL` (the paper-scale defaults) or :data:`FAST` (tiny, for CI,
``ATTNLAB_FAST=1``). Every table a figure used is available as ``run.tables()``.

Dataset-scale tables go through the runner (:func:`analysis.experiments.run`): ``workers``
(joblib processes; 1 = in-process), ``scheduler`` (Dask) and ``results`` (a folder: each table
streams to ``results/<table>/`` and an interrupted run resumes there).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure

from analysis.evaluation import summarize_results
from analysis.experiments import abcd_sentiment as ab
from analysis.figures import evaluation as fe
from analysis.figures import paper as pf
from analysis.figures import stability as fs
from analysis.experiments import efficient_claims as ec
from analysis.experiments.common import fast_mode, sample_texts, save_table

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["Sizes", "FULL", "FAST", "PaperRun", "FigureSpec", "FIGURES", "figure_names", "make_figure",
           "make_figures", "EXAMPLES"]

#: the example sentences of the graph figure (the tour's sentence and two test-like ones)
EXAMPLES = ("a gorgeous, witty, seductive movie.",
            "the plot is paper-thin and the characters are not interesting.",
            "an admirable but ultimately dull and plodding film.")


@dataclass(frozen=True)
class Sizes:
    """Sample sizes and settings of every paper experiment (seeded samples of the test splits)."""

    explain_n: int = 100                          # RT test sentences, CLEANN vs baseline
    explain_heads: tuple = (0, "all")             # deepest layer
    imdb_n: int = 20                              # IMDB excerpts for the same comparison
    imdb_max_tokens: int = 48                     # (64 tokens: ~27 s per explanation at max_set_size 3)
    max_set_size: int = 3
    grid_n: int = 10                              # sentences of the layer x head flip-rate grid
    grid_layers: tuple = (0, 1, 2, 3, 4, 5)
    grid_heads: tuple = tuple(range(12)) + ("all",)
    grid_max_set_size: int = 2
    sweep_n: int = 50                             # graph density over alpha x n_samples
    sweep_explain_n: int = 10                     # ... and CLEANN sets (one explain per setting)
    alphas: tuple = ab.DEFAULT_ALPHAS
    n_samples: tuple = ab.DEFAULT_N_SAMPLES
    efficient_n: int = 200                        # test examples per dataset
    max_tokens: int = 256                         # IMDB cut
    adv_n: int = 5                                # examples per model for adversaries
    adv_steps: int = 500
    adv_max_tokens: int = 64
    adv_layer: int | None = None                  # None: the middle layer of the transformer
    heads_max_tokens: int = 40                    # the IMDB excerpt of the raw vs efficient heatmaps
    k: int = 5
    eps: float = 0.01
    faith_n: int = 30                             # RT test sentences judged by every explainer
    faith_max_calls: int = 1000                   # model calls per explainer and sentence (no size cap)
    faith_methods: tuple = ()                     # () = every method of analysis.evaluation
    stability_n: int = 20                         # RT test sentences with a null space in every head
    stability_pool: int = 1066                    # ... searched for among this many (the whole RT test split)
    stability_heads: tuple = tuple(range(12))     # deepest layer
    stability_extremes: int = 1                   # LP extreme points per sentence and head
    stability_mixtures: int = 1                   # ... and mixtures


FULL = Sizes()
FAST = Sizes(explain_n=6, imdb_n=2, imdb_max_tokens=40, max_set_size=2, grid_n=2, grid_layers=(3, 5),
             grid_heads=(0, 1, "all"), sweep_n=4, sweep_explain_n=1, alphas=(1e-3, 1e-2, 1e-1),
             n_samples=("head", "hidden", 768), efficient_n=8, max_tokens=96, adv_n=1, adv_steps=80,
             adv_max_tokens=48, k=3, faith_n=2, faith_max_calls=40,
             faith_methods=("cleann", "attention", "leave_one_out", "random", "exhaustive"), stability_n=1,
             stability_pool=200, stability_heads=(0,))


class PaperRun:
    """Computes (once, on first use) every result the paper figures need.

    ``model``/``classifier``: models to use instead of the zoo's default sentiment model and
    ``attention-classifier-rt`` (tests pass tiny ones). ``fast=None`` reads ``ATTNLAB_FAST``.
    """

    def __init__(self, *, fast: bool | None = None, sizes: Sizes | None = None, model: TracedModel | None = None,
                 classifier: Any = None, seed: int = 0, progress: bool = False, log: Callable[[str], Any] | None = None,
                 workers: int = 1, scheduler: Any = None, results: str | Path | None = None) -> None:
        self.fast = fast_mode() if fast is None else bool(fast)
        self.sizes = sizes or (FAST if self.fast else FULL)
        self.seed = seed
        self.progress = progress
        self._models = {"transformer": model, "classifier": classifier}
        self._cache: dict[str, Any] = {}
        self._log = log or (lambda message: None)
        self.workers = workers
        self.scheduler = scheduler
        self.results = Path(results) if results is not None else None

    def __repr__(self) -> str:
        return f"PaperRun(fast={self.fast}, seed={self.seed}, computed={sorted(self._cache)})"

    def _runner(self, table: str) -> dict[str, Any]:
        """Runner keywords of one dataset-scale table (its own results subfolder)."""
        out = self.results / table if self.results is not None else None
        return {"workers": self.workers, "scheduler": self.scheduler, "out": out}

    def _cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            start = time.perf_counter()
            self._cache[key] = compute()
            self._log(f"computed {key} in {time.perf_counter() - start:.1f} s")
        return self._cache[key]

    # ----------------------------------------------------------------- models and data
    @property
    def model(self) -> Any:
        """The transformer (default: the embedded MiniLM sentiment model)."""
        if self._models["transformer"] is None:
            from analysis import load_model
            self._models["transformer"] = load_model()
        return self._models["transformer"]

    @property
    def classifier(self) -> Any:
        """The single-attention classifier (default: ``attention-classifier-rt``)."""
        if self._models["classifier"] is None:
            from analysis import load_model
            self._models["classifier"] = load_model("attention-classifier-rt")
        return self._models["classifier"]

    def texts(self, dataset: str, n: int, max_tokens: int | None = None, model: TracedModel | None = None) -> list[str]:
        """Seeded test texts of ``dataset``, cut to ``max_tokens`` for ``model``."""
        m = model or self.model
        return self._cached(f"texts:{getattr(m, 'name', '')}:{dataset}:{n}:{max_tokens}",
                            lambda: sample_texts(m, dataset, n, max_tokens=max_tokens, seed=self.seed))

    @property
    def adv_layer(self) -> int:
        lay = self.sizes.adv_layer
        return self.model.n_layers // 2 if lay is None else lay % self.model.n_layers

    # ----------------------------------------------------------------- ABCD
    def examples(self) -> list[Any]:
        """CLEANN explanations of :data:`EXAMPLES` (deepest layer, head 0)."""
        from analysis import abcd

        return self._cached("examples", lambda: [
            abcd.explain(self.model, t, head=0, max_set_size=self.sizes.max_set_size) for t in EXAMPLES])

    def explanations(self) -> pd.DataFrame:
        """``explanation_table`` on Rotten Tomatoes and IMDB excerpts (deepest layer)."""
        s = self.sizes

        def compute() -> pd.DataFrame:
            rt = ab.explanation_table(self.model, self.texts("rotten_tomatoes", s.explain_n), heads=s.explain_heads,
                                      max_set_size=s.max_set_size, dataset="rotten_tomatoes", progress=self.progress,
                                      **self._runner("explanations-rotten_tomatoes"))
            imdb = ab.explanation_table(self.model, self.texts("imdb", s.imdb_n, s.imdb_max_tokens),
                                        heads=s.explain_heads, max_set_size=s.max_set_size, dataset="imdb",
                                        progress=self.progress, **self._runner("explanations-imdb"))
            return pd.concat([rt, imdb], ignore_index=True)
        return self._cached("explanations", compute)

    def faithfulness(self) -> pd.DataFrame:
        """Every explainer of :mod:`analysis.evaluation` on the same Rotten Tomatoes test sentences
        under one budget of model calls (deepest layer, ``explain_heads``): one row per sentence,
        method and head, censored sizes kept (the ``faithfulness`` runner task)."""
        s = self.sizes

        def compute() -> pd.DataFrame:
            from analysis.experiments import faithfulness as fa
            from analysis.experiments.runner import run
            from analysis.experiments.tasks import get_task

            settings: dict[str, Any] = {"heads": _clip_heads(s.explain_heads, self.model.n_heads),
                                        "max_calls": s.faith_max_calls}
            if s.faith_methods:
                settings["methods"] = list(s.faith_methods)
            units = fa.make_units(dataset="rotten_tomatoes", n=s.faith_n, seed=self.seed, **settings)
            return run(get_task("faithfulness"), units, model=self.model, progress=self.progress,
                       **self._runner("faithfulness"))
        return self._cached("faithfulness", compute)

    def flip_grid(self) -> pd.DataFrame:
        """``explanation_table`` over layers x heads on a few Rotten Tomatoes sentences."""
        s = self.sizes
        return self._cached("flip_grid", lambda: ab.explanation_table(
            self.model, self.texts("rotten_tomatoes", s.grid_n), layers=_clip(s.grid_layers, self.model.n_layers),
            heads=_clip_heads(s.grid_heads, self.model.n_heads), max_set_size=s.grid_max_set_size,
            dataset="rotten_tomatoes", progress=self.progress, **self._runner("flip_grid")))

    def sweep(self) -> pd.DataFrame:
        """Graph density over alpha x n_samples (``sweep_n`` sentences) and CLEANN sets on the
        first ``sweep_explain_n`` of them (deepest layer, head 0)."""
        s = self.sizes

        def compute() -> pd.DataFrame:
            texts = self.texts("rotten_tomatoes", s.sweep_n)
            dense = ab.graph_sweep(self.model, texts, alphas=s.alphas, n_samples=s.n_samples,
                                   dataset="rotten_tomatoes", progress=self.progress, **self._runner("sweep"))
            sets = ab.graph_sweep(self.model, texts[:s.sweep_explain_n], alphas=s.alphas, n_samples=s.n_samples,
                                  explain=True, max_set_size=s.grid_max_set_size, dataset="rotten_tomatoes",
                                  progress=self.progress, **self._runner("sweep-explain"))
            cols = ["text_id", "alpha", "n_samples", "cleann_found", "cleann_size", "cleann_calls"]
            return dense.merge(sets[cols], on=["text_id", "alpha", "n_samples"], how="left")
        return self._cached("sweep", compute)

    # ----------------------------------------------------------------- efficient attention
    def _efficient_sets(self) -> list[tuple[str, Any, str, str, int | None]]:
        """(label, model, dataset, basis, max_tokens) of every efficient-attention run."""
        s = self.sizes
        return [("transformer", self.model, "rotten_tomatoes", "value", None),
                ("transformer", self.model, "imdb", "value", s.max_tokens),
                ("classifier", self.classifier, "rotten_tomatoes", "value_output", None)]

    def efficient_runs(self) -> dict[tuple[str, str, str], list[dict]]:
        """``measure`` runs per (model label, dataset, basis), last layer edited."""
        def compute() -> dict:
            out = {}
            for label, m, dataset, basis, cut in self._efficient_sets():
                texts = self.texts(dataset, self.sizes.efficient_n, cut, model=m)
                out[(label, dataset, basis)] = ec.measure_texts(m, texts, layer=-1, seed=self.seed, basis=basis,
                                                                progress=self.progress, dataset=dataset,
                                                                **self._runner(f"efficient-{label}-{dataset}"))
            return out
        return self._cached("efficient_runs", compute)

    def nullity(self) -> pd.DataFrame:
        """``nullity_table`` of every efficient-attention run."""
        return self._cached("nullity", lambda: pd.concat(
            [ec.nullity_table(runs, model=label, dataset=dataset, basis=basis)
             for (label, dataset, basis), runs in self.efficient_runs().items()], ignore_index=True))

    def outputs(self) -> pd.DataFrame:
        """``output_table`` of every efficient-attention run."""
        return self._cached("outputs", lambda: pd.concat(
            [ec.output_table(runs, model=label, dataset=dataset, basis=basis)
             for (label, dataset, basis), runs in self.efficient_runs().items()], ignore_index=True))

    def wasserstein(self) -> pd.DataFrame:
        """The Wasserstein table (per model, dataset, edit)."""
        return self._cached("wasserstein", lambda: ec.wasserstein_table(self.outputs()))

    def heads_example(self) -> tuple[list[Any], list[str]]:
        """Efficient decompositions (value basis) of heads 0-2 of the transformer's last layer on
        an IMDB excerpt of ``heads_max_tokens`` tokens (longer than d_head: nullity > 0), and its tokens."""
        from analysis.efficient import decompose_layer

        def compute() -> tuple[list[Any], list[str]]:
            text = self.texts("imdb", 1, self.sizes.heads_max_tokens)[0]
            trace = self.model.trace(text)
            parts = decompose_layer(trace, -1)
            return list(parts[:min(3, len(parts))]), list(trace.tokens)
        return self._cached("heads_example", compute)

    def adversarial(self) -> pd.DataFrame:
        """``adversarial_table`` for the transformer (middle layer, head 0, value basis) on RT and
        IMDB, and for the classifier (decoder in T: ``value_output``) on RT."""
        s = self.sizes

        def one(label: str, m: Any, dataset: str, layer: int, basis: str) -> pd.DataFrame:
            pool = self.texts(dataset, max(20, 4 * s.adv_n), None, model=m)
            texts = ec.with_null_space(m, pool, layer=layer, head=0, n=s.adv_n,
                                       max_tokens=min(s.adv_max_tokens, m.max_length), basis=basis)
            return ec.adversarial_table(m, texts, layer=layer, head=0, k=s.k, eps=s.eps, steps=s.adv_steps,
                                        seed=self.seed, basis=basis, dataset=dataset, model_name=label,
                                        progress=self.progress, **self._runner(f"adversarial-{label}-{dataset}"))

        return self._cached("adversarial", lambda: pd.concat([
            one("transformer", self.model, "rotten_tomatoes", self.adv_layer, "value"),
            one("transformer", self.model, "imdb", self.adv_layer, "value"),
            one("classifier", self.classifier, "rotten_tomatoes", 0, "value_output")], ignore_index=True))

    def stability(self) -> pd.DataFrame:
        """``graph_stability`` rows (one per output-preserving ``A'``, value basis, ICD, content
        nodes) for ``stability_heads`` of the transformer's deepest layer, on the first
        ``stability_n`` of ``stability_pool`` seeded Rotten Tomatoes test sentences whose heads have
        a null space (``n > d_head + 1``: below that ``[V, 1]`` has full rank and every ``A'`` is ``A``)."""
        s = self.sizes

        def compute() -> pd.DataFrame:
            from analysis.experiments import stability as st
            from analysis.experiments.runner import completed_rows, run
            from analysis.experiments.tasks import get_task

            m = self.model
            heads = [h for h in _clip_heads(s.stability_heads, m.n_heads) if not isinstance(h, str)]
            pool = self.texts("rotten_tomatoes", s.stability_pool)
            d_head = m.trace(pool[0]).values.shape[-1]
            chosen = [t for t in pool if st.has_null_space(m, t, d_head)][:s.stability_n]
            if not chosen:
                raise ValueError(f"none of {s.stability_pool} Rotten Tomatoes test sentences is longer than the "
                                 f"head dimension + 1 of {getattr(m, 'name', 'the model')}: no null space to move in")
            units = st.units_for_texts(chosen, dataset="rotten_tomatoes", prefix=f"rotten_tomatoes-s{self.seed}",
                                       heads=heads, n_extreme=s.stability_extremes, n_mix=s.stability_mixtures,
                                       seed=self.seed)
            df = run(get_task("stability"), units, model=m, progress=self.progress, **self._runner("stability"))
            return completed_rows(df)
        return self._cached("stability", compute)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table computed so far, by name (``efficient_runs`` and examples excluded)."""
        return {k: v for k, v in self._cache.items() if isinstance(v, pd.DataFrame)}

    def save_tables(self, out: str | Path) -> list[Path]:
        """Write every computed table as ``out/<name>.csv`` (atomically)."""
        return [save_table(df, Path(out) / f"{name}.csv") for name, df in self.tables().items()]


def _clip(layers: Sequence[int], n_layers: int) -> list[int]:
    """Layers that exist in the model (the tiny test models have fewer)."""
    return sorted({lay % n_layers for lay in layers if -n_layers <= lay < n_layers} or {n_layers - 1})


def _clip_heads(heads: Sequence[int | str], n_heads: int) -> list[int | str]:
    return [h for h in heads if isinstance(h, str) or h < n_heads] or [0]


# --------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class FigureSpec:
    """One paper figure: what it shows and how to compute and draw it from a :class:`PaperRun`."""

    name: str
    paper: str           # "ABCD" or "efficient"
    description: str
    draw: Callable[[PaperRun], Figure] = field(repr=False)


def _figures() -> dict[str, FigureSpec]:
    specs = [
        FigureSpec("abcd_example_graphs", "ABCD", "learned PAGs of example sentences, CLEANN and attention sets",
                   lambda run: pf.example_graphs(run.examples(), labels=run.model.labels)),
        FigureSpec("abcd_explanation_sizes", "ABCD", "explanation-set size, CLEANN vs attention baseline (RT)",
                   lambda run: pf.explanation_size_hist(
                       run.explanations().query("dataset == 'rotten_tomatoes'"), head=str(run.sizes.explain_heads[0]))),
        FigureSpec("abcd_faithfulness", "ABCD", "every explainer under one call budget: flipped within k tokens, "
                   "censored sentences kept", lambda run: fe.censored_size_curves(run.faithfulness())),
        FigureSpec("abcd_cleann_vs_exhaustive", "ABCD", "CLEANN's smallest flipping set vs the exhaustive minimum "
                   "(short sentences)", lambda run: fe.cleann_vs_exhaustive(
                       run.faithfulness(), head=str(_clip_heads(run.sizes.explain_heads, run.model.n_heads)[0]),
                       allow_empty=True)),
        FigureSpec("abcd_faithfulness_bars", "ABCD", "ERASER AOPC comprehensiveness per explainer, 95% intervals",
                   lambda run: fe.faithfulness_bars(summarize_results(run.faithfulness())["faithfulness"])),
        FigureSpec("abcd_flip_rate", "ABCD", "flip rate by layer and head, CLEANN vs attention baseline",
                   lambda run: pf.flip_rate_grid(run.flip_grid())),
        FigureSpec("abcd_alpha_n_samples", "ABCD", "graph density and CLEANN sets vs alpha and n_samples",
                   lambda run: pf.sweep_figure(run.sweep())),
        FigureSpec("abcd_stability", "ABCD", "raw vs efficient ABCD graphs over attentions with the same output "
                   "(skeleton SHD, [CLS] neighbours)", lambda run: fs.stability_figure(run.stability())),
        FigureSpec("efficient_nullity_length", "efficient", "nullity of every head vs sequence length",
                   lambda run: pf.nullity_length(run.nullity())),
        FigureSpec("efficient_heatmaps", "efficient", "raw vs efficient vs null attention for the same heads",
                   lambda run: pf.raw_vs_efficient(*run.heads_example())),
        FigureSpec("efficient_adversarial", "efficient", "adversaries' JSD vs efficient distance, efficient share",
                   lambda run: pf.adversarial_scatter(run.adversarial())),
        FigureSpec("efficient_wasserstein", "efficient", "W1 between prediction distributions per edit",
                   lambda run: pf.wasserstein_bars(run.wasserstein())),
    ]
    return {s.name: s for s in specs}


#: every paper figure, by name (read it, do not mutate it)
FIGURES: Mapping[str, FigureSpec] = MappingProxyType(_figures())


def figure_names() -> list[str]:
    """The registry's figure names, in paper order."""
    return list(FIGURES)


def make_figure(name: str, run: PaperRun) -> Figure:
    """Compute what figure ``name`` needs (cached in ``run``) and draw it."""
    from analysis.figures.style import paper_style

    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; available: {', '.join(FIGURES)}")
    spec = FIGURES[name]
    with paper_style():
        return spec.draw(run)


def make_figures(out: str | Path, *, names: Sequence[str] | None = None, run: PaperRun | None = None,
                 formats: Sequence[str] = ("pdf", "png"), close: bool = True,
                 tables: bool = True) -> Iterator[tuple[str, Figure, list[Path]]]:
    """Draw each figure (default: all) and save it as ``out/<name>.<fmt>`` atomically; yields
    ``(name, figure, paths)`` as each is written. ``tables`` also writes the tables as CSV."""
    import matplotlib.pyplot as plt

    from analysis.figures.style import save_figure

    names = list(names) if names else figure_names()
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise KeyError(f"unknown figure(s) {unknown}; available: {', '.join(figure_names())}")
    run = run or PaperRun()
    for name in names:
        fig = make_figure(name, run)
        paths = save_figure(fig, Path(out) / name, formats=formats)
        yield name, fig, paths
        if close:
            plt.close(fig)
    if tables:
        run.save_tables(Path(out) / "tables")
