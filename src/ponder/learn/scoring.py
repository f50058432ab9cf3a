"""Scoring sampled completions under a policy, shared by the learners: per-token log-probs (and for
the built-in engine the entropy and the hidden states a value head reads) of given completions,
with the end token scored only where the sample ended with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor

from ponder.learn import losses as L


def completion_states(policy, prompts: Sequence[str], texts: Sequence[str], eos: Sequence[bool], *,
                      hidden: bool = False, model=None) -> tuple[Tensor, Tensor, Tensor]:
    """For a built-in-engine policy (a `.tokenizer`, a `.model` with `.hidden`): the logits (B, T, V)
    that predict each completion token, or with `hidden` the final hidden states there (the state
    before token t, which a value head reads); the completion token ids (B, T); the real-token mask
    (B, T). EOS closes the rows where `eos` is true. `model` runs another transformer of the same
    tokenizer in the policy's place (a separate critic). Differentiable."""
    tok = policy.tokenizer
    p_ids = [[tok.bos_id] + tok.encode(p) for p in prompts]
    c_ids = [tok.encode(c) + ([tok.eos_id] if e else []) for c, e in zip(texts, eos)]
    width = max(len(p) + len(c) for p, c in zip(p_ids, c_ids))
    ids = torch.full((len(p_ids), width), tok.pad_id, dtype=torch.long)
    for b, (p, c) in enumerate(zip(p_ids, c_ids)):
        ids[b, : len(p) + len(c)] = torch.tensor(p + c)
    model = policy.model if model is None else model
    with policy.autocast() if hasattr(policy, "autocast") else nullcontext():
        out = model.hidden(ids[:, :-1]) if hidden else model(ids[:, :-1])
    col = torch.arange(max(len(c) for c in c_ids))[None, :]
    mask = (col < torch.tensor([len(c) for c in c_ids])[:, None]).float()
    index = (torch.tensor([len(p) - 1 for p in p_ids])[:, None] + col).clamp(max=width - 2)
    states = out.float().gather(1, index[..., None].expand(-1, -1, out.shape[-1]))
    return states, ids.gather(1, index + 1) * mask.long(), mask


def score_completions(policy, prompts: Sequence[str], texts: Sequence[str], eos: Sequence[bool],
                      token_ids: Sequence[Sequence[int]] | None = None, *, entropy: bool = False
                      ) -> tuple[Tensor, Tensor, Tensor | None]:
    """(logp, mask, per-token entropy or None), all (B, T): the log-probs of each completion, EOS
    scored only on rows that ended with it (a truncated sample is scored as sampled). A built-in
    engine is run directly, which also gives the entropy (no gradient); a policy that scores token
    ids (`logprobs_of_ids`, the Hugging Face backend) gets the sampled `token_ids`; any other goes
    through `Policy.logprobs`, once per EOS flag. Only the built-in engine gives the entropy. logp is
    differentiable."""
    if token_ids is not None and hasattr(policy, "logprobs_of_ids"):
        return *policy.logprobs_of_ids(prompts, token_ids), None
    if hasattr(policy, "tokenizer") and hasattr(getattr(policy, "model", None), "hidden"):
        logits, targets, mask = completion_states(policy, prompts, texts, eos)
        with torch.no_grad():
            ent = L.entropy_from_logits(logits, mask)[0] if entropy else None
        return torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1) * mask, mask, ent
    if all(eos) or not any(eos):
        return *policy.logprobs(prompts, texts, eos=bool(eos[0])), None
    order = [i for i, e in enumerate(eos) if e] + [i for i, e in enumerate(eos) if not e]
    parts = [policy.logprobs([prompts[i] for i in rows], [texts[i] for i in rows], eos=flag)
             for flag, rows in ((True, order[: sum(eos)]), (False, order[sum(eos):]))]
    T = max(m.shape[1] for _, m in parts)
    logp, mask = (torch.cat([F.pad(x, (0, T - x.shape[1])) for x in xs]) for xs in zip(*parts))
    back = torch.argsort(torch.tensor(order, device=logp.device))  # back to the rows' own order
    return logp[back], mask[back], None
