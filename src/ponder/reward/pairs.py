"""Preference pairs on disk: the JSONL format that DPO and the preference reward model both read.

One {"prompt", "chosen", "rejected"} object per line, all strings, chosen and rejected different.
It lives with the reward models (below the learners) so that `reward.pipeline` and `learn.dpo`
share one reader without the reward floor importing the learners.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ponder.reward.model import PreferencePair


class PairsFileError(ValueError):
    """A preference-pair file that cannot be read; the message names the file and line."""


def load_pairs_jsonl(path: str | Path) -> list[PreferencePair]:
    """Pairs from a JSONL file, one {"prompt", "chosen", "rejected"} object (all strings, chosen and
    rejected different) per line; blank lines are skipped. Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise PairsFileError(f"{path}: no such file")
    pairs = []
    for lineno, raw in enumerate(path.read_bytes().splitlines(), 1):
        where = f"{path}:{lineno}"
        try:
            row = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except UnicodeDecodeError:
            raise PairsFileError(f"{where}: not UTF-8 text") from None
        except json.JSONDecodeError as e:
            raise PairsFileError(f"{where}: not valid JSON ({e.msg})") from None
        if row is None:
            continue
        if not isinstance(row, dict):
            raise PairsFileError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for key in ("prompt", "chosen", "rejected"):
            if key not in row:
                raise PairsFileError(f"{where}: missing key {key!r}")
            if not isinstance(row[key], str):
                raise PairsFileError(f"{where}: {key!r} must be a string, got {type(row[key]).__name__}")
        if row["chosen"] == row["rejected"]:
            raise PairsFileError(f"{where}: chosen and rejected are the same text")
        pairs.append(PreferencePair(prompt=row["prompt"], chosen=row["chosen"], rejected=row["rejected"]))
    return pairs


def save_pairs_jsonl(pairs: Sequence[PreferencePair], path: str | Path) -> None:
    """Write pairs in the format `load_pairs_jsonl` reads."""
    lines = [json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) for p in pairs]
    Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
