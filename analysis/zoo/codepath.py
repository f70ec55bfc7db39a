"""One CPU code path for every zoo build, so that a rebuild on another machine can give the same weights.

Training the same recipe with the same seed gives bit-identical weights on one machine, but the
CPU code path changes them (``benchmarks/build_determinism.py``): ATen's vector kernels (AVX2,
AVX-512 or portable), MKL's code branch and the thread count each give other weights (oneDNN's
instruction set is pinned as well, untested). They are chosen when the libraries start, from the
machine, so a build cannot
pin them in a running process. :func:`build_in_child` therefore trains in a fresh Python
process whose environment fixes them (:func:`pinned_env`): ATen ``avx2``, MKL's ``AVX2`` branch
(conditional numerical reproducibility), oneDNN at most ``AVX2`` and :data:`BUILD_THREADS`
torch threads. Every x86-64 machine with AVX2 (Intel since 2013, AMD since 2015) can run that
path; on one without it (or another architecture) the build runs on the machine's own path and
the manifest says so (``code_path``). Which path a build took is recorded in its manifest.

What this does not promise: MKL documents branches other than AUTO and COMPATIBLE for Intel
processors only (elsewhere it takes its automatic branch, still in reproducibility mode), and
neither MKL nor oneDNN promises the same results across vendors. Measured so far (README, zoo
section): on an AMD EPYC (Zen 1, AVX2) the pinned build of the default model is not that
machine's unpinned build (other weights in their last digits, same test accuracy), so pinning
cannot reproduce builds made before it. Check a rebuild against a run with
``python -m analysis.experiments status DIR --check-model``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["CODE_PATH", "pinned_env", "describe", "build_in_child", "versioned"]

#: names the pinned path in every zoo cache version (a change here rebuilds every zoo model)
CODE_PATH = "avx2-2threads"
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"}


def versioned(recipe_version: str) -> str:
    """The cache version of a zoo model: its recipe's and the pinned code path's."""
    return f"{recipe_version}+{CODE_PATH}"


def pinned_env() -> dict[str, str]:
    """The environment variables that fix the build's code path, or {} when this machine cannot
    run it (no AVX2: ATen then reports a lower capability, or the machine is not x86-64)."""
    import torch

    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        return {}
    return dict(PINNED)


def describe() -> str:
    """This process's code path, as a build's manifest records it."""
    import torch

    mkl = os.environ.get("MKL_CBWR", "automatic")
    dnnl = os.environ.get("DNNL_MAX_CPU_ISA", "automatic")
    return (f"ATen {torch.backends.cpu.get_cpu_capability()}, MKL branch {mkl}, oneDNN ISA {dnnl}, "
            f"{torch.get_num_threads()} threads")


def build_in_child(name: str, out: Path, progress: bool) -> dict[str, Any]:
    """Build zoo model ``name`` into ``out`` in a fresh Python process on the pinned code path
    (``python -m analysis.zoo build-into``); return the build's info. The child writes to this
    process's standard streams (in a notebook: the Jupyter server's log); a failed build raises
    with its exit status."""
    fd, info_path = tempfile.mkstemp(prefix=f"attnlab-{name}-", suffix=".json")
    os.close(fd)
    try:
        cmd = [sys.executable, "-m", "analysis.zoo", "build-into", name, str(out), info_path]
        if not progress:
            cmd.append("--no-progress")
        done = subprocess.run(cmd, env={**os.environ, **pinned_env()})
        if done.returncode != 0:
            raise RuntimeError(f"building zoo model {name!r} failed in its build process (exit status "
                               f"{done.returncode}); its messages are in this process's standard error")
        return json.loads(Path(info_path).read_text())
    finally:
        Path(info_path).unlink(missing_ok=True)
