"""Load any supported model, trace it, override its attention: one :class:`TracedModel` contract
(Hugging Face transformers, single-attention classifiers, recommenders)."""
from analysis.models.base import ForwardOutput, TracedModel
from analysis.models.loading import load_model
from analysis.models.model import (REMOVALS, SUPPORTED_ARCHITECTURES, TASKS, Encoded, InputError, Model,
                                   infer_task)
from analysis.models.seq2seq import Seq2SeqModel, Seq2SeqTrace
from analysis.models.trace import Trace

__all__ = ["load_model", "TracedModel", "ForwardOutput", "Model", "Trace", "Encoded", "InputError", "infer_task",
           "SUPPORTED_ARCHITECTURES", "TASKS", "REMOVALS", "Seq2SeqModel", "Seq2SeqTrace"]
