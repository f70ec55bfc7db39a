"""Files the toolkit writes for a user (figures, tables, exports): never half-written, never
silently replaced, and never outside the folder the user chose.

The panels call :func:`output_path` (resolve a typed name inside an output folder),
:func:`figure_paths` / :func:`export_paths` (add a format's suffix only when absent) and
:func:`unique_paths` (``name-1.png`` when ``name.png`` exists), then write each file with
:func:`atomic_path` (text: :func:`write_atomic`; results as :func:`jsonable` JSON and
:func:`csv_text` tables).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["FIGURE_FORMATS", "atomic_path", "csv_text", "export_paths", "figure_paths", "jsonable", "output_path",
           "unique_paths", "write_atomic"]

#: figure formats a name may end with (a suffix that picks the format)
FIGURE_FORMATS = ("png", "svg", "pdf")
EXPORT_FORMATS = ("json", "csv")


@contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary file name next to ``path``; on success rename it to ``path`` (readable
    by all, like an ordinary file), on any error remove it and leave ``path`` untouched.

    ``overwrite=False``: raise FileExistsError instead of replacing an existing ``path`` (the
    check and the write are one step: a hard link, where the file system has them).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)              # mkstemp makes it private
    try:
        yield tmp
        if overwrite:
            os.replace(tmp, target)
        else:
            _publish_new(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _publish_new(tmp: str, target: Path) -> None:
    exists = FileExistsError(f"{target} exists already; choose another name or allow overwriting")
    try:
        os.link(tmp, target)          # fails if target exists: no window where it could be replaced
    except FileExistsError:
        raise exists from None
    except OSError:                   # no hard links on this file system: check, then rename
        if target.exists():
            raise exists from None
        os.replace(tmp, target)


def output_path(name: str | os.PathLike, folder: str | os.PathLike | None = None, *,
                confine: bool = True) -> Path:
    """The absolute path of the file name ``name`` typed by a user, inside the output folder
    ``folder`` (default: the current working folder, a notebook's own folder).

    ``~`` expands to the home folder (in ``name`` and ``folder``); a relative name is taken
    inside ``folder``; a name that leaves ``folder`` (``../x``, an absolute path elsewhere, a
    link pointing out) raises ValueError unless ``confine=False`` (a path written in code); a
    name of an existing folder raises ValueError.
    """
    text = os.fspath(name)
    if not str(text).strip():
        raise ValueError("the file name is empty: type a name such as 'figure1'")
    if "\0" in str(text):
        raise ValueError("the file name contains a NUL character")
    root = Path(os.getcwd() if folder is None or not str(folder).strip() else folder).expanduser().resolve()
    path = Path(text).expanduser()
    resolved = (path if path.is_absolute() else root / path).resolve()
    if confine and (resolved == root or not resolved.is_relative_to(root)):
        raise ValueError(f"{os.fspath(name)!r} is outside the output folder {root}: use a name inside it "
                         "(e.g. 'figure1' or 'figures/figure1'), or choose another output folder")
    if resolved.is_dir():
        raise ValueError(f"{resolved} is a folder: type a file name")
    return resolved


def _ends_with(path: Path, formats: Sequence[str]) -> str | None:
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in formats else None


def figure_paths(path: str | os.PathLike, formats: Sequence[str] | None = None) -> list[Path]:
    """The files a figure saved as ``path`` is written to, one per format: the full name plus
    ``.fmt`` (``exp_alpha0.01`` -> ``exp_alpha0.01.png``), a name already ending in a figure
    format keeps it (alone when ``formats`` is None). Raises ValueError for unknown formats."""
    path = Path(path)
    own = _ends_with(path, FIGURE_FORMATS)
    if not formats:
        if own is None:
            raise ValueError(f"{path.name!r} has no figure suffix: end it with .png, .svg or .pdf or pick a format")
        return [path]
    bad = [f for f in formats if f.lower().lstrip(".") not in FIGURE_FORMATS]
    if bad:
        raise ValueError(f"unsupported figure format {bad[0]!r}: use {', '.join(FIGURE_FORMATS)}")
    base = path.name[: -len(path.suffix)] if own is not None else path.name
    return [path.with_name(f"{base}.{f.lower().lstrip('.')}") for f in formats]


def export_paths(path: str | os.PathLike) -> list[Path]:
    """``<path>.json`` and ``<path>.csv`` for an export: the full name is kept; a name ending in
    .json, .csv or a figure format loses only that suffix."""
    path = Path(path)
    base = path.name[: -len(path.suffix)] if _ends_with(path, EXPORT_FORMATS + FIGURE_FORMATS) else path.name
    return [path.with_name(f"{base}.{f}") for f in EXPORT_FORMATS]


def unique_paths(paths: Sequence[Path], *, limit: int = 10_000) -> list[Path]:
    """``paths`` if none exists; else the same names numbered together with the first free
    ``k`` (``fig.png``, ``fig.svg`` -> ``fig-1.png``, ``fig-1.svg``), so a set stays a set."""
    paths = [Path(p) for p in paths]
    for k in range(limit):
        names = paths if k == 0 else [p.with_name(f"{p.stem}-{k}{p.suffix}") for p in paths]
        if not any(p.exists() or p.is_symlink() for p in names):
            return names
    raise FileExistsError(f"{paths[0].name} and {limit - 1} numbered copies exist already: choose another name")


def write_atomic(path: str | os.PathLike, data: str, *, overwrite: bool = True) -> Path:
    """Write ``data`` to a temporary file next to ``path``, then rename: never half-written;
    ``overwrite=False`` raises FileExistsError rather than replace a file."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        Path(tmp).write_text(data, encoding="utf-8", newline="")
    return path


def jsonable(obj: Any) -> Any:
    """Numpy arrays and scalars, tuples, dataclasses, paths as plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if not f.name.startswith("_")})
    if isinstance(obj, Path):
        return str(obj)
    return obj


def csv_text(rows: Sequence[dict]) -> str:
    """Rows (dicts) as CSV text; the header is the union of keys in first-seen order."""
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields or ["empty"])
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(jsonable(v)) if isinstance(v, (list, tuple, dict, np.ndarray)) else jsonable(v)
                         for k, v in r.items()})
    return buf.getvalue()
