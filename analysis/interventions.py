"""Named interventions on one input: edit a head's attention or remove tokens, re-run the model,
report the new output and how far it moved.

Everything re-runs the same model through its one override/removal mechanism
(``Model.forward`` with checked attention overrides, ``Model.encode`` with ``remove``); the
model is never copied or modified. ``head`` may be an int or ``"all"`` (every head of the layer).

- ``efficient``: each head's attention replaced by its efficient attention ``A P`` (basis
  ``"value"`` by default: then the output must not move, up to float error).
- ``add_null``: ``A`` plus a random component in the null space (``(I - P)``): must not move.
- ``shift_efficient``: ``A`` plus a random component inside col(T) (``P``): moves the output.
- ``uniform``: uniform attention over the keys the head may see (lower-triangular for
  decoder models).
- ``zero``: zero attention, i.e. the head's output is zero: this is head ablation (there is
  no separate ``ablate_head``).
- ``remove_tokens``: delete or mask tokens (``removal`` = delete, mask, pad, unk).

ERASER faithfulness of a token set (DeYoung et al. 2020): ``comprehensiveness``,
``sufficiency`` and ``aopc``, through the same removal mechanism.

Random components are Gaussian matrices projected on the subspace and rescaled to Frobenius
norm ``scale * ||A||_F`` (per head); randomness only through ``seed``. For decoder models
``A_eff`` and the random components are not lower-triangular: the override takes any real
matrix, and the invariance still holds because the values are the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import torch

from analysis.efficient import decompose
from analysis.metrics import jsd, tvd
from analysis.types import Basis, Removal

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["InterventionResult", "efficient", "add_null", "shift_efficient", "uniform", "zero",
           "remove_tokens", "INTERVENTIONS", "output_logits", "random_component",
           "comprehensiveness", "sufficiency", "aopc"]

Head = int | str


@dataclass(frozen=True, eq=False)
class InterventionResult:
    """The model's output before and after one intervention on one input."""

    name: str                      # the intervention, e.g. "efficient"
    probs: np.ndarray              # [C] after (classes, or vocabulary for language models)
    original: np.ndarray           # [C] before
    logits: np.ndarray             # [C] after
    original_logits: np.ndarray    # [C] before
    override: Mapping[tuple[int, int], np.ndarray] | None = None   # (layer, head) -> [n, n] used
    removed: tuple[int, ...] = ()  # token positions removed (remove_tokens)
    removal: str = ""              # how they were removed
    message: str = ""              # what was done, in words

    @property
    def tvd(self) -> float:
        """Total variation distance between the prediction before and after."""
        return float(tvd(self.probs, self.original))

    @property
    def jsd(self) -> float:
        """Jensen-Shannon divergence (bits) between the prediction before and after."""
        return float(jsd(self.probs, self.original))

    @property
    def max_abs_logit_change(self) -> float:
        return float(np.max(np.abs(self.logits - self.original_logits)))

    @property
    def prediction_changed(self) -> bool:
        return int(np.argmax(self.probs)) != int(np.argmax(self.original))

    def __repr__(self) -> str:
        return (f"InterventionResult({self.name!r}: TVD {self.tvd:.3g}, max |d logit| "
                f"{self.max_abs_logit_change:.3g}, prediction changed: {self.prediction_changed}; {self.message})")


# --------------------------------------------------------------------------- running the model
def output_logits(model: TracedModel, text: str, *, attention_override: Mapping | None = None,
                  remove: Sequence[int] | None = None, removal: Removal = "delete") -> np.ndarray:
    """The logits ``model.predict`` turns into probabilities [C], for one text (float64)."""
    enc = model.encode(text, remove=remove, removal=removal)
    overrides = model.check_overrides(attention_override, [len(enc.input_ids)])
    batch = model.batch([enc])
    with torch.no_grad():
        out, _ = model.forward(batch, overrides=overrides)
        return model.output_logits(out, batch)[0].double().cpu().numpy()


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _finish(model: TracedModel, text: str, name: str, message: str, *, override: dict | None = None,
            remove: Sequence[int] | None = None, removal: Removal = "delete") -> InterventionResult:
    before = output_logits(model, text)
    after = output_logits(model, text, attention_override=override, remove=remove, removal=removal)
    frozen = None if override is None else MappingProxyType({k: np.asarray(v) for k, v in override.items()})
    return InterventionResult(name=name, probs=_softmax(after), original=_softmax(before), logits=after,
                              original_logits=before, override=frozen,
                              removed=tuple(sorted(set(int(p) for p in remove or ()))),
                              removal=removal if remove else "", message=message)


