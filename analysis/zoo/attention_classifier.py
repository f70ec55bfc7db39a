"""The classic single-attention classifier (Jain & Wallace 2019), embedded in the zoo.

    tokens -> embeddings e [n, D] -> encoder h [n, D] (BiLSTM 128 per direction; or "cnn", "average")
           -> additive attention a = softmax_i(v . tanh(W h_i + b)) [n] -> context c = sum_i a_i h_i [D]
           -> linear decoder logits = U c + u [2]   (D = 256 for every encoder)

Choices, where Jain & Wallace's differ or leave room:

- Tokens: the MiniLM word-piece tokenizer of the default model (offline), ``[CLS]``/``[SEP]``
  included (they play J&W's <SOS>/<EOS>), so encoding, truncation and token removal (delete,
  mask, pad, unk) are exactly those of :class:`analysis.models.Model` (the same
  :class:`analysis.models.text.TextInput` step). J&W used words.
- Embeddings: initialised from MiniLM's (static, input) word-piece embeddings reduced to D = 256
  dimensions by PCA, then trained; J&W used pre-trained word vectors or random ones.
- Encoders: ``"lstm"`` a BiLSTM (packed, so padding never changes a sequence's states);
  ``"cnn"`` 1-D convolutions with kernel widths 1, 3, 5, 7 (64 channels each, ReLU, same
  padding); ``"average"`` a per-token projection ``ReLU(W e_i + b)`` (no context; the
  attention-weighted sum is the "average").
- Training: Adam (SparseAdam for the embeddings), batches of similar length, seeded; the best
  epoch on a 10% validation part of the training split is kept. A BiLSTM over word pieces is
  slow on a shared 2-core CPU (~1 s a batch of 64), so the Rotten Tomatoes recipe trains 2
  epochs, and the IMDB recipe uses the CNN encoder on 8000 reviews truncated to 256 word pieces
  (J&W: BiLSTM on all of IMDB). Each manifest records the test accuracy and training seconds.

As a :class:`analysis.models.TracedModel` (see :class:`AttentionClassifier`): 1 layer x 1 head. The
query is the decoder, so there is one attention distribution per input; a trace shows it as an
``n x n`` matrix whose every row is ``a``. ``values`` are the encoder states ``h`` (what the
attention multiplies), ``hidden_states`` are ``(embeddings, encoder states)`` [2, n, 256].
An ``attention_override`` ``A`` [n, n] (or [k, n, n]) is used through the mean of its rows,
``a' = 1^T A / n`` (for a trace's own matrix, ``a' = a``); being linear in ``A``, the efficient
attention ``A P`` gives the same output. The decoder is the attention module's ``out_proj``, so
``decompose(..., basis="value_output", model=model)`` projects on ``h U^T`` [n, 2].
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from analysis.causal.synthetic import check_seed
from analysis.models.attention import AttentionHook
from analysis.models.base import ForwardOutput, TracedModel
from analysis.models.devices import resolve_device
from analysis.models.text import TextInput

__all__ = ["NAMES", "ENCODERS", "ClassifierRecipe", "RECIPES", "AttentionClassifierModule",
           "AttentionClassifier", "train", "load", "tiny"]

ENCODERS = ("lstm", "cnn", "average")
LABELS = ("negative", "positive")
WEIGHTS, CONFIG = "model.pt", "classifier.json"


@dataclass(frozen=True)
class ClassifierRecipe:
    """Everything that determines a trained classifier; its hash names the cache version."""

    name: str = "attention-classifier-rt"
    dataset: str = "rotten_tomatoes"
    encoder: str = "lstm"         # "lstm", "cnn" or "average"
    hidden: int = 128             # per LSTM direction; D = 2 * hidden for every encoder
    attention_dim: int = 128      # W in v . tanh(W h + b)
    max_length: int = 128         # word pieces, [CLS]/[SEP] included
    epochs: int = 2
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    dropout: float = 0.3          # on embeddings and on the context vector
    pretrained_embeddings: bool = True   # MiniLM word-piece embeddings, PCA to D
    max_train: int | None = None  # use at most this many training examples (None: all)
    seed: int = 0

    @property
    def version(self) -> str:
        return f"{self.name}-" + hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


RECIPES: dict[str, ClassifierRecipe] = {
    "attention-classifier-rt": ClassifierRecipe(),
    "attention-classifier-imdb": ClassifierRecipe(name="attention-classifier-imdb", dataset="imdb",
                                                  encoder="cnn", max_length=256, epochs=2, batch_size=64,
                                                  max_train=8000),
}
NAMES = tuple(RECIPES)


# --------------------------------------------------------------------------- the network
class Encoder(nn.Module):
    """Token states ``h`` [b, n, D] from embeddings [b, n, D] and lengths [b]."""

    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        if kind not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {kind!r}")
        if dim % 8:
            raise ValueError(f"the state size must be a multiple of 8, got {dim}")
        self.kind = kind
        if kind == "lstm":
            self.lstm = nn.LSTM(dim, dim // 2, batch_first=True, bidirectional=True)
        elif kind == "cnn":
            self.convs = nn.ModuleList(nn.Conv1d(dim, dim // 4, w, padding=w // 2) for w in (1, 3, 5, 7))
        else:
            self.proj = nn.Linear(dim, dim)

    def forward(self, e: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        n = e.shape[1]
        keep = (torch.arange(n, device=e.device)[None] < lengths[:, None]).unsqueeze(-1)   # [b, n, 1]
        if self.kind == "lstm":
            packed = nn.utils.rnn.pack_padded_sequence(e, lengths.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = self.lstm(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=n)
            return h
        if self.kind == "cnn":
            x = (e * keep).transpose(1, 2)                                         # [b, D, n]
            return torch.relu(torch.cat([c(x) for c in self.convs], 1)).transpose(1, 2) * keep
        return torch.relu(self.proj(e)) * keep


class AdditiveAttention(nn.Module):
    """``a = softmax(v . tanh(W h + b))`` over unmasked tokens, then the decoder ``out_proj``."""

    def __init__(self, dim: int, attention_dim: int, n_classes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, attention_dim)
        self.v = nn.Linear(attention_dim, 1, bias=False)
        self.out_proj = nn.Linear(dim, n_classes)      # the decoder U, u (named like an output projection)

    def scores(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention ``a`` [b, n] (rows sum to 1 over tokens with mask 1)."""
        s = self.v(torch.tanh(self.proj(h))).squeeze(-1)
        return torch.softmax(s.masked_fill(mask == 0, float("-inf")), -1)


