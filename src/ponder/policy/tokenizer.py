"""A character-level tokenizer for the built-in engine.

One token per printable ASCII character plus three specials (PAD, BOS, EOS). The vocabulary is
fixed rather than learnt from data, so any task's text round-trips and a checkpoint from one task
can be fine-tuned on another. Characters outside the vocabulary are an error, never silently
dropped: a prompt the model cannot see exactly would make its scores meaningless.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
CHARSET = string.printable.replace("\x0b", "").replace("\x0c", "").replace("\r", "")


class CharTokenizer:
    """Maps text to token ids and back. `step_token` is the id of the step boundary (newline)."""

    def __init__(self, charset: str = CHARSET) -> None:
        if len(set(charset)) != len(charset):
            raise ValueError("tokenizer charset has repeated characters")
        self.charset = charset
        self._to_id = {ch: i + len(SPECIALS) for i, ch in enumerate(charset)}
        self.vocab_size = len(SPECIALS) + len(charset)
        self.pad_id, self.bos_id, self.eos_id = PAD, BOS, EOS
        self.step_token = self._to_id["\n"]

    def encode(self, text: str) -> list[int]:
        try:
            return [self._to_id[ch] for ch in text]
        except KeyError as e:
            pos = text.index(e.args[0])
            raise ValueError(
                f"character {e.args[0]!r} at position {pos} of {text[:40]!r} is not in the tokenizer's "
                "vocabulary (printable ASCII)"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; special tokens are dropped."""
        n = len(SPECIALS)
        return "".join(self.charset[i - n] for i in ids if i >= n)

    def to_dict(self) -> dict:
        return {"type": "char", "charset": self.charset}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        if d.get("type") != "char" or not isinstance(d.get("charset"), str):
            raise ValueError("tokenizer.json is not a ponder character tokenizer")
        return cls(d["charset"])
