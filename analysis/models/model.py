"""``Model``: any supported Hugging Face transformer behind one trace/predict interface."""
from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence, get_args

import torch
from torch import nn

from analysis.models.attention import (IMPLEMENTATION, AttentionHook, attention_hooks,
                                       find_attention_modules, register)
from analysis.models.base import REMOVALS, Encoded, ForwardOutput, InputError, Override, TracedModel
from analysis.models.devices import dtype_name, resolve_device, resolve_dtype
from analysis.models.text import TextInput
from analysis.types import Task

__all__ = ["Model", "SUPPORTED_ARCHITECTURES", "TASKS", "REMOVALS", "Encoded", "ForwardOutput", "InputError",
           "Override", "infer_task"]

#: config.model_type values known to work: their attention runs through transformers'
#: AttentionInterface and tests/test_architectures.py checks each with a tiny random model.
#: Any other architecture whose attention routes through AttentionInterface works too.
SUPPORTED_ARCHITECTURES = ("bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "modernbert",
                           "gpt2", "gpt_neox", "opt", "llama", "mistral", "qwen2", "qwen3", "gemma2", "phi3")
TASKS: tuple[Task, ...] = get_args(Task)


class Model(TextInput, TracedModel):
    """A Hugging Face transformer ready for tracing: eager attention through attnlab's hookable
    function, so every attention site goes through one :class:`AttentionHook`.

    Build with :func:`analysis.load_model`, or wrap an in-memory model with
    ``Model(hf_model, tokenizer, task=...)``. ``device``: "cpu", "auto", "cuda" or "cuda:N";
    ``dtype``: None keeps the module's own precision, else "float32", "bfloat16", "float16" or
    "auto" (see ``analysis.models.devices``). Traces and predictions are float32 numpy arrays.
    """

    kind = "transformer"
    #: whether this class wraps encoder-decoder models (:class:`~analysis.models.seq2seq.Seq2SeqModel`)
    encoder_decoder: ClassVar[bool] = False

    def __init__(self, module: nn.Module, tokenizer: Any, *, task: Task | None = None,
                 name: str = "", device: str | torch.device = "cpu",
                 dtype: str | torch.dtype | None = None) -> None:
        config = module.config
        if getattr(config, "is_encoder_decoder", False) != self.encoder_decoder or \
                (task == "seq2seq-lm") != self.encoder_decoder:
            raise ValueError(f"architecture {config.model_type!r} is "
                             + ("an encoder-decoder model: wrap it with analysis.models.Seq2SeqModel (load_model "
                                "does); Model itself knows the single-stack models"
                                if getattr(config, "is_encoder_decoder", False) else
                                "not an encoder-decoder model: task 'seq2seq-lm' needs one (T5, BART; Seq2SeqModel)")
                             + f"; known to work: {', '.join(SUPPORTED_ARCHITECTURES)}, and t5, bart via Seq2SeqModel")
        self.task = task or infer_task(config)
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not supported; use one of {', '.join(TASKS)}")
        register()
        try:
            module.set_attn_implementation(IMPLEMENTATION)
        except (ValueError, NotImplementedError) as e:   # some models refuse outright
            raise ValueError(_unsupported(config.model_type)) from e
        self.device = resolve_device(device)
        if dtype is None:                # keep the module's own precision
            self.module = module.to(self.device).eval()
        else:
            cast = resolve_dtype(dtype, self.device, getattr(config, "dtype", None))
            self.module = module.to(device=self.device, dtype=cast).eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(config, "_name_or_path", "") or config.model_type
        self.config = config
        probe = {"input_ids": torch.tensor([[self._pad_id] * 3], device=self.device),
                 "attention_mask": torch.ones((1, 3), dtype=torch.long, device=self.device)}
        self._attention_modules = find_attention_modules(self.module, probe)
        if not self._attention_modules:
            raise ValueError(_unsupported(config.model_type))
        with torch.no_grad():   # causal iff no query attends to a later key, at every site
            _, hook = self.forward(probe, capture=True)
        self._causal = all(bool((w.triu(1) == 0).all()) for w in hook.weights.values())
        # RoBERTa-style position tables reserve rows 0..padding_idx: positions start at padding_idx + 1
        pads = [m.padding_idx for name, m in self.module.named_modules()
                if isinstance(m, nn.Embedding) and name.endswith("position_embeddings") and m.padding_idx is not None]
        self._position_offset = pads[0] + 1 if pads else 0

    # ----------------------------------------------------------------- properties
    @property
    def attention_modules(self) -> tuple[nn.Module, ...]:
        """The modules that compute attention, in layer order (index = layer)."""
        return tuple(self._attention_modules)

    @property
    def n_layers(self) -> int:
        return len(self._attention_modules)

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names of a classifier (from ``config.id2label``); ``()`` for language models."""
        if self.task != "sequence-classification":
            return ()
        return tuple(str(self.config.id2label[i]) for i in range(self.config.num_labels))

    @property
    def is_causal(self) -> bool:
        """Decoder models: attention is lower-triangular and token order is a causal order."""
        return self._causal   # measured at construction: every site's attention is lower-triangular

    @property
    def max_length(self) -> int:
        """Longest input in tokens (special tokens included)."""
        limits = [int(self.tokenizer.model_max_length)] if self.tokenizer.model_max_length < 100_000 else []
        pos = getattr(self.config, "max_position_embeddings", None) or getattr(self.config, "n_positions", None)
        if pos:
            limits.append(int(pos) - self._position_offset)
        return min(limits) if limits else 512

    def __repr__(self) -> str:
        where = "" if self.device.type == "cpu" else f", {self.device}"
        precision = "" if self.dtype == torch.float32 else f", {dtype_name(self.dtype)}"
        return (f"Model({self.name!r}, {self.config.model_type}, {self.task}, "
                f"{self.n_layers} layers x {self.n_heads} heads{where}{precision})")

    # ----------------------------------------------------------------- running
    def forward(self, batch: Mapping[str, torch.Tensor], *, overrides: Mapping[tuple[int, int], torch.Tensor] | None = None,
                capture: bool = False, hidden_states: bool = False,
                keep: Mapping[int, Sequence[int] | None] | None = None) -> tuple[ForwardOutput, AttentionHook]:
        """Run the model on a prepared batch with the given (already checked) overrides.

        Differentiable with respect to override tensors; the hook holds captured weights/values
        (only the layers/heads in ``keep`` when given, see :class:`AttentionHook`).
        """
        hook = AttentionHook(overrides=dict(overrides or {}), capture=capture, keep=keep)
        with attention_hooks(self._attention_modules, hook):
            out = self.module(**batch, output_hidden_states=hidden_states)
        return ForwardOutput(logits=out.logits, hidden_states=out.hidden_states if hidden_states else None), hook

    def output_logits(self, out: ForwardOutput, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The logits ``predict`` reports, [batch, classes or vocab], from a forward output."""
        logits = out.logits
        if self.task == "sequence-classification":
            return logits
        lengths = batch["attention_mask"].shape[1] - 1 - batch["attention_mask"].flip(1).argmax(1)
        rows = torch.arange(logits.shape[0], device=logits.device)
        if self.task == "causal-lm":
            return logits[rows, lengths]            # next token after the last real token
        is_mask = batch["input_ids"] == self.tokenizer.mask_token_id
        if not bool(is_mask.any(1).all()):
            raise InputError("a masked-LM prediction is read at the last mask token: put "
                             f"{self.tokenizer.mask_token!r} in every input")
        last = is_mask.shape[1] - 1 - is_mask.flip(1).int().argmax(1)
        return logits[rows, last]


def _unsupported(model_type: str) -> str:
    return (f"architecture {model_type!r} is not supported: its attention does not go through transformers' "
            "AttentionInterface, so attnlab cannot capture or override it; known to work: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}")


def infer_task(config: Any) -> str:
    """The task from ``config.architectures`` (e.g. ``BertForSequenceClassification``)."""
    for arch in getattr(config, "architectures", None) or []:
        if getattr(config, "is_encoder_decoder", False) and arch.endswith("ForConditionalGeneration"):
            return "seq2seq-lm"
        if arch.endswith("ForSequenceClassification"):
            return "sequence-classification"
        if arch.endswith("ForMaskedLM"):
            return "masked-lm"
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal-lm"
    raise ValueError(f"cannot infer the task of this {config.model_type} model from its config "
                     f"(architectures={getattr(config, 'architectures', None)}); pass task= one of {', '.join(TASKS)}")
