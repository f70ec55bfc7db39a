"""The shared test fixtures: one read-only tiny model per (arch, task, seed) for the session, a
fresh one from ``tiny_model`` for tests that change it, and the fingerprint that guards the
shared ones."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import torch

from tests.helpers import fingerprint, tiny_model


def test_shared_models_are_built_once_per_arguments(tiny_models, tiny_bert):
    assert tiny_models("bert") is tiny_bert and tiny_models("bert", seed=0) is tiny_bert
    other = tiny_models("bert", seed=1)
    assert other is not tiny_bert and fingerprint(other) != fingerprint(tiny_bert)


def test_a_fresh_model_has_the_shared_weights_but_is_its_own(tiny_bert):
    fresh = tiny_model("bert")
    assert fresh is not tiny_bert and fresh.module is not tiny_bert.module
    assert fingerprint(fresh) == fingerprint(tiny_bert)


def test_the_fingerprint_sees_a_changed_weight_and_training_mode():
    model = tiny_model("bert")
    before = fingerprint(model)
    with torch.no_grad():
        next(model.module.parameters())[0, 0] += 1.0
    changed = fingerprint(model)
    assert changed != before
    model.module.train()
    assert fingerprint(model) == (True, changed[1])


def test_the_agg_backend_is_set_once_for_every_test():
    assert matplotlib.get_backend().lower() == "agg"


def test_the_widgets_test_folder_does_not_shadow_the_widgets_package():
    import widgets
    import tests.widgets

    root = Path(__file__).resolve().parent.parent
    assert Path(widgets.__file__).resolve() == root / "widgets" / "__init__.py"
    assert Path(tests.widgets.__file__).resolve() == root / "tests" / "widgets" / "__init__.py"
