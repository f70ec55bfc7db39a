"""Shared fixtures and hooks. Plain helpers (tiny models, tokenizer, item sequences) are in
``tests/helpers.py``; import them from there, never from this file.

Matplotlib's non-interactive Agg backend is selected here, once, before any test module imports
``matplotlib.pyplot``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from analysis.models import Model  # noqa: E402
from tests.helpers import ARCHS, fingerprint, shared_tiny_model  # noqa: E402


@pytest.fixture(params=ARCHS)
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def tiny_models() -> Iterator[Callable[..., Model]]:
    """``tiny_models(arch="bert", task="sequence-classification", seed=0)``: one shared, read-only
    tiny model per argument triple for the whole session. On teardown, fails if a test changed
    the weights or the eval mode of any shared model (such a test must use ``tiny_model``)."""
    before: dict[tuple, tuple[bool, float]] = {}

    def get(arch: str = "bert", task: str = "sequence-classification", seed: int = 0) -> Model:
        model = shared_tiny_model(arch, task, seed)
        before.setdefault((arch, task, seed), fingerprint(model))
        return model

    yield get
    changed = [key for key, fp in before.items() if fingerprint(shared_tiny_model(*key)) != fp]
    assert not changed, (f"a test changed the shared tiny model(s) {changed}; "
                         "tests that mutate a model must build a fresh one with tests.helpers.tiny_model")


@pytest.fixture(scope="session")
def tiny_bert(tiny_models: Callable[..., Model]) -> Model:
    """The shared, read-only tiny BERT sequence classifier (seed 0)."""
    return tiny_models("bert")

