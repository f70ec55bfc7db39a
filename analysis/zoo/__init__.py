"""Embedded models, built offline on first use and cached (see ``python -m analysis.zoo``)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from analysis.zoo import attention_classifier, bert4rec, sentiment
from analysis.zoo.cache import BUILD_THREADS, build_atomically, build_threads, cache_root, read_manifest, resolve
from analysis.zoo.codepath import build_in_child, describe, versioned

DEFAULT = sentiment.NAME
#: zoo name -> (recipe version, builder(out_dir, progress) -> info): the training itself, run
#: inside a build process (:func:`build_into`)
BUILDERS: dict[str, tuple[str, Callable[[Path, bool], dict[str, Any]]]] = {
    sentiment.NAME: (sentiment.SentimentRecipe().version,
                     lambda out, progress: sentiment.train(out, progress=progress)),
}
# the classic single-attention classifiers (Jain & Wallace): "attention-classifier-rt", "-imdb"
for _name, _recipe in attention_classifier.RECIPES.items():
    BUILDERS[_name] = (_recipe.version,
                       lambda out, progress, r=_recipe: attention_classifier.train(out, r, progress=progress))
# BERT4Rec on the synthetic item sequences: "bert4rec"
BUILDERS[bert4rec.NAME] = (bert4rec.RECIPE.version, lambda out, progress: bert4rec.train(out, progress=progress))
#: zoo name -> (cache version, builder(out_dir, progress) -> info) as :func:`prepare` runs it: every
#: zoo model trains in a fresh process on the pinned CPU code path (:mod:`analysis.zoo.codepath`)
ZOO: dict[str, tuple[str, Callable[[Path, bool], dict[str, Any]]]] = {
    _name: (versioned(_version), lambda out, progress, n=_name: build_in_child(n, out, progress))
    for _name, (_version, _) in BUILDERS.items()
}


def build_into(name: str, out: Path, progress: bool = True) -> dict[str, Any]:
    """Train zoo model ``name`` into ``out`` in this process with :data:`BUILD_THREADS` threads and
    return its info, with the code path it ran on (``code_path``). ``prepare`` calls this in a
    fresh process whose environment pins the code path; calling it elsewhere builds on whatever
    path this process has."""
    if name not in BUILDERS:
        raise ValueError(f"unknown zoo model {name!r}; available: {', '.join(BUILDERS)}")
    with build_threads(BUILD_THREADS):
        info = BUILDERS[name][1](Path(out), progress)
        info["code_path"] = describe()
    return info


def model_dir(name: str | None = None) -> Path:
    """Cache folder of a zoo model."""
    return cache_root() / "models" / (name or DEFAULT)


def prepare(name: str | None = None, *, progress: bool = True, rebuild: bool = False) -> dict[str, Any]:
    """Build a zoo model unless a complete, intact cached copy exists; return its manifest.

    Safe across processes: one builds while the others wait for it, then load its result. Every
    zoo model trains in a fresh process on one CPU code path whatever the machine (AVX2 kernels,
    ``BUILD_THREADS`` (2) torch threads: :mod:`analysis.zoo.codepath`), so that a rebuild elsewhere
    can give the same weights; a builder registered in ``ZOO`` by other code runs in this process
    with ``BUILD_THREADS`` threads (the caller's count is restored afterwards)."""
    name = name or DEFAULT
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; available: {', '.join(ZOO)}")
    version, build = ZOO[name]
    folder = model_dir(name)
    meta = None if rebuild else read_manifest(folder, version)
    if meta is None:
        if folder.exists() and not rebuild:
            warnings.warn(f"cached model at {folder} is incomplete, corrupt or outdated: rebuilding it", stacklevel=2)
        def waiting() -> None:
            if progress:
                print(f"another process is building {name} in {folder.parent}; waiting for it", file=sys.stderr)
        def fixed(out: Path) -> dict[str, Any]:                # runs only in the process that builds
            if progress:
                print(f"building zoo model {name} (minutes; once per machine) into {folder.parent}", file=sys.stderr)
            with build_threads(BUILD_THREADS):
                return build(out, progress)
        meta = build_atomically(folder, version, fixed, rebuild=rebuild, on_wait=waiting)
    return meta


def load(name: str | None = None, *, device: Any = "cpu", dtype: Any = "auto", progress: bool = True) -> Any:
    """Load a zoo model as an ``analysis.Model`` (building it first if needed); the attention
    classifiers load as ``attention_classifier.AttentionClassifier`` and "bert4rec" as
    ``bert4rec.Recommender`` (same interface, item histories as inputs). ``device`` and ``dtype``
    as in :func:`analysis.load_model` (zoo models are saved in float32, so "auto" is float32)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from analysis.models.devices import check_dtype, resolve_device, resolve_dtype
    from analysis.models.model import Model

    name = name or DEFAULT
    where = resolve_device(device)
    check_dtype(dtype)
    meta = prepare(name, progress=progress)
    folder = resolve(model_dir(name))          # one version for the whole load
    if name in attention_classifier.RECIPES or name == bert4rec.NAME:
        kind = attention_classifier if name in attention_classifier.RECIPES else bert4rec
        traced = kind.load(folder, name=name, device=str(where))
        precision = resolve_dtype(dtype, where, "float32")
        if precision != traced.dtype:
            traced.module.to(precision)
        traced.info = meta
        return traced
    module = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager",
                                                                local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    precision = resolve_dtype(dtype, where, getattr(module.config, "dtype", None))
    model = Model(module, tokenizer, task="sequence-classification", name=name, device=where, dtype=precision)
    model.info = meta
    return model
