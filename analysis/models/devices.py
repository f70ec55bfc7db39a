"""Where a model runs and in what precision: ``device=`` and ``dtype=`` of ``load_model`` / ``Model``.

``device``: ``"auto"`` (the current CUDA GPU when torch sees one, else the CPU), ``"cpu"``,
``"cuda"`` (the current GPU) or ``"cuda:N"``. A GPU device where torch sees none (or an index
past the last GPU) is a ``ValueError`` that says so, never a silent fall back to the CPU.

``dtype``: ``"float32"``, ``"bfloat16"``, ``"float16"`` (or the ``torch.dtype``; ``"fp32"``,
``"bf16"``, ``"fp16"``, ``"half"`` also read) or ``"auto"``. ``"auto"`` keeps full precision
unless asked: on the CPU always float32 (a half-precision checkpoint is widened); on a GPU the
checkpoint's saved dtype (``config.dtype``) when that is float16 or bfloat16, else float32; a
bfloat16 checkpoint on a GPU without bfloat16 support loads as float32 (float16 could overflow
where bfloat16 does not). float16 on the CPU is allowed with a warning: most CPUs have no
float16 arithmetic, so it is usually slower than float32 (and its range is bfloat16's only in part).

Whatever the model's dtype, traces and predictions come back as float32 numpy arrays.
"""
from __future__ import annotations

import re
import warnings
from typing import Any

import torch

#: dtype names ``dtype=`` accepts (besides "auto")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
_DEVICES = "'auto' (a GPU when one is visible, else the CPU), 'cpu', 'cuda' (the current GPU) or 'cuda:N'"


def resolve_device(device: str | torch.device) -> torch.device:
    """The ``torch.device`` for ``device`` ("auto", "cpu", "cuda", "cuda:N" or a torch.device);
    a CUDA device always has its index. Raises ValueError for a GPU torch cannot see and for
    anything else."""
    if isinstance(device, torch.device):
        text = str(device)
    elif isinstance(device, str):
        text = device.strip().lower()
    else:
        raise ValueError(f"device must be {_DEVICES}, not a {type(device).__name__} ({device!r})")
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise ValueError(f"device {device!r} is not understood: use {_DEVICES}")
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA support" if torch.version.cuda is None else \
            "torch.cuda.is_available() is False: no driver or no GPU, or CUDA_VISIBLE_DEVICES hides them"
        raise ValueError(f"device={device!r} asks for a GPU, but no CUDA GPU is visible here ({why}); "
                         "use device='cpu', or device='auto' to use a GPU only when there is one")
    count = torch.cuda.device_count()
    index = int(match.group(1)) if match.group(1) is not None else torch.cuda.current_device()
    if index >= count:
        raise ValueError(f"device={device!r}: no such GPU, {count} visible (cuda:0..cuda:{count - 1}); "
                         "pick one of those, device='cuda' for the current one, or device='cpu'")
    return torch.device("cuda", index)


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def _parse(dtype: Any) -> torch.dtype | None:
    """A torch.dtype from a name or torch.dtype (None: not a supported one)."""
    if isinstance(dtype, torch.dtype):
        return dtype if dtype in DTYPES.values() else None
    if isinstance(dtype, str):
        name = dtype.strip().lower().removeprefix("torch.")
        return DTYPES.get(_ALIASES.get(name, name))
    return None


def check_dtype(dtype: str | torch.dtype) -> torch.dtype | None:
    """The torch.dtype ``dtype`` names (None for "auto"); ValueError listing the valid names otherwise."""
    if isinstance(dtype, str) and dtype.strip().lower() == "auto":
        return None
    chosen = _parse(dtype)
    if chosen is None:
        raise ValueError(f"dtype {dtype!r} is not supported: use 'auto' (full precision unless the checkpoint "
                         f"was saved in half precision and the model runs on a GPU) or one of "
                         f"{', '.join(repr(n) for n in DTYPES)}")
    return chosen


def resolve_dtype(dtype: str | torch.dtype, device: torch.device, checkpoint: Any = None) -> torch.dtype:
    """The ``torch.dtype`` for ``dtype`` on ``device`` (see the module docstring for "auto");
    ``checkpoint`` is the dtype the weights were saved in (``config.dtype``: a name, a
    torch.dtype or None). Raises ValueError for an unknown name."""
    chosen = check_dtype(dtype)
    if chosen is None:
        saved = _parse(checkpoint) if checkpoint is not None else None
        if device.type != "cuda" or saved not in (torch.float16, torch.bfloat16):
            return torch.float32
        if saved == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            return torch.float32
        return saved
    if chosen == torch.float16 and device.type == "cpu":
        warnings.warn("dtype='float16' on the CPU: most CPUs have no float16 arithmetic, so this is usually "
                      "slower than float32, and float16's narrow range can overflow where bfloat16's does not; "
                      "prefer dtype='float32' (or 'bfloat16') there", stacklevel=3)
    return chosen
