"""Regenerate data/causallearn_fci_deviations.json: the random oracle cases where
causal-learn 0.1.4.8's FCI output differs from ours, each with the brute-force true PAG.

    python tests/causal/make_causallearn_fixture.py      # a few minutes

The learner tests accept a difference from causal-learn only for the cases listed here,
and only if our output equals the recorded ground truth.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from causal_cases import (N_CASES, PDS_SEEDS, brute_force_pag, case,  # noqa: E402
                          causallearn_fci, confounded_case, true_mag)

from analysis.causal import DSeparationOracle, learn_graph  # noqa: E402


def _cases():
    for hide in (False, True):
        for seed in range(N_CASES):
            yield f"{'latent' if hide else 'dag'}-{seed}", case(seed, hide)
    for seed in PDS_SEEDS:
        yield f"pds-{seed}", confounded_case(seed)


def main() -> None:
    out = {}
    for key, (dag, observed) in _cases():
        ref = causallearn_fci(dag, observed)
        ours = learn_graph(None, ci_test=DSeparationOracle(dag), nodes=observed,
                           algorithm="fci").to_matrix()
        if np.array_equal(ref, ours):
            continue
        truth = brute_force_pag(true_mag(dag, observed))
        out[key] = {"causallearn": ref.tolist(), "truth": truth.tolist(),
                    "ours_equals_truth": bool(np.array_equal(ours, truth))}
        print(key, "ours == truth:", out[key]["ours_equals_truth"], flush=True)
    path = os.path.join(HERE, "data", "causallearn_fci_deviations.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {len(out)} cases to {path}")


if __name__ == "__main__":
    main()