class AttentionClassifierModule(nn.Module):
    """Embeddings -> encoder -> additive attention -> linear decoder (all sizes ``dim``)."""

    def __init__(self, vocab_size: int, *, encoder: str = "lstm", dim: int = 256, attention_dim: int = 128,
                 n_classes: int = 2, dropout: float = 0.0, pad_id: int = 0, sparse: bool = False) -> None:
        super().__init__()
        self.kwargs = dict(vocab_size=vocab_size, encoder=encoder, dim=dim, attention_dim=attention_dim,
                           n_classes=n_classes, dropout=dropout, pad_id=pad_id)
        # sparse: embedding gradients only for the tokens of a batch (the vocabulary is 30k x D)
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id, sparse=sparse)
        self.encoder = Encoder(encoder, dim)
        self.attention = AdditiveAttention(dim, attention_dim, n_classes)
        self.dropout = nn.Dropout(dropout)

    @property
    def decoder(self) -> nn.Linear:
        return self.attention.out_proj

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                override: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Logits [b, C], attention used [b, n], embeddings and encoder states [b, n, D].

        ``override`` [n, n] or [b or 1, n, n] replaces the attention by the mean of its rows.
        """
        mask = attention_mask
        n = mask.shape[1]
        lengths = n - mask.flip(1).argmax(1)                  # right-padded: last attended token + 1
        lengths = torch.where(mask.any(1), lengths, torch.ones_like(lengths))
        e = self.embedding(input_ids)                         # [b, n, D]
        h = self.encoder(self.dropout(e), lengths)            # [b, n, D]
        a = self.attention.scores(h, mask) if override is None else override.to(device=h.device, dtype=h.dtype).mean(-2).expand(h.shape[0], n)
        context = torch.einsum("bn,bnd->bd", a, h)            # [b, D]
        return {"logits": self.attention.out_proj(self.dropout(context)), "attention": a,
                "embeddings": e, "states": h}


# --------------------------------------------------------------------------- the TracedModel interface
@dataclass(frozen=True)
class ClassifierConfig:
    """The classifier's sizes and labels, as ``model.config`` (named like a Hugging Face config)."""

    encoder: str
    dim: int
    max_length: int
    model_type: str = "attention-classifier"
    num_attention_heads: int = 1
    num_labels: int = 2
    id2label: dict[int, str] = field(default_factory=lambda: dict(enumerate(LABELS)))


