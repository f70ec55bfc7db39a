"""Divergences between distributions: attention rows, predictions, prediction sets.

Every function takes probability vectors along the **last axis** and is batched over any
leading axes; numpy arrays give numpy results, torch tensors give differentiable torch
results (the adversarial search uses the same functions as the reports).

- ``tvd``: total variation distance, ``0.5 * sum |p - q|``, in [0, 1].
- ``jsd``: Jensen-Shannon divergence, in bits by default (``base=2``), so in [0, 1]; with
  ``base=math.e`` it is in nats, in [0, ln 2] (Jain & Wallace's code uses nats). This is the
  divergence itself, the square of scipy's ``jensenshannon`` distance.
- ``kl``: Kullback-Leibler divergence ``sum p log(p / q)`` in nats, ``0 log 0 = 0``; ``q`` is
  floored at ``eps`` so a zero where ``p`` is positive gives a large finite value, not inf.
- ``wasserstein_1d``: earth mover's distance between two samples of scalar predictions
  (e.g. ``probs[:, 1]`` over a dataset before and after an intervention).
"""
from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np
import scipy.stats
from scipy.special import xlogy

Array = TypeVar("Array")  # np.ndarray or torch.Tensor

__all__ = ["tvd", "jsd", "kl", "wasserstein_1d"]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _pair(p: Any, q: Any) -> tuple[Any, Any]:
    """Both as float arrays (numpy) or both as tensors (torch), broadcast-checked."""
    if _is_torch(p) or _is_torch(q):
        import torch

        p = p if _is_torch(p) else torch.as_tensor(np.asarray(p), dtype=q.dtype, device=q.device)
        q = q if _is_torch(q) else torch.as_tensor(np.asarray(q), dtype=p.dtype, device=p.device)
    else:
        p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.ndim == 0 or q.ndim == 0:
        raise ValueError("distributions need at least one axis (the last axis holds the probabilities)")
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(f"distributions have different supports: last axes {p.shape[-1]} and {q.shape[-1]}")
    return p, q


def _xlogy(x: Any, y: Any) -> Any:
    """x * log(y), 0 where x == 0 (natural log). In torch, y is floored at 1e-30 so that the
    gradient at x = y = 0 (masked attention entries) is finite, not NaN."""
    if _is_torch(x):
        return x * y.clamp_min(1e-30).log()
    return xlogy(x, y)


def _clamp_min(x: Any, lo: float) -> Any:
    return x.clamp_min(lo) if _is_torch(x) else np.maximum(x, lo)


def tvd(p: Array, q: Array) -> Array:
    """Total variation distance over the last axis: ``0.5 * sum |p - q|`` [...]."""
    p, q = _pair(p, q)
    return 0.5 * abs(p - q).sum(-1)


def kl(p: Array, q: Array, *, eps: float = 1e-10) -> Array:
    """KL(p || q) in nats over the last axis [...]; ``q`` floored at ``eps``, ``0 log 0 = 0``."""
    p, q = _pair(p, q)
    return (_xlogy(p, _clamp_min(p, eps)) - _xlogy(p, _clamp_min(q, eps))).sum(-1)


def jsd(p: Array, q: Array, *, base: float = 2.0) -> Array:
    """Jensen-Shannon divergence over the last axis [...]: in bits (in [0, 1]) by default."""
    if base <= 0 or base == 1:
        raise ValueError(f"base must be positive and not 1, got {base}")
    p, q = _pair(p, q)
    m = 0.5 * (p + q)
    # 0 log 0 = 0; m > 0 wherever p > 0 or q > 0, so no eps is needed
    half = (_xlogy(p, p) - _xlogy(p, m) + _xlogy(q, q) - _xlogy(q, m)).sum(-1) * 0.5
    half = _clamp_min(half, 0.0)  # float error can make it -1e-17
    return half / math.log(base)


def wasserstein_1d(a: Any, b: Any) -> float:
    """1-D Wasserstein (earth mover's) distance between two samples of scalars, e.g. the
    positive-class probability over a dataset [N] and [M]; same units as the values."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"wasserstein_1d compares two 1-D samples; got shapes {a.shape} and {b.shape} "
                         "(pass one column, e.g. probs[:, 1])")
    if a.size == 0 or b.size == 0:
        raise ValueError("wasserstein_1d needs non-empty samples")
    return float(scipy.stats.wasserstein_distance(a, b))
