"""A Hugging Face outcome reward model: a local sequence-classification model as an `OutcomeReward`.

Loaded like `ponder.policy.hf` loads a policy (a directory or a .gguf file, `local_files_only`, the
`hf` extra imported only when used), so a pretrained reward model can rank or filter solutions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ponder.policy.hf_loading import (
    DTYPES,
    device_of,
    import_transformers,
    left_padded,
    load_model,
    load_tokenizer,
    locate,
)
from ponder.policy.tiny import PolicyLoadError
from ponder.reward.base import check_pairs
from ponder.timing import timed
from ponder.types import Problem


class HFRewardModel:
    """An `OutcomeReward` from a local `AutoModelForSequenceClassification` directory.

    The model reads the problem's prompt followed by the solution (or, with `chat_template`, the
    two as a user / assistant exchange) and its score is the sigmoid of its single logit, or the
    softmax probability of label 1 when it has two labels. Inputs longer than `max_length` keep
    their last tokens. Sequences are left-padded, so the classifier reads each one's last token.
    """

    def __init__(self, path: str | Path, *, batch_size: int = 16, dtype: str = "float32", chat_template: bool = False,
                 max_length: int = 0, device: str = "auto", trust_remote_code: bool = False) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_length < 0:
            raise ValueError(f"max_length must be >= 0 (0: the model's), got {max_length}")
        tf = import_transformers()
        self.device = device_of(device)
        directory, gguf = locate(str(path), "")
        self.tokenizer = load_tokenizer(directory, gguf, trust_remote_code)
        self.model = load_model(tf.AutoModelForSequenceClassification, directory, gguf, dtype, trust_remote_code)
        self.model.to(self.device).eval()
        labels = int(self.model.config.num_labels)
        if labels not in (1, 2):
            raise PolicyLoadError(f"{directory}: a reward model needs 1 or 2 labels, this one has {labels}")
        self.labels, self.batch_size, self.chat_template = labels, batch_size, chat_template
        text_cfg = self.model.config.get_text_config()
        self.max_length = max_length or int(getattr(text_cfg, "max_position_embeddings", 0) or 0) or 2048
        tok = self.tokenizer
        self.pad_id = next(i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None)
        self.calls = 0

    def _ids(self, problem: Problem, text: str) -> list[int]:
        tok = self.tokenizer
        if self.chat_template:
            chat = [{"role": "user", "content": problem.prompt}, {"role": "assistant", "content": text}]
            ids = tok(tok.apply_chat_template(chat, tokenize=False), add_special_tokens=False)["input_ids"]
        else:
            ids = tok(problem.prompt + text, add_special_tokens=True)["input_ids"]
        return list(ids)[-self.max_length :]

    @torch.no_grad()
    @timed("scoring")
    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[float]:
        check_pairs(problems, texts)
        self.calls += len(texts)
        scores: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            rows = [self._ids(p, t) for p, t in zip(problems[i : i + self.batch_size], texts[i : i + self.batch_size])]
            ids, attn = left_padded(rows, self.pad_id)
            ids, attn = ids.to(self.device), attn.to(self.device)
            pos = (attn.cumsum(-1) - 1).clamp(min=0)
            # transformers pools at the rightmost token that is not the pad id; with left padding the
            # last column is always a real token, so an id that never occurs makes it pick that one
            cfg = self.model.config.get_text_config()
            saved = cfg.pad_token_id
            cfg.pad_token_id = -1
            try:
                logits = self.model(input_ids=ids, attention_mask=attn, position_ids=pos).logits.float()  # (b, labels)
            finally:
                cfg.pad_token_id = saved
            p = torch.sigmoid(logits[:, 0]) if self.labels == 1 else torch.softmax(logits, -1)[:, 1]
            scores.extend(p.tolist())
        return scores
