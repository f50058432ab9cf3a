"""The Policy protocol: what search and learning need from a model, whatever sits behind it.

The built-in engine (`ponder.policy.tiny`) implements it; a Hugging Face or vLLM backend implements
the same methods, so searchers and learners never know which one they hold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from ponder.types import Sample, Sampling


def batch_seed(seed: int, index: int) -> int:
    """The seed of batch `index` of a seeded `generate` call: batch 0 uses the call's seed itself, so a
    call that fits one batch is seeded by `seed`, and a worker given batch k alone with
    `batch_seed(seed, k)` samples what the whole call samples for it."""
    if index == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def record_step(t: int, nxt: Tensor, lp: Tensor, is_eos: Tensor, is_step: Tensor | None, *, rows: Tensor,
                active: Tensor, tokens: Tensor, lps: Tensor, length: Tensor, limit: Tensor, finish: list[str]
                ) -> Tensor:
    """One decoding step's bookkeeping, shared by the engines' sampling loops: write token `t` and its
    log-prob for the batch rows still active (`rows` maps batch rows to samples), end the rows that
    drew an end token ("eos") or, when `is_step` is given, a step end ("step"), and the rows at their
    own length cap. Returns the new active mask."""
    r_act = rows[active]
    tokens[r_act, t] = nxt[active]
    lps[r_act, t] = lp[active]
    done = (is_eos | is_step if is_step is not None else is_eos) & active
    if bool(done.any()):
        for r, e in zip(rows[done].tolist(), is_eos[done].tolist()):
            finish[r] = "eos" if e else "step"
        length[rows[done]] = t + 1
        active = active & ~done
    return active & (limit[rows] > t + 1)


@runtime_checkable
class Policy(Protocol):
    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[list[Sample]]:
        """`sampling.n` completions for each prompt: result[i][j] is sample j of prompt i.
        Every Sample carries its share of the call's cost."""
        ...

    def logprobs(self, prompts: Sequence[str], completions: Sequence[str], *, eos: bool = True
                 ) -> tuple[Tensor, Tensor]:
        """Per-token log-probabilities of each completion given its prompt, differentiable.

        Returns (logp, mask), both (B, T): token j of completion b is at column j; `mask` is 1.0 on
        real tokens. With `eos`, the end-of-sequence token closes each completion and is scored too.
        """
        ...

    def room(self, prompt: str) -> int:
        """Tokens that can still be generated after `prompt` (0 or less: the context is full)."""
        ...

    def parameters(self) -> Iterable[nn.Parameter]: ...

    def train(self, mode: bool = True) -> object: ...

    def save(self, path: str | Path) -> None: ...
