"""MovieLens-1M reader (the data set itself is not shipped: download it from GroupLens).

``path`` is the unzipped ``ml-1m`` folder (or a folder holding it, or the ``ratings.dat``
file itself); without a path the environment variable ``ATTNLAB_MOVIELENS`` is used.

- ``ratings.dat``: one rating a line, ``user::item::rating::timestamp``, all integers,
  rating 1-5. Every rating counts as one interaction (implicit feedback, as in BERT4Rec).
- ``movies.dat`` (optional): ``item::title::genres`` with genres separated by ``|``;
  the real file is latin-1 encoded (UTF-8 is accepted too). Gives ``titles``/``genres``.

Every field of ratings.dat and the item id of movies.dat must be plain ASCII digits
(``[0-9]+``: no sign, no ``1_0``, no non-ASCII digits) that fit a 64-bit integer; anything
else raises naming the file and line. Parsed files are cached by content (a BLAKE2 hash of
the bytes), so an edited file is never served stale, whatever its mtime and size.

Each user's items are ordered by timestamp, ties broken by item id (a stable sort, so
exact duplicates keep file order; duplicates are kept). Users with fewer than 3 ratings
are dropped; the split is leave-last-out (see ``analysis.data.rec``). Item ids stay the raw
MovieLens ids; ``item_ids`` lists those rated by the kept users.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict
from typing import Any, Callable, Union

import numpy as np

from analysis.data.rec import MIN_LENGTH, RecDataset, _check_split, leave_last_out

__all__ = ["load_movielens", "ENV_VAR", "DOWNLOAD_HINT"]

ENV_VAR = "ATTNLAB_MOVIELENS"
DOWNLOAD_HINT = ("MovieLens-1M is not shipped with attnlab: download ml-1m.zip from "
                 "https://grouplens.org/datasets/movielens/1m/, unzip it and pass "
                 f"path='.../ml-1m' (or set the environment variable {ENV_VAR})")
PathLike = Union[str, "os.PathLike[str]"]


def load_movielens(path: PathLike | None = None, split: str = "train") -> RecDataset:
    """Load MovieLens-1M from ``path`` (folder or ratings.dat) with a leave-last-out split.

    split: "train" / "test" (history + ``targets``) / "all". Returns a RecDataset whose
    sequences are raw MovieLens item ids, users sorted by id.
    """
    _check_split(split)
    ratings, movies = _resolve(path)
    kept = _cached(ratings, _sequences)
    titles: dict[int, str] = {}
    genres: dict[int, tuple[str, ...]] = {}
    if movies is not None:
        titles, genres = _cached(movies, _movies)
    users = tuple(u for u, _ in kept)
    full = [s for _, s in kept]
    seqs, targets = leave_last_out(full, split)
    item_ids = tuple(sorted({i for s in full for i in s}))
    return RecDataset("movielens-1m", split, seqs, targets, users, item_ids,
                      {i: titles[i] for i in item_ids if i in titles},
                      {i: genres[i] for i in item_ids if i in genres})


def _resolve(path: PathLike | None) -> tuple[str, str | None]:
    """(ratings.dat, movies.dat or None) for a folder, a nested ml-1m folder or a file."""
    if path is None:
        path = os.environ.get(ENV_VAR) or None
        if path is None:
            raise FileNotFoundError(f"no MovieLens path given and {ENV_VAR} is not set. "
                                    + DOWNLOAD_HINT)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"MovieLens path {path!r} does not exist: expected the ml-1m "
                                "folder holding ratings.dat, or the ratings.dat file. "
                                + DOWNLOAD_HINT)
    if os.path.isdir(path):
        for folder in (path, os.path.join(path, "ml-1m")):
            if os.path.isfile(os.path.join(folder, "ratings.dat")):
                break
        else:
            raise FileNotFoundError(f"no ratings.dat in {path!r} (nor in {path}/ml-1m): "
                                    "expected ratings.dat with lines user::item::rating::timestamp. "
                                    + DOWNLOAD_HINT)
        ratings = os.path.join(folder, "ratings.dat")
    else:
        ratings, folder = path, os.path.dirname(path) or "."
    movies = os.path.join(folder, "movies.dat")
    return ratings, (movies if os.path.isfile(movies) else None)


#: parsed files by (absolute path, parser, BLAKE2b of the content): at most _CACHE_SIZE kept
_CACHE: "OrderedDict[tuple[str, str, str], Any]" = OrderedDict()
_CACHE_SIZE = 8
_INTEGER = re.compile(r"[0-9]+")     # ASCII digits only: not "1_0", "+1", " 1" or "١"
_INT64_MAX = 2**63 - 1


def _cached(path: str, parse: Callable[[str, str], Any]) -> Any:
    """``parse(path, text)``, cached by the file's content hash: reading and hashing the
    bytes (~0.1 s for MovieLens-1M's 24 MB) is far cheaper than parsing, and unlike a key of
    (path, mtime, size) it cannot return stale data for a file rewritten in place."""
    with open(path, "rb") as f:
        raw = f.read()
    key = (os.path.abspath(path), parse.__name__, hashlib.blake2b(raw, digest_size=16).hexdigest())
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = parse(path, _decode(raw))
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _decode(raw: bytes) -> str:
    """A file's text: UTF-8 if it decodes as such, else latin-1 (MovieLens-1M's encoding)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _integer(field: str) -> int | None:
    """The value of a field of ASCII digits that fits int64, else None."""
    if not _INTEGER.fullmatch(field):
        return None
    value = int(field)
    return value if value <= _INT64_MAX else None


