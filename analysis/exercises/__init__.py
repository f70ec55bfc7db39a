"""Checkers for the classroom exercises in ``notebooks/exercises/``.

Each ``check_*`` function takes a student's answer plus the context it needs (arrays, a DAG,
a learned graph) and returns a :class:`Feedback`: ``.ok`` and a message that says *what* is
wrong (a path left open, a mark read at the wrong end, a sum over the wrong axis), not just
the right answer. Checkers never raise on an answer: a placeholder (``None`` or ``...``) gives
"not answered yet", an answer of the wrong shape or type gives "could not read".

Expected answers are computed here from independent closed forms (regression residuals for
partial correlations, ``networkx`` d-separation, ``numpy`` ranks and projections) or from the
learned graph passed in; nothing is hard-coded. Pure python + numpy (+ networkx); no torch.

One module per exercise: ``heads`` (1), ``dseparation`` (2), ``pag_marks`` (3), ``null_space`` (4);
``_common`` holds :class:`Feedback`, the checker wrapper and the answer readers.

    >>> fb = check_partial_correlation(-0.31, cov, 0, 1, [2])
    >>> fb.ok, str(fb)
"""
from __future__ import annotations

from ._common import Feedback
from .dseparation import (check_covariance, check_d_separation, check_mixing_matrix, check_partial_correlation,
                          check_zero_partial_correlations, d_separated, explain_paths)
from .heads import (check_attention_sum, check_mean_attention, check_previous_token_head, check_sharper,
                    check_top_key)
from .null_space import (check_efficient_attention, check_feasible, check_moves_output, check_null_fraction,
                         check_nullity, check_output_moves)
from .pag_marks import check_colliders, check_edge, check_mark, check_mark_matrix, check_sepset, check_skeleton

__all__ = [
    "Feedback",
    # exercise 1: attention heads
    "check_top_key", "check_previous_token_head", "check_attention_sum", "check_mean_attention",
    "check_sharper",
    # exercise 2: partial correlation and d-separation
    "check_mixing_matrix", "check_covariance", "check_partial_correlation", "check_d_separation",
    "check_zero_partial_correlations",
    # exercise 3: PC / FCI and PAG marks
    "check_skeleton", "check_sepset", "check_colliders", "check_mark", "check_edge",
    "check_mark_matrix",
    # exercise 4: efficient attention, null space, adversaries
    "check_nullity", "check_efficient_attention", "check_moves_output", "check_feasible",
    "check_null_fraction", "check_output_moves",
    # helpers used by the notebooks
    "d_separated", "explain_paths",
]
