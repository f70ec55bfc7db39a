"""One runner for every dataset-scale experiment: map a task's per-unit function over units
in-process, on joblib processes (one machine) or on a Dask cluster, stream finished units to
Parquet chunks, resume an interrupted run, return one tidy ``DataFrame``.

    df = run("explanations", units, workers=4, out="results/rt")        # joblib, resumable
    df = run(task, units, scheduler="tcp://host:8786", out="results/rt") # Dask distributed

Results do not depend on the backend: each unit is seeded from its id (:func:`unit_seed`),
never from the worker or the completion order, and the table is sorted by unit order.

On disk (``out/``): ``manifest.json`` (task, settings, package version, model fingerprint,
unit ids; written atomically) and ``chunks/chunk-*.parquet`` (each written to a temporary
name, then renamed: a killed run leaves at most a dot-file, which is ignored and removed).
A unit that raises is retried once, then stored as a failed row (``error``); a resumed run
recomputes failed and missing units only.

Devices: the model stays on the device it was loaded on (in-process, the object itself). A
model on ``cuda`` sent to worker processes lands, on a machine with several GPUs, on one GPU per
worker: each worker claims the first GPU no other worker on the machine holds (a lock file per
GPU, released when the worker ends or dies; more workers than GPUs share them by process id).
Tested with the GPU count mocked; not run on a machine with several GPUs.
Batching model calls inside a unit is the task's business.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import random
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pandas as pd

from analysis.files import atomic_path

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["run", "unit_seed", "unit_hash", "model_fingerprint", "load_results", "status", "check_model", "summarize",
           "read_manifest", "SettingsMismatch", "release_models", "model_dataset", "completed_rows"]

MANIFEST = "manifest.json"
CHUNKS = "chunks"
#: bookkeeping columns of the chunks (stripped from the returned table)
_META = ("_unit_id", "_unit_hash", "_row", "_error")


class SettingsMismatch(ValueError):
    """``out`` holds results made with another task, settings, model or package version."""


# --------------------------------------------------------------------------- identities
def _canonical(obj: Any) -> Any:
    """``obj`` as plain JSON values (tuples -> lists, numpy scalars -> numbers)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=_json_default))


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"settings and units must be JSON-serialisable; got {type(x).__name__}: {x!r}")


def unit_hash(unit: dict) -> str:
    """sha256 (hex, 16 chars) of the unit's canonical JSON: a resumed unit must be the same unit."""
    return hashlib.sha256(json.dumps(_canonical(unit), sort_keys=True).encode()).hexdigest()[:16]


def unit_seed(unit_id: str) -> int:
    """The seed of unit ``unit_id`` (a 32-bit int), from a stable hash through ``SeedSequence``:
    the same on every worker, backend and run."""
    entropy = int.from_bytes(hashlib.sha256(str(unit_id).encode()).digest()[:16], "little")
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def model_fingerprint(model: TracedModel) -> str:
    """sha256 over the parameter bytes (sorted by name), the class and the config of ``model``
    (an attnlab ``Model``, a torch module, or any picklable object: its pickle). The config's
    ``_name_or_path`` (the folder it was loaded from) is left out: the same weights loaded from
    another folder (another cache, another machine) are the same model."""
    module = getattr(model, "module", model)
    h = hashlib.sha256()
    state = getattr(module, "state_dict", None)
    if callable(state):
        import torch

        h.update(type(module).__qualname__.encode())
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            settings = {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}
            h.update(json.dumps(settings, sort_keys=True, default=str).encode())
        for name, tensor in sorted(state().items()):
            h.update(name.encode())
            h.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
            flat = tensor.detach().cpu().contiguous().reshape(-1)   # as raw bytes: numpy has no bfloat16
            h.update(flat.view(torch.uint8).numpy().tobytes() if flat.dtype == torch.bfloat16 else flat.numpy().tobytes())
    else:
        h.update(pickle.dumps(model, protocol=4))
    return h.hexdigest()


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("attnlab")
    except Exception:  # noqa: BLE001 - not installed: a source checkout
        return "unknown"


