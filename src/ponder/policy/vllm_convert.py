"""From vLLM's outputs to ponder's samples: sampling settings, finish reasons, log-probs, costs.

Pure functions over vLLM's `CompletionOutput`-like objects, so they are tested with stand-ins and
never import vLLM; `ponder.policy.vllm` (the backend) calls them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ponder.types import Cost, Sample, Sampling

STEP_STOP = "\n"

def sampling_kwargs(sampling: Sampling, *, n: int, max_tokens: int, seed: int | None, stop_ids: Sequence[int]
                    ) -> dict[str, Any]:
    """The keyword arguments of `vllm.SamplingParams` for one request of `n` samples."""
    kw: dict[str, Any] = {"n": n, "temperature": sampling.temperature,
                          "top_p": 1.0 if sampling.temperature == 0 else sampling.top_p,
                          "max_tokens": max_tokens, "seed": seed, "logprobs": 0,  # 0: the sampled token's only
                          "stop_token_ids": list(stop_ids)}
    if sampling.stop_at_step:
        kw |= {"stop": [STEP_STOP], "include_stop_str_in_output": True}
    return kw


def finish_of(completion) -> str:
    """"eos", "step" or "length" for a vLLM CompletionOutput: a stop on a string (only the step
    newline is asked for) is a step; a stop on a token (EOS: stop_reason None; a stop id: that id)
    is an end."""
    if completion.finish_reason == "stop":
        return "step" if isinstance(completion.stop_reason, str) else "eos"
    return "length"


def completion_logprobs(completion) -> tuple[float, ...] | None:
    """The sampled tokens' log-probs from a CompletionOutput (`logprobs[t]` maps token id to a
    `Logprob` or a float), or None when any is missing or not a number."""
    table, ids = completion.logprobs, completion.token_ids
    if table is None or len(table) != len(ids):
        return None
    out = []
    for tok, entry in zip(ids, table):
        if not isinstance(entry, Mapping) or tok not in entry:
            return None
        value = entry[tok]
        value = float(getattr(value, "logprob", value))
        if math.isnan(value):
            return None
        out.append(value)
    return tuple(out)


def sample_flops(n_params: int, per_layer: float, *, generated: int, prompt_len: int, encoded: int) -> float:
    """FLOPs of encoding the last `encoded` tokens of a `prompt_len`-token prompt (the others served
    by a cache) and of generating `generated` tokens after it: 2 x parameters per token, plus
    `per_layer` (4 x layers x width) per attended position."""
    cached = prompt_len - encoded
    prefill = 2.0 * n_params * encoded + per_layer * (encoded * cached + encoded * (encoded + 1) / 2)
    decode = 2.0 * n_params * generated + per_layer * (generated * prompt_len + generated * (generated - 1) / 2)
    return prefill + decode


def to_samples(completions: Sequence, *, copies: int, prompt_len: int, cached: int, stop_ids: Collection[int],
               eos_id: int, decode: Callable[[list[int]], str], n_params: int, per_layer: float,
               policy_calls: int = 0, logprobs_ok: bool = True) -> list[Sample]:
    """The `copies` Samples of one distinct prompt from its vLLM CompletionOutputs: one per copy, or a
    single greedy one copied (the copies cost nothing). The first sample carries the prompt's
    encoding and `policy_calls`. A sample whose log-probs are not usable (`logprobs_ok` False, or
    vLLM's incomplete) gets `logprobs=()`, for the caller to fill in."""
    if len(completions) not in (1, copies):
        raise ValueError(f"expected {copies} completions (or 1 greedy one), got {len(completions)}")
    encoded = prompt_len - min(max(cached, 0), prompt_len - 1)  # at least the last prompt token is run
    stop = set(stop_ids)
    out: list[Sample] = []
    for j, c in enumerate(completions):
        ids = [int(t) for t in c.token_ids]
        finish = finish_of(c)
        lps = completion_logprobs(c) if logprobs_ok else None
        if finish == "eos" and (not ids or ids[-1] not in stop):  # an engine that drops the end token
            ids, lps = [*ids, eos_id], None
        first = j == 0
        enc = encoded if first else 0
        cost = Cost(tokens_generated=len(ids), tokens_encoded=enc, policy_calls=policy_calls if first else 0,
                    flops=sample_flops(n_params, per_layer, generated=len(ids), prompt_len=prompt_len, encoded=enc))
        out.append(Sample(text=decode([x for x in ids if x not in stop]), token_ids=tuple(ids),
                          logprobs=lps if lps is not None else (), finish=finish, cost=cost))
    if len(out) < copies:  # greedy: the same sample, drawn once
        out += [replace(out[0], cost=Cost()) for _ in range(copies - 1)]
    return out


def engine_logprobs_untempered(*, raw: bool, temperature: float, top_p: float) -> bool:
    """Whether the engine's sampled-token log-probs are the untempered policy's: always with raw
    log-probs (V1, `logprobs_mode="raw_logprobs"`); on V0, only where temperature and top-p change
    nothing."""
    return raw or (temperature in (0.0, 1.0) and top_p == 1.0)


# -- weights: merged state dict, export, push ----------------------------------------------------