def _heads(model: TracedModel, trace: Any, layer: int, head: Head) -> tuple[int, list[int]]:
    """Normalised layer and the list of heads (``"all"`` = every head of the layer)."""
    if head == "mean":
        raise ValueError(f"head must be an int in 0..{model.n_heads - 1} or 'all', not 'mean'")
    layer, head = trace.check_head(layer, head)
    return layer, (list(range(trace.n_heads)) if head == "all" else [head])


def _trace(model: TracedModel, text: str, trace: Any) -> Any:
    """``trace`` if given (it must be this text's plain trace), else a fresh one."""
    if trace is None:
        return model.trace(text)
    if trace.text != text or trace.removed or trace.overridden:
        raise ValueError("trace= must be the plain trace of this text (no removal, no override): "
                         "pass trace=model.trace(text) or leave it out")
    return trace


def _where(layer: int, heads: list[int]) -> str:
    return f"layer {layer}, " + (f"head {heads[0]}" if len(heads) == 1 else f"all {len(heads)} heads")


# --------------------------------------------------------------------------- interventions
def efficient(model: TracedModel, text: str, layer: int, head: Head, *, basis: Basis = "value",
              unit_rows: bool = False, simplex: bool = False, trace: Any = None) -> InterventionResult:
    """Replace the head(s) by the efficient attention ``A P``: the output must not move with
    ``basis="value"`` (also with ``unit_rows``/``simplex``, which keep ``A T`` too)."""
    trace = _trace(model, text, trace)
    layer, heads = _heads(model, trace, layer, head)
    parts = [decompose(trace, layer, h, basis=basis, model=model, unit_rows=unit_rows, simplex=simplex)
             for h in heads]
    nullity = ", ".join(str(p.nullity) for p in parts)
    return _finish(model, text, "efficient", f"{_where(layer, heads)} replaced by the efficient attention "
                   f"({basis} basis, {parts[0].variant}; nullity {nullity})",
                   override={(layer, p.head): p.effective for p in parts})


def random_component(part: Any, rng: np.random.Generator, *, scale: float, inside: bool) -> np.ndarray:
    """A Gaussian [n, n] projected inside col(T) (``inside``) or on its complement, with
    Frobenius norm ``scale * ||A||_F`` (zero when that subspace is {0})."""
    r = rng.standard_normal(part.attention.shape)
    u = part.basis_vectors
    inner = (r @ u) @ u.T
    c = inner if inside else r - inner
    norm = np.linalg.norm(c)
    return c * (scale * np.linalg.norm(part.attention) / norm) if norm > 1e-12 else np.zeros_like(c)


def _perturb(model: TracedModel, text: str, layer: int, head: Head, *, scale: float, seed: int, basis: str,
             trace: Any, inside: bool) -> InterventionResult:
    if not np.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    trace = _trace(model, text, trace)
    layer, heads = _heads(model, trace, layer, head)
    rng = np.random.default_rng(seed)
    parts = [decompose(trace, layer, h, basis=basis, model=model) for h in heads]
    override = {(layer, p.head): p.attention + random_component(p, rng, scale=scale, inside=inside) for p in parts}
    name = "shift_efficient" if inside else "add_null"
    what = "inside col(T) (the efficient part)" if inside else "in the null space"
    note = "" if inside or all(p.nullity for p in parts) else " (nullity 0 for some head: nothing added there)"
    return _finish(model, text, name, f"{_where(layer, heads)}: added a random component {what}, "
                   f"norm {scale:g} x ||A||, seed {seed}, {basis} basis{note}", override=override)


def add_null(model: TracedModel, text: str, layer: int, head: Head, *, scale: float = 1.0, seed: int = 0,
             basis: Basis = "value", trace: Any = None) -> InterventionResult:
    """``A + N`` with ``N T = 0`` random, ``||N|| = scale ||A||``: the output must not move."""
    return _perturb(model, text, layer, head, scale=scale, seed=seed, basis=basis, trace=trace, inside=False)


def shift_efficient(model: TracedModel, text: str, layer: int, head: Head, *, scale: float = 1.0, seed: int = 0,
                    basis: Basis = "value", trace: Any = None) -> InterventionResult:
    """``A + E`` with ``E = E P`` random, ``||E|| = scale ||A||``: moves the efficient attention."""
    return _perturb(model, text, layer, head, scale=scale, seed=seed, basis=basis, trace=trace, inside=True)


