"""Zoo builds on one pinned CPU code path, in a fresh process (analysis.zoo.codepath)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from analysis import zoo
from analysis.zoo import codepath
from analysis.zoo.cache import MANIFEST

AVX2 = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def test_every_zoo_model_builds_in_a_child_and_its_version_names_the_code_path(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path))
    assert set(zoo.ZOO) == set(zoo.BUILDERS)
    for name, (version, _) in zoo.ZOO.items():
        assert version == codepath.versioned(zoo.BUILDERS[name][0]) and version.endswith("+" + codepath.CODE_PATH)
    built = []

    def fake_child(name, out, progress):
        built.append((name, progress))
        (out / "weights.bin").write_bytes(b"w")
        return {"code_path": "fake"}

    monkeypatch.setattr(zoo, "build_in_child", fake_child)
    meta = zoo.prepare("bert4rec", progress=False)
    assert built == [("bert4rec", False)]
    assert meta["version"] == zoo.ZOO["bert4rec"][0] and meta["code_path"] == "fake"
    assert json.loads((zoo.model_dir("bert4rec") / MANIFEST).read_text())["version"] == meta["version"]


@pytest.mark.skipif(not AVX2, reason="the pinned path needs an x86-64 CPU with AVX2")
def test_the_child_runs_on_the_pinned_path(monkeypatch):
    seen = {}

    def fake_run(cmd, env):
        seen.update(cmd=cmd, env=env)
        with open(cmd[-1] if cmd[-1] != "--no-progress" else cmd[-2], "w") as f:
            json.dump({"ok": 1}, f)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(codepath.subprocess, "run", fake_run)
    out = codepath.build_in_child("bert4rec", "OUT", progress=False)
    assert out == {"ok": 1}
    assert seen["cmd"][:6] == [sys.executable, "-m", "analysis.zoo", "build-into", "bert4rec", "OUT"]
    assert seen["cmd"][-1] == "--no-progress"
    assert {k: seen["env"][k] for k in codepath.PINNED} == codepath.PINNED
    assert not os.path.exists(seen["cmd"][6])                       # the info file is removed afterwards
    monkeypatch.undo()
    # a real process with that environment reports the pinned path (ATen lowered to AVX2 where it has more)
    got = subprocess.run([sys.executable, "-c", "from analysis.zoo.cache import build_threads\n"
                          "from analysis.zoo.codepath import describe\nwith build_threads(): print(describe())"],
                         env={**os.environ, **codepath.pinned_env()}, capture_output=True, text=True, check=True)
    assert got.stdout.strip() == "ATen AVX2, MKL branch AVX2, oneDNN ISA AVX2, 2 threads"


def test_a_failed_child_build_is_a_clear_error_and_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="building zoo model 'no-such-model' failed in its build process"):
        codepath.build_in_child("no-such-model", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="unknown zoo model 'no-such-model'"):
        zoo.build_into("no-such-model", tmp_path / "out")
