"""The zoo cache: atomic publication, corruption detection and rebuild."""
from __future__ import annotations

import json

import pytest

from analysis import zoo
from analysis.zoo.cache import MANIFEST, build_atomically, cache_root, read_manifest


def _writer(calls):
    def build(out):
        calls.append(out)
        (out / "weights.bin").write_bytes(b"w" * 1000)
        (out / "config.json").write_text("{}")
        return {"accuracy": 0.9}
    return build


def test_cache_root_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    assert zoo.model_dir("x") == tmp_path / "models" / "x"


def test_publish_verify_and_detect_corruption(tmp_path):
    folder = tmp_path / "m"
    calls = []
    meta = build_atomically(folder, "v1", _writer(calls))
    assert meta["accuracy"] == 0.9 and set(meta["files"]) == {"weights.bin", "config.json"}
    assert read_manifest(folder, "v1")["accuracy"] == 0.9
    assert read_manifest(folder, "v2") is None                      # outdated recipe
    (folder / "weights.bin").write_bytes(b"w" * 999)                # truncated file
    assert read_manifest(folder, "v1") is None
    (folder / MANIFEST).write_text("{not json")
    assert read_manifest(folder, "v1") is None


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def broken(out):
        (out / "weights.bin").write_bytes(b"half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        build_atomically(tmp_path / "m", "v1", broken)
    assert list(tmp_path.iterdir()) == []


def test_prepare_builds_once_then_rebuilds_when_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setitem(zoo.ZOO, "fake", ("v1", lambda out, progress: _writer(calls)(out)))
    zoo.prepare("fake")
    zoo.prepare("fake")
    assert len(calls) == 1
    (zoo.model_dir("fake") / "weights.bin").write_bytes(b"corrupt")
    with pytest.warns(UserWarning, match="incomplete, corrupt or outdated"):
        zoo.prepare("fake")
    assert len(calls) == 2
    manifest = json.loads((zoo.model_dir("fake") / MANIFEST).read_text())
    assert manifest["version"] == "v1"
    with pytest.raises(ValueError, match="unknown zoo model 'nope'; available: .*fake"):
        zoo.prepare("nope")