# --------------------------------------------------------------------------- models in workers
@dataclass(frozen=True)
class _ModelSpec:
    """How a worker gets the model: by zoo name / folder (``by_name``), from a pickle file next
    to it (joblib) or (Dask) from a dataset published on the scheduler, so a
    worker that joins mid-run fetches it too. ``fingerprint`` is checked after loading."""

    fingerprint: str
    by_name: bool = False
    name: str | None = None
    device: str = "cpu"
    path: str | None = None
    dataset: str | None = None      # Dask: the published dataset holding the pickled model


_LOADED: dict[str, Any] = {}          # per worker process: fingerprint -> model (one at a time)
_LOCK = threading.Lock()


_GPU_SLOT: list[Any] = []            # per worker process: (index, open lock file) of the GPU it holds


def _claim_gpu(n_gpus: int, slots: str | os.PathLike | None = None) -> int:
    """The index of a GPU no other worker process on this machine holds: the first of
    ``gpu-0.lock`` ... ``gpu-{n-1}.lock`` (in ``slots``, default a folder in the temp dir) that this
    process can lock. The lock is held until the process ends, and the OS drops it when the
    process dies, so a killed worker frees its GPU. With more workers than GPUs (or without
    ``fcntl``), the process id picks one (``pid % n_gpus``). The same process keeps its GPU."""
    if _GPU_SLOT:
        return _GPU_SLOT[0][0]
    try:
        import fcntl
    except ImportError:              # Windows: no advisory locks here
        return os.getpid() % n_gpus
    folder = Path(slots) if slots is not None else Path(tempfile.gettempdir()) / "attnlab-gpu-slots"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_gpus):
        f = open(folder / f"gpu-{i}.lock", "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _GPU_SLOT.append((i, f))
        return i
    return os.getpid() % n_gpus


def _pick_device(device: str) -> str:
    """In a worker: a CUDA device (``cuda``, ``cuda:0``, ...: a model's device always names an
    index) on a machine with several GPUs becomes one GPU per worker (:func:`_claim_gpu`); other
    devices stay as given."""
    if not device.startswith("cuda"):
        return device
    import torch
    n = torch.cuda.device_count()
    return f"cuda:{_claim_gpu(n)}" if n > 1 else device


def model_dataset(fingerprint: str) -> str:
    """The name of the Dask dataset that holds the pickled model with this fingerprint."""
    return f"attnlab-model-{fingerprint}"


def release_models(client: Any) -> list[str]:
    """Unpublish the models attnlab runs left on a Dask cluster (they stay published between runs,
    so a repeated run sends nothing and a worker joining later can fetch them); returns their names."""
    names = [n for n in client.list_datasets() if str(n).startswith("attnlab-model-")]
    for n in names:
        client.unpublish_dataset(n)
    return names


def _publish_model(client: Any, model: TracedModel, fingerprint: str) -> str:
    """Publish the pickled model once per cluster (a repeated run finds it and sends nothing)."""
    name = model_dataset(fingerprint)
    if name not in client.list_datasets():
        future = client.scatter(_dumps(model), hash=False)
        client.publish_dataset(future, name=name)
    return name


def _fetch_published(name: str) -> bytes:
    """In a Dask worker: the bytes of a published model (from whichever worker holds them)."""
    from dask.distributed import get_client

    client = get_client()
    if name not in client.list_datasets():
        raise RuntimeError(f"the model dataset {name!r} is no longer published on the scheduler "
                           "(release_models was called during the run?): run again to publish it")
    got = client.get_dataset(name)
    return got.result() if hasattr(got, "result") else got


def _worker_model(spec: _ModelSpec) -> Any:
    """The model of ``spec``, loaded once per worker process and kept for all its units."""
    with _LOCK:
        if spec.fingerprint in _LOADED:
            return _LOADED[spec.fingerprint]
        if spec.by_name:
            from analysis import load_model
            model = load_model(spec.name, device=_pick_device(spec.device), progress=False)
            got = model_fingerprint(model)
            if got != spec.fingerprint:
                raise RuntimeError(f"the worker's copy of model {spec.name or 'default'!r} differs from the "
                                   f"one the run was started with (fingerprint {got[:12]} != "
                                   f"{spec.fingerprint[:12]}): give every worker the same zoo cache / folder")
        elif spec.path is not None:
            with open(spec.path, "rb") as f:
                model = pickle.load(f)
        elif spec.dataset is not None:
            model = pickle.loads(_fetch_published(spec.dataset))
        else:
            raise RuntimeError("the run gave this worker no way to get the model (internal error)")
        if "torch" in sys.modules:      # one thread per worker: the workers share the cores
            sys.modules["torch"].set_num_threads(1)
        _LOADED.clear()
        _LOADED[spec.fingerprint] = model
        return model


def _rebuild_model(cls: Any, config: Any, state: dict, tokenizer: Any, task: str, name: str, device: str,
                   dtype: Any = None) -> Any:
    """Inverse of :func:`_dumps` for an attnlab ``Model``: the module from its config and weights."""
    from analysis.models import Model
    from analysis.models.attention import register

    register()                          # the config names attnlab's attention function
    module = cls(config)
    module.load_state_dict(state)
    return Model(module.eval(), tokenizer, task=task, name=name, device=_pick_device(device), dtype=dtype)


def _dumps(model: TracedModel) -> bytes:
    """The model's pickle. An attnlab ``Model`` travels as (class, config, weights, tokenizer):
    its module carries transformers' forward hooks, which do not pickle; anything else goes
    through cloudpickle."""
    import cloudpickle

    from analysis.models import Model

    if type(model) is Model:
        state = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
        recipe = (_rebuild_model, (type(model.module), model.module.config, state, model.tokenizer, model.task,
                                   model.name, str(model.device), model.dtype))
        return cloudpickle.dumps(_Recipe(*recipe), protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)


class _Recipe:
    """Pickles as a call: unpickling rebuilds the object."""

    def __init__(self, fn: Any, args: tuple) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple:
        return self.fn, self.args


# --------------------------------------------------------------------------- running units
@dataclass
class _Result:
    unit_id: str
    unit_hash: str
    rows: list
    error: str | None
    seconds: float


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def _run_one(task: Any, model: TracedModel, unit: dict, uhash: str) -> _Result:
    """Run one unit (seeded from its id); retried once if it raises, then recorded as failed."""
    start = time.perf_counter()
    error = None
    for _ in range(2):
        _seed_everything(unit_seed(unit["id"]))
        try:
            rows = task.run_unit(model, unit)
            if isinstance(rows, dict):
                rows = [rows]
            rows = [dict(r) for r in rows]
            return _Result(unit["id"], uhash, rows, None, time.perf_counter() - start)
        except Exception as e:  # noqa: BLE001 - any failure of user code is recorded
            error = f"{type(e).__name__}: {e}".strip()
            last = traceback.format_exc(limit=-3)
    return _Result(unit["id"], uhash, [], f"{error}\n{last}"[:4000], time.perf_counter() - start)


def _run_chunk(task: Any, spec: Any, chunk: list[tuple[dict, str]]) -> list[_Result]:
    """Worker entry point: load the model once (cached), run every unit of ``chunk``."""
    model = _worker_model(spec)
    return [_run_one(task, model, unit, h) for unit, h in chunk]


# --------------------------------------------------------------------------- the results folder
def completed_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :func:`run` table without its bookkeeping columns (``unit_id``, ``error``), for
    callers that need every unit: a RuntimeError naming the first failure if a unit failed (the
    finished units stay in the results folder, so a rerun resumes)."""
    failed = df[df["error"].notna()] if "error" in df.columns else df.iloc[:0]
    if len(failed):
        raise RuntimeError(f"{failed.unit_id.nunique()} unit(s) failed; first ({failed.unit_id.iloc[0]}): "
                           f"{failed.error.iloc[0]}")
    return df.drop(columns=["unit_id", "error"], errors="ignore")


def read_manifest(out: str | os.PathLike) -> dict:
    """The manifest of results folder ``out`` (FileNotFoundError if it holds no run)."""
    path = Path(out) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{out} holds no experiment results (no {MANIFEST})")
    return json.loads(path.read_text())


def _write_manifest(out: Path, manifest: dict) -> None:
    with atomic_path(out / MANIFEST) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _clean_temporaries(out: Path) -> None:
    """Remove temporary files a killed run left (dot-files: never read back)."""
    for p in (out / CHUNKS).glob(".*"):
        if p.is_file():
            p.unlink(missing_ok=True)


def _chunk_rows(results: Sequence[_Result]) -> list[dict]:
    rows = []
    for r in results:
        meta = {"_unit_id": r.unit_id, "_unit_hash": r.unit_hash}
        if r.error is not None or not r.rows:
            rows.append({**meta, "_row": -1, "_error": r.error})       # failed, or done with no rows
        rows.extend({**meta, "_row": i, "_error": None, **row} for i, row in enumerate(r.rows))
    return rows


def _write_chunk(out: Path, results: Sequence[_Result], counter: int) -> Path:
    path = out / CHUNKS / f"chunk-{time.time_ns():020d}-{os.getpid()}-{counter:06d}.parquet"
    frame = pd.DataFrame(_chunk_rows(results))
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, engine="pyarrow", index=False)
    return path


def _read_chunks(out: Path) -> pd.DataFrame:
    """Every row of every finished chunk, latest record per unit (ok beats failed)."""
    files = sorted((out / CHUNKS).glob("chunk-*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(_META))
    frames = []
    for k, f in enumerate(files):
        df = pd.read_parquet(f, engine="pyarrow")
        df["_chunk"] = k
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    ok = df["_error"].isna()
    best = pd.concat([df[ok].groupby("_unit_id")["_chunk"].max(),
                      df[~ok & ~df["_unit_id"].isin(df.loc[ok, "_unit_id"])].groupby("_unit_id")["_chunk"].max()])
    keep = df["_chunk"].to_numpy() == df["_unit_id"].map(best).to_numpy()
    keep &= (ok | ~df["_unit_id"].isin(df.loc[ok, "_unit_id"])).to_numpy()
    return df[keep].drop(columns="_chunk").reset_index(drop=True)


def _tidy(raw: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by unit order then row; columns ``unit_id``, the task's, ``error``."""
    pos = {u: i for i, u in enumerate(order)}
    raw = raw[raw["_unit_id"].isin(pos)]
    raw = raw[(raw["_row"] >= 0) | raw["_error"].notna()]
    raw = raw.assign(_pos=raw["_unit_id"].map(pos)).sort_values(["_pos", "_row"], kind="stable")
    cols = [c for c in raw.columns if c not in _META and c != "_pos"]
    out = raw[cols].copy()
    out.insert(0, "unit_id", raw["_unit_id"].to_numpy())
    out["error"] = raw["_error"].to_numpy()
    return out.reset_index(drop=True)


def load_results(out: str | os.PathLike, *, include_failed: bool = True) -> pd.DataFrame:
    """The tidy table of results folder ``out`` (unit order of its manifest)."""
    out = Path(out)
    manifest = read_manifest(out)
    df = _tidy(_read_chunks(out), manifest["units"])
    return df if include_failed else df[df["error"].isna()].reset_index(drop=True)


def status(out: str | os.PathLike) -> dict[str, Any]:
    """Done / failed / missing unit ids of results folder ``out``, and its manifest."""
    out = Path(out)
    manifest = read_manifest(out)
    raw = _read_chunks(out)
    per_unit = raw.groupby("_unit_id")["_error"].apply(lambda e: e.notna().any()) if len(raw) else pd.Series()
    done = [u for u in manifest["units"] if u in per_unit.index and not per_unit[u]]
    failed = [u for u in manifest["units"] if u in per_unit.index and per_unit[u]]
    missing = [u for u in manifest["units"] if u not in per_unit.index]
    return {"task": manifest["task"], "done": done, "failed": failed, "missing": missing, "manifest": manifest}


def check_model(out: str | os.PathLike) -> dict[str, Any]:
    """Whether the model this machine loads for results folder ``out`` (its manifest's model name,
    or the task's default; a zoo model is built first if needed) is the one the run was made with:
    ``{"name", "run": fingerprint, "here": fingerprint, "same": bool}``. Only the same model can
    resume the run (zoo rebuilds: :mod:`analysis.zoo.codepath`)."""
    from analysis.experiments.tasks import get_task

    manifest = read_manifest(Path(out))
    model, _, name = _resolve_model(get_task(manifest["task"]), manifest["model"]["name"])
    here, run_fp = model_fingerprint(model), manifest["model"]["fingerprint"]
    return {"name": name, "run": run_fp, "here": here, "same": here == run_fp}


def summarize(out: str | os.PathLike, *more: str | os.PathLike, write: bool = True,
              into: str | os.PathLike | None = None) -> dict[str, pd.DataFrame]:
    """The task's summary tables of results folder ``out`` (failed units left out); with
    ``write``, each is saved atomically as ``<into>/<name>.csv`` (default ``into``: ``out/summary``).

    ``more`` folders of the same task and model (e.g. a second run on the same inputs with other
    heads) are summarised together with ``out``: their rows are concatenated first (a ValueError
    names a folder of another task or model). With several folders nothing is written unless
    ``into`` is given."""
    from analysis.experiments.common import save_table
    from analysis.experiments.tasks import get_task

    folders = [Path(out), *map(Path, more)]
    manifests = [read_manifest(f) for f in folders]
    first = manifests[0]
    for f, m in zip(folders[1:], manifests[1:]):
        for key, what in (("task", "task"), ("model", "model")):
            if m.get(key) != first.get(key):
                raise ValueError(f"{f} holds results of another {what} than {folders[0]} "
                                 f"({m.get(key)!r} != {first.get(key)!r}): summarise them separately")
    task = get_task(first["task"])
    frames = [load_results(f, include_failed=False).drop(columns=["unit_id", "error"]) for f in folders]
    df = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else frames[0]
    if df.empty:
        raise ValueError(f"{', '.join(map(str, folders))}: no finished units to summarise yet")
    tables = task.summarize(df) if task.summarize else {"results": df}
    target = Path(into) if into is not None else (folders[0] / "summary" if len(folders) == 1 else None)
    if write and target is not None:
        for name, table in tables.items():
            save_table(table, target / f"{name}.csv")
    return tables


def _check_manifest(out: Path, new: dict, resume: bool) -> None:
    """Refuse to mix results: name the first differing key of task / settings / model / version."""
    old = read_manifest(out)
    if not resume and (out / CHUNKS).exists() and any((out / CHUNKS).glob("chunk-*.parquet")):
        raise FileExistsError(f"{out} already holds results of task {old.get('task')!r}; pass resume=True to "
                              "continue that run, or choose an empty folder (nothing was changed)")
    for key in ("task", "settings", "model", "version"):
        if old.get(key) != new[key]:
            detail = ""
            if key == "settings" and isinstance(old.get(key), dict):
                diff = sorted(k for k in set(old[key]) | set(new[key]) if old[key].get(k) != new[key].get(k))
                detail = f" (differing: {', '.join(diff)})"
            raise SettingsMismatch(
                f"{out} holds results made with a different {key}{detail}: saved {old.get(key)!r}, now "
                f"{new[key]!r}. Use another out folder to keep both (nothing was changed).")


# --------------------------------------------------------------------------- backends
def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _connect(scheduler: Any, timeout: float) -> tuple[Any, bool]:
    """A Dask client for ``scheduler`` (an address or a Client) and whether we own it."""
    from dask.distributed import Client

    if isinstance(scheduler, Client):
        return scheduler, False
    try:
        return Client(scheduler, timeout=f"{timeout}s", set_as_default=False), True
    except (OSError, TimeoutError) as e:
        raise ConnectionError(
            f"no Dask scheduler answered at {scheduler!r} within {timeout:g} s; start one with `dask scheduler` "
            f"and workers with `dask worker {scheduler}` (nothing was started or written)") from e


def _iter_local(task: Any, model: TracedModel, work: list, size: int) -> Iterator[list[_Result]]:
    for chunk in _chunks(work, size):
        yield [_run_one(task, model, u, h) for u, h in chunk]


def _iter_joblib(task: Any, spec: _ModelSpec, work: list, size: int, workers: int) -> Iterator[list[_Result]]:
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered")
    yield from parallel(delayed(_run_chunk)(task, spec, c) for c in _chunks(work, size))


def _iter_dask(task: Any, spec: _ModelSpec, work: list, size: int, client: Any) -> Iterator[list[_Result]]:
    from dask.distributed import as_completed

    futures = [client.submit(_run_chunk, task, spec, c, pure=False) for c in _chunks(work, size)]
    try:
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.cancel(futures)


# --------------------------------------------------------------------------- the runner
def run(task: Any, units: Sequence[dict], *, workers: int | None = None, scheduler: Any = None,
        out: str | os.PathLike | None = None, resume: bool = True, progress: bool = True,
        settings: dict | None = None, model: TracedModel | str | None = None, chunk_size: int | None = None,
        connect_timeout: float = 8.0) -> pd.DataFrame:
    """Run ``task`` (a name of the registry or a :class:`~analysis.experiments.tasks.Task`) on
    every unit (dicts with a unique str ``"id"``) and return the tidy table: ``unit_id``, the
    task's columns, ``error`` (None, or the text of a unit that failed twice), sorted by unit order.

    ``workers=1``: in-process; ``workers=N`` (None: all cores): joblib processes, each loading the
    model once with torch on one thread; ``scheduler`` (address or ``dask.distributed.Client``):
    Dask. ``model``: a model object, a zoo name / folder, or None (the task's default model).
    ``out``: results folder (Parquet chunks + manifest); ``resume`` skips units already there.
    ``df.attrs`` holds ``computed``, ``reused`` and ``failed`` counts.
    """
    from analysis.experiments.tasks import Task, get_task

    task = task if isinstance(task, Task) else get_task(task)
    units = list(units)
    if not units:
        raise ValueError(f"no units to run for task {task.name!r}: the units list is empty "
                         "(check n and the dataset); nothing was started")
    ids = [u.get("id") if isinstance(u, dict) else None for u in units]
    if any(not isinstance(i, str) for i in ids):
        raise ValueError("every unit must be a dict with a str 'id'")
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"unit ids must be unique; repeated: {dup}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1 (or None: all cores), got {workers}")
    hashes = [unit_hash(u) for u in units]
    client, own_client = (_connect(scheduler, connect_timeout) if scheduler is not None else (None, False))
    try:
        return _run(task, units, ids, hashes, workers=workers, client=client, out=out, resume=resume,
                    progress=progress, settings=settings, model=model, chunk_size=chunk_size)
    finally:
        if own_client:
            client.close()


