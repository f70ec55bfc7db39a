"""Efficient (effective) attention: the part of an attention matrix that reaches the output.

One head computes ``A T`` with ``T`` the ``n x k`` matrix attention multiplies. With ``P`` the
orthogonal projection on ``col(T)`` (from an SVD of ``T``, with an explicit rank tolerance):

    A = A_eff + A_null,   A_eff = A P,   A_null = A (I - P),   A_null T = 0,  A_eff T = A T.

``nullity = n - rank(T)``: when it is 0, ``A_eff = A`` and nothing in the head is invisible to
the output. ``A_eff`` is the minimum-norm matrix with the same output, and it need not be a
probability distribution: ``row_sum_error`` and ``negative_mass`` say how far it is. Two
variants stay closer to distributions:

- ``unit_rows=True`` projects on ``col([T, 1])`` instead, so every row of ``A_eff`` sums to 1
  (``A`` rows do) and ``A_eff T = A T`` still holds; precisely, ``A_eff 1 = A 1`` is kept, which
  for a trace is 1 up to float32 rounding (~1e-7);
- ``simplex=True`` solves, per row, ``min ||a' - a_eff||`` s.t. ``a' T = a T``, ``a' >= 0``,
  ``sum a' = 1``: the minimum-norm *distribution* with the same output. (The literal
  ``min ||a' - a||`` has the trivial answer ``a' = a`` whenever ``a`` is a distribution.)
  Rows with no such distribution are listed in ``infeasible_rows`` and keep the unit-row
  projection; a warning says so. Nothing is ever clipped and renormalised.

Bases (``basis=``), all per head, on the unpadded tokens of one trace:

- ``"value"``: ``X W_v + b_v`` as the trace captured it. The exact choice for interventions:
  swapping ``A_eff`` into the model leaves its output unchanged.
- ``"value_output"``: the values through the head's slice of the output projection
  (``V_h W_o[h]``, ``n x D``; the output bias is shared by heads and left out). Its column space
  lies inside the value basis's, with equality when ``W_o[h]`` has full row rank.
- ``"hidden"``: the layer's input hidden states ``X`` (``n x D``). Keeps ``A X``; with the value
  bias, ``A V`` is kept only when rows sum to 1 too (use ``unit_rows=True``), and in pre-LN
  models (GPT-2, Llama) attention multiplies ``LN(X) W_v``, not ``X W_v``, so nothing is kept.
- ``"jacobian"``: the head's value output mapped to the logit, to first order (needs ``model=``).
  With ``g_q = d logit / d z_q`` (``z_q`` the head's output at query ``q``, d_head, through
  ``W_o[h]`` and everything after it), column ``q`` of ``T`` is ``V_h g_q``: ``T = (d logit / d A)^T``
  ``[n, n]``, taken by autograd through an attention override. A change ``dA`` with ``dA T = 0``
  changes the logit by ``O(|dA|^2)`` only: its null space means "does not reach the prediction"
  (to first order; finite steps move the logit at second order), not "does not reach the next
  layer". ``logit=None`` (default) differentiates the predicted class's logit (the next token's, for
  a language model), an int that class's logit, ``"all"`` stacks every class (``[n, n * classes]``,
  classifiers only). The condition is shared by all rows, so it is sufficient, not necessary:
  row ``q`` alone only needs ``da_q . T[:, q] = 0``. col(T) lies inside the value basis's.
  In the last layer of a [CLS] classifier only the [CLS] row reaches the logit: rank 1.
- an array ``[n, k]``: any explicit ``T``, e.g. a single-attention classifier's hidden states
  times its decoder weights (with the decoder in ``T``, adversarial matrices with the same
  prediction share the efficient attention by construction).

Decoder (causal) models: ``A_eff`` is in general not lower-triangular (it may weigh future
keys); it still yields the same head output, and ``Model`` overrides accept any real matrix.

Multi-head: perturbations in different heads can cancel, so a layer's joint null space is
larger than the per-head ones; the decomposition here is exact per head and per layer only.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
from scipy.optimize import linprog, lsq_linear, minimize, nnls

from analysis.types import Basis

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["EfficientAttention", "decompose", "decompose_layer", "decompose_matrix", "basis_matrix",
           "jacobian_basis", "output_projection", "BASES"]

BASES: tuple[Basis, ...] = get_args(Basis)


@dataclass(frozen=True, eq=False)
class EfficientAttention:
    """``A = effective + null`` for one head (all ``[n, n]``, float64)."""

    attention: np.ndarray        # [n, n] A
    effective: np.ndarray        # [n, n] A_eff (A P, or the simplex solution)
    null: np.ndarray             # [n, n] A - A_eff, with null @ T == 0
    basis_vectors: np.ndarray    # [n, rank] orthonormal basis of the subspace projected on
    rank: int                    # rank of T (of [T, 1] with unit_rows / simplex)
    basis: str                   # "value", "value_output", "hidden", "jacobian" or "custom"
    variant: str                 # "projection", "unit_rows" or "simplex"
    rtol: float                  # singular values <= rtol * largest count as zero
    layer: int | None = None
    head: int | None = None
    infeasible_rows: tuple[int, ...] = ()   # simplex rows with no distribution keeping a T

    @property
    def n(self) -> int:
        return self.attention.shape[0]

    @property
    def nullity(self) -> int:
        """Dimension of the null space: ``n - rank``; 0 means ``effective == attention``."""
        return self.n - self.rank

    @property
    def projection(self) -> np.ndarray:
        """``P`` [n, n], the orthogonal projection on col(T) (col([T, 1]) with unit rows)."""
        return self.basis_vectors @ self.basis_vectors.T

    @property
    def row_sums(self) -> np.ndarray:
        """Row sums of ``effective`` [n]."""
        return self.effective.sum(-1)

    @property
    def row_sum_error(self) -> float:
        """``max_q |sum_k effective[q, k] - 1|``."""
        return float(np.max(np.abs(self.row_sums - 1.0)))

    @property
    def negative_mass(self) -> float:
        """Total magnitude of negative entries of ``effective`` divided by ``n``: the mean,
        over query rows, of the negative weight in a row (0 for distributions)."""
        return float(-np.minimum(self.effective, 0.0).sum() / self.n)

    @property
    def message(self) -> str:
        where = "" if self.layer is None else f"layer {self.layer}, head {self.head}: "
        if self.nullity == 0:
            text = (f"{where}nullity 0: {self.basis} basis has full rank {self.rank} = n, so the efficient "
                    "attention equals the attention (nothing in it is invisible to the output)")
        else:
            text = (f"{where}nullity {self.nullity} of n = {self.n} ({self.basis} basis, rank {self.rank}, "
                    f"{self.variant}); row-sum error {self.row_sum_error:.3g}, negative mass "
                    f"{self.negative_mass:.3g}")
        if self.infeasible_rows:
            text += (f"; no distribution keeps the output for rows {list(self.infeasible_rows)} "
                     "(they keep the unit-row projection)")
        return text

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"EfficientAttention({self.message})"


# --------------------------------------------------------------------------- linear algebra
def default_rtol(n: int, k: int) -> float:
    """Rank tolerance relative to the largest singular value: ``max(n, k) * eps(float32)``,
    since traces hold float32 values."""
    return max(n, k) * float(np.finfo(np.float32).eps)


def _column_bases(ts: np.ndarray, rtol: float | None) -> tuple[list[np.ndarray], float]:
    """Orthonormal bases of col(T) for a stack ``ts`` [h, n, k] (one batched SVD)."""
    n, k = ts.shape[-2:]
    tol = default_rtol(n, k) if rtol is None else float(rtol)
    if not 0 <= tol < 1:
        raise ValueError(f"rtol must be in [0, 1), got {rtol}")
    if k == 0:
        return [np.zeros((n, 0)) for _ in ts], tol
    u, s, _ = np.linalg.svd(ts, full_matrices=False)       # u [h, n, min(n,k)], s [h, min(n,k)]
    bases = []
    for uh, sh in zip(u, s):
        rank = int(np.sum(sh > tol * sh[0])) if sh.size and sh[0] > 0 else 0
        bases.append(uh[:, :rank])
    return bases, tol


def _with_ones(t: np.ndarray) -> np.ndarray:
    """``[T, 1]`` [..., n, k + 1], the ones column scaled like T's largest column."""
    scale = np.linalg.norm(t, axis=-2).max(-1, keepdims=True) if t.shape[-1] else np.ones(t.shape[:-2] + (1,))
    scale = np.where(scale > 0, scale, 1.0) / np.sqrt(t.shape[-2])
    ones = np.ones(t.shape[:-1] + (1,)) * scale[..., None, :]
    return np.concatenate([t, ones], axis=-1)


