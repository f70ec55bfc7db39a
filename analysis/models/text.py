"""``TextInput``: the encode step of a :class:`TracedModel` that reads text through a Hugging Face
tokenizer (the transformers and the single-attention classifiers share it)."""
from __future__ import annotations

import unicodedata
import warnings
from typing import Any, Sequence

from analysis.models.base import Encoded, InputError
from analysis.types import Removal


def _display(token: str) -> str:
    """Token text for people: drop byte-level / sentencepiece space markers."""
    return token.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\\n").strip() or token


class TextInput:
    """Mixin for a :class:`TracedModel` with a ``tokenizer`` attribute: tokenise, check, truncate,
    remove; tokens for display; special ids; padding and replacement ids from the tokenizer."""

    tokenizer: Any
    max_length: int

    def encode(self, text: str, *, remove: Sequence[int] | None = None, removal: Removal = "delete",
               truncate: bool = False) -> Encoded:
        """Tokenise ``text`` (special tokens added), raise past ``max_length`` (or with
        ``truncate=True`` cut it there, with a warning), remove
        the tokens at positions ``remove`` (positions in the full tokenised input)."""
        if not isinstance(text, str):
            raise InputError(f"text must be a string, not {type(text).__name__}")
        if not text.strip():
            raise InputError("text is empty: give at least one word")
        if not any(unicodedata.category(ch)[0] in "LMNPS" for ch in text):
            raise InputError(f"text {text[:40]!r} has no content: only whitespace, control or "
                             "zero-width characters; give at least one word")
        ids = list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        special = set(self.tokenizer.all_special_ids)
        if all(i in special for i in ids):
            raise InputError(f"text {text[:40]!r} gives no token but special ones for this "
                             "tokenizer; give at least one word")
        if len(ids) > self.max_length:
            if not truncate:
                raise InputError(f"text has {len(ids)} tokens, more than this model's limit of "
                                 f"{self.max_length}; shorten it or pass truncate=True")
            warnings.warn(f"text has {len(ids)} tokens; truncated to the model's limit of {self.max_length}",
                          stacklevel=3)
            ids = self.tokenizer(text, add_special_tokens=True, truncation=True,
                                 max_length=self.max_length)["input_ids"]
        return self.remove_positions(list(ids), remove, removal)   # type: ignore[attr-defined]

    def display_tokens(self, input_ids: Sequence[int]) -> list[str]:
        """Token text for people [n] (byte-level / sentencepiece space markers dropped)."""
        return [_display(t) for t in self.tokenizer.convert_ids_to_tokens(list(input_ids))]

    @property
    def special_ids(self) -> frozenset[int]:
        """The tokenizer's special token ids."""
        return frozenset(int(i) for i in self.tokenizer.all_special_ids)

    @property
    def _pad_id(self) -> int:
        for tid in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, self.tokenizer.unk_token_id, 0):
            if tid is not None:
                return int(tid)
        return 0  # pragma: no cover

    def replacement_id(self, removal: Removal) -> int | None:
        """The tokenizer's mask / pad / unk id for ``removal`` (None when it has no such token)."""
        return {"mask": self.tokenizer.mask_token_id, "unk": self.tokenizer.unk_token_id,
                "pad": self._pad_id}.get(removal)