def _resolve_model(task: Any, model: TracedModel | str | None) -> tuple[Any, bool, str | None]:
    """(model object, given by name?, name)."""
    if model is None or isinstance(model, (str, os.PathLike)):
        from analysis import load_model
        name = None if model is None else str(model)
        name = name if name is not None else task.default_model
        return load_model(name, progress=False), True, name
    return model, False, getattr(model, "name", None)


def _run(task: Any, units: list, ids: list, hashes: list, *, workers: int | None, client: Any, out: Any,
         resume: bool, progress: bool, settings: dict | None, model: TracedModel | str | None, chunk_size: int | None) -> pd.DataFrame:
    model, by_name, name = _resolve_model(task, model)
    fingerprint = model_fingerprint(model)
    manifest = {"task": task.name, "settings": _canonical(settings or {}), "version": _version(),
                "model": {"name": name if isinstance(name, str) else None, "fingerprint": fingerprint},
                "units": ids}
    done: dict[str, pd.DataFrame] = {}
    lock = None
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock, Timeout
        lock = FileLock(str(out / ".lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RuntimeError(f"another run is writing to {out}; wait for it or use another folder") from None
    try:
        if out is not None:
            if (out / MANIFEST).exists():
                _check_manifest(out, manifest, resume)
            _clean_temporaries(out)
            raw = _read_chunks(out)
            saved = dict(zip(raw.loc[raw["_error"].isna(), "_unit_id"], raw.loc[raw["_error"].isna(), "_unit_hash"]))
            for uid, h in zip(ids, hashes):
                if uid in saved and saved[uid] != h:
                    raise SettingsMismatch(f"{out} holds a different unit {uid!r} (its content changed: another "
                                           "dataset sample or settings); use another out folder (nothing was changed)")
            old_units = read_manifest(out)["units"] if (out / MANIFEST).exists() else []
            manifest["units"] = ids + [u for u in old_units if u not in set(ids)]
            _write_manifest(out, manifest)
            done = {u: None for u in saved}
        work = [(u, h) for u, h in zip(units, hashes) if u["id"] not in done]
        return _execute(task, model, by_name, name, fingerprint, work, ids, out, workers=workers, client=client,
                        progress=progress, chunk_size=chunk_size, n_reused=len(ids) - len(work))
    finally:
        if lock is not None:
            lock.release()


@contextlib.contextmanager
def _stop_on_sigterm(active: bool) -> Iterator[None]:
    """While the runner waits on its local worker processes, SIGTERM (``kill``, a job scheduler's
    stop) raises SystemExit here, so that joblib stops the workers (they would otherwise finish
    their chunk unattended, minutes of CPU) and the results folder's lock is released; the chunks
    already saved stay for a resume. Only in the main thread; the previous handler is restored."""
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _execute(task: Any, model: TracedModel, by_name: bool, name: str | None, fingerprint: str, work: list, ids: list,
             out: Path | None, *, workers: int | None, client: Any, progress: bool, chunk_size: int | None,
             n_reused: int) -> pd.DataFrame:
    from tqdm.auto import tqdm

    if client is not None:
        n_workers = len(client.scheduler_info().get("workers", {})) or 1
    else:
        n_workers = workers or os.cpu_count() or 1
    # ~4 chunks per worker (a finished chunk is saved at once), at most 16 units each
    size = chunk_size or max(1, min(16, -(-len(work) // (4 * n_workers))))
    results: list[_Result] = []
    tmpdir = None
    device = str(getattr(model, "device", "cpu"))
    if not work:
        stream: Iterator[list[_Result]] = iter(())
    elif client is not None:
        if progress:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr, flush=True)
        # the model's bytes go to the cluster once (a published dataset): workers that hold the
        # model use theirs, the others (also those that join mid-run) fetch it from the cluster
        dataset = None if by_name else _publish_model(client, model, fingerprint)
        spec = _ModelSpec(fingerprint, by_name, name, device, dataset=dataset)
        stream = _iter_dask(task, spec, work, size, client)
    elif workers == 1:
        stream = _iter_local(task, model, work, size)
    else:
        spec = _ModelSpec(fingerprint, by_name, name, device)
        if not by_name:
            tmpdir = tempfile.TemporaryDirectory(prefix="attnlab-model-")
            path = os.path.join(tmpdir.name, f"{fingerprint[:16]}.pkl")
            with open(path, "wb") as f:
                f.write(_dumps(model))
            spec = _ModelSpec(fingerprint, False, name, device, path=path)
        stream = _iter_joblib(task, spec, work, size, n_workers)
    bar = tqdm(total=len(ids), initial=n_reused, disable=not progress or not work, unit="unit",
               desc=task.name, smoothing=0.1)
    try:
        with _stop_on_sigterm(client is None and workers != 1):
            for k, chunk in enumerate(stream):
                if out is not None:
                    _write_chunk(out, chunk, k)
                else:
                    results.extend(chunk)
                bar.update(len(chunk))
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()                      # joblib stops its worker processes if the run ends early
        bar.close()
        if tmpdir is not None:
            tmpdir.cleanup()
    if out is not None:
        df = _tidy(_read_chunks(out), ids)
    else:
        df = _tidy(pd.DataFrame(_chunk_rows(results)) if results else pd.DataFrame(columns=list(_META)), ids)
    failed = int(df.drop_duplicates("unit_id")["error"].notna().sum()) if len(df) else 0
    df.attrs.update(computed=len(work), reused=n_reused, failed=failed, out=str(out) if out else None)
    if failed:
        warnings.warn(f"{failed} of {len(ids)} unit(s) of {task.name!r} failed twice and were recorded with "
                      "their error (column 'error'); resume the run to retry them", RuntimeWarning, stacklevel=3)
    return df
