"""A panel's background job and the notebook share one model: nothing one thread does to the model
(attention hooks, the adversary's replayed prefix) may reach another thread's forward pass."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from analysis.adversarial import _Prefix, search
from tests.helpers import tiny_model

SHORT, LONG = "a b c", "a b c d e f g h"


def _in_thread(fn):
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller
            out["error"] = exc
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_replayed_prefix_reaches_only_the_searching_thread():
    """While one thread replays the adversary's cached prefix (its own 3 x 10-token batch), another
    thread's forward on a different input runs the real blocks (the old replay patched the blocks for
    every thread: the other thread got the cached activations, or a shape error)."""
    m = tiny_model("bert")
    reference = m.predict([SHORT])
    prefix = _Prefix.capture(m, 1, m.batch([m.encode(LONG)] * 3))
    assert prefix.blocks and prefix.output is not None
    with prefix.replay():
        other = _in_thread(lambda: m.predict([SHORT]))
        with prefix.replay():                      # nested and concurrent replays of one model
            pass
    np.testing.assert_allclose(other, reference, atol=1e-6)
    assert not any("forward" in b.__dict__ or "_attnlab_replay" in b.__dict__ for b in prefix.blocks)
    np.testing.assert_allclose(m.predict([SHORT]), reference, atol=1e-6)


def test_a_search_and_another_threads_predictions_run_side_by_side():
    """An adversarial search in one thread while another thread predicts on a shorter text: both
    finish, and the predictions equal the ones made alone."""
    m = tiny_model("bert")
    reference = m.predict([SHORT] * 4)
    stop = threading.Event()
    seen: list[np.ndarray] = []

    def predict_loop() -> None:
        while not stop.is_set():
            seen.append(m.predict([SHORT] * 4))
    t = threading.Thread(target=predict_loop)
    t.start()
    try:
        result = search(m, LONG, layer=1, head=0, k=3, steps=30, seed=0, progress=False)
    finally:
        stop.set()
        t.join()
    assert result.attentions.shape[0] == 3 and seen
    for probs in seen:
        np.testing.assert_allclose(probs, reference, atol=1e-6)


@pytest.mark.parametrize("build", ["tiny_classifier", "bert4rec_module"])
def test_zoo_builders_refuse_an_out_of_range_seed(build):
    from analysis.zoo import attention_classifier, bert4rec

    with pytest.raises(ValueError, match="0..2\\*\\*32-1"):
        if build == "tiny_classifier":
            attention_classifier.tiny(seed=2**70)
        else:
            bert4rec.build_module(n_items=10, seed=2**70)