def uniform(model: TracedModel, text: str, layer: int, head: Head, *, trace: Any = None) -> InterventionResult:
    """Uniform attention over the visible keys (all keys; keys <= query for decoder models)."""
    trace = _trace(model, text, trace)
    layer, heads = _heads(model, trace, layer, head)
    n = trace.n_tokens
    support = np.tril(np.ones((n, n))) if model.is_causal else np.ones((n, n))
    matrix = support / support.sum(-1, keepdims=True)
    return _finish(model, text, "uniform", f"{_where(layer, heads)} set to uniform attention"
                   + (" over past and current keys" if model.is_causal else ""),
                   override={(layer, h): matrix for h in heads})


def zero(model: TracedModel, text: str, layer: int, head: Head, *, trace: Any = None) -> InterventionResult:
    """Zero attention: the head's output (before the output projection and its bias) is zero,
    i.e. the head is ablated."""
    trace = _trace(model, text, trace)
    layer, heads = _heads(model, trace, layer, head)
    n = trace.n_tokens
    return _finish(model, text, "zero", f"{_where(layer, heads)} ablated (zero attention)",
                   override={(layer, h): np.zeros((n, n)) for h in heads})


def remove_tokens(model: TracedModel, text: str, positions: Sequence[int], *, removal: Removal = "delete") -> InterventionResult:
    """Remove the tokens at ``positions`` (in the tokenised input) by ``removal``."""
    positions = [int(p) for p in positions]
    if not positions:
        raise ValueError("remove_tokens needs at least one position")
    return _finish(model, text, "remove_tokens", f"removed positions {sorted(set(positions))} by {removal!r}",
                   remove=positions, removal=removal)


# --------------------------------------------------------------------------- ERASER faithfulness
def _target_prob(model: TracedModel, text: str, target: int | None, remove: Sequence[int] | None,
                 removal: Removal) -> tuple[float, float]:
    """p(target | x) and p(target | x with ``remove`` removed); target defaults to the prediction."""
    before = model.predict(text)[0]
    y = int(np.argmax(before)) if target is None else int(target)
    if not 0 <= y < before.shape[0]:
        raise IndexError(f"target {target} is out of range: the model has {before.shape[0]} outputs")
    after = model.predict(text, remove=remove, removal=removal)[0] if remove else before
    return float(before[y]), float(after[y])


def comprehensiveness(model: TracedModel, text: str, positions: Sequence[int], *, target: int | None = None,
                      removal: Removal = "delete") -> float:
    """ERASER comprehensiveness: ``p(y|x) - p(y|x without positions)`` (y: ``target`` or the
    predicted class). Report ``removal`` with the number: it changes it."""
    before, after = _target_prob(model, text, target, list(positions), removal)
    return before - after


def sufficiency(model: TracedModel, text: str, positions: Sequence[int], *, target: int | None = None,
                removal: Removal = "delete") -> float:
    """ERASER sufficiency: ``p(y|x) - p(y|only positions)``; special tokens ([CLS], [SEP]) are kept."""
    ids = model.encode(text).input_ids
    special, keep = set(model.tokenizer.all_special_ids), {int(p) for p in positions}
    rest = [i for i, t in enumerate(ids) if i not in keep and t not in special]
    before, after = _target_prob(model, text, target, rest, removal)
    return before - after


def aopc(model: TracedModel, text: str, ranking: Sequence[int], *, metric: str = "comprehensiveness",
         fractions: Sequence[float] = (0.01, 0.05, 0.1, 0.2, 0.5), target: int | None = None,
         removal: Removal = "delete") -> float:
    """Mean of ``metric`` over the top ``ceil(f * len(ranking))`` positions of ``ranking`` (most
    important first), for each fraction f (ERASER's AOPC bins by default)."""
    measure = {"comprehensiveness": comprehensiveness, "sufficiency": sufficiency}.get(metric)
    if measure is None:
        raise ValueError(f"metric must be 'comprehensiveness' or 'sufficiency', not {metric!r}")
    if not ranking or not all(0 < f <= 1 for f in fractions) or not fractions:
        raise ValueError("aopc needs a non-empty ranking and fractions in (0, 1]")
    if target is None:
        target = int(np.argmax(model.predict(text)[0]))
    tops = [list(ranking)[: math.ceil(f * len(ranking))] for f in fractions]
    return float(np.mean([measure(model, text, top, target=target, removal=removal) for top in tops]))


#: name -> intervention, for panels and experiments (read-only)
INTERVENTIONS: Mapping[str, Callable[..., InterventionResult]] = MappingProxyType({
    "efficient": efficient, "add_null": add_null, "shift_efficient": shift_efficient,
    "uniform": uniform, "zero": zero, "remove_tokens": remove_tokens})
