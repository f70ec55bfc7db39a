"""Remembered removal checks: one input's perturbed predictions, shared by every explainer.

The evaluation runs many explainers on the same input (CLEANN and random search for each of
13 heads, the baselines, ERASER's prefixes), and they propose many of the same removal sets
(every head's CLEANN checks the single tokens first; random search at small sizes draws sets
CLEANN already checked). :class:`RememberingModel` wraps a model so that ``predict`` runs the
forward pass only for (input, removal, positions) it has not seen, and answers the rest from
memory. Every method still counts each set it checks as a model call (its budget is unchanged);
only the machine's work shrinks.

The remembered probabilities are the ones a fresh ``predict`` returned for that set, computed in
batches of the sets not yet seen (same inputs, same padding rules), so results do not depend
on the order in which methods run, up to floating-point batch effects (checked in
tests/test_evaluation.py: the rows are equal with and without memory).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from analysis.models.base import removal_positions, removals_per_input

__all__ = ["RememberingModel"]


class RememberingModel:
    """``model`` with ``predict`` remembered per (input, removal, positions removed).

    Everything else (``trace``, ``encode``, the torch module, ...) is the wrapped model's.
    Calls with an ``attention_override`` are not remembered. ``hits``/``misses`` count sets
    answered from memory and sets run through the model.
    """

    def __init__(self, model: Any) -> None:
        self._model = model
        self._memory: dict[tuple, np.ndarray] = {}
        self.hits = 0
        self.misses = 0

    @property
    def wrapped(self) -> Any:
        """The model whose predictions are remembered."""
        return self._model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def predict(self, texts: Any, *, attention_override: Any = None, remove: Sequence[Any] | None = None,
                removal: str = "delete", batch_size: int = 32, truncate: bool = False) -> np.ndarray:
        """As the wrapped model's ``predict``; sets already seen are not run again."""
        if attention_override is not None:
            return self._model.predict(texts, attention_override=attention_override, remove=remove,
                                       removal=removal, batch_size=batch_size, truncate=truncate)
        inputs = getattr(self._model, "inputs", None)            # a recommender reads one history as one input
        texts = inputs(texts) if inputs is not None else [texts] if isinstance(texts, str) else list(texts)
        removes = removals_per_input(remove, len(texts))
        keys = [(repr(t), removal, bool(truncate), tuple(sorted(set(removal_positions(r)))))
                for t, r in zip(texts, removes)]
        todo: dict[tuple, int] = {}
        for i, key in enumerate(keys):
            if key not in self._memory and key not in todo:
                todo[key] = i
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        if todo:
            rows = list(todo.values())
            probs = self._model.predict([texts[i] for i in rows], remove=[list(removes[i] or []) for i in rows],
                                        removal=removal, batch_size=batch_size, truncate=truncate)
            for key, p in zip(todo, probs):
                self._memory[key] = p
        return np.stack([self._memory[key] for key in keys])

    def __repr__(self) -> str:
        return f"RememberingModel({self._model!r}, {len(self._memory)} sets remembered)"