def _nnls_checked(e: np.ndarray, f: np.ndarray) -> np.ndarray | None:
    """``argmin ||e u - f||`` over ``u >= 0``, verified by its KKT conditions (``w = e^T (f - e u)``:
    ``w <= 0`` everywhere, ``w = 0`` where ``u > 0``), or None when no solver's answer passes.
    SciPy's ``nnls`` can stop at a non-optimal point and report a zero residual for it
    (scipy/scipy#25389; seen on one of the project's machines, not on another), so its answer is
    checked, never trusted, and re-solved by bounded-variable least squares when the check fails."""
    atol = 1e-9 * max(1.0, float(np.abs(e).sum(0).max()) * float(np.abs(f).max()))
    tries = (lambda: nnls(e, f, maxiter=50 * e.shape[1])[0],
             lambda: lsq_linear(e, f, bounds=(0.0, np.inf), method="bvls", tol=1e-14, max_iter=50 * e.shape[1]).x)
    for solve in tries:
        u = np.maximum(solve(), 0.0)
        w = e.T @ (f - e @ u)
        if w.max() <= atol and np.all(np.abs(w[u > 0]) <= atol):
            return u
    return None


def _simplex_row(a_eff: np.ndarray, null_basis: np.ndarray) -> np.ndarray | None:
    """The minimum-norm distribution ``a_eff + N z >= 0`` (a least-distance problem solved by
    NNLS, Lawson & Hanson ch. 23), or None when there is none. ``null_basis`` N: [n, m]."""
    tol = 1e-9
    if a_eff.min() >= 0:
        return a_eff                       # z = 0 is the minimum
    if null_basis.shape[1] == 0:
        return None
    m = null_basis.shape[1]
    e = np.vstack([null_basis.T, -a_eff[None, :]])         # [m + 1, n]: [G^T; h^T], G = N, h = -a_eff
    f = np.zeros(m + 1)
    f[-1] = 1.0
    u = _nnls_checked(e, f)
    if u is None:                                          # no verified NNLS answer: solve the QP directly
        return _simplex_row_qp(a_eff, null_basis, tol)
    r = e @ u - f
    if abs(r[-1]) < 1e-12:
        return None
    row = a_eff + null_basis @ (-r[:m] / r[-1])
    return row if row.min() >= -tol else None