class AttentionClassifier(TextInput, TracedModel):
    """A single-attention classifier as a :class:`TracedModel`: 1 layer x 1 head.

    Text encoding and removal are :class:`TextInput`'s (the same as a transformer's); ``trace``
    and ``predict`` are :class:`TracedModel`'s. See the module docstring for what the trace's
    attention, values and hidden states mean and how overrides are used.
    """

    kind = "attention-classifier"
    task = "sequence-classification"
    #: one attention distribution per input: every row of a trace's attention matrix is the same
    query_independent = True

    def __init__(self, module: AttentionClassifierModule, tokenizer: Any, *, name: str = "attention-classifier",
                 max_length: int = 128, labels: tuple[str, ...] = LABELS, device: str = "cpu") -> None:
        self.device = resolve_device(device)      # a clear error for a GPU that is not there
        self.module = module.to(self.device).eval()
        self.tokenizer = tokenizer
        self.name = name
        self.config = ClassifierConfig(encoder=module.kwargs["encoder"], dim=module.kwargs["dim"],
                                       max_length=int(max_length), num_labels=len(labels),
                                       id2label=dict(enumerate(labels)))
        self.info: dict[str, Any] = {}

    @property
    def attention_modules(self) -> tuple[nn.Module, ...]:
        """The one attention module (its ``out_proj`` is the decoder)."""
        return (self.module.attention,)

    @property
    def n_layers(self) -> int:
        return 1

    @property
    def n_heads(self) -> int:
        return 1

    @property
    def max_length(self) -> int:
        return self.config.max_length

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names (from the saved config)."""
        return tuple(str(self.config.id2label[i]) for i in range(self.config.num_labels))

    def __repr__(self) -> str:
        return (f"AttentionClassifier({self.name!r}, {self.config.encoder} encoder, D={self.config.dim}, "
                f"1 layer x 1 head)")

    def forward(self, batch: Mapping[str, torch.Tensor], *, overrides: Mapping[tuple[int, int], torch.Tensor] | None = None,
                capture: bool = False, hidden_states: bool = False,
                keep: Mapping[int, Sequence[int] | None] | None = None) -> tuple[ForwardOutput, AttentionHook]:
        """Run on a prepared batch with checked overrides (differentiable in them).

        ``out.logits`` [b, C], ``out.hidden_states`` = (embeddings, states) when asked; with
        ``capture`` the hook holds ``weights[0]`` [b, 1, n, n] (the attention as rows, or the
        override as given) and ``values[0]`` [b, 1, n, D] (the encoder states).
        """
        hook = AttentionHook(overrides=dict(overrides or {}), capture=capture, keep=keep)
        override = hook.overrides.get((0, 0))
        res = self.module(batch["input_ids"], batch["attention_mask"], override)
        b, n = batch["input_ids"].shape
        if capture:      # the hook shows the override itself (as given) in place of the rows of ``a``
            hook.apply(0, res["attention"][:, None, None, :].expand(b, 1, n, n), res["states"][:, None])
        return ForwardOutput(logits=res["logits"],
                             hidden_states=(res["embeddings"], res["states"]) if hidden_states else None), hook


# --------------------------------------------------------------------------- building
def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    from analysis.zoo.sentiment import base_model_dir

    return AutoTokenizer.from_pretrained(base_model_dir(), local_files_only=True)


def pretrained_embeddings(dim: int) -> torch.Tensor:
    """MiniLM's word-piece input embeddings [V, 384] reduced to ``dim`` by PCA, unit std per entry."""
    from safetensors.torch import load_file

    from analysis.zoo.sentiment import base_model_dir

    weights = load_file(str(Path(base_model_dir()) / "model.safetensors"))
    key = next(k for k in weights if k.endswith("word_embeddings.weight"))
    w = weights[key].double()
    w = w - w.mean(0)
    _, _, vt = torch.linalg.svd(w, full_matrices=False)
    z = w @ vt[:dim].T
    return (z / z.std()).float()


def tiny(encoder: str = "lstm", *, dim: int = 16, seed: int = 0, max_length: int = 64) -> AttentionClassifier:
    """An untrained small classifier on the MiniLM tokenizer (for tests and examples)."""
    torch.manual_seed(check_seed(seed))
    tok = _tokenizer()
    module = AttentionClassifierModule(len(tok), encoder=encoder, dim=dim, attention_dim=dim,
                                       pad_id=int(tok.pad_token_id))
    with torch.no_grad():     # a larger scale gives peaked attention, so edits visibly move the output
        module.attention.v.weight.mul_(8.0)
        module.attention.out_proj.weight.mul_(4.0)
    return AttentionClassifier(module, tok, name=f"tiny-attention-classifier-{encoder}", max_length=max_length)


def _pad(ids: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    n = max(len(x) for x in ids)
    out = torch.full((len(ids), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), n), dtype=torch.long)
    for i, x in enumerate(ids):
        out[i, : len(x)], mask[i, : len(x)] = torch.tensor(x), 1
    return {"input_ids": out, "attention_mask": mask}


def accuracy(module: AttentionClassifierModule, ids: list[list[int]], labels: np.ndarray, pad_id: int,
             batch_size: int = 128) -> float:
    """Accuracy on tokenised inputs (length-sorted batches, no gradients)."""
    module.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    correct = 0
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            pred = module(**_pad([ids[i] for i in idx], pad_id))["logits"].argmax(-1).numpy()
            correct += int((pred == labels[idx]).sum())
    return correct / max(1, len(ids))


