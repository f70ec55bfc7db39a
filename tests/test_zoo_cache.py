"""The zoo cache: inter-process lock, atomic publication, whole-manifest validation, cleanup
of killed builds, and rebuild on anything incomplete."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from analysis import zoo
from analysis.zoo import cache as zcache
from analysis.zoo.cache import (
    MANIFEST,
    build_atomically,
    cache_root,
    read_manifest,
    state_dir,
)

CACHE_PY = Path(zcache.__file__)

# A worker process: loads cache.py by path (no torch import: fast on small machines), builds one
# fake model with a recipe that sleeps, logs each real build to builds.log, prints the manifest.
WORKER = textwrap.dedent("""
    import importlib.util, json, os, sys, time
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("zoo_cache_worker", sys.argv[1])
    cache = importlib.util.module_from_spec(spec); spec.loader.exec_module(cache)
    folder, sleep, rebuild, n_files = Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5])

    def build(out):
        with open(folder.parent / "builds.log", "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(sleep)
        for k in range(n_files):
            (out / f"part{k}.bin").write_bytes(os.urandom(64))
        return {"builder": os.getpid()}

    meta = cache.build_atomically(folder, "v1", build, rebuild=rebuild)
    print(json.dumps(meta))
""")


def _spawn(folder: Path, *, sleep: float = 1.0, rebuild: bool = False, n_files: int = 3) -> subprocess.Popen:
    script = folder.parent / "worker.py"
    script.write_text(WORKER)
    return subprocess.Popen([sys.executable, str(script), str(CACHE_PY), str(folder), str(sleep),
                             "1" if rebuild else "0", str(n_files)], stdout=subprocess.PIPE, text=True)


def _builds(folder: Path) -> list[str]:
    log = folder.parent / "builds.log"
    return log.read_text().split() if log.exists() else []


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
    assert not (tmp_path / "m").exists()
    assert [p.name for p in state_dir(tmp_path / "m").iterdir()] == ["lock"]     # only the lock file


def test_a_build_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="wrote no files"):
        build_atomically(tmp_path / "m", "v1", lambda out: {})
    assert not (tmp_path / "m").exists()


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


def test_only_the_process_that_builds_says_it_is_building(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setitem(zoo.ZOO, "fake", ("v1", lambda out, progress: _writer(calls)(out)))

    def another_process_builds(folder, version, build, *, rebuild=False, on_wait=None):
        on_wait()                                                    # the lock is held elsewhere
        return {"version": version, "files": {}}

    real = zoo.build_atomically
    monkeypatch.setattr(zoo, "build_atomically", another_process_builds)
    zoo.prepare("fake")
    err = capsys.readouterr().err
    assert "waiting for it" in err and "building zoo model" not in err and not calls
    monkeypatch.setattr(zoo, "build_atomically", real)              # now this process builds
    zoo.prepare("fake")
    assert "building zoo model fake" in capsys.readouterr().err and len(calls) == 1


# ----------------------------------------------------------------------------- the manifest as a whole
def _broken_manifests(meta: dict) -> dict[str, object]:
    files = dict(meta["files"])
    files.pop("weights.bin")
    return {
        "an entry removed": {**meta, "files": files},
        "files empty": {**meta, "files": {}},
        "files a list": {**meta, "files": list(meta["files"])},
        "a list": [meta],
        "a string": "v1",
        "no version": {k: v for k, v in meta.items() if k != "version"},
        "a hash not a string": {**meta, "files": {k: 1 for k in meta["files"]}},
        "an entry outside the folder": {**meta, "files": {**meta["files"], "../x": "0" * 64}},
    }


@pytest.mark.parametrize("case", list(_broken_manifests({"version": "v1", "files": {"weights.bin": "a", "config.json": "b"}})))
def test_a_manifest_that_does_not_describe_the_folder_triggers_a_rebuild(tmp_path, monkeypatch, case):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setitem(zoo.ZOO, "fake", ("v1", lambda out, progress: _writer(calls)(out)))
    meta = zoo.prepare("fake")
    folder = zoo.model_dir("fake")
    (folder / "weights.bin").write_bytes(b"w" * 10)                # truncated, and...
    (folder / MANIFEST).write_text(json.dumps(_broken_manifests(meta)[case]))   # ...a manifest that hides it
    assert read_manifest(folder, "v1") is None
    with pytest.warns(UserWarning, match="incomplete, corrupt or outdated"):
        zoo.prepare("fake")
    assert len(calls) == 2 and (folder / "weights.bin").read_bytes() == b"w" * 1000


def test_an_unlisted_file_makes_the_folder_invalid(tmp_path):
    folder = tmp_path / "m"
    build_atomically(folder, "v1", _writer([]))
    (folder / "extra.bin").write_bytes(b"x")
    assert read_manifest(folder, "v1") is None
    (folder / "extra.bin").unlink()
    assert read_manifest(folder, "v1") is not None


# ----------------------------------------------------------------------------- processes
def test_two_processes_build_one_model_once(tmp_path):
    folder = tmp_path / "m"
    procs = [_spawn(folder, sleep=1.0) for _ in range(2)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert len(_builds(folder)) == 1                                 # the second waited, then loaded
    metas = [json.loads(o) for o in outs]
    assert metas[0] == metas[1] == read_manifest(folder, "v1")


def test_a_reader_never_sees_the_folder_missing_while_two_processes_republish(tmp_path):
    folder = tmp_path / "m"
    build_atomically(folder, "v1", _writer([]))
    procs = [_spawn(folder, sleep=0.2, rebuild=True, n_files=200) for _ in range(2)]
    seen, builders = 0, set()
    while any(p.poll() is None for p in procs):
        meta = read_manifest(folder, "v1")                           # resolved once: one version
        assert meta is not None, "the published folder was missing or incomplete"
        builders.add(meta.get("builder"))
        seen += 1
    assert [p.wait() for p in procs] == [0, 0] and len(_builds(folder)) == 2
    assert read_manifest(folder, "v1")["builder"] == int(_builds(folder)[-1])
    assert seen > 10 and len(builders) >= 2                         # it read across a publish


def test_a_killed_build_leaves_a_folder_that_the_next_build_removes(tmp_path):
    folder = tmp_path / "m"
    proc = _spawn(folder, sleep=60)
    deadline = time.time() + 30
    while not _builds(folder) and time.time() < deadline:          # the build has started
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = [p for p in state_dir(folder).iterdir() if p.name.startswith("build-")]
    assert len(left) == 1 and not folder.exists()
    build_atomically(folder, "v1", _writer([]))                      # the lock died with the process
    assert not left[0].exists() and read_manifest(folder, "v1") is not None


def test_stale_folders_of_older_versions_are_cleaned_only_when_idle(tmp_path):
    folder = tmp_path / "m"
    old = tmp_path / ".m.abcd1234"                                    # a killed build of an older attnlab
    fresh = tmp_path / ".m.efgh5678"                                  # a live one (no lock to ask)
    for p in (old, fresh):
        p.mkdir()
        (p / "weights.bin").write_bytes(b"w")
    past = time.time() - zcache.LEGACY_STALE_S - 60
    for p in (old / "weights.bin", old):
        os.utime(p, (past, past))
    build_atomically(folder, "v1", _writer([]))
    assert not old.exists() and fresh.exists()


def test_replaced_versions_are_kept_for_readers_then_removed(tmp_path):
    folder = tmp_path / "m"
    build_atomically(folder, "v1", _writer([]))
    first = zcache.resolve(folder)
    build_atomically(folder, "v1", _writer([]), rebuild=True)
    current = zcache.resolve(folder)
    assert current != first and first.is_dir()                      # a reader of `first` can finish
    with zcache.lock_for(folder):
        removed = zcache.clean_stale(folder, now=time.time() + zcache.RETIRED_GRACE_S + 60)
    assert removed == [first] and read_manifest(folder, "v1") is not None


def test_a_plain_folder_of_an_older_version_is_read_then_replaced(tmp_path):
    folder = tmp_path / "m"
    build_atomically(folder, "v1", _writer([]))
    real = zcache.resolve(folder)
    folder.unlink()
    os.replace(real, folder)                                          # what older attnlab wrote
    assert read_manifest(folder, "v1") is not None
    build_atomically(folder, "v1", _writer([]), rebuild=True)
    assert folder.is_symlink() and read_manifest(folder, "v1") is not None
