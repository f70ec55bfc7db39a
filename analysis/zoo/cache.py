"""The zoo's on-disk cache: one folder per built model, locked between processes, published
atomically and verified as a whole on load.

Layout under ``models/`` for a model ``NAME``::

    NAME                        a symbolic link to the current version: .NAME.d/v-...
    .NAME.d/lock                the inter-process lock (``filelock``) around build and publish
    .NAME.d/build-PID-XXXX/     a build in progress, or one left behind by a killed build
    .NAME.d/v-TIME-XXXX/        published, complete versions (the link names the current one)

Publishing renames the finished build folder to a fresh ``v-...`` name, then swaps the link
``NAME`` with one ``os.replace`` of a new link: the swap is atomic, so a reader always finds
``NAME`` (the old version or the new one, never neither, never a mix), and readers resolve the
link once (:func:`resolve`) so a load reads one version. A replaced version is kept for
:data:`RETIRED_GRACE_S` seconds (readers still loading it), then removed by a later build.

Only the holder of the lock builds, so every ``build-*`` folder found while holding it was left
by a killed build and is removed. A second process that wants the same model waits for the
lock, then finds the first one's result and loads it instead of building again.

A folder is complete only when its ``attnlab.json`` manifest is a dict of the expected schema
(``version``, a non-empty ``files`` map of name -> SHA-256), every file in the folder is
listed, and every listed file has its recorded hash; anything else is treated as absent and
rebuilt. Caches written by older attnlab versions (``NAME`` a plain folder) are read as they
are and replaced by a link on the next build; only that one-time migration has a moment
(two renames) where ``NAME`` is missing, as does publishing where symbolic links are not
available (some Windows set-ups).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock, Timeout

MANIFEST = "attnlab.json"
#: seconds a replaced version is kept for readers still loading it
RETIRED_GRACE_S = 600.0
#: temporary folders of older attnlab versions (no lock) count as abandoned after this long idle
LEGACY_STALE_S = 6 * 3600.0
#: torch threads every zoo build trains with, whatever the machine has: the thread count changes
#: the trained weights (benchmarks/build_determinism.py), and the project's machines have 2 cores
BUILD_THREADS = 2
_HEX64 = re.compile(r"[0-9a-f]{64}")


@contextlib.contextmanager
def build_threads(n: int = BUILD_THREADS):
    """Run a build with ``n`` torch threads (intra-op, and so MKL's), restoring the caller's count
    afterwards. The vector kernels are pinned separately, in the build process's environment
    (:mod:`analysis.zoo.codepath`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cache_root() -> Path:
    """The cache folder: ``$ATTNLAB_CACHE`` if set, else the user's cache dir (``~/.cache/attnlab``)."""
    env = os.environ.get("ATTNLAB_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("attnlab"))


def state_dir(folder: Path) -> Path:
    """The hidden sibling ``.NAME.d`` holding the lock, builds and versions of ``folder``."""
    return folder.parent / f".{folder.name}.d"


def lock_for(folder: Path) -> FileLock:
    """The inter-process lock guarding build and publish of ``folder`` (a new lock object)."""
    state = state_dir(folder)
    state.mkdir(parents=True, exist_ok=True)
    return FileLock(str(state / "lock"))


def resolve(folder: Path) -> Path:
    """The real folder of the current version of ``folder`` (follow the link once); load from
    this path so a concurrent publish cannot mix two versions in one load."""
    return Path(folder).resolve()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files_on_disk(folder: Path) -> set[str] | None:
    """Relative names (``/``-separated) of every file under ``folder`` but the manifest;
    ``None`` when it holds something that is neither a file nor a folder (a link, a socket)."""
    names: set[str] = set()
    for p in folder.rglob("*"):
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            return None
        if p.is_file():
            names.add(p.relative_to(folder).as_posix())
    names.discard(MANIFEST)
    return names


def _valid(folder: Path, meta: Any, version: str) -> bool:
    if not isinstance(meta, dict) or meta.get("version") != version:
        return False
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        return False
    if not all(isinstance(k, str) and isinstance(v, str) and _HEX64.fullmatch(v) for k, v in files.items()):
        return False
    if _files_on_disk(folder) != set(files):
        return False
    return all(_sha256(folder / name) == digest for name, digest in files.items())


def read_manifest(folder: Path, version: str) -> dict[str, Any] | None:
    """The manifest of a complete, intact cache folder of this ``version``; ``None`` otherwise
    (missing, not a dict of the expected schema, a file unlisted, missing or with another hash)."""
    try:
        real = resolve(folder)
        meta = json.loads((real / MANIFEST).read_text())
        return meta if _valid(real, meta, version) else None
    except (OSError, ValueError, RuntimeError):
        return None


def _newest_mtime(folder: Path) -> float:
    times = [folder.lstat().st_mtime]
    for p in folder.rglob("*"):
        with contextlib.suppress(OSError):          # removed meanwhile
            times.append(p.lstat().st_mtime)
    return max(times)


def clean_stale(folder: Path, *, now: float | None = None) -> list[Path]:
    """Remove what killed builds and replaced versions left behind; call only holding
    :func:`lock_for` ``(folder)``. Returns the removed paths.

    Removed: every ``build-*`` folder in the state folder (only the lock holder builds, so none
    is live); versions that are not current and were replaced more than RETIRED_GRACE_S ago;
    temporary ``.NAME.xxxxxxxx`` folders of older attnlab versions idle for LEGACY_STALE_S.
    """
    now = time.time() if now is None else now
    state = state_dir(folder)
    current = resolve(folder) if folder.is_symlink() else None
    removed: list[Path] = []
    for p in sorted(state.iterdir()) if state.is_dir() else []:
        if not p.is_dir() or p.is_symlink():
            continue
        stale = p.name.startswith("build-") or (
            p.name.startswith("v-") and p.resolve() != current and now - p.stat().st_mtime > RETIRED_GRACE_S)
        if stale:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    legacy = re.compile(re.escape(f".{folder.name}.") + r"[a-z0-9_]{8}")
    for p in sorted(folder.parent.iterdir()):
        if legacy.fullmatch(p.name) and p.is_dir() and not p.is_symlink():
            try:
                idle = now - _newest_mtime(p)
            except OSError:
                continue
            if idle > LEGACY_STALE_S:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def _publish(folder: Path, version_dir: Path) -> None:
    """Point ``folder`` at ``version_dir`` (inside the state folder) with one atomic rename."""
    state = version_dir.parent
    previous = resolve(folder) if folder.is_symlink() else None
    link = folder.parent / f".{folder.name}.link-{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(Path(state.name) / version_dir.name, link, target_is_directory=True)
    except (OSError, NotImplementedError):           # no symbolic links here: two renames
        if folder.exists() or folder.is_symlink():
            aside = state / f"v-replaced-{uuid.uuid4().hex[:8]}"
            os.replace(folder, aside)
            os.utime(aside)
        os.replace(version_dir, folder)
        return
    try:
        if folder.is_dir() and not folder.is_symlink():  # a plain folder of an older attnlab
            aside = state / f"v-legacy-{uuid.uuid4().hex[:8]}"
            os.replace(folder, aside)
            os.utime(aside)
        os.replace(link, folder)
    finally:
        if link.is_symlink():
            link.unlink()
    if previous is not None and previous.is_dir() and previous != version_dir.resolve():
        os.utime(previous)                            # retired now: the grace period starts


def build_atomically(folder: Path, version: str, build: Callable[[Path], dict[str, Any]], *,
                     rebuild: bool = False, on_wait: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run ``build(tmp_folder) -> info`` under the inter-process lock and publish the folder
    with a checksummed manifest; return the manifest.

    While holding the lock: if another process already published an intact folder of this
    ``version`` (and not ``rebuild``), return its manifest without building; otherwise clean
    what killed builds left, build into ``.NAME.d/build-*``, and publish (see the module doc).
    ``on_wait()`` is called once if the lock is held by another process (a build running).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_for(folder)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        if not rebuild:
            meta = read_manifest(folder, version)
            if meta is not None:
                return meta
        clean_stale(folder)
        state = state_dir(folder)
        tmp = Path(tempfile.mkdtemp(prefix=f"build-{os.getpid()}-", dir=state))
        try:
            info = build(tmp)
            if "version" in info or "files" in info:
                raise ValueError(f"the build of {folder.name} returned 'version' or 'files': those keys are the cache's")
            names = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
            if not [n for n in names if n != MANIFEST]:
                raise RuntimeError(f"building {folder.name} wrote no files into {tmp}")
            meta = {"version": version, "files": {n: _sha256(tmp / n) for n in names if n != MANIFEST}, **info}
            (tmp / MANIFEST).write_text(json.dumps(meta, indent=2))
            os.chmod(tmp, 0o755)                      # mkdtemp makes it private
            final = state / f"v-{time.time_ns()}-{uuid.uuid4().hex[:8]}"
            os.replace(tmp, final)
            _publish(folder, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return meta
    finally:
        lock.release()
