"""The zoo's on-disk cache: one folder per built model, written atomically and verified on load.

A folder is complete only when its ``attnlab.json`` manifest exists and every file it lists
has the recorded SHA-256; anything else (a crash mid-write, a truncated file) is treated as
absent and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

MANIFEST = "attnlab.json"


def cache_root() -> Path:
    """The cache folder: ``$ATTNLAB_CACHE`` if set, else the user's cache dir (``~/.cache/attnlab``)."""
    env = os.environ.get("ATTNLAB_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("attnlab"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: Path, version: str) -> dict[str, Any] | None:
    """The manifest of a complete, intact cache folder of this ``version``; ``None`` otherwise."""
    try:
        meta = json.loads((folder / MANIFEST).read_text())
        if meta.get("version") != version:
            return None
        for name, digest in meta["files"].items():
            if _sha256(folder / name) != digest:
                return None
        return meta
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_atomically(folder: Path, version: str, build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Run ``build(tmp_folder) -> info`` and publish the folder with a checksummed manifest.

    The build writes into a temporary sibling folder; only a finished build is renamed into
    place, so a crash never leaves a half-written model where a reader would find it.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        info = build(tmp)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        meta = {"version": version, "files": files, **info}
        (tmp / MANIFEST).write_text(json.dumps(meta, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return meta
