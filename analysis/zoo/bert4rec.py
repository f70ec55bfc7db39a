"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer over item sequences, embedded
in the zoo as ``"bert4rec"`` and wrapped as an :class:`analysis.models.Model`.

    history i_1 .. i_n  ->  ids [i_1+3, ..., i_n+3, [MASK]]  ->  BertForMaskedLM
                        ->  logits at the [MASK] over the item catalogue (special ids excluded)

- Vocabulary (:class:`ItemVocabulary`): ``[PAD]=0``, ``[MASK]=1``, ``[UNK]=2``; item ``i`` has
  token id ``i + 3``. No [CLS]/[SEP]: position ``p`` of a trace is item ``p`` of the history, and
  the query (or, in the abductive form, the recommended item) is the last position.
- Positions count back from the query (:func:`recency_positions`): BERT4Rec left-pads, we
  right-pad like every attnlab Model, so position ids are aligned on the last token instead.
  A history then scores the same alone or in a batch, and the query always sits at the
  position it was trained at.
- :class:`Recommender` is a ``Model``: attention runs through attnlab's hook, so
  ``trace``/``predict``/``attention_override``/``remove`` work exactly as for text.
  ``remove`` positions index the history; ``removal="delete"`` drops those items,
  ``"mask"`` puts ``[MASK]`` in their place (the prediction is read at the last [MASK], the query),
  ``"unk"``/``"pad"`` as for text. Histories longer than ``max_len - 1`` keep their most recent
  items (with a warning); positions then index the kept items (``trace.text``).
- Training (:func:`train_bert4rec`): the Cloze task (each item masked with ``mask_prob``; a
  fraction ``last_frac`` of the rows instead mask only their last item, the inference
  situation), loss over the item catalogue only, AdamW with warm-up and decay, seeded.
  Leave-last-out evaluation: the model trains on ``sequence[:-1]`` and ranks each user's last
  item given ``sequence[:-1]``; HR@10 and NDCG@10 rank the target among the FULL catalogue (no
  sampled negatives), next to the popularity baseline (item counts in the training part);
  ``unseen_*`` metrics take each history's items out of the ranking for both.
- The zoo recipe trains on the synthetic-rec "train" split (each user's sequence without its
  last item), so its internal hold-out is each user's second-to-last item (validation);
  the manifest's headline numbers are on the "test" split (history -> last item).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

import numpy as np
import torch
from torch import nn

from analysis.causal.synthetic import check_seed
from analysis.models.base import Encoded, ForwardOutput, InputError, Override
from analysis.models.model import Model
from analysis.models.trace import Trace

__all__ = ["NAME", "ItemVocabulary", "Recommender", "RecTrace", "Bert4RecRecipe", "RECIPE", "train_bert4rec",
           "rank_metrics", "popularity_scores", "train", "load"]

NAME = "bert4rec"
VOCAB_FILE = "items.json"
Items = Sequence[int]


