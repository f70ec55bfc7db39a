"""The equality and override checks on a CUDA GPU (issue 14, item 2): tiny BERT, GPT-2 and Llama
on the GPU in float32 trace exactly transformers' eager attention, the hook leaves the logits
alone, overrides and removal change the output as on the CPU; bfloat16 on the GPU traces to
float32 arrays; the analyses (abcd.explain, efficient attention, interventions, the adversarial
search, head sensitivity, gradient explainers, the attention classifier) run on a GPU model.

Skipped, with the reason shown by ``pytest -rs``, where torch sees no CUDA GPU. To dry-run the
same code on the CPU (every comparison is then CPU against CPU): ``ATTNLAB_TEST_DEVICE=cpu``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from analysis import abcd, adversarial, efficient, interventions, load_model, sensitivity
from analysis.models import Model
from analysis.models.devices import resolve_device
from tests.helpers import tiny_hf_model, tokenizer

DEVICE = os.environ.get("ATTNLAB_TEST_DEVICE", "cuda")
_WHY = ("torch was built without CUDA" if torch.version.cuda is None
        else f"torch is built for CUDA {torch.version.cuda} but torch.cuda.is_available() is False")
pytestmark = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                reason=f"no CUDA GPU visible: {_WHY} (torch {torch.__version__}); "
                                       "these checks need one (ATTNLAB_TEST_DEVICE=cpu dry-runs them on the CPU)")

TEXT = "the movie was good , and the actors were great ."
ARCHS = ("bert", "gpt2", "llama")


def _pair(arch: str, dtype: torch.dtype | None = None) -> tuple[Model, torch.nn.Module]:
    """The attnlab model on DEVICE and a separate eager HF module with the same weights there."""
    model = Model(tiny_hf_model(arch), tokenizer(), task="sequence-classification", device=DEVICE,
                  dtype=dtype)
    hf = tiny_hf_model(arch).to(device=model.device, dtype=dtype or torch.float32)
    return model, hf


def _cpu(arch: str) -> Model:
    return Model(tiny_hf_model(arch), tokenizer(), task="sequence-classification")


def test_device_resolution() -> None:
    want = resolve_device(DEVICE)
    model = _cpu("bert") if want.type == "cpu" else Model(tiny_hf_model("bert"), tokenizer(),
                                                          task="sequence-classification", device="auto")
    assert model.device == want and next(model.module.parameters()).device == want
    if want.type == "cuda":
        assert want.index is not None and "cuda" in repr(model)


@pytest.mark.parametrize("arch", ARCHS)
def test_float32_on_device_equals_eager_and_cpu(arch: str) -> None:
    model, hf = _pair(arch)
    cpu = _cpu(arch)
    assert model.device.type == resolve_device(DEVICE).type
    trace = model.trace(TEXT)
    assert all(isinstance(getattr(trace, f), np.ndarray) and getattr(trace, f).dtype == np.float32
               for f in ("attentions", "values", "hidden_states", "logits", "probs"))
    batch = model.batch([model.encode(TEXT)])
    with torch.no_grad():
        ref = hf(**batch, output_attentions=True)
        hooked, _ = model.forward(batch, capture=True)
    eager = torch.stack([a[0] for a in ref.attentions]).cpu().numpy()
    np.testing.assert_allclose(trace.attentions, eager, atol=1e-5, rtol=0)
    np.testing.assert_allclose(hooked.logits.cpu().numpy(), ref.logits.cpu().numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(trace.logits, ref.logits[0].cpu().numpy(), atol=1e-5, rtol=0)
    # the same numbers as the CPU model
    on_cpu = cpu.trace(TEXT)
    np.testing.assert_allclose(trace.attentions, on_cpu.attentions, atol=1e-4, rtol=0)
    np.testing.assert_allclose(trace.values, on_cpu.values, atol=1e-4, rtol=1e-4)
    # an override (float64 numpy, built on the CPU) changes the output as on the CPU
    n = trace.n_tokens
    a = (np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]) if model.is_causal else np.full((n, n), 1.0 / n)
    over = {(0, 1): a}
    d_dev = model.predict(TEXT, attention_override=over) - model.predict(TEXT)
    d_cpu = cpu.predict(TEXT, attention_override=over) - cpu.predict(TEXT)
    assert np.abs(d_cpu).max() > 1e-3
    np.testing.assert_allclose(d_dev, d_cpu, atol=1e-4, rtol=0)
    traced = model.trace(TEXT, attention_override=over)
    np.testing.assert_allclose(traced.attentions[0, 1], a, atol=1e-7)
    # a differentiable torch override on the CPU reaches the GPU model and gets gradients back
    t = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    out, _ = model.forward(batch, overrides={(0, 1): t})
    out.logits[0, 0].backward()
    assert t.grad is not None and t.grad.device.type == "cpu" and float(t.grad.abs().sum()) > 0
    # removal, batched prediction with padding
    np.testing.assert_allclose(model.predict(TEXT, remove=[2, 3]), cpu.predict(TEXT, remove=[2, 3]), atol=1e-4)
    texts = [TEXT, "a dull film .", "bad"]
    np.testing.assert_allclose(model.predict(texts), cpu.predict(texts), atol=1e-4)
    assert model.predict(texts).dtype == np.float32


@pytest.mark.parametrize("arch", ARCHS)
def test_bfloat16_on_device_traces_float32(arch: str) -> None:
    model, hf = _pair(arch, torch.bfloat16)
    assert model.dtype == torch.bfloat16
    trace = model.trace(TEXT)
    assert all(getattr(trace, f).dtype == np.float32 for f in ("attentions", "values", "hidden_states", "logits",
                                                               "probs"))
    assert trace.precision == "bfloat16"
    batch = model.batch([model.encode(TEXT)])
    with torch.no_grad():
        ref = hf(**batch, output_attentions=True)
    np.testing.assert_allclose(trace.attentions, torch.stack([a[0] for a in ref.attentions]).float().cpu().numpy(),
                               atol=1e-6, rtol=0)
    diff = np.abs(trace.attentions - _cpu(arch).trace(TEXT).attentions)
    assert diff.mean() < 4e-3 and diff.max() < 0.2, (diff.mean(), diff.max())
    n = trace.n_tokens
    a = (np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]) if model.is_causal else np.full((n, n), 1.0 / n)
    traced = model.trace(TEXT, attention_override={(1, 0): a})
    np.testing.assert_array_equal(traced.attentions[1, 0], torch.as_tensor(a).bfloat16().float().numpy())


def test_analyses_run_on_device() -> None:
    model, cpu = _pair("bert")[0], _cpu("bert")
    explanation = abcd.explain(model, TEXT, max_set_size=1)
    reference = abcd.explain(cpu, TEXT, max_set_size=1)
    assert [c.positions for c in explanation.checks] == [c.positions for c in reference.checks]
    np.testing.assert_allclose(explanation.probs, reference.probs, atol=1e-4)
    trace = model.trace(TEXT)
    np.testing.assert_allclose(efficient.jacobian_basis(model, trace, 1, 0), efficient.jacobian_basis(cpu, trace, 1, 0),
                               atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(efficient.decompose(trace, 1, 0, basis="value_output", model=model).effective,
                               efficient.decompose(trace, 1, 0, basis="value_output", model=cpu).effective,
                               atol=1e-4)
    result = interventions.efficient(model, TEXT, 1, 0)
    assert result.max_abs_logit_change < 1e-3       # the efficient part alone keeps the output
    np.testing.assert_allclose(interventions.uniform(model, TEXT, 1, 0).probs,
                               interventions.uniform(cpu, TEXT, 1, 0).probs, atol=1e-4)
    table = sensitivity.head_sensitivity(model, [TEXT])
    np.testing.assert_allclose(table.tvd, sensitivity.head_sensitivity(cpu, [TEXT]).tvd, atol=1e-4)
    found = adversarial.search(model, TEXT, layer=1, head=0, k=2, steps=3, progress=False)
    assert found.attentions.shape[0] == 2 and np.isfinite(found.tvd).all()


def test_gradient_explainers_and_half_precision_analyses_on_device() -> None:
    from analysis.evaluation.explainers import gradient_scores

    model = _pair("bert", torch.bfloat16)[0]
    for integrated in (False, True):
        scores, _, _ = gradient_scores(model, TEXT, 0, integrated=integrated, n_steps=4)
        assert scores.dtype == np.float64 and np.isfinite(scores).all()
    explanation = abcd.explain(model, TEXT, max_set_size=1)
    np.testing.assert_allclose(explanation.probs, model.predict(TEXT)[0], atol=1e-6)


def test_attention_classifier_on_device() -> None:
    from analysis.adversarial_model import train_adversary
    from analysis.zoo import attention_classifier as ac

    cpu = ac.tiny("lstm")
    model = ac.AttentionClassifier(ac.tiny("lstm").module, cpu.tokenizer, name="tiny", max_length=64, device=DEVICE)
    np.testing.assert_allclose(model.predict(TEXT), cpu.predict(TEXT), atol=1e-4)
    n = model.trace(TEXT).n_tokens
    over = {(0, 0): np.full((n, n), 1.0 / n)}
    np.testing.assert_allclose(model.predict(TEXT, attention_override=over), cpu.predict(TEXT, attention_override=over),
                               atol=1e-4)
    found = adversarial.search(model, TEXT, layer=0, head=0, k=2, steps=3, progress=False)
    assert np.isfinite(found.tvd).all()
    trained = train_adversary(model, [TEXT, "a dull film ."], epochs=1, batch_size=2, progress=False)
    assert np.isfinite(trained.tvd).all()


def test_load_model_on_device(tmp_path) -> None:
    """A checkpoint saved in bfloat16: dtype="auto" keeps it on a GPU that supports bfloat16
    (float32 elsewhere), and dtype="float32" widens it."""
    tiny_hf_model("bert").to(torch.bfloat16).save_pretrained(tmp_path)
    tokenizer().save_pretrained(tmp_path)
    auto = load_model(str(tmp_path), task="sequence-classification", device=DEVICE)
    full = load_model(str(tmp_path), task="sequence-classification", device=DEVICE, dtype="float32")
    gpu_bf16 = auto.device.type == "cuda" and torch.cuda.is_bf16_supported()
    assert auto.dtype == (torch.bfloat16 if gpu_bf16 else torch.float32) and full.dtype == torch.float32
    assert auto.trace(TEXT).attentions.dtype == np.float32
    np.testing.assert_allclose(auto.predict(TEXT), full.predict(TEXT), atol=3e-2)
