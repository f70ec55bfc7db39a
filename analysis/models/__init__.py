"""Load any supported Hugging Face transformer, trace it, override its attention."""
from analysis.models.loading import load_model
from analysis.models.model import (REMOVALS, SUPPORTED_ARCHITECTURES, TASKS, Encoded, InputError, Model,
                                   infer_task)
from analysis.models.trace import Trace

__all__ = ["load_model", "Model", "Trace", "Encoded", "InputError", "infer_task",
           "SUPPORTED_ARCHITECTURES", "TASKS", "REMOVALS"]
