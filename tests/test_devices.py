"""Devices and precision on the CPU (issue 14, item 2): ``device=`` / ``dtype=`` of ``Model`` and
``load_model``, half-precision models tracing to float32 arrays, overrides on them, clear errors.
The same checks on a GPU are in tests/test_gpu.py (skipped without one)."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

from analysis import abcd, load_model
from analysis.experiments.runner import _dumps, model_fingerprint
from analysis.models import Model
from analysis.models.devices import resolve_device, resolve_dtype
from tests.helpers import tiny_hf_model, tokenizer

TEXT = "the movie was good , and the actors were great ."
FIELDS = ("attentions", "values", "hidden_states", "logits", "probs")


def _bf16(arch: str) -> Model:
    return Model(tiny_hf_model(arch), tokenizer(), task="sequence-classification", dtype="bfloat16")


def _hf_attentions(module: torch.nn.Module, model: Model, text: str) -> np.ndarray:
    """[L, H, n, n] from transformers' own eager attention (output_attentions) of ``module``."""
    batch = model.batch([model.encode(text)])
    with torch.no_grad():
        out = module(**batch, output_attentions=True)
    return torch.stack([a[0] for a in out.attentions]).float().numpy()


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_bfloat16_model_traces_to_float32_arrays(arch: str) -> None:
    m32 = Model(tiny_hf_model(arch), tokenizer(), task="sequence-classification")
    m16 = _bf16(arch)
    assert m16.dtype == torch.bfloat16 and m32.dtype == torch.float32
    assert next(m16.module.parameters()).dtype == torch.bfloat16
    assert "bfloat16" in repr(m16) and "float32" not in repr(m32) and "cpu" not in repr(m16)
    t32, t16 = m32.trace(TEXT), m16.trace(TEXT)
    for name in FIELDS:
        assert getattr(t16, name).dtype == np.float32, name
    assert m16.predict([TEXT, "a dull film ."]).dtype == np.float32
    # exactly transformers' eager attention of the same bfloat16 weights (a separate eager module)
    hf = tiny_hf_model(arch).to(torch.bfloat16)
    np.testing.assert_array_equal(t16.attentions, _hf_attentions(hf, m16, TEXT))
    # close to the float32 model: rounding to 8 significant bits moves a weight by 2e-3 on average;
    # these tiny models' peaked attention (init scale 0.4, scores ~10) turns score rounding into up
    # to ~0.15 on single entries (measured: mean 1.6e-3, max 0.05 bert / 0.14 llama)
    diff = np.abs(t16.attentions - t32.attentions)
    assert diff.mean() < 4e-3 and diff.max() < 0.2, (diff.mean(), diff.max())
    np.testing.assert_allclose(t16.attentions.sum(-1), 1.0, atol=2e-2)
    assert t16.prediction == t32.prediction
    np.testing.assert_allclose(m16.predict(TEXT), m32.predict(TEXT), atol=3e-2)
    # a selective trace converts the same way
    sel = m16.trace(TEXT, heads=[(1, 2)])
    assert sel.attentions[1, 2].dtype == np.float32
    np.testing.assert_array_equal(sel.attentions[1, 2], t16.attentions[1, 2])


def test_in_memory_half_module_keeps_its_dtype() -> None:
    """``Model(module)`` without dtype= keeps the module's precision; dtype= casts it."""
    kept = Model(tiny_hf_model("bert").to(torch.bfloat16), tokenizer(), task="sequence-classification")
    assert kept.dtype == torch.bfloat16
    widened = Model(tiny_hf_model("bert").to(torch.bfloat16), tokenizer(), task="sequence-classification",
                    dtype="float32")
    assert widened.dtype == torch.float32 and widened.trace(TEXT).attentions.dtype == np.float32
    assert _bf16("bert").dtype == Model(tiny_hf_model("bert"), tokenizer(), task="sequence-classification",
                                        dtype=torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.parametrize("arch,layer,head", [("bert", 0, 0), ("llama", 0, 1)])
def test_float64_override_on_bfloat16_model(arch: str, layer: int, head: int) -> None:
    m32 = Model(tiny_hf_model(arch), tokenizer(), task="sequence-classification")
    m16 = _bf16(arch)
    n = m16.trace(TEXT).n_tokens
    causal = np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]
    a = causal if m16.is_causal else np.full((n, n), 1.0 / n)          # float64 numpy
    assert a.dtype == np.float64
    traced = m16.trace(TEXT, attention_override={(layer, head): a})
    assert traced.overridden == ((layer, head),) and traced.attentions.dtype == np.float32
    # the override is what the head used, rounded to the model's precision
    np.testing.assert_array_equal(traced.attentions[layer, head],
                                  torch.as_tensor(a).to(torch.bfloat16).float().numpy())
    d32 = m32.predict(TEXT, attention_override={(layer, head): a}) - m32.predict(TEXT)
    d16 = m16.predict(TEXT, attention_override={(layer, head): a}) - m16.predict(TEXT)
    assert np.abs(d32).max() > 0.01                                       # the override matters
    assert np.abs(d16 - d32).max() <= 0.1 * np.abs(d32).max() + 5e-3, (d32, d16)
    # a float64 torch tensor works as well, and so does token removal
    t64 = torch.as_tensor(a, dtype=torch.float64)
    np.testing.assert_array_equal(m16.predict(TEXT, attention_override={(layer, head): t64}),
                                  m16.predict(TEXT, attention_override={(layer, head): a}))
    removed = m16.trace(TEXT, remove=[2])
    assert removed.n_tokens == n - 1 and removed.attentions.dtype == np.float32
    np.testing.assert_allclose(m16.predict(TEXT, remove=[2])[0], removed.probs, atol=1e-6)


