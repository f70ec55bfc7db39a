"""Head sensitivity: how far the output moves when one head's attention is ablated.

An adversarial-attention experiment is informative only where its constraint binds: if
replacing a head by uniform attention already keeps the prediction within ``eps``, every
attention is "adversarial" there. :func:`head_sensitivity` replaces each head, one at a time,
by

- ``"uniform"``: every query attends equally to every key (causal models: to keys 0..q);
- ``"zero"``: all weights 0 (the head contributes only its output bias path, if any);
- ``"permute"``: the rows (queries) of ``A`` permuted by a seeded random permutation;

and records the TVD between the output distributions and the largest absolute logit change.
:meth:`SensitivityTable.qualifying` lists the heads whose ablation moves the output well above
``eps`` (``factor * eps``), where an adversary constrained by ``eps`` can bite.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["ABLATIONS", "SensitivityTable", "head_sensitivity", "ablated_attention"]

ABLATIONS = ("uniform", "zero", "permute")


def ablated_attention(a: np.ndarray, ablation: str, *, causal: bool = False,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """The replacement ``[n, n]`` for attention ``a`` [n, n] under one of :data:`ABLATIONS`."""
    n = a.shape[0]
    if ablation == "uniform":
        if causal:
            low = np.tril(np.ones((n, n)))
            return low / low.sum(1, keepdims=True)
        return np.full((n, n), 1.0 / n)
    if ablation == "zero":
        return np.zeros((n, n))
    if ablation == "permute":
        rng = np.random.default_rng(0) if rng is None else rng
        return np.asarray(a, dtype=np.float64)[rng.permutation(n)]
    raise ValueError(f"ablation must be one of {', '.join(ABLATIONS)}, not {ablation!r}")


@dataclass(frozen=True, eq=False)
class SensitivityTable:
    """Per text, layer, head and ablation: ``tvd`` and ``logit`` ``[texts, L, H, ablations]``."""

    tvd: np.ndarray              # [T, L, H, A] TVD between output distributions
    logit: np.ndarray            # [T, L, H, A] max |logit change|
    texts: tuple[str, ...]
    ablations: tuple[str, ...]
    heads: tuple[tuple[int, int], ...]   # the (layer, head) pairs measured (others are NaN)
    n_tokens: tuple[int, ...] = ()
    seed: int = 0
    settings: dict = field(default_factory=dict)

    def head_tvd(self, statistic: str = "median") -> np.ndarray:
        """``[L, H]``: per text the largest TVD over the ablations, then ``statistic`` over texts
        ("median", "mean", "max" or "min"); NaN for heads not measured."""
        funcs = {"median": np.median, "mean": np.mean, "max": np.max, "min": np.min}
        if statistic not in funcs:
            raise ValueError(f"statistic must be one of {', '.join(funcs)}, not {statistic!r}")
        return funcs[statistic](self.tvd.max(-1), axis=0)

    def qualifying(self, eps: float = 0.01, *, factor: float = 5.0, statistic: str = "median"
                   ) -> list[tuple[int, int]]:
        """Heads where ablation moves the output well above ``eps``: the ``statistic`` over texts
        of the largest-ablation TVD is at least ``factor * eps``."""
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or not eps > 0:
            raise ValueError(f"eps must be a number > 0 (a TVD bound, e.g. 0.01), not {eps!r}")
        if not factor > 0:
            raise ValueError(f"factor must be > 0, not {factor!r}")
        s = self.head_tvd(statistic)
        return [(lay, h) for lay, h in self.heads if s[lay, h] >= factor * eps]

    def per_layer(self, eps: float = 0.01, *, factor: float = 5.0, statistic: str = "median") -> dict[int, int]:
        """``{layer: number of qualifying heads}`` for every measured layer."""
        found = self.qualifying(eps, factor=factor, statistic=statistic)
        return {lay: sum(1 for q in found if q[0] == lay) for lay in sorted({p[0] for p in self.heads})}

    def rows(self) -> list[dict]:
        """A tidy table: one dict per (text, layer, head, ablation)."""
        return [dict(text=i, n_tokens=self.n_tokens[i] if self.n_tokens else None, layer=lay, head=h,
                     ablation=name, tvd=float(self.tvd[i, lay, h, k]), logit_change=float(self.logit[i, lay, h, k]))
                for i in range(len(self.texts)) for lay, h in self.heads for k, name in enumerate(self.ablations)]

    def __repr__(self) -> str:
        return (f"SensitivityTable({len(self.texts)} texts, {len(self.heads)} heads, ablations "
                f"{', '.join(self.ablations)}; seed {self.seed})")


def _heads(model: TracedModel, layers: Sequence[int] | None, heads: Sequence[tuple[int, int]] | None
           ) -> list[tuple[int, int]]:
    L, H = model.n_layers, model.n_heads
    out: list[tuple[int, int]] = []
    for layer in (range(L) if layers is None and heads is None else layers or ()):
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -L <= layer < L:
            raise IndexError(f"layer {layer!r} is out of range: this model has {L} layers (0..{L - 1})")
        out += [(int(layer) % L, h) for h in range(H)]
    for pair in heads or ():
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"heads lists (layer, head) pairs, not {pair!r}")
        layer, h = pair
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -L <= layer < L:
            raise IndexError(f"layer {layer!r} is out of range: this model has {L} layers (0..{L - 1})")
        if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or not -H <= h < H:
            raise IndexError(f"head {h!r} is out of range: this model has {H} heads per layer (0..{H - 1})")
        out.append((int(layer) % L, int(h) % H))
    return sorted(set(out))


def head_sensitivity(model: TracedModel, texts: str | Sequence[str], *, layers: Sequence[int] | None = None,
                     heads: Sequence[tuple[int, int]] | None = None, ablations: Sequence[str] = ABLATIONS,
                     seed: int = 0) -> SensitivityTable:
    """TVD and max |logit change| of the output when each head is ablated (see the module docstring).

    ``layers`` / ``heads`` choose the heads (default: every head); one batched forward pass per
    text and head, all ablations in the batch. ``seed`` drives the row permutations.
    """
    texts = (texts,) if isinstance(texts, str) else tuple(texts)
    if not texts:
        raise ValueError("head_sensitivity needs at least one text")
    ablations = tuple(ablations)
    for name in ablations:
        if name not in ABLATIONS:
            raise ValueError(f"ablation must be one of {', '.join(ABLATIONS)}, not {name!r}")
    if not ablations:
        raise ValueError(f"give at least one ablation of {', '.join(ABLATIONS)}")
    pairs = _heads(model, layers, heads)
    L, H, k = model.n_layers, model.n_heads, len(ablations)
    tvd = np.full((len(texts), L, H, k), np.nan)
    logit = np.full((len(texts), L, H, k), np.nan)
    rng = np.random.default_rng(seed)
    lengths = []
    for i, text in enumerate(texts):
        trace = model.trace(text, heads=pairs)
        enc = model.encode(text)
        batch = model.batch([enc])
        lengths.append(len(enc.input_ids))
        with torch.no_grad():
            big = {key: v.expand(k, *v.shape[1:]) for key, v in batch.items()}       # same batch shape:
            base = model.output_logits(model.forward(big)[0], big)[0].double()          # [C], same kernels
            for lay, h in pairs:
                a = trace.attentions[lay, h]
                mats = np.stack([ablated_attention(a, name, causal=model.is_causal, rng=rng) for name in ablations])
                over = model.check_overrides({(lay, h): mats}, [len(enc.input_ids)] * k)
                out = model.output_logits(model.forward(big, overrides=over)[0], big).double()   # [k, C]
                p0, p = torch.softmax(base, -1), torch.softmax(out, -1)
                tvd[i, lay, h] = (0.5 * (p - p0).abs().sum(-1)).cpu().numpy()
                logit[i, lay, h] = (out - base).abs().max(-1).values.cpu().numpy()
    return SensitivityTable(tvd=tvd, logit=logit, texts=texts, ablations=ablations, heads=tuple(pairs),
                            n_tokens=tuple(lengths), seed=seed,
                            settings=dict(model=getattr(model, "name", ""), causal=model.is_causal))
