"""``load_model``: the embedded default, a zoo name, a local folder or a Hugging Face hub id."""
from __future__ import annotations

import os
from typing import Any

import torch

from analysis.models.base import TracedModel
from analysis.models.devices import check_dtype, resolve_device, resolve_dtype
from analysis.models.model import TASKS, Model, infer_task
from analysis.types import Task

#: the files transformers builds a tokenizer from; a model folder needs one of these sets
TOKENIZER_FILES: tuple[tuple[str, ...], ...] = (
    ("tokenizer.json",),                 # a fast tokenizer, any kind
    ("vocab.txt",),                      # WordPiece (BERT, DistilBERT)
    ("vocab.json", "merges.txt"),        # byte-level BPE (GPT-2, RoBERTa)
    ("tokenizer.model",),                # SentencePiece (Llama)
    ("spiece.model",), ("sentencepiece.bpe.model",),
)
_PROBE = "the movie was good , and the actors were great ."

_AUTO_CLASSES = {
    "sequence-classification": "AutoModelForSequenceClassification",
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
}


def expected_tokenizer_files() -> str:
    """The tokenizer files a model folder needs, as one readable line."""
    return " or ".join(" + ".join(group) for group in TOKENIZER_FILES)


def check_model_folder(folder: str | os.PathLike) -> None:
    """Raise ValueError unless the local ``folder`` holds a model config and a tokenizer's
    files (see TOKENIZER_FILES): without them transformers builds an empty tokenizer that
    turns every word into [UNK], and the model's predictions are garbage."""
    path = os.path.expanduser(os.fspath(folder))
    if not os.path.isdir(path):
        raise ValueError(f"{os.fspath(folder)!r} is not a folder")
    present = set(os.listdir(path))
    if "config.json" not in present:
        raise ValueError(f"model folder {path} has no config.json: save the model there with "
                         "model.save_pretrained(folder)")
    if not any(all(f in present for f in group) for group in TOKENIZER_FILES):
        raise ValueError(f"model folder {path} has no tokenizer files: expected {expected_tokenizer_files()} "
                         "(with tokenizer_config.json). Save the tokenizer the model was trained with there: "
                         "tokenizer.save_pretrained(folder)")


def check_tokenizer(tokenizer: Any, name: str) -> None:
    """Raise ValueError when ``tokenizer`` cannot read ordinary text: it has no vocabulary, or
    every word of a plain English sentence becomes its unknown token."""
    ids = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    unk = getattr(tokenizer, "unk_token_id", None)
    if not ids or (unk is not None and all(i == unk for i in ids)):
        raise ValueError(f"the tokenizer of {name!r} is unusable: it turns every word of {_PROBE!r} into "
                         f"{tokenizer.unk_token or 'nothing'} (vocabulary of {len(tokenizer)} tokens). Expected "
                         f"{expected_tokenizer_files()} with the model's full vocabulary")


def load_model(name: str | None = None, *, task: Task | None = None, device: str | torch.device = "cpu",
               dtype: str | torch.dtype = "auto", trust_remote_code: bool = False,
               progress: bool = True) -> TracedModel:
    """Load a model ready for tracing (a :class:`TracedModel`: a :class:`Model` for Hugging Face
    ones, the zoo's own kinds otherwise).

    ``None`` (or a zoo name, see ``analysis.zoo.ZOO``) gives an embedded model, offline: built
    on first use, then cached. A local folder or hub id gives that Hugging Face model with
    attnlab's eager attention; only a hub id reaches the network. A folder without tokenizer
    files, or whose tokenizer turns plain text into unknown tokens, raises ValueError.

    ``device``: "cpu" (default), "auto" (a CUDA GPU when torch sees one, else the CPU), "cuda"
    or "cuda:N"; a GPU where none is visible raises ValueError. ``dtype``: "auto" (float32 on the
    CPU; on a GPU the checkpoint's saved float16 / bfloat16, else float32), "float32",
    "bfloat16" or "float16" (see ``analysis.models.devices``). Traces and predictions are
    float32 numpy arrays whatever the model computes in.
    """
    from analysis import zoo

    where = resolve_device(device)        # bad devices and dtypes fail before anything loads
    check_dtype(dtype)
    if name is None or name in zoo.ZOO:
        return zoo.load(name, device=where, dtype=dtype, progress=progress)
    if task is not None and task not in TASKS:
        raise ValueError(f"task {task!r} is not supported; use one of {', '.join(TASKS)}")
    import transformers

    local = os.path.isdir(os.path.expanduser(name))
    path = os.path.expanduser(name) if local else name
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "local_files_only": local}
    if local:
        check_model_folder(path)
    try:
        config = transformers.AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"could not load model {name!r}: it is neither an attnlab zoo model ({', '.join(zoo.ZOO)}), "
            "nor a local folder, nor a Hugging Face model reachable from here. Offline, download it "
            "elsewhere, copy the folder here and pass its path; load_model() with no name gives the "
            f"embedded default. ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    task = task or infer_task(config)
    precision = resolve_dtype(dtype, where, getattr(config, "dtype", None))
    auto = getattr(transformers, _AUTO_CLASSES[task])
    module = auto.from_pretrained(path, attn_implementation="eager", dtype=precision, **kwargs)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"could not load the tokenizer of {name!r}: expected {expected_tokenizer_files()}. "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    check_tokenizer(tokenizer, name)
    if task == "seq2seq-lm":   # encoder-decoder (T5, BART): every site named, the encoder traced
        from analysis.models.seq2seq import Seq2SeqModel
        return Seq2SeqModel(module, tokenizer, name=name, device=where)
    return Model(module, tokenizer, task=task, name=name, device=where)   # dtype as loaded (fp32-kept modules stay)
