"""Wiegreffe & Pinter's model-consistent adversary (2019) for a single-attention classifier.

Where Jain & Wallace search attention per input, Wiegreffe & Pinter *train a model*: a copy of
the classifier whose attention should differ as much as possible from the base model's while
its predictions stay the same, over a whole dataset. Per input, with the base model's
prediction ``y`` and attention ``a`` (fixed targets),

    loss = TVD(y_adv, y) - lam * KL(a_adv || a)        (mean over a batch; minimised with Adam)

Choices:
- the adversary starts as a copy of the base model; ``trainable="attention"`` (default) trains
  only the attention scorer (``W``, ``b``, ``v``), so encoder states and decoder are shared with the
  base and only *where the model looks* changes; ``trainable="all"`` trains every parameter, as
  Wiegreffe & Pinter's adversary (a new model) may;
- no dropout (the copy runs in eval mode while training): the targets are deterministic;
- KL in nats over the unpadded tokens, ``a`` floored at 1e-10; JSD reported in bits, TVD over classes;
- inputs are encoded exactly as ``model.predict`` encodes them (truncated to the model's limit).

The base model is never modified. The adversary has the same interface as the base
(``trace``/``predict``/overrides), so every panel and experiment runs on it.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from analysis.causal.synthetic import check_seed
from analysis.metrics import jsd, kl, tvd

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["ModelConsistentAdversary", "train_adversary", "TRAINABLE"]

TRAINABLE = ("attention", "all")


@dataclass(frozen=True, eq=False)
class ModelConsistentAdversary:
    """The trained adversarial model and how far it is from the base, per example."""

    model: TracedModel                 # AttentionClassifier: the adversary, same interface as the base
    base: Any                  # the base model (untouched)
    tvd: np.ndarray            # [N] prediction TVD(y_adv, y) per example
    jsd: np.ndarray            # [N] attention JSD(a_adv, a) per example, bits
    kl: np.ndarray             # [N] attention KL(a_adv || a) per example, nats
    same_prediction: np.ndarray  # [N] bool: argmax unchanged
    loss: np.ndarray           # [steps] the training loss at each step
    lam: float
    epochs: int
    trainable: str
    seed: int

    def __repr__(self) -> str:
        return (f"ModelConsistentAdversary(lam={self.lam:g}, {self.trainable}: mean attention JSD "
                f"{self.jsd.mean():.3f} bits, mean prediction TVD {self.tvd.mean():.4f}, "
                f"{self.same_prediction.mean():.1%} same prediction over {len(self.tvd)} examples)")


def _texts(dataset: Any) -> list[str]:
    texts = list(getattr(dataset, "texts", dataset))
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("dataset must be an analysis Dataset or a non-empty list of texts")
    return texts


def _validate(model: TracedModel, lam: float, epochs: int, lr: float, batch_size: int, trainable: str) -> None:
    from analysis.zoo.attention_classifier import AttentionClassifier

    if not isinstance(model, AttentionClassifier):
        raise TypeError("train_adversary needs a single-attention classifier (load_model('attention-classifier-rt') "
                        f"or analysis.zoo.attention_classifier.tiny()), not {type(model).__name__}; for "
                        "transformers use analysis.adversarial.search")
    if not (np.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if trainable not in TRAINABLE:
        raise ValueError(f"trainable must be one of {', '.join(TRAINABLE)}, not {trainable!r}")


def _run(module: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities [b, C] and attention [b, n] of a classifier module."""
    out = module(batch["input_ids"], batch["attention_mask"])
    return torch.softmax(out["logits"].float(), -1), out["attention"]


def _divergences(p_adv, p, a_adv, a) -> tuple[Any, Any, Any]:
    """Per-example prediction TVD, attention KL (nats) and JSD (bits)."""
    return tvd(p_adv, p), kl(a_adv, a), jsd(a_adv, a)


def train_adversary(model: TracedModel, dataset: Any, *, lam: float = 1.0, epochs: int = 3, lr: float = 1e-3,
                    batch_size: int = 32, trainable: str = "attention", seed: int = 0,
                    progress: bool = True) -> ModelConsistentAdversary:
    """Train Wiegreffe & Pinter's adversary of ``model`` on ``dataset`` (texts; labels unused) with
    ``loss = TVD(y_adv, y) - lam * KL(a_adv || a)``; measure it on the same texts."""
    from analysis.zoo.attention_classifier import AttentionClassifier

    _validate(model, lam, epochs, lr, batch_size, trainable)
    texts = _texts(dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # long reviews are truncated, as predict does
        encoded = [model.encode(t, truncate=True) for t in texts]
    torch.manual_seed(check_seed(seed))
    rng = np.random.default_rng(seed)
    module = copy.deepcopy(model.module).eval()
    params = (list(module.attention.proj.parameters()) + list(module.attention.v.parameters())
              if trainable == "attention" else list(module.parameters()))
    for p in module.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    adversary = AttentionClassifier(module, model.tokenizer, name=f"{model.name}-adversary(lam={lam:g})",
                                    max_length=model.max_length, labels=model.labels, device=str(model.device))
    from analysis.zoo.sentiment import length_batches

    lengths = np.array([len(e.input_ids) for e in encoded])
    opt = torch.optim.Adam(params, lr=lr)
    schedule = [length_batches(lengths, batch_size, rng) for _ in range(epochs)]
    bar = tqdm(total=sum(len(s) for s in schedule), disable=not progress, desc=f"W&P adversary (lam={lam:g})")
    losses = []
    for batches in schedule:
        for idx in batches:
            batch = model.batch([encoded[i] for i in idx])
            with torch.no_grad():
                p, a = _run(model.module, batch)
            p_adv, a_adv = _run(module, batch)
            t, k, _ = _divergences(p_adv, p, a_adv, a)
            loss = (t - lam * k).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(tvd=f"{float(t.detach().mean()):.4f}", kl=f"{float(k.detach().mean()):.3f}")
    bar.close()
    for p in module.parameters():
        p.requires_grad_(False)
    t, k, j, same = _measure(model, adversary, encoded, batch_size)
    return ModelConsistentAdversary(model=adversary, base=model, tvd=t, jsd=j, kl=k, same_prediction=same,
                                    loss=np.asarray(losses), lam=float(lam), epochs=int(epochs),
                                    trainable=trainable, seed=int(seed))


def _measure(model: TracedModel, adversary: TracedModel, encoded: Sequence[Any], batch_size: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-example TVD, KL, JSD and unchanged-prediction flags, in input order."""
    n = len(encoded)
    t, k, j, same = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool)
    with torch.no_grad():
        for s in range(0, n, batch_size):
            batch = model.batch(encoded[s: s + batch_size])
            p, a = _run(model.module, batch)
            p_adv, a_adv = _run(adversary.module, batch)
            tt, kk, jj = _divergences(p_adv.double(), p.double(), a_adv.double(), a.double())
            sl = slice(s, s + len(tt))
            t[sl], k[sl], j[sl] = tt.cpu().numpy(), kk.cpu().numpy(), jj.cpu().numpy()
            same[sl] = (p_adv.argmax(-1) == p.argmax(-1)).cpu().numpy()
    return t, k, j, same
