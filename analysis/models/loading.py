"""``load_model``: the embedded default, a zoo name, a local folder or a Hugging Face hub id."""
from __future__ import annotations

import os
from typing import Any

from analysis.models.model import SUPPORTED_ARCHITECTURES, TASKS, Model, infer_task

_AUTO_CLASSES = {
    "sequence-classification": "AutoModelForSequenceClassification",
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
}


def load_model(name: str | None = None, *, task: str | None = None, device: str = "cpu",
               trust_remote_code: bool = False, progress: bool = True) -> Model:
    """Load a model ready for tracing.

    ``None`` (or a zoo name, see ``analysis.zoo.ZOO``) gives an embedded model, offline: built
    on first use, then cached. A local folder or hub id gives that Hugging Face model with
    attnlab's eager attention; only a hub id reaches the network.
    """
    from analysis import zoo

    if name is None or name in zoo.ZOO:
        return zoo.load(name, device=device, progress=progress)
    if task is not None and task not in TASKS:
        raise ValueError(f"task {task!r} is not supported; use one of {', '.join(TASKS)}")
    import transformers

    local = os.path.isdir(os.path.expanduser(name))
    path = os.path.expanduser(name) if local else name
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "local_files_only": local}
    try:
        config = transformers.AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"could not load model {name!r}: it is neither an attnlab zoo model ({', '.join(zoo.ZOO)}), "
            "nor a local folder, nor a Hugging Face model reachable from here. Offline, download it "
            "elsewhere, copy the folder here and pass its path; load_model() with no name gives the "
            f"embedded default. ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if config.model_type not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"architecture {config.model_type!r} of {name!r} is not supported; supported: "
                         f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    task = task or infer_task(config)
    auto = getattr(transformers, _AUTO_CLASSES[task])
    module = auto.from_pretrained(path, attn_implementation="eager", **kwargs)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, **kwargs)
    return Model(module, tokenizer, task=task, name=name, device=device)