def test_abcd_runs_on_a_bfloat16_model() -> None:
    m16 = _bf16("bert")
    trace = m16.trace(TEXT)
    graph = abcd.learn_graph(trace, layer=-1, head=0)
    assert len(graph.nodes) > 2
    explanation = abcd.explain(m16, TEXT, max_set_size=1)
    assert explanation.searched_size <= 1 and explanation.checks
    np.testing.assert_allclose(explanation.probs, m16.predict(TEXT)[0], atol=1e-6)
    for check in explanation.checks:               # each check is the bf16 model without those tokens
        assert len(check.positions) <= 1
        np.testing.assert_allclose(check.probs, m16.predict(TEXT, remove=list(check.positions))[0], atol=1e-6)
        assert check.changed == (int(np.argmax(check.probs)) != explanation.prediction)


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1", "CUDA:0", torch.device("cuda")):
        with pytest.raises(ValueError, match="no CUDA GPU is visible.*device='cpu'"):
            resolve_device(device)
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        Model(tiny_hf_model("bert"), tokenizer(), task="sequence-classification", device="cuda")
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        load_model(device="cuda")                           # fails before loading anything
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))


def test_gpu_index_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"no such GPU, 2 visible \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "mps0", "", 0, None])
def test_unknown_device(device: object) -> None:
    with pytest.raises(ValueError, match="device"):
        resolve_device(device)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", ["float8", "int8", "float64", "bfloat", 16, None])
def test_unknown_dtype(dtype: object) -> None:
    with pytest.raises(ValueError, match="'float32', 'bfloat16', 'float16'"):
        resolve_dtype(dtype, torch.device("cpu"))  # type: ignore[arg-type]
    if dtype is not None:           # Model(dtype=None) means: keep the module's dtype
        with pytest.raises(ValueError, match="is not supported"):
            Model(tiny_hf_model("bert"), tokenizer(), task="sequence-classification", dtype=dtype)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not supported"):
        load_model(dtype=dtype)  # type: ignore[arg-type]   # fails before loading anything


def test_auto_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    for saved in (None, "float32", "bfloat16", "float16", torch.bfloat16, "int8"):
        assert resolve_dtype("auto", cpu, saved) == torch.float32      # never half on the CPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", gpu, None) == torch.float32
    assert resolve_dtype("auto", gpu, "float32") == torch.float32
    assert resolve_dtype("auto", gpu, "bfloat16") == torch.bfloat16
    assert resolve_dtype("auto", gpu, torch.float16) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto", gpu, "bfloat16") == torch.float32     # no bf16 on this GPU: full precision
    for name, want in (("bf16", torch.bfloat16), ("torch.float16", torch.float16), ("FP32", torch.float32),
                       (torch.bfloat16, torch.bfloat16)):
        assert resolve_dtype(name, gpu) == want


def test_float16_on_cpu_warns_and_traces_float32() -> None:
    with pytest.warns(UserWarning, match="float16' on the CPU"):
        m = Model(tiny_hf_model("bert"), tokenizer(), task="sequence-classification", dtype="float16")
    assert m.dtype == torch.float16
    t = m.trace(TEXT)
    assert all(getattr(t, f).dtype == np.float32 for f in FIELDS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # float32 / bfloat16 on the CPU: no warning
        resolve_dtype("bfloat16", torch.device("cpu"))
        resolve_dtype("float32", torch.device("cpu"))


def test_load_model_folder_dtype(tmp_path) -> None:
    """A checkpoint saved in bfloat16 loads as float32 on the CPU with dtype="auto", and in
    bfloat16 when asked; both give the saved model's predictions."""
    module = tiny_hf_model("bert").to(torch.bfloat16)
    module.save_pretrained(tmp_path)
    tokenizer().save_pretrained(tmp_path)
    auto = load_model(str(tmp_path), task="sequence-classification")
    asked = load_model(str(tmp_path), task="sequence-classification", dtype="bfloat16")
    assert auto.dtype == torch.float32 and asked.dtype == torch.bfloat16
    reference = Model(module, tokenizer(), task="sequence-classification")   # the saved bf16 weights
    np.testing.assert_array_equal(asked.predict(TEXT), reference.predict(TEXT))
    np.testing.assert_allclose(auto.predict(TEXT), reference.predict(TEXT), atol=3e-2)
    widened = [p for p in auto.module.parameters()]
    assert all(p.dtype == torch.float32 for p in widened)


def test_default_model_in_bfloat16() -> None:
    m32 = load_model(progress=False)
    m16 = load_model(dtype="bfloat16", progress=False)
    assert m16.dtype == torch.bfloat16 and m32.dtype == torch.float32 and m16.device == torch.device("cpu")
    texts = ["a wonderful, moving film .", "a dull and lifeless mess ."]
    p32, p16 = m32.predict(texts), m16.predict(texts)
    assert p16.dtype == np.float32
    assert (p16.argmax(1) == p32.argmax(1)).all()
    np.testing.assert_allclose(p16, p32, atol=5e-2)


def test_runner_keeps_a_bfloat16_model() -> None:
    """Workers get the model in its own precision, and its fingerprint hashes bfloat16 weights."""
    m16 = _bf16("bert")
    again = pickle.loads(_dumps(m16))
    assert again.dtype == torch.bfloat16
    assert model_fingerprint(again) == model_fingerprint(m16)
    assert model_fingerprint(m16) != model_fingerprint(Model(tiny_hf_model("bert"), tokenizer(),
                                                             task="sequence-classification"))
    np.testing.assert_array_equal(again.predict(TEXT), m16.predict(TEXT))