def _simplex_row_qp(a_eff: np.ndarray, null_basis: np.ndarray, tol: float) -> np.ndarray | None:
    """The same least-distance problem by a linear program (is there any ``z``?) and SLSQP from its
    feasible point (the smallest such ``z``): the last resort when neither NNLS solver verifies."""
    m = null_basis.shape[1]
    lp = linprog(np.zeros(m), A_ub=-null_basis, b_ub=a_eff, bounds=[(None, None)] * m, method="highs")
    if lp.status == 2:                                     # infeasible: no distribution keeps the output
        return None
    if lp.status != 0:
        raise RuntimeError(f"the simplex efficient attention could not be solved for a row ({lp.message})")
    qp = minimize(lambda z: z @ z, lp.x, jac=lambda z: 2 * z, method="SLSQP",
                  constraints=[{"type": "ineq", "fun": lambda z: a_eff + null_basis @ z, "jac": lambda z: null_basis}],
                  options={"ftol": 1e-15, "maxiter": 1000})
    row = a_eff + null_basis @ qp.x
    if row.min() < -tol:
        raise RuntimeError("the simplex efficient attention could not be solved for a row: a distribution "
                           f"exists, but no solver found the nearest one ({qp.message})")
    return row


def _simplex(a: np.ndarray, basis_vectors: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Rows of the simplex variant [n, n] and the infeasible rows (which keep ``a P``)."""
    n = a.shape[0]
    a_eff = (a @ basis_vectors) @ basis_vectors.T
    full, _, _ = np.linalg.svd(basis_vectors, full_matrices=True)
    null_basis = full[:, basis_vectors.shape[1]:]            # [n, n - rank], orthogonal complement
    out, bad = a_eff.copy(), []
    for q in range(n):
        row = _simplex_row(a_eff[q], null_basis)
        if row is None:
            bad.append(q)
        else:
            out[q] = row
    return out, tuple(bad)


def _result(a: np.ndarray, basis_vectors: np.ndarray, *, variant: str, basis: str, rtol: float,
            layer: int | None, head: int | None) -> EfficientAttention:
    a = np.asarray(a, dtype=np.float64)
    bad: tuple[int, ...] = ()
    if variant == "simplex":
        eff, bad = _simplex(a, basis_vectors)
        if bad:
            where = "" if layer is None else f" (layer {layer}, head {head})"
            warnings.warn(f"simplex efficient attention{where}: no distribution keeps the output for "
                          f"{len(bad)} of {a.shape[0]} rows {list(bad)[:10]}; they keep the unit-row "
                          "projection (see .infeasible_rows)", stacklevel=4)
    else:
        eff = (a @ basis_vectors) @ basis_vectors.T
    return EfficientAttention(attention=a, effective=eff, null=a - eff, basis_vectors=basis_vectors,
                              rank=basis_vectors.shape[1], basis=basis, variant=variant, rtol=rtol,
                              layer=layer, head=head, infeasible_rows=bad)


def _variant(unit_rows: bool, simplex: bool) -> str:
    return "simplex" if simplex else "unit_rows" if unit_rows else "projection"


def _check_pair(a: np.ndarray, t: np.ndarray) -> None:
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"attention must be a square [n, n] matrix, got shape {a.shape}")
    if t.ndim != 2 or t.shape[0] != a.shape[0]:
        raise ValueError(f"T must be [n, k] with n = {a.shape[0]} rows (one per key token), got shape {t.shape}")
    if not (np.isfinite(a).all() and np.isfinite(t).all()):
        raise ValueError("attention and T must be finite (no NaN or infinity)")


def decompose_matrix(attention: np.ndarray, t: np.ndarray, *, rtol: float | None = None,
                     unit_rows: bool = False, simplex: bool = False, basis: str = "custom",
                     layer: int | None = None, head: int | None = None) -> EfficientAttention:
    """Split an attention matrix ``A`` [n, n] against the matrix it multiplies ``T`` [n, k]."""
    a, t = np.asarray(attention, dtype=np.float64), np.asarray(t, dtype=np.float64)
    _check_pair(a, t)
    variant = _variant(unit_rows, simplex)
    ts = _with_ones(t) if variant != "projection" else t
    (basis_vectors,), tol = _column_bases(ts[None], rtol)
    return _result(a, basis_vectors, variant=variant, basis=basis, rtol=tol, layer=layer, head=head)


# --------------------------------------------------------------------------- traces and models
_OUTPUT_NAMES = ("o_proj", "out_proj", "out_lin", "c_proj", "o")   # Llama / many, DistilBERT, GPT-2, T5


def output_projection(model: TracedModel, layer: int) -> np.ndarray:
    """The output projection of ``layer`` as ``W`` [H * d_head, D] acting on the concatenated
    head outputs (``out = concat_h(A_h V_h) @ W + b``); head ``h`` uses rows ``h*d:(h+1)*d``."""
    if not -model.n_layers <= layer < model.n_layers:
        raise IndexError(f"layer {layer} is out of range: this model has {model.n_layers} layers "
                         f"(0..{model.n_layers - 1})")
    attention = model.attention_modules[layer]
    found = next((getattr(attention, n) for n in _OUTPUT_NAMES if hasattr(attention, n)), None)
    if found is None:                                     # BERT / RoBERTa: sibling attention.output.dense
        names = {id(m): name for name, m in model.module.named_modules()}
        parent = model.module.get_submodule(names[id(attention)].rpartition(".")[0])
        found = getattr(getattr(parent, "output", None), "dense", None)
    if found is None or not hasattr(found, "weight"):
        raise ValueError(f"cannot find the output projection of layer {layer} in this "
                         f"{model.config.model_type} model; pass T explicitly with basis=<array>")
    w = found.weight.detach().float().cpu().numpy()
    return w if type(found).__name__ == "Conv1D" else w.T   # GPT-2's Conv1D stores [in, out]


def jacobian_basis(model: TracedModel, trace: Any, layer: int, head: int, logit: int | str | None = None) -> np.ndarray:
    """``T = (d logit / d A)^T`` [n, n] (``[n, n * classes]`` for ``logit="all"``) for one head of a
    trace of ``model``: column ``q`` is ``V_h g_q``, ``g_q`` the logit's gradient at the head's output
    of query ``q`` (first order; see the module docstring)."""
    import torch

    layer, head = trace.check_head(layer, head)
    if (model.n_layers, model.n_heads) != (trace.n_layers, trace.n_heads):
        raise ValueError(f"model ({model.n_layers} layers x {model.n_heads} heads) is not the model of "
                         f"this trace ({trace.n_layers} x {trace.n_heads})")
    remove = list(trace.removed) or None
    try:
        enc = model.encode(trace.text, remove=remove, removal=trace.removal)
    except ValueError:                                     # too long: the trace was truncated
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enc = model.encode(trace.text, remove=remove, removal=trace.removal, truncate=True)
    if len(enc.input_ids) != trace.n_tokens:
        raise ValueError(f"the model encodes this trace's text to {len(enc.input_ids)} tokens, not "
                         f"{trace.n_tokens}: pass the trace of this model")
    dtype = next(model.module.parameters()).dtype
    a = torch.tensor(np.asarray(trace.attentions[layer, head]), dtype=dtype, requires_grad=True)
    batch = model.batch([enc])
    with torch.enable_grad():
        out, _ = model.forward(batch, overrides={(layer, head): a.to(model.device)})
        logits = model.output_logits(out, batch)[0]                      # [classes] or [vocab]
        n_out = logits.shape[-1]
        if logit is None:
            which = [int(torch.argmax(logits))]
        elif isinstance(logit, str):
            if logit != "all":
                raise ValueError(f"logit must be None (the predicted class), a class index or 'all', not {logit!r}")
            if model.task != "sequence-classification":
                raise ValueError("logit='all' is for classifiers; for a language model pick one token id (logit=<int>)")
            which = list(range(n_out))
        elif isinstance(logit, (bool, np.bool_)) or not isinstance(logit, (int, np.integer)) \
                or not -n_out <= logit < n_out:
            raise ValueError(f"logit {logit!r} is out of range: the output has {n_out} entries (0..{n_out - 1})")
        else:
            which = [int(logit) % n_out]
        grads = [torch.autograd.grad(logits[c], a, retain_graph=k + 1 < len(which))[0]
                 for k, c in enumerate(which)]                            # each [n, n] = G V^T
    return np.concatenate([g.detach().double().cpu().numpy().T for g in grads], axis=1)


def basis_matrix(trace: Any, layer: int, head: int, basis: Basis | np.ndarray = "value",
                 model: TracedModel | None = None, logit: int | str | None = None) -> np.ndarray:
    """``T`` [n, k] for one head of a trace: see the module docstring for the bases."""
    if not isinstance(basis, str):
        t = np.asarray(basis, dtype=np.float64)
        if t.ndim != 2 or t.shape[0] != trace.n_tokens:
            raise ValueError(f"an explicit basis must be [n, k] with n = {trace.n_tokens}, got {t.shape}")
        return t
    if basis == "value":
        return trace.values[layer, head].astype(np.float64)
    if basis == "hidden":
        return trace.hidden_states[layer].astype(np.float64)
    if basis == "jacobian":
        if model is None:
            raise ValueError("basis='jacobian' needs the model (to differentiate its logit): pass model=")
        return jacobian_basis(model, trace, layer, head, logit)
    if basis == "value_output":
        if model is None:
            raise ValueError("basis='value_output' needs the model (for its output projection): pass model=")
        if (model.n_layers, model.n_heads) != (trace.n_layers, trace.n_heads):
            raise ValueError(f"model ({model.n_layers} layers x {model.n_heads} heads) is not the model of "
                             f"this trace ({trace.n_layers} x {trace.n_heads})")
        d = trace.values.shape[-1]
        w = output_projection(model, layer)
        if w.shape[0] != trace.n_heads * d:
            raise ValueError(f"output projection has {w.shape[0]} inputs, expected heads x d_head = "
                             f"{trace.n_heads * d}")
        return trace.values[layer, head].astype(np.float64) @ w[head * d:(head + 1) * d].astype(np.float64)
    raise ValueError(f"basis must be one of {', '.join(BASES)} or an [n, k] array, not {basis!r}")


def decompose(trace: Any, layer: int, head: int, *, basis: Basis | np.ndarray = "value",
              rtol: float | None = None, model: TracedModel | None = None, unit_rows: bool = False,
              simplex: bool = False, logit: int | str | None = None) -> EfficientAttention:
    """Efficient/null split of ``trace.attentions[layer, head]`` [n, n] (one head; see
    :func:`decompose_layer` for all heads of a layer). ``logit``: for ``basis="jacobian"``."""
    if isinstance(head, str):
        raise ValueError(f"decompose takes one head (0..{trace.n_heads - 1}); for head={head!r} use "
                         "decompose_layer(trace, layer), which returns one result per head")
    layer, head = trace.check_head(layer, head)
    t = basis_matrix(trace, layer, head, basis, model, logit)
    name = basis if isinstance(basis, str) else "custom"
    return decompose_matrix(trace.attentions[layer, head], t, rtol=rtol, unit_rows=unit_rows,
                            simplex=simplex, basis=name, layer=layer, head=head)


def decompose_layer(trace: Any, layer: int, *, basis: Basis | np.ndarray = "value", rtol: float | None = None,
                    model: TracedModel | None = None, unit_rows: bool = False, simplex: bool = False,
                    logit: int | str | None = None) -> tuple[EfficientAttention, ...]:
    """One :class:`EfficientAttention` per head of ``layer`` (one batched SVD for the layer)."""
    layer, _ = trace.check_head(layer, "all")
    heads = range(trace.n_heads)
    ts = np.stack([basis_matrix(trace, layer, h, basis, model, logit) for h in heads])   # [H, n, k]
    variant = _variant(unit_rows, simplex)
    bases, tol = _column_bases(_with_ones(ts) if variant != "projection" else ts, rtol)
    name = basis if isinstance(basis, str) else "custom"
    return tuple(_result(trace.attentions[layer, h], bases[h], variant=variant, basis=name, rtol=tol,
                         layer=layer, head=h) for h in heads)