# --------------------------------------------------------------------------- vocabulary
class ItemVocabulary:
    """Item ids <-> token ids, with the few attributes of a tokenizer that ``Model`` reads.

    Items are ints ``0..n_items-1``; token id = item + ``OFFSET``; ``titles`` name items for display.
    """

    PAD, MASK, UNK = 0, 1, 2
    OFFSET = 3
    pad_token, mask_token, unk_token = "[PAD]", "[MASK]", "[UNK]"
    pad_token_id, mask_token_id, unk_token_id = PAD, MASK, UNK
    eos_token_id = None
    all_special_ids = [PAD, MASK, UNK]
    model_max_length = int(1e30)

    def __init__(self, n_items: int, titles: Mapping[int, str] | None = None) -> None:
        if not isinstance(n_items, (int, np.integer)) or n_items < 2:
            raise ValueError(f"n_items must be an integer >= 2, not {n_items!r}")
        self.n_items = int(n_items)
        titles = {int(k): str(v) for k, v in (titles or {}).items()}
        bad = [k for k in titles if not 0 <= k < self.n_items]
        if bad:
            raise ValueError(f"titles name items {bad[:5]} outside 0..{self.n_items - 1}")
        self.titles = titles

    def __len__(self) -> int:
        return self.OFFSET + self.n_items

    def title(self, item: int) -> str:
        """Display name of an item ("item 17" when no title was given)."""
        return self.titles.get(int(item), f"item {int(item)}")

    def check(self, items: Any) -> tuple[int, ...]:
        """Validate a history: a non-empty sequence of item ids in ``0..n_items-1``."""
        if isinstance(items, (str, bytes)) or not hasattr(items, "__len__"):
            raise InputError(f"a history is a sequence of item ids (ints 0..{self.n_items - 1}), "
                             f"not {type(items).__name__}")
        if len(items) == 0:
            raise InputError("the item sequence is empty: give at least one item")
        out = []
        for i in items:
            if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
                raise InputError(f"item ids are ints 0..{self.n_items - 1}, not {i!r}")
            if not 0 <= int(i) < self.n_items:
                raise InputError(f"unknown item id {int(i)}: this catalogue has items 0..{self.n_items - 1}")
            out.append(int(i))
        return tuple(out)

    def id(self, item: int) -> int:
        return int(item) + self.OFFSET

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        special = {self.PAD: self.pad_token, self.MASK: self.mask_token, self.UNK: self.unk_token}
        return [special[int(t)] if int(t) < self.OFFSET else self.title(int(t) - self.OFFSET) for t in ids]

    def to_json(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "offset": self.OFFSET, "special": self.convert_ids_to_tokens(range(3)),
                "titles": {str(k): v for k, v in sorted(self.titles.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ItemVocabulary":
        if int(data.get("offset", cls.OFFSET)) != cls.OFFSET:
            raise ValueError(f"item vocabulary with offset {data['offset']} is not supported (expected {cls.OFFSET})")
        return cls(int(data["n_items"]), {int(k): v for k, v in data.get("titles", {}).items()})


# --------------------------------------------------------------------------- the Model
@dataclass(frozen=True, eq=False)
class RecTrace(Trace):
    """A :class:`Trace` of an item history: ``text`` is the history (tuple of item ids, as kept
    after truncation, before removal), ``logits``/``probs`` are [n, n_items] over the catalogue,
    the last position is the query [MASK] or the appended item ``appended``."""

    items: tuple[int, ...] = ()       # [n] item id at each position, -1 for [MASK]/[PAD]/[UNK]
    appended: int | None = None       # the item appended after the history (None: a [MASK] query)

    @property
    def query(self) -> int:
        """Position of the appended query / recommended item (the last)."""
        return self.n_tokens - 1


class Recommender(Model):
    """BERT4Rec as a :class:`TracedModel`: a Hugging Face masked LM (so :class:`Model`'s hooked
    forward) whose inputs are item histories (sequences of item ids).

    ``predict(histories)`` [batch, n_items] and ``trace(history)`` append a ``[MASK]`` query;
    ``trace(history, append=item)`` appends that item instead (the abductive form used to
    explain a recommendation, :meth:`explanation_trace`). ``labels`` are the item titles
    (index = item id).

    ``is_causal`` is False: BERT4Rec attends both ways, so ``abcd`` does not impose time order
    by default; ``abcd.explain(..., order=True)`` adds it as background knowledge (on the
    synthetic benchmark it changes skeleton F1 by at most 0.03).
    """

    kind = "recommender"
    abductive = True
    input_kind = "items"
    trace_class = RecTrace

    def __init__(self, module: nn.Module, vocab: ItemVocabulary, *, name: str = NAME, device: str = "cpu") -> None:
        if module.config.vocab_size != len(vocab):
            raise ValueError(f"the model has {module.config.vocab_size} token ids, the vocabulary {len(vocab)}")
        super().__init__(module, vocab, task="masked-lm", name=name, device=device)
        self.task = "recommendation"      # a masked LM read at the last [MASK], over items only
        self.vocab = vocab
        self.info: dict[str, Any] = {}

    @property
    def n_items(self) -> int:
        return self.vocab.n_items

    @property
    def labels(self) -> tuple[str, ...]:
        """Item titles; ``labels[i]`` names item ``i``."""
        return tuple(self.vocab.title(i) for i in range(self.n_items))

    @property
    def max_length(self) -> int:
        """Longest input in positions, the query included (history at most ``max_length - 1``)."""
        return int(self.config.max_position_embeddings)

    def title(self, item: int) -> str:
        return self.vocab.title(item)

    def __repr__(self) -> str:
        return (f"Recommender({self.name!r}, {self.n_items} items, {self.n_layers} layers x {self.n_heads} heads, "
                f"hidden {self.config.hidden_size}, max_len {self.max_length})")

    # ----------------------------------------------------------------- inputs
    def history(self, items: Items, *, truncate: bool = True) -> tuple[int, ...]:
        """The validated history as the model sees it: the most recent ``max_length - 1`` items."""
        items = self.vocab.check(items)
        limit = self.max_length - 1
        if len(items) > limit:
            if not truncate:
                raise InputError(f"the history has {len(items)} items, more than this model's limit of {limit}; "
                                 "shorten it or pass truncate=True")
            warnings.warn(f"the history has {len(items)} items; kept the {limit} most recent "
                          f"(positions index the kept items)", stacklevel=3)
            items = items[-limit:]
        return items

    def encode(self, text: Items, *, remove: Sequence[int] | None = None, removal: str = "delete",
               truncate: bool = True, append: int | str = "mask") -> Encoded:
        """Token ids of a history plus the appended query ``[MASK]`` (or the item ``append``);
        ``remove`` lists history positions (the appended position cannot be removed)."""
        items = self.history(text, truncate=truncate)
        bad = [int(p) for p in (remove or ()) if not 0 <= int(p) < len(items)]
        if bad:
            raise InputError(f"cannot remove positions {bad}: the history has {len(items)} items "
                             f"(0..{len(items) - 1}); the appended query cannot be removed")
        if isinstance(append, str):
            if append != "mask":
                raise InputError(f"append must be 'mask' or an item id, not {append!r}")
            last = self.vocab.MASK
        else:
            last = self.vocab.id(self.vocab.check([append])[0])
        return self.remove_positions([self.vocab.id(i) for i in items] + [last], remove, removal)

    def batch(self, encoded: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """Right-padded {input_ids, attention_mask, position_ids} [batch, n]; positions count
        back from the query (see :func:`recency_positions`)."""
        batch = super().batch(encoded)
        batch["position_ids"] = recency_positions(batch["attention_mask"], self.max_length)
        return batch

    # ----------------------------------------------------------------- running
    def output_logits(self, out: ForwardOutput, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits at the last [MASK] (the query) over the catalogue, [batch, n_items]."""
        return super().output_logits(out, batch)[:, self.vocab.OFFSET:]

    def display_tokens(self, input_ids: Sequence[int]) -> list[str]:
        """Item titles, and [MASK] / [PAD] / [UNK] for the special ids."""
        return self.vocab.convert_ids_to_tokens(input_ids)

    def trace_logits(self, out: ForwardOutput) -> torch.Tensor:
        """Logits at every position over the catalogue, [n, n_items]."""
        return out.logits[0, :, self.vocab.OFFSET:]

    def trace_fields(self, encoded: Encoded, *, append: int | str = "mask") -> dict[str, Any]:
        """A :class:`RecTrace`'s item at each position (-1 for special ids) and the appended item."""
        return {"items": tuple(int(t) - self.vocab.OFFSET if t >= self.vocab.OFFSET else -1
                               for t in encoded.input_ids),
                "appended": None if isinstance(append, str) else int(append)}

    def inputs(self, texts: Any) -> list[tuple[int, ...]]:
        """One history or a list of histories, validated."""
        return self._histories(texts)

    def trace(self, text: Items, *, attention_override: Override | None = None, remove: Sequence[int] | None = None,
              removal: str = "delete", truncate: bool = True, append: int | str = "mask",
              heads: Sequence[tuple[int, int]] | None = None, layers: Sequence[int] | None = None) -> RecTrace:
        """One forward pass over ``history + [append]``: tokens (titles), attentions [L,H,n,n],
        values [L,H,n,d], hidden states [L+1,n,D], logits/probs [n, n_items] over the catalogue;
        ``text`` is the history as kept (most recent ``max_length - 1`` items)."""
        items = self.history(text, truncate=truncate)
        return cast(RecTrace, super().trace(items, attention_override=attention_override, remove=remove,
                                            removal=removal, truncate=False, heads=heads, layers=layers,
                                            append=append))

    def predict(self, texts: Items | Sequence[Items], *, attention_override: Override | None = None,
                remove: Sequence[int] | Sequence[Sequence[int]] | None = None, removal: str = "delete",
                batch_size: int = 64, truncate: bool = True) -> np.ndarray:
        """Probabilities [batch, n_items] of the next item at the appended [MASK], for one history
        or a list of histories; ``remove`` is one list of positions for all, or one list per history."""
        return super().predict(texts, attention_override=attention_override, remove=remove,
                               removal=removal, batch_size=batch_size, truncate=truncate)

    def recommend(self, items: Items, k: int = 10, *, exclude_seen: bool = False,
                  remove: Sequence[int] | None = None, removal: str = "delete") -> list[tuple[int, float]]:
        """The ``k`` best next items ``[(item, probability), ...]``, best first (ties: lower id first).

        By default seen items are NOT filtered, so ``recommend(h)[0][0] == predict(h).argmax()``,
        the top-1 that explanations test; ``exclude_seen=True`` drops the history's items.
        """
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"k must be a positive integer, not {k!r}")
        items = self.history(items)
        probs = self.predict([items], remove=remove, removal=removal)[0]
        order = np.argsort(-probs, kind="stable")
        if exclude_seen:
            seen = set(items)
            order = np.array([i for i in order if int(i) not in seen], dtype=int)
        return [(int(i), float(probs[i])) for i in order[:k]]

    def explanation_trace(self, text: Items, prediction: int) -> tuple[RecTrace, int]:
        """The abductive step for :func:`analysis.abcd.explain`: trace the history with the
        recommended item appended; the target is that item's position (the last)."""
        trace = self.trace(text, append=int(prediction))
        return trace, trace.query

    def _histories(self, texts: Any) -> list[tuple[int, ...]]:
        if isinstance(texts, (str, bytes)) or not hasattr(texts, "__len__"):
            raise InputError("predict takes one history (a sequence of item ids) or a list of histories")
        if len(texts) == 0:
            raise InputError("the item sequence is empty: give at least one item (or one history)")
        first = texts[0]
        if isinstance(first, (int, np.integer)) and not isinstance(first, (bool, np.bool_)):
            return [self.vocab.check(texts)]
        return [self.vocab.check(t) for t in texts]

    def __reduce__(self) -> tuple:
        """Pickle as (network class, config, weights, vocabulary): after a trace the module carries
        transformers' forward hooks, which do not pickle (the runner ships models to workers)."""
        state = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        return _rebuild, (type(self.module), self.module.config, state, self.vocab.to_json(), self.name,
                          str(self.device), self.info)

    # ----------------------------------------------------------------- saving
    def save(self, folder: str | Path) -> None:
        """``save_pretrained`` of the network plus the item vocabulary (``items.json``)."""
        folder = Path(folder)
        self.module.save_pretrained(folder)
        (folder / VOCAB_FILE).write_text(json.dumps(self.vocab.to_json(), indent=1))


def _rebuild(cls: Any, config: Any, state: dict, vocab: dict, name: str, device: str, info: dict) -> Recommender:
    """Inverse of :meth:`Recommender.__reduce__`."""
    from analysis.models.attention import register

    register()                          # the config names attnlab's attention function
    module = cls(config)
    module.load_state_dict(state)
    rec = Recommender(module.eval(), ItemVocabulary.from_json(vocab), name=name, device=device)
    rec.info = info
    return rec


def build_module(n_items: int, *, hidden: int = 64, layers: int = 2, heads: int = 2, max_len: int = 32,
                 dropout: float = 0.1, seed: int = 0) -> nn.Module:
    """A fresh ``BertForMaskedLM`` over ``n_items + 3`` token ids (seeded initialisation)."""
    import transformers

    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    cfg = transformers.BertConfig(
        vocab_size=n_items + ItemVocabulary.OFFSET, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=max_len,
        type_vocab_size=1, pad_token_id=ItemVocabulary.PAD, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, initializer_range=0.02, architectures=["BertForMaskedLM"])
    torch.manual_seed(check_seed(seed))
    return transformers.BertForMaskedLM(cfg)


def load(folder: str | Path, *, name: str = NAME, device: str = "cpu") -> Recommender:
    """A saved recommender (``Recommender.save`` / the zoo's cache folder)."""
    import transformers

    folder = Path(folder)
    vocab = ItemVocabulary.from_json(json.loads((folder / VOCAB_FILE).read_text()))
    module = transformers.BertForMaskedLM.from_pretrained(folder, attn_implementation="eager", local_files_only=True)
    return Recommender(module, vocab, name=name, device=device)


def recency_positions(attention_mask: torch.Tensor, max_len: int) -> torch.Tensor:
    """Position ids [batch, n] aligned on each row's last attended token, which gets ``max_len - 1``
    (the query, wherever right-padding puts it), the one before ``max_len - 2``, ...; padding gets 0.

    BERT4Rec left-pads, so its positions count back from the query; this is the same with
    right-padding, so a history scores the same alone, in a batch, or with items deleted.
    """
    n = attention_mask.shape[1]
    lengths = n - attention_mask.flip(1).argmax(1)                       # last attended position + 1
    pos = torch.arange(n, device=attention_mask.device)[None] + (max_len - lengths)[:, None]
    return torch.where(pos < max_len, pos, torch.zeros_like(pos))


# --------------------------------------------------------------------------- metrics
def rank_metrics(scores: np.ndarray, targets: Sequence[int], k: int = 10,
                 exclude: Sequence[Items] | None = None) -> dict[str, float]:
    """HR@k and NDCG@k of ``targets`` [B] under ``scores`` [B, n_items], over the full catalogue.

    Rank = 1 + number of items scored higher (ties: lower id first); NDCG@k = 1/log2(rank+1) if
    rank <= k else 0 (one relevant item per user). Also the mean rank. ``exclude``: per row,
    items taken out of the ranking (e.g. the history; never the target).
    """
    scores = np.array(scores, dtype=np.float64)
    t = np.asarray(targets, dtype=int)
    for b, items in enumerate(exclude or ()):
        scores[b, [i for i in items if i != t[b]]] = -np.inf
    s_t = scores[np.arange(len(t)), t][:, None]
    ids = np.arange(scores.shape[1])[None]
    rank = 1 + (scores > s_t).sum(1) + ((scores == s_t) & (ids < t[:, None])).sum(1)
    hit = rank <= k
    return {f"hr@{k}": float(hit.mean()), f"ndcg@{k}": float(np.where(hit, 1 / np.log2(rank + 1), 0.0).mean()),
            "mean_rank": float(rank.mean()), "n": int(len(t))}


def popularity_scores(sequences: Sequence[Items], n_items: int) -> np.ndarray:
    """Item counts [n_items] in ``sequences``: the popularity baseline's scores."""
    counts = np.zeros(n_items)
    for s in sequences:
        np.add.at(counts, np.asarray(s, dtype=int), 1)
    return counts


# --------------------------------------------------------------------------- training
def _cloze_batch(seqs: list[tuple[int, ...]], mask_prob: float, last_frac: float, gen: torch.Generator,
                 max_len: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Right-padded ids [b, n] with Cloze masks, attention mask [b, n], labels [b, n] (item or -100)."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), ItemVocabulary.PAD, dtype=torch.long)
    attend = torch.zeros((len(seqs), n), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s) + ItemVocabulary.OFFSET
        attend[b, : len(s)] = 1
    lengths = attend.sum(1)
    masked = (torch.rand(ids.shape, generator=gen) < mask_prob) & attend.bool()
    last_only = torch.rand(len(seqs), generator=gen) < last_frac
    last = torch.zeros_like(masked)
    last[torch.arange(len(seqs)), lengths - 1] = True
    masked = torch.where(last_only[:, None], last, masked)
    empty = ~masked.any(1)                       # rows with nothing masked: mask their last item
    masked[empty] = last[empty]
    labels = torch.where(masked, ids - ItemVocabulary.OFFSET, torch.full_like(ids, -100))
    ids = torch.where(masked, torch.full_like(ids, ItemVocabulary.MASK), ids)
    return {"input_ids": ids, "attention_mask": attend, "position_ids": recency_positions(attend, max_len)}, labels


def _leave_last_out(sequences: Sequence[Items], max_len: int
                    ) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], list[int]]:
    """Training sequences (each ``sequence[:-1]``, most recent ``max_len`` items), and the
    evaluation histories (most recent ``max_len - 1`` of ``sequence[:-1]``) with their targets."""
    fit, hist, targets = [], [], []
    for s in sequences:
        s = tuple(int(i) for i in s)
        if len(s) >= 3:
            fit.append(s[:-1][-max_len:])
            hist.append(s[:-1][-(max_len - 1):])
            targets.append(s[-1])
        elif len(s) >= 1:
            fit.append(s[-max_len:])
    return fit, hist, targets


def train_bert4rec(sequences: Sequence[Items], *, n_items: int | None = None, titles: Mapping[int, str] | None = None,
                   hidden: int = 64, layers: int = 2, heads: int = 2, max_len: int = 32, epochs: int = 40,
                   mask_prob: float = 0.2, last_frac: float = 0.25, batch_size: int = 128, lr: float = 2e-3,
                   weight_decay: float = 0.01, dropout: float = 0.1, seed: int = 0, progress: bool = True,
                   name: str = NAME) -> tuple[Recommender, dict[str, Any]]:
    """Train BERT4Rec on item sequences (Cloze task, AdamW, seeded and deterministic).

    Leave-last-out: trains on each ``sequence[:-1]``, then ranks each sequence's last item
    (sequences of >= 3 items) over the full catalogue: ``metrics`` has ``hr@10``, ``ndcg@10``
    of the model and of the popularity baseline, and training seconds.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if not 0 < mask_prob < 1:
        raise ValueError(f"mask_prob must be in (0, 1), not {mask_prob}")
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 (one item and the query), not {max_len}")
    vocab = ItemVocabulary(n_items or 1 + max(max(s) for s in sequences if len(s)), titles)
    sequences = [vocab.check(s) for s in sequences if len(s)]
    fit, hist, targets = _leave_last_out(sequences, max_len)
    if not fit:
        raise ValueError("no training sequences: give sequences of at least one item")
    module = build_module(vocab.n_items, hidden=hidden, layers=layers, heads=heads, max_len=max_len,
                          dropout=dropout, seed=seed)
    module.set_attn_implementation("eager")
    gen = torch.Generator().manual_seed(check_seed(seed))
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    n_batches = math.ceil(len(fit) / batch_size)
    total = epochs * n_batches
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / max(1, total // 20))
                                              * max(0.0, 1 - step / total) ** 0.5)
    bar = tqdm(total=total, disable=not progress, desc=f"Training {name} (BERT4Rec, {len(fit)} sequences)")
    module.train()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(fit), generator=gen).tolist()
        for s in range(0, len(order), batch_size):
            batch, labels = _cloze_batch([fit[i] for i in order[s: s + batch_size]], mask_prob, last_frac, gen,
                                          max_len)
            logits = module(**batch).logits[..., ItemVocabulary.OFFSET:]
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                               ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(module.parameters(), 5.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-n_batches:]):.3f}")
    bar.close()
    module.eval()
    train_seconds = time.perf_counter() - start
    model = Recommender(module, vocab, name=name)
    metrics: dict[str, Any] = {"train_seconds": round(train_seconds, 1), "n_train": len(fit),
                               "final_loss": round(float(np.mean(losses[-n_batches:])), 4),
                               "evaluation": "leave-last-out, full catalogue (no sampled negatives), seen items kept"}
    if targets:
        metrics.update(evaluate(model, hist, targets, fit))
    return model, metrics


def evaluate(model: Recommender, histories: Sequence[Items], targets: Sequence[int],
             train_sequences: Sequence[Items], k: int = 10) -> dict[str, Any]:
    """HR@k / NDCG@k of the model and of popularity (counts in ``train_sequences``) on
    ``histories`` -> ``targets``, both over the full catalogue; ``unseen_*``: the same with each
    history's items taken out of the ranking (fairer to popularity when items never repeat)."""
    probs = model.predict(list(histories), batch_size=256)
    pop = np.broadcast_to(popularity_scores(train_sequences, model.n_items), probs.shape)
    out: dict[str, Any] = {}
    for prefix, exclude in (("", None), ("unseen_", histories)):
        ours, base = rank_metrics(probs, targets, k, exclude), rank_metrics(pop, targets, k, exclude)
        for key in (f"hr@{k}", f"ndcg@{k}"):
            out[f"{prefix}{key}"] = round(ours[key], 4)
            out[f"{prefix}popularity_{key}"] = round(base[key], 4)
    out["n_eval"] = len(targets)
    return out


# --------------------------------------------------------------------------- the zoo recipe
@dataclass(frozen=True)
class Bert4RecRecipe:
    """Everything that determines the zoo's BERT4Rec; its hash names the cache version."""

    dataset: str = "synthetic-rec"
    data: dict = field(default_factory=lambda: {"n_users": 2000, "n_items": 100, "seed": 0})
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    max_len: int = 32
    epochs: int = 40
    mask_prob: float = 0.2
    last_frac: float = 0.25
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.01
    dropout: float = 0.1
    seed: int = 0

    @property
    def version(self) -> str:
        return f"{NAME}-" + hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]

    def training_kwargs(self) -> dict[str, Any]:
        keep = ("hidden", "layers", "heads", "max_len", "epochs", "mask_prob", "last_frac", "batch_size", "lr",
                "weight_decay", "dropout", "seed")
        return {k: getattr(self, k) for k in keep}


RECIPE = Bert4RecRecipe()


def train(out_dir: Path | None, recipe: Bert4RecRecipe = RECIPE, *, progress: bool = True) -> dict[str, Any]:
    """Train the recipe on its dataset's training split, save into ``out_dir`` (if given) and
    return the manifest's measurements (leave-last-out and test-split HR@10/NDCG@10 of model
    and popularity, seconds)."""
    from analysis.data import load_dataset

    train_set = load_dataset(recipe.dataset, split="train", **recipe.data)
    model, metrics = train_bert4rec(train_set.sequences, n_items=train_set.n_items, titles=train_set.titles,
                                    progress=progress, **recipe.training_kwargs())
    info: dict[str, Any] = {"name": NAME, "recipe": asdict(recipe), "validation": metrics,
                            "torch_threads": torch.get_num_threads()}
    test_set = load_dataset(recipe.dataset, split="test", **recipe.data)
    if getattr(test_set, "targets", None) is not None:
        hist = [tuple(h)[-(model.max_length - 1):] for h in test_set.sequences]     # most recent items
        info["test"] = evaluate(model, hist, test_set.targets, train_set.sequences)
        info.update({k: info["test"][k] for k in ("hr@10", "ndcg@10", "popularity_hr@10", "popularity_ndcg@10")})
    else:
        info.update({k: metrics[k] for k in ("hr@10", "ndcg@10", "popularity_hr@10", "popularity_ndcg@10")
                     if k in metrics})
    info["train_seconds"] = metrics["train_seconds"]
    if out_dir is not None:
        model.save(out_dir)
    return info
