"""A scripted step-level policy for tests of search and reward labelling: known next-step
distributions, so expected values and argmaxes can be computed by hand.

`StepScript` maps a text (prompt plus the steps so far, each ending in a newline) to its possible
next steps with probabilities. A text with no entry is finished. Sampling with `stop_at_step`
draws one step; without it, steps are drawn until a finished text. One generated character counts
as one token, and every prompt character is encoded on every call (no cache), so costs are exact.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from ponder.types import Cost, Sample, Sampling


class StepScriptPolicy:
    def __init__(self, script: dict[str, list[tuple[str, float]]], seed: int = 0) -> None:
        for key, options in script.items():
            if abs(sum(p for _, p in options) - 1.0) > 1e-9:
                raise ValueError(f"probabilities after {key!r} do not sum to 1")
            if any(not step.endswith("\n") for step, _ in options):
                raise ValueError(f"every step after {key!r} must end with a newline")
        self.script = script
        self.rng = random.Random(seed)
        self.calls: list[tuple[list[str], Sampling]] = []

    def room(self, prompt: str) -> int:
        return 10_000

    def _draw(self, text: str, rng: random.Random) -> tuple[str, float] | None:
        options = self.script.get(text)
        if not options:
            return None
        x, acc = rng.random(), 0.0
        for step, p in options:
            acc += p
            if x < acc:
                return step, p
        return options[-1]

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[list[Sample]]:
        self.calls.append((list(prompts), sampling))
        rng = self.rng if sampling.seed is None else random.Random(sampling.seed)
        out = []
        for prompt in prompts:
            group = []
            for j in range(sampling.n):
                text, logps = "", []
                while True:
                    drawn = self._draw(prompt + text, rng)
                    if drawn is None or len(text) + len(drawn[0]) > sampling.max_new_tokens:
                        finish = "eos" if drawn is None else "length"
                        break
                    text += drawn[0]
                    logps += [math.log(drawn[1])] + [0.0] * (len(drawn[0]) - 1)
                    if sampling.stop_at_step:
                        finish = "eos" if prompt + text not in self.script else "step"
                        break
                cost = Cost(tokens_generated=len(text), tokens_encoded=len(prompt), policy_calls=1)
                group.append(Sample(text=text, token_ids=tuple(ord(c) for c in text), logprobs=tuple(logps),
                                    finish=finish, cost=cost))
            out.append(group)
        return out


class TableReward:
    """Outcome and process reward from tables keyed by the solution text (prompt excluded).
    Unknown texts score `default`; a step prefix's score is looked up as the text up to that step."""

    def __init__(self, table: dict[str, float], default: float = 0.0) -> None:
        self.table = table
        self.default = default
        self.calls = 0

    def score(self, problems, texts):
        assert len(problems) == len(texts)
        self.calls += len(texts)
        return [self.table.get(t, self.default) for t in texts]

    def step_scores(self, problems, texts):
        assert len(problems) == len(texts)
        self.calls += len(texts)
        out = []
        for t in texts:
            lines = [line + "\n" for line in t.split("\n") if line.strip()]
            out.append([self.table.get("".join(lines[: i + 1]), self.default) for i in range(len(lines))])
        return out
