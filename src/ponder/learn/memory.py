"""Micro-batches chosen from a memory budget, so a long completion does not run a training step out of
memory.

A forward and backward pass keeps activations for every token of every row it holds, padded to the
micro-batch's longest row. Per token of a row of T tokens it keeps about

    n_layer * (17 * d_model + 2.5 * n_head * T) + 2 * vocab

values: the layer's inputs, attention and MLP intermediates (17 d per token and layer, the estimate of
Korthikanti et al., *Reducing Activation Recomputation in Large Transformer Models*, 2022, in values
rather than bytes), its attention scores and probabilities (2.5 per head and key), and the output
logits with their log-softmax. Times the bytes of a value (4 in float32, 2 in bfloat16 or float16),
that is the estimate `activation_bytes` makes. It is a planning figure, not a measurement: allocator
slack, optimizer state and the weights come on top, so set the budget below what the device has free.

`budget_micro_batches` walks a step's rows in order and starts a new micro-batch whenever the next row
would push the padded estimate over the budget. The loss needs no change: every learner divides each
micro-batch's loss by the whole step's normalizer, so the micro-batches' gradients add up to the
whole batch's (`ponder.learn.losses`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIB = 2**20


@dataclass(frozen=True)
class ModelShape:
    """What the activation estimate needs to know about a model."""

    n_layer: int
    d_model: int
    n_head: int
    vocab: int
    value_bytes: int


def _trained(policy):
    """The policy that trains behind `policy`: a Ray wrapper's local copy, the vLLM backend's HF copy."""
    policy = getattr(policy, "local", policy)
    return getattr(policy, "hf", policy)


def model_shape(policy) -> ModelShape:
    """The shape of the built-in model or of a Hugging Face causal LM behind `policy`."""
    policy = _trained(policy)
    cfg = getattr(policy, "config", None)
    if hasattr(cfg, "n_layer") and hasattr(policy, "tokenizer"):  # the built-in model
        value_bytes = 2 if policy.dtype in ("bfloat16", "float16") else 4
        return ModelShape(cfg.n_layer, cfg.d_model, cfg.n_head, policy.tokenizer.vocab_size, value_bytes)
    model = getattr(policy, "model", None)
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    text = core.config.get_text_config() if core is not None and hasattr(core.config, "get_text_config") else None
    if text is None:
        raise ValueError(f"cannot estimate the activation memory of a {type(policy).__name__}: set micro_batch "
                         "instead of memory_mb")
    value_bytes = 2 if str(getattr(core, "dtype", "")).endswith(("bfloat16", "float16")) else 4
    return ModelShape(int(text.num_hidden_layers), int(text.hidden_size), int(text.num_attention_heads),
                      int(text.vocab_size), value_bytes)


def activation_bytes(shape: ModelShape, rows: int, length: int) -> float:
    """Estimated bytes of the activations of a forward and backward pass over `rows` rows padded to
    `length` tokens (see the module docstring)."""
    per_token = shape.n_layer * (17 * shape.d_model + 2.5 * shape.n_head * length) + 2 * shape.vocab
    return rows * length * per_token * shape.value_bytes


def budget_micro_batches(lengths: Sequence[int], shape: ModelShape, budget_mib: float, *, max_rows: int = 0
                         ) -> list[list[int]]:
    """Row indices of each micro-batch, in order: as many rows as fit `budget_mib` (and at most `max_rows`
    when it is above 0), padded to their longest. A row that alone exceeds the budget raises ValueError."""
    budget = budget_mib * MIB
    out: list[list[int]] = []
    longest = 0
    for i, n in enumerate(lengths):
        alone = activation_bytes(shape, 1, n)
        if alone > budget:
            raise ValueError(f"one sequence of {n} tokens needs about {alone / MIB:.0f} MiB of activations, "
                             f"more than the budget of {budget_mib:g} MiB")
        grown = max(longest, n)
        if out and activation_bytes(shape, len(out[-1]) + 1, grown) <= budget and \
                (not max_rows or len(out[-1]) < max_rows):
            out[-1].append(i)
            longest = grown
        else:
            out.append([i])
            longest = n
    return out


def prompt_tokens(policy, prompt: str) -> int:
    """Tokens `policy` conditions on for `prompt` (BOS and any chat template included)."""
    policy = _trained(policy)
    if hasattr(policy, "prompt_ids"):
        return len(policy.prompt_ids(prompt))
    return 1 + len(policy.tokenizer.encode(prompt))  # the built-in model: BOS + characters


def row_lengths(policy, prompts: Sequence[str], completion_tokens: Sequence[int]) -> list[int]:
    """Each row's length in a training pass: its prompt's tokens plus its completion's."""
    cache: dict[str, int] = {}
    return [cache.setdefault(p, prompt_tokens(policy, p)) + n for p, n in zip(prompts, completion_tokens)]


def longest_row(policy, prompts: Sequence[str], max_new_tokens: int) -> tuple[int, float]:
    """(tokens, MiB): the longest row a step over `prompts` can hold (the longest prompt, `max_new_tokens`
    and EOS) and the activations it needs alone, the least any memory budget must allow."""
    tokens = max(row_lengths(policy, prompts, [max_new_tokens + 1] * len(prompts)))
    return tokens, activation_bytes(model_shape(policy), 1, tokens) / MIB
