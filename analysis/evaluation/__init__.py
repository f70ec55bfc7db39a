"""Judging explanations: every explainer behind one interface, censored-size and ERASER metrics,
bootstrap intervals and paired comparisons (SCIENCE.md section 6).

- :func:`run_method`: one explainer (CLEANN, raw / efficient attention top-k, rollout, gradient x
  input, integrated gradients, leave-one-out, random search, exhaustive search) on one input
  within a :class:`Budget` of model calls and set size; a :class:`MethodResult`. Inputs are
  texts, or item histories of a recommender (the abductive trace; :func:`methods_for`).
- :func:`cause_scores`: a flipping set against known true causes (precision / recall).
- :func:`evaluate_input`: all of them on one input, as tidy rows with metrics; the methods share
  one memory of removal checks (:class:`RememberingModel`), so a set is run through the model once.
- :func:`summarize_results`: found shares, Kaplan-Meier medians, flipped-within-k curves,
  CLEANN vs each method (sign test), agreement with the exhaustive minimum, AOPCs; all with
  bootstrap 95% intervals, censored rows kept.
"""
from __future__ import annotations

from analysis.abcd import Budget
from analysis.evaluation.evaluate import check_methods, evaluate_input
from analysis.evaluation.explainers import (
                                            GRADIENT_METHODS,
                                            MAX_EXHAUSTIVE,
                                            METHODS,
                                            RANKING_METHODS,
                                            MethodResult,
                                            candidates_of,
                                            cleann_ranking,
                                            input_trace,
                                            methods_for,
                                            run_method,
                                            seed_of,
)
from analysis.evaluation.memo import RememberingModel
from analysis.evaluation.metrics import (
                                            FRACTIONS,
                                            cause_scores,
                                            eraser,
                                            exhaustive_agreement,
                                            new_top1_ranks,
                                            result_row,
)
from analysis.evaluation.summary import (
                                            bootstrap_ci,
                                            compare_censored,
                                            explainer_label,
                                            flipped_within,
                                            km_at_risk,
                                            km_median,
                                            paired_comparison,
                                            holm,
                                            per_head_table,
                                            summarize_results,
)

__all__ = ["Budget", "METHODS", "RANKING_METHODS", "GRADIENT_METHODS", "MAX_EXHAUSTIVE", "FRACTIONS", "MethodResult",
           "run_method", "evaluate_input", "check_methods", "methods_for", "input_trace", "candidates_of",
           "cleann_ranking", "seed_of", "eraser", "exhaustive_agreement", "result_row", "cause_scores",
           "new_top1_ranks", "bootstrap_ci", "km_median", "km_at_risk", "compare_censored",
           "flipped_within", "paired_comparison", "per_head_table", "holm", "summarize_results", "explainer_label",
           "RememberingModel"]
