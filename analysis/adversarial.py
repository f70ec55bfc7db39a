"""Adversarial attention (Jain & Wallace 2019) for one head, or all heads of a layer, of a
transformer, with the Naim & Asher question measured: do adversaries that keep the prediction
share the efficient attention?

The search optimises ``k`` attention matrices at once (one forward pass over a batch of ``k``
copies of the input, each with its own override) to maximise

    sum_i JSD(a_i, a) + mean_{i != j} JSD(a_i, a_j)   subject to   TVD(y_i, y) <= eps

by minimising ``-(that) + penalty * sum_i relu(TVD(y_i, y) - eps)`` with Adam (amsgrad).

Choices (Jain & Wallace's, where they made one):
- adversaries are logits, initialised at ``log(uniform) + 3 N(0, 1)`` (seeded), turned into
  attention by a masked softmax over the keys the head may see (all keys for encoders, keys
  ``<=`` the query for decoder models), so every adversary row is a distribution;
- JSD between two attention matrices = the mean over query rows (and over heads for
  ``head="all"``) of the row-wise JSD, in bits (``analysis.metrics.jsd``, in [0, 1]);
- TVD between predictions over the model's output (classes; the vocabulary for LMs);
- the model's weights are frozen and untouched: only the override tensors get gradients.
- kept per adversary: the step with the largest JSD from the original among the steps where
  it was feasible (constrained change <= eps); if it never was, the step with the smallest change. Reported
  ``tvd``/``probs`` (and ``logit_change``) are re-measured by a full forward pass on the kept matrices, and
  ``feasible`` says which satisfy the constraint; ``feasible_attentions`` keeps only those.

Speed: the blocks before ``layer`` see no override, so their output is computed once and
replayed at every step (only inside the search's own forward passes; a ``callback`` may run the
model normally). A single-attention classifier's encoder states are replayed the same way
(:func:`fixed_states`), and its one shared attention row is normalised and compared once per
adversary rather than as ``n`` equal rows. Every reported prediction is re-measured with a full forward pass, as ``model.predict`` runs it.

Efficient-attention comparison (value basis, whose projection ``P`` is the same for every
adversary because overriding layer ``l``'s attention does not change layer ``l``'s values):
``raw_distance = ||a_i - a||_F`` and ``efficient_distance = ||a_i P - a P||_F`` (over the
``[n, n]`` or ``[H, n, n]`` block), and the mean-over-rows half L1 of both (``raw_row_tvd``,
``efficient_row_tvd``). The null part's distance is ``sqrt(raw^2 - efficient^2)``.

Where it bites (issue 13):

- ``constraint="tvd"`` bounds the prediction's TVD by ``eps`` (as before); ``constraint="logit"``
  bounds the largest absolute logit change ``max_c |z_c' - z_c|`` instead. ``eps="relative"`` sets
  ``eps = eps_fraction x`` the head's own uniform-ablation change of that quantity on this input
  (the head(s) replaced by uniform attention, causal-uniform for decoders), so the constraint
  binds whatever the head's sensitivity; ``eps_rule`` in the result (and its repr) says which.
- rows that reach the output: ``row_weights`` [n] (``[H, n]`` for ``head="all"``, summing to 1)
  are the norms of the Jacobian of the logits (all classes; the predicted token for language
  models) with respect to each query row's head output ``o_q = a_q V``, at the original
  attention (first order). ``g_q`` is recovered from ``d logit / d a_q = V g_q`` by least squares,
  i.e. the part of the gradient that attention changes can reach (all of it when ``V`` has full
  column rank). In the final layer of a [CLS] / last-token classifier every other row's gradient
  is exactly 0, so the weights are the target row alone. ``output_jsd``,
  ``output_raw_distance``, ``output_efficient_distance`` (``sqrt(sum_q w_q |d_q|^2)``),
  ``output_raw_row_tvd``, ``output_efficient_row_tvd`` and ``output_efficient_share`` are the
  all-rows measures with rows weighted by ``row_weights``; NaN when no row reaches the output.
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from analysis.causal.synthetic import check_seed
from analysis.efficient import decompose, jacobian_basis
from analysis.metrics import jsd, tvd
from analysis.sensitivity import ablated_attention

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["AdversarialResult", "search", "output_row_weights", "fixed_states", "CONSTRAINTS"]

#: what the adversary's ``eps`` bounds: the prediction's TVD, or the largest |logit change|
CONSTRAINTS = ("tvd", "logit")


@dataclass(frozen=True, eq=False)
class AdversarialResult:
    """``k`` adversarial attentions for one head ``[k, n, n]`` or a layer ``[k, H, n, n]``."""

    attentions: np.ndarray            # [k, n, n] or [k, H, n, n] (rows are distributions)
    original_attention: np.ndarray    # [n, n] or [H, n, n]
    efficient: np.ndarray             # like attentions: each adversary's efficient attention (a_i P)
    original_efficient: np.ndarray    # like original_attention: a P
    probs: np.ndarray                 # [k, C] predictions with each adversary
    original: np.ndarray              # [C] original prediction
    jsd: np.ndarray                   # [k] attention JSD from the original (bits, mean over rows/heads)
    pairwise_jsd: np.ndarray          # [k, k] attention JSD between adversaries
    tvd: np.ndarray                   # [k] prediction TVD from the original
    feasible: np.ndarray              # [k] bool: tvd <= eps
    raw_distance: np.ndarray          # [k] ||a_i - a||_F
    efficient_distance: np.ndarray    # [k] ||a_i P - a P||_F
    raw_row_tvd: np.ndarray           # [k] mean over rows (and heads) of 0.5 |a_i - a|_1
    efficient_row_tvd: np.ndarray     # [k] the same for a_i P - a P
    tokens: list[str]
    layer: int
    head: int | str                   # an int, or "all"
    heads: tuple[int, ...]            # heads overridden, in the order of the H axis
    eps: float
    steps: int                        # steps asked for
    steps_run: int                    # steps done (fewer when cancelled)
    cancelled: bool
    seed: int
    loss: np.ndarray                  # [steps_run] the objective at each step
    constraint: str = "tvd"           # "tvd" or "logit": what eps bounds
    eps_rule: str = ""                # how eps was chosen (absolute, or relative to the uniform ablation)
    ablation_change: float | None = None   # the uniform ablation's tvd / logit change (eps="relative")
    logit_change: np.ndarray | None = None  # [k] max |logits_i - logits| per adversary
    row_weights: np.ndarray | None = None   # [n] or [H, n]: each row's share of the output gradient
    output_jsd: np.ndarray | None = None            # [k] JSD with rows weighted by row_weights
    output_raw_distance: np.ndarray | None = None   # [k] sqrt(sum_q w_q |a_iq - a_q|^2)
    output_efficient_distance: np.ndarray | None = None  # [k] the same for a_i P - a P
    output_raw_row_tvd: np.ndarray | None = None    # [k] sum_q w_q 0.5 |a_iq - a_q|_1
    output_efficient_row_tvd: np.ndarray | None = None

    @property
    def k(self) -> int:
        return self.attentions.shape[0]

    @property
    def feasible_attentions(self) -> np.ndarray:
        """Only the adversaries that keep the prediction within eps [k_feasible, ...]."""
        return self.attentions[self.feasible]

    @property
    def efficient_share(self) -> np.ndarray:
        """``efficient_distance / raw_distance`` [k]: 0 = the adversary moved only the null part."""
        return self.efficient_distance / np.maximum(self.raw_distance, 1e-300)

    @property
    def output_change(self) -> np.ndarray:
        """``[k]``: the constrained quantity (``tvd`` or ``logit_change``); ``feasible`` is ``<= eps``."""
        return self.logit_change if self.constraint == "logit" else self.tvd

    @property
    def output_efficient_share(self) -> np.ndarray:
        """``efficient_share`` on the rows that reach the output [k] (NaN when none does)."""
        if self.output_raw_distance is None:
            return np.full(self.k, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.output_efficient_distance / np.maximum(self.output_raw_distance, 1e-300)

    def override(self, i: int) -> dict[tuple[int, int], np.ndarray]:
        """The ``attention_override`` that reproduces adversary ``i`` with ``model.predict``."""
        a = self.attentions[i]
        return {(self.layer, h): (a if self.head != "all" else a[j]) for j, h in enumerate(self.heads)}

    def __repr__(self) -> str:
        bound = "|logit change|" if self.constraint == "logit" else "TVD"
        rule = f" ({self.eps_rule})" if self.eps_rule else ""
        out = ""
        if self.output_jsd is not None:
            out = (f"; output rows: JSD {np.round(self.output_jsd, 3).tolist()}, efficient/raw distance "
                   f"{np.round(self.output_efficient_share, 3).tolist()}")
        return (f"AdversarialResult(layer {self.layer}, head {self.head}: {int(self.feasible.sum())}/{self.k} "
                f"feasible at {bound} <= {self.eps:.4g}{rule}; all rows: JSD {np.round(self.jsd, 3).tolist()}, TVD "
                f"{np.round(self.tvd, 4).tolist()}, efficient/raw distance "
                f"{np.round(self.efficient_share, 3).tolist()}{out}; {self.steps_run}/{self.steps} steps"
                f"{', cancelled' if self.cancelled else ''})")


# --------------------------------------------------------------------------- set-up
def layer_blocks(model: TracedModel) -> list[nn.Module] | None:
    """The transformer blocks in layer order (the ``ModuleList`` items holding each attention
    module), or None when they cannot be found unambiguously."""
    names = {id(m): name for name, m in model.module.named_modules()}
    blocks = []
    for i, attention in enumerate(model.attention_modules):
        parts = names[id(attention)].split(".")
        found = None
        for j in range(len(parts) - 1, 0, -1):
            parent = model.module.get_submodule(".".join(parts[:j]))
            if parts[j] == str(i) and isinstance(parent, nn.ModuleList):
                found = parent[i]
                break
        if found is None:
            return None
        blocks.append(found)
    return blocks if len({id(b) for b in blocks}) == len(blocks) else None


def fixed_states(model: TracedModel) -> nn.Module | None:
    """A query-independent single-attention classifier's encoder (``model.module.encoder``): its
    states do not depend on the attention, so the search holds them fixed (as Jain & Wallace do)
    and replays them at every step; None for every other model."""
    if not getattr(model, "query_independent", False) or model.n_layers != 1:
        return None
    encoder = getattr(getattr(model, "module", None), "encoder", None)
    return encoder if isinstance(encoder, nn.Module) else None


_REPLAY_ATTR = "_attnlab_replay"   # on a replayed block: {thread id: output}, plus its original forward
_REPLAY_LOCK = threading.Lock()    # guards installing / removing those tables
_MISSING = object()


def _replaying_forward(table: dict[int, Any], original: Callable[..., Any]) -> Callable[..., Any]:
    """A block's forward that returns the replayed output for the threads in ``table`` and runs
    ``original`` for every other thread (a panel's job and the notebook may share one model)."""
    def forward(*args: Any, **kwargs: Any) -> Any:
        out = table.get(threading.get_ident(), _MISSING)
        return original(*args, **kwargs) if out is _MISSING else out
    return forward


@dataclass
class _Prefix:
    """The blocks before the searched layer see no override, so their output is the same at every
    step: computed once, then replayed inside :meth:`replay` only, and only for the searching
    thread (the model is untouched outside it and for other threads, so callbacks and other
    threads may run the model)."""

    blocks: list[nn.Module] = field(default_factory=list)   # blocks 0 .. layer-1 (empty: no replay)
    output: Any = None                                       # what block layer-1 returned

    @classmethod
    def capture(cls, model: TracedModel, layer: int, batch: dict[str, torch.Tensor]) -> "_Prefix":
        blocks = layer_blocks(model) if layer > 0 else None
        if blocks:
            blocks = blocks[:layer]
        else:
            fixed = fixed_states(model)
            if fixed is None:
                return cls()
            blocks = [fixed]
        seen: dict[str, Any] = {}
        thread = threading.get_ident()

        def keep(module: nn.Module, args: Any, out: Any) -> None:
            if threading.get_ident() == thread:       # not another thread's forward on the same model
                seen.setdefault("out", out)
        handle = blocks[-1].register_forward_hook(keep)
        try:
            with torch.no_grad():
                model.forward(batch)
        finally:
            handle.remove()
        return cls(blocks, seen.get("out"))

    @contextmanager
    def replay(self) -> Iterator[None]:
        if not self.blocks or self.output is None:
            yield
            return
        thread = threading.get_ident()
        with _REPLAY_LOCK:
            for b in self.blocks:
                entry = b.__dict__.get(_REPLAY_ATTR)
                if entry is None:                      # first replay on this block: install the switch
                    saved = b.__dict__.get("forward")
                    table: dict[int, Any] = {}
                    b.forward = _replaying_forward(table, saved if saved is not None else type(b).forward.__get__(b))
                    entry = b.__dict__[_REPLAY_ATTR] = (table, saved)
                entry[0][thread] = self.output
        try:
            yield
        finally:
            with _REPLAY_LOCK:
                for b in self.blocks:
                    entry = b.__dict__.get(_REPLAY_ATTR)
                    if entry is None:
                        continue
                    entry[0].pop(thread, None)
                    if not entry[0]:                   # no thread replays any more: restore the block
                        del b.__dict__[_REPLAY_ATTR]
                        if entry[1] is None:
                            b.__dict__.pop("forward", None)
                        else:
                            b.forward = entry[1]


@dataclass(frozen=True, eq=False)
class _Context:
    """Everything fixed during one search."""

    model: TracedModel
    text: str
    trace: Any
    layer: int
    heads: tuple[int, ...]
    head: int | str
    batch: dict[str, torch.Tensor]     # k copies of the input
    support: torch.Tensor              # [n, n] bool: keys each query may attend to
    original: torch.Tensor             # [h, n, n] the head(s)' attention
    y0: torch.Tensor                   # [C] original prediction
    z0: torch.Tensor                   # [C] original logits (same batch shape as the search's passes)
    bases: tuple[np.ndarray, ...]      # per head: [n, rank] orthonormal basis of col(V)
    prefix: _Prefix                    # replays the blocks before the layer


def _validate(*, k: int, eps: float | str, steps: int, lr: float, penalty: float, constraint: str = "tvd",
              eps_fraction: float = 0.5) -> None:
    if not isinstance(constraint, str) or constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {', '.join(map(repr, CONSTRAINTS))} (what eps bounds: the "
                         f"prediction's TVD or the largest |logit change|), not {constraint!r}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (the number of adversaries) must be an integer >= 1, got {k!r}")
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if isinstance(eps, str):
        if eps != "relative":
            raise ValueError(f"eps must be a number > 0 or 'relative' (a fraction of the head's uniform-ablation "
                             f"change), not {eps!r}")
        if isinstance(eps_fraction, bool) or not isinstance(eps_fraction, (int, float, np.floating)) \
                or not 0 < eps_fraction < 1:
            raise ValueError(f"eps_fraction must be in (0, 1) (at 1 the uniform ablation itself is feasible), "
                             f"got {eps_fraction!r}")
    for name, value in ((("eps", eps),) if not isinstance(eps, str) else ()) + (("lr", lr), ("penalty", penalty)):
        if isinstance(value, bool) or not (isinstance(value, (int, float, np.floating)) and math.isfinite(value)
                                           and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if constraint == "tvd" and not isinstance(eps, str) and eps >= 1:
        raise ValueError(f"eps is a bound on the prediction's TVD, which is at most 1: use 0 < eps < 1, got {eps}")


def _context(model: TracedModel, text: str, layer: int, head: int | str, k: int) -> _Context:
    from analysis.abcd import capture

    if head == "mean":
        raise ValueError(f"head must be an int in 0..{model.n_heads - 1} or 'all', not 'mean'")
    trace = model.trace(text, **capture(model, layer, head))      # only the head (or layer) searched
    layer, head = trace.check_head(layer, head)
    heads = tuple(range(trace.n_heads)) if head == "all" else (head,)
    n = trace.n_tokens
    support = torch.tril(torch.ones(n, n, dtype=torch.bool)) if model.is_causal else torch.ones(n, n, dtype=torch.bool)
    enc = model.encode(text)
    y0 = torch.as_tensor(model.predict(text)[0], dtype=torch.float32)
    bases = tuple(decompose(trace, layer, h, basis="value").basis_vectors for h in heads)
    batch = model.batch([enc] * k)
    with torch.no_grad():
        z0 = model.output_logits(model.forward(batch)[0], batch)[0].float().cpu()   # the search runs on the CPU
    return _Context(model=model, text=text, trace=trace, layer=layer, heads=heads, head=head, batch=batch,
                    support=support, original=torch.as_tensor(np.stack([trace.attentions[layer, h] for h in heads])), y0=y0,
                    z0=z0, bases=bases, prefix=_Prefix.capture(model, layer, batch))


def output_row_weights(model: TracedModel, trace: Any, layer: int, heads: tuple[int, ...] | list[int]) -> np.ndarray:
    """``[len(heads), n]``: per head and query row ``q``, ``|J_q|_F``, the Jacobian of the logits (all
    classes of a classifier; the predicted token of a language model) with respect to the row's head
    output ``o_q = a_q V`` at the trace's attention, normalised to sum 1 over all entries (all 0 when
    nothing reaches the output). First order; ``J_q`` is the least-squares solution of
    ``d z / d a_q = V J_q^T``, the part attention changes can reach."""
    logit = "all" if model.task == "sequence-classification" else None
    out = []
    for h in heads:
        t = jacobian_basis(model, trace, layer, h, logit)                        # [n, n * classes]
        v = np.asarray(trace.values[layer, h], dtype=np.float64)                  # [n, d]
        n = v.shape[0]
        g = np.stack([np.linalg.lstsq(v, t[:, c * n:(c + 1) * n], rcond=None)[0].T   # [n, d]: row q = J_q[c]
                      for c in range(t.shape[1] // n)])
        out.append(np.sqrt((g ** 2).sum((0, 2))))
    w = np.stack(out)
    total = w.sum()
    return w / total if total > 0 else w


def _ablation_change(ctx: _Context, constraint: str) -> float:
    """The output change (TVD or max |logit change|) with the head(s) replaced by uniform attention."""
    n = ctx.support.shape[0]
    uniform = torch.as_tensor(ablated_attention(np.zeros((n, n)), "uniform", causal=ctx.model.is_causal),
                              dtype=ctx.original.dtype)
    k = ctx.batch["input_ids"].shape[0]
    att = uniform.expand(k, len(ctx.heads), n, n)
    with torch.no_grad():
        z = _forward(ctx, att)[0]
    return float(_violation(z[None], ctx, constraint)[0])


def _init_logits(ctx: _Context, k: int, seed: int) -> torch.Tensor:
    """``log(uniform) + 3 N(0, 1)`` logits [k, h, n, n] (Jain & Wallace), seeded.

    A query-independent model (one attention distribution, every row equal: the classic
    single-attention classifier) gets one row of logits [k, h, 1, n], so its rows stay tied
    and the JSD is not inflated by rows the model never sees apart.
    """
    gen = torch.Generator().manual_seed(int(seed))
    n = ctx.support.shape[0]
    rows = 1 if ctx.model.query_independent else n
    log_uniform = -torch.log(ctx.support[:rows].sum(-1, keepdim=True).float())   # [rows, 1]
    noise = torch.randn((k, len(ctx.heads), rows, n), generator=gen)
    return (log_uniform + 3.0 * noise).requires_grad_(True)


# --------------------------------------------------------------------------- one step
def _attention(theta: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Masked softmax of the logits [k, h, n or 1, n] over the visible keys: [k, h, n, n]. One
    shared row (a query-independent model, whose keys are all visible) is normalised once and
    expanded (the rows are views of it)."""
    if theta.shape[-2] == 1 and bool(support.all()):
        return torch.softmax(theta, dim=-1).expand(*theta.shape[:2], *support.shape)
    return torch.softmax(theta.expand(*theta.shape[:2], *support.shape).masked_fill(~support, float("-inf")), dim=-1)


def _rows(ctx: _Context, x: torch.Tensor) -> torch.Tensor:
    """The query rows the objective needs: the first alone for a query-independent model (every
    row is the same distribution, so the mean over rows equals it), else all."""
    return x[..., :1, :] if ctx.model.query_independent else x


def _violation(logits: torch.Tensor, ctx: _Context, constraint: str) -> torch.Tensor:
    """What eps bounds [k]: the prediction's TVD, or the largest |logit change|."""
    if constraint == "logit":
        return (logits.float() - ctx.z0).abs().amax(-1)
    return tvd(torch.softmax(logits.float(), -1), torch.softmax(ctx.z0, -1))


def _objective(att: torch.Tensor, logits: torch.Tensor, ctx: _Context, eps: float, penalty: float,
               constraint: str = "tvd") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss (scalar), JSD from the original [k] and the constrained output change [k]."""
    k = att.shape[0]
    rows = _rows(ctx, att)
    j = jsd(rows, _rows(ctx, ctx.original).unsqueeze(0)).mean((-2, -1))          # [k]
    if k > 1:
        iu = torch.triu_indices(k, k, offset=1)
        pair = jsd(rows[iu[0]], rows[iu[1]]).mean((-2, -1)).mean()              # JSD is symmetric
    else:
        pair = att.new_zeros(())
    t = _violation(logits, ctx, constraint)                                      # [k]
    loss = -(j.sum() + pair) + penalty * torch.relu(t - eps).sum()
    return loss, j, t


def _forward(ctx: _Context, att: torch.Tensor) -> torch.Tensor:
    """Logits [k, C] with adversary i overriding the head(s) in batch row i."""
    model = ctx.model
    overrides = {(ctx.layer, h): att[:, i] for i, h in enumerate(ctx.heads)}
    with ctx.prefix.replay():
        out, _ = model.forward(ctx.batch, overrides=overrides)
    return model.output_logits(out, ctx.batch).float().cpu()   # the model may be on a GPU; the search is not


@dataclass
class _Best:
    """Per adversary: the feasible state with the largest JSD, else the smallest TVD so far."""

    att: torch.Tensor
    probs: torch.Tensor
    jsd: torch.Tensor
    tvd: torch.Tensor
    ever_feasible: torch.Tensor

    @classmethod
    def empty(cls, att: torch.Tensor, probs: torch.Tensor) -> "_Best":
        k = att.shape[0]
        return cls(att.detach().clone(), probs.detach().clone(), torch.full((k,), -math.inf),
                   torch.full((k,), math.inf), torch.zeros(k, dtype=torch.bool))

    def update(self, att: torch.Tensor, probs: torch.Tensor, j: torch.Tensor, t: torch.Tensor, eps: float) -> None:
        feasible = t <= eps
        take = (feasible & (~self.ever_feasible | (j > self.jsd))) | (~self.ever_feasible & ~feasible & (t < self.tvd))
        self.att[take], self.probs[take] = att[take], probs[take]
        self.jsd[take], self.tvd[take] = j[take], t[take]
        self.ever_feasible |= feasible


# --------------------------------------------------------------------------- results
def _result(ctx: _Context, att: np.ndarray, logits: np.ndarray, *, eps: float, steps: int, steps_run: int,
            cancelled: bool, seed: int, loss: list[float], constraint: str = "tvd", eps_rule: str = "",
            ablation_change: float | None = None, weights: np.ndarray | None = None) -> AdversarialResult:
    """Measure adversaries ``att`` [k, h, n, n] with logits ``logits`` [k, C]; ``weights`` [h, n] the
    rows' share of the output gradient (:func:`output_row_weights`)."""
    logits = np.asarray(logits, dtype=np.float64)
    z = logits - logits.max(-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    logit_change = np.abs(logits - ctx.z0.double().numpy()).max(-1)
    att = att.astype(np.float64)
    orig = ctx.original.double().numpy()                                         # [h, n, n]
    eff = np.stack([att[:, i] @ u @ u.T for i, u in enumerate(ctx.bases)], axis=1)
    orig_eff = np.stack([orig[i] @ u @ u.T for i, u in enumerate(ctx.bases)])
    y0 = ctx.y0.double().numpy()
    t = tvd(probs, y0)
    measured = logit_change if constraint == "logit" else t
    out: dict[str, Any] = {}
    if weights is not None:
        w = weights if weights.sum() > 0 else np.full(weights.shape, np.nan)        # nothing reaches: NaN
        d, de = att - orig, eff - orig_eff
        out = dict(row_weights=weights if ctx.head == "all" else weights[0],
                   output_jsd=(jsd(att, orig[None]) * w).sum((-2, -1)),
                   output_raw_distance=np.sqrt(((d ** 2).sum(-1) * w).sum((-2, -1))),
                   output_efficient_distance=np.sqrt(((de ** 2).sum(-1) * w).sum((-2, -1))),
                   output_raw_row_tvd=(0.5 * np.abs(d).sum(-1) * w).sum((-2, -1)),
                   output_efficient_row_tvd=(0.5 * np.abs(de).sum(-1) * w).sum((-2, -1)))
    squeeze = (lambda x: x) if ctx.head == "all" else (lambda x: x[:, 0] if x.ndim == 4 else x[0])
    row_l1 = lambda d: 0.5 * np.abs(d).sum(-1).mean((-2, -1))                    # noqa: E731
    return AdversarialResult(
        attentions=squeeze(att), original_attention=squeeze(orig), efficient=squeeze(eff),
        original_efficient=squeeze(orig_eff), probs=probs, original=y0,
        jsd=jsd(att, orig[None]).mean((-2, -1)), pairwise_jsd=jsd(att[:, None], att[None]).mean((-2, -1)),
        tvd=t, feasible=measured <= eps,
        raw_distance=np.sqrt(((att - orig) ** 2).sum((1, 2, 3))),
        efficient_distance=np.sqrt(((eff - orig_eff) ** 2).sum((1, 2, 3))),
        raw_row_tvd=row_l1(att - orig), efficient_row_tvd=row_l1(eff - orig_eff),
        tokens=list(ctx.trace.tokens), layer=ctx.layer, head=ctx.head, heads=ctx.heads, eps=float(eps),
        steps=steps, steps_run=steps_run, cancelled=cancelled, seed=int(seed), loss=np.asarray(loss),
        constraint=constraint, eps_rule=eps_rule, ablation_change=ablation_change, logit_change=logit_change, **out)


def _remeasure(ctx: _Context, att: np.ndarray) -> np.ndarray:
    """Logits [k, C] of the kept adversaries [k, h, n, n], re-run through the full model (as
    ``model.predict`` runs it: no replayed prefix)."""
    model = ctx.model
    k = att.shape[0]
    override = {(ctx.layer, h): att[:, i] for i, h in enumerate(ctx.heads)}
    n = ctx.support.shape[0]
    over = model.check_overrides(override, [n] * k)
    with torch.no_grad():
        out, _ = model.forward(ctx.batch, overrides=over)
        return model.output_logits(out, ctx.batch).float().cpu().numpy().astype(np.float64)


def search(model: TracedModel, text: str, *, layer: int, head: int | str, k: int = 5, eps: float | str = 0.01,
           steps: int = 500, lr: float = 0.01, seed: int = 0, penalty: float = 500.0, progress: bool = True,
           callback: Callable[[int, AdversarialResult], bool | None] | None = None, constraint: str = "tvd",
           eps_fraction: float = 0.5, row_weights: bool = True) -> AdversarialResult:
    """Jain & Wallace's search for ``k`` adversarial attentions of ``(layer, head)`` (``head="all"``:
    every head of the layer at once); see the module docstring for every choice.

    ``constraint``: ``"tvd"`` (``eps`` bounds the prediction's TVD) or ``"logit"`` (``eps`` bounds the
    largest |logit change|). ``eps="relative"``: ``eps_fraction`` x the change that replacing the
    head(s) by uniform attention causes on this input (an error when that is 0: the head does not
    reach the output). ``row_weights``: also measure divergence and efficient share on the rows
    that reach the output (:func:`output_row_weights`; one backward pass per class and head).
    ``callback(step, result_so_far)`` runs after each step; returning ``False`` stops the search
    (what was found so far is measured and returned, with ``cancelled=True``).
    """
    _validate(k=k, eps=eps, steps=steps, lr=lr, penalty=penalty, constraint=constraint, eps_fraction=eps_fraction)
    seed = check_seed(seed)
    ctx = _context(model, text, layer, head, k)
    bound = "|logit change|" if constraint == "logit" else "TVD"
    ablation = None
    if eps == "relative":
        ablation = _ablation_change(ctx, constraint)
        noise = 1e-5 * max(1.0, float(ctx.z0.abs().max())) if constraint == "logit" else 1e-6   # float32 error
        if not ablation > noise:
            raise ValueError(f"layer {ctx.layer}, head {ctx.head}: replacing the attention by uniform changes the "
                             f"{bound} by {ablation:.3g}, so no relative eps exists (the head does not reach the "
                             "output here); pass a number for eps or choose another head")
        eps = float(eps_fraction) * ablation
        rule = f"relative: {eps_fraction:g} x uniform-ablation {bound} {ablation:.4g}"
    else:
        eps = float(eps)
        rule = "absolute"
    weights = output_row_weights(model, ctx.trace, ctx.layer, ctx.heads) if row_weights else None
    opts = dict(constraint=constraint, eps_rule=rule, ablation_change=ablation, weights=weights)
    theta = _init_logits(ctx, k, seed)
    optimizer = torch.optim.Adam([theta], lr=lr, amsgrad=True)
    best, losses, cancelled = None, [], False
    bar = tqdm(range(steps), disable=not progress, leave=False,
               desc=f"adversarial attention, layer {ctx.layer}, head {ctx.head}")
    for step in bar:
        att = _attention(theta, ctx.support)
        probs = _forward(ctx, att)                                   # logits [k, C]
        loss, j, t = _objective(att, probs, ctx, eps, penalty, constraint)
        optimizer.zero_grad()
        (theta.grad,) = torch.autograd.grad(loss, [theta])   # model weights get no gradient
        optimizer.step()
        att, probs, j, t = att.detach(), probs.detach(), j.detach(), t.detach()
        if best is None:
            best = _Best.empty(att, probs)
        best.update(att, probs, j, t, eps)
        losses.append(float(loss.detach()))
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(jsd=f"{float(j.mean()):.3f}", max_change=f"{float(t.max()):.4f}")
        if callback is not None:
            so_far = _result(ctx, best.att.numpy(), best.probs.double().numpy(), eps=eps, steps=steps,
                             steps_run=step + 1, cancelled=False, seed=seed, loss=losses, **opts)
            if callback(step, so_far) is False:
                cancelled = True
                break
    bar.close()
    kept = best.att.numpy()
    return _result(ctx, kept, _remeasure(ctx, kept), eps=eps, steps=steps, steps_run=len(losses),
                   cancelled=cancelled, seed=seed, loss=losses, **opts)