def train(out_dir: Path | None, recipe: ClassifierRecipe = RECIPES["attention-classifier-rt"], *,
          progress: bool = True) -> dict[str, Any]:
    """Train ``recipe`` on its dataset's training split, save to ``out_dir`` (if given); return
    measurements (test accuracy, seconds) for the manifest."""
    from tqdm.auto import tqdm

    from analysis.data import load_dataset
    from analysis.zoo.sentiment import length_batches

    start = time.perf_counter()
    torch.manual_seed(check_seed(recipe.seed))
    rng = np.random.default_rng(recipe.seed)
    tok = _tokenizer()
    pad_id = int(tok.pad_token_id)
    train_set, test_set = load_dataset(recipe.dataset, "train"), load_dataset(recipe.dataset, "test")
    texts, labels = list(train_set.texts), np.asarray(train_set.labels)
    order = rng.permutation(len(texts))[: recipe.max_train]
    n_val = max(1, len(order) // 10)
    val_idx, fit_idx = order[:n_val], order[n_val:]
    encode = lambda ts: tok(list(ts), truncation=True, max_length=recipe.max_length)["input_ids"]  # noqa: E731
    all_ids = encode([texts[i] for i in order])
    ids = dict(zip(order.tolist(), all_ids))
    fit_ids, val_ids = [ids[i] for i in fit_idx], [ids[i] for i in val_idx]
    fit_labels = torch.tensor(labels[fit_idx])

    module = AttentionClassifierModule(len(tok), encoder=recipe.encoder, dim=2 * recipe.hidden,
                                       attention_dim=recipe.attention_dim, dropout=recipe.dropout, pad_id=pad_id,
                                       sparse=True)
    if recipe.pretrained_embeddings:
        with torch.no_grad():
            module.embedding.weight.copy_(pretrained_embeddings(2 * recipe.hidden))
            module.embedding.weight[pad_id] = 0.0
    dense = [p for n, p in module.named_parameters() if not n.startswith("embedding.")]
    opts = [torch.optim.Adam(dense, lr=recipe.lr, weight_decay=recipe.weight_decay),
            torch.optim.SparseAdam(list(module.embedding.parameters()), lr=recipe.lr)]
    lengths = np.array([len(x) for x in fit_ids])
    epochs = [length_batches(lengths, recipe.batch_size, rng) for _ in range(recipe.epochs)]
    bar = tqdm(total=sum(len(e) for e in epochs), disable=not progress,
               desc=f"Training {recipe.name} ({recipe.encoder} + attention) on {recipe.dataset}")
    best, best_state, history = -1.0, None, []
    for batches in epochs:
        module.train()
        for b in batches:
            loss = nn.functional.cross_entropy(module(**_pad([fit_ids[i] for i in b], pad_id))["logits"],
                                               fit_labels[b])
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(dense, 5.0)
            for opt in opts:
                opt.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{best:.3f}")
        val = accuracy(module, val_ids, labels[val_idx], pad_id)
        history.append(round(val, 4))
        if val > best:
            best, best_state = val, {k: v.detach().clone() for k, v in module.state_dict().items()}
    bar.close()
    module.load_state_dict(best_state)
    train_seconds = time.perf_counter() - start
    test_acc = accuracy(module, encode(test_set.texts), np.asarray(test_set.labels), pad_id)
    config = {"module": module.kwargs, "max_length": recipe.max_length, "labels": list(LABELS),
              "recipe": asdict(recipe)}
    if out_dir is not None:
        torch.save(module.state_dict(), Path(out_dir) / WEIGHTS)
        (Path(out_dir) / CONFIG).write_text(json.dumps(config, indent=2))
        tok.save_pretrained(out_dir)
    return {"name": recipe.name, "recipe": asdict(recipe), "test_accuracy": test_acc,
            "validation_accuracy": history, "best_epoch": int(np.argmax(history)) + 1,
            "n_test": len(test_set), "n_train": len(fit_idx), "n_validation": len(val_idx),
            "train_seconds": round(train_seconds, 1), "total_seconds": round(time.perf_counter() - start, 1),
            "torch_threads": torch.get_num_threads()}


def load(folder: Path, *, name: str = "", device: str = "cpu") -> AttentionClassifier:
    """A cached classifier (the folder ``train`` wrote) as an :class:`AttentionClassifier`."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    config = json.loads((folder / CONFIG).read_text())
    module = AttentionClassifierModule(**config["module"])
    module.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return AttentionClassifier(module, tok, name=name or config["recipe"]["name"],
                               max_length=config["max_length"], labels=tuple(config["labels"]), device=device)


def with_recipe(name: str, **changes: Any) -> ClassifierRecipe:
    """A registered recipe with some fields changed (e.g. ``encoder="cnn"``)."""
    return replace(RECIPES[name], **changes)