def _malformed(path: str, lineno: int, line: str, why: str) -> ValueError:
    return ValueError(f"{path}, line {lineno}: {line.strip()[:200]!r}: {why}")


def _sequences(path: str, text: str) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """((user, items by time), ...) for the users with >= MIN_LENGTH ratings, by user id.
    Cached by content (:func:`_cached`), so loading several splits parses once."""
    lines = text.splitlines()
    rows = _parse_fast(lines)
    if rows is None:  # something is malformed: the line-by-line parser says what and where
        rows = _parse_slow(path, lines)
    if len(rows) == 0:
        raise ValueError(f"{path} is empty: expected lines user::item::rating::timestamp")
    user, item, ts = rows[:, 0], rows[:, 1], rows[:, 3]
    order = np.lexsort((item, ts, user))  # by user, timestamp, item id; stable
    user, item = user[order], item[order]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    stops = np.r_[starts[1:], len(user)]
    kept = tuple((int(user[a]), tuple(item[a:b].tolist()))
                 for a, b in zip(starts.tolist(), stops.tolist()) if b - a >= MIN_LENGTH)
    if not kept:
        raise ValueError(f"{path}: no user has at least {MIN_LENGTH} ratings "
                         "(needed for the leave-last-out split)")
    return kept


def _parse_fast(lines: list[str]) -> np.ndarray | None:
    """Ratings as an int64 array (n, 4) if every non-blank line is well formed, else None."""
    body = [line for line in lines if line.strip()]
    if any(line.count("::") != 3 for line in body):
        return None
    fields = "::".join(body).split("::") if body else []
    digits = "".join(fields)
    # strict [0-9]+ fields (int() alone would take "1_0", " 1" and non-ASCII digits)
    if "" in fields or not (digits.isascii() and digits.isdigit()) \
            or (fields and max(map(len, fields)) > 18):
        return None
    try:
        rows = np.array(fields, dtype=np.int64)
    except (ValueError, OverflowError):
        return None
    rows = rows.reshape(-1, 4)
    if rows.shape[0] != len(body) or np.any((rows[:, 2] < 1) | (rows[:, 2] > 5)):
        return None
    return rows


def _parse_slow(path: str, lines: list[str]) -> np.ndarray:
    """Ratings (n, 4) parsed line by line; raises naming the file and line of the first error."""
    rows = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 4:
            raise _malformed(path, lineno, line, f"expected 4 fields separated by '::' "
                             f"(user::item::rating::timestamp), found {len(parts)}")
        row = [_integer(p) for p in parts]
        for p, v in zip(parts, row):
            if v is None:
                why = ("is too large: ids and timestamps must fit a 64-bit integer (at most "
                       f"{_INT64_MAX})" if _INTEGER.fullmatch(p) else
                       "is not an integer: expected integer values of ASCII digits 0-9 "
                       "(user::item::rating::timestamp)")
                raise _malformed(path, lineno, line, f"field {p!r} {why}")
        if not 1 <= row[2] <= 5:
            raise _malformed(path, lineno, line, f"rating {row[2]} is outside 1..5")
        rows.append(row)
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def _movies(path: str, text: str) -> tuple[dict[int, str], dict[int, tuple[str, ...]]]:
    """item id -> title and item id -> genres from movies.dat (item::title::genres)."""
    titles: dict[int, str] = {}
    genres: dict[int, tuple[str, ...]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        head, sep, rest = line.partition("::")
        title, sep2, genre = rest.rpartition("::")
        if not (sep and sep2):
            raise _malformed(path, lineno, line, "expected 3 fields separated by '::' "
                             "(item::title::genres)")
        item = _integer(head)
        if item is None:
            raise _malformed(path, lineno, line, f"item id {head!r} is not an integer of ASCII "
                             "digits 0-9 that fits a 64-bit integer")
        titles[item] = title
        genres[item] = tuple(g for g in genre.strip().split("|") if g)
    return titles, genres
