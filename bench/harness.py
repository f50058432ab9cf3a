"""The shared harness of the benchmark sections: the default policy and task, timing and FLOP helpers,
peak-memory metering, one-workload child processes, and the Report that prints each table."""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import engine_vs_hf as E  # bench/ is this script's directory, hence on sys.path
import torch

from ponder.config import load_recipe
from ponder.policy import ModelConfig, TinyPolicy
from ponder.policy.tokenizer import CharTokenizer
from ponder.tasks import make_task

SCALE_SIZES = {"default": (4, 4, 128), "d256": (4, 4, 256), "d512": (8, 8, 512)}  # n_layer, n_head, d_model
SCALE_SEQ = 256  # max_seq_len of the scale models: room for a prompt + 128 new tokens

# -- small helpers -------------------------------------------------------------------------------------


def recipe_task():
    recipe = load_recipe("default")
    return recipe, make_task(recipe.task["name"], recipe.task_config())


def load_default_policy(opts) -> tuple[TinyPolicy, str]:
    """The default recipe's float32 policy (EOS on): the checkpoint if it exists, else random, seed 0."""
    path = Path(opts.checkpoint)
    if not opts.random and (path / "model.safetensors").is_file():
        return TinyPolicy.load(path, dtype="float32", prefix_cache_mb=0), f"checkpoint {path}"
    return TinyPolicy(load_recipe("default").model, seed=0, dtype="float32", prefix_cache_mb=0), "random (seed 0)"


def engine_args(opts, *, batches: list[int], new_tokens: int, repeats: int = 1):
    """The namespace bench/engine_vs_hf.py's functions read."""
    return argparse.Namespace(checkpoint=opts.checkpoint, random=opts.random, batches=batches, seed=opts.seed,
                              mode="prompts", new_tokens=new_tokens, temperature=1.0, threads=opts.threads,
                              repeats=repeats)


def train_flops(n_params: int, cfg: ModelConfig, seq_lens: list[int]) -> float:
    """Training FLOPs of sequences of `seq_lens` input positions (see the module docstring)."""
    return sum(6.0 * n_params * T + 6.0 * cfg.n_layer * cfg.d_model * T * (T + 1) for T in seq_lens)


def input_lengths(tok: CharTokenizer, prompts, completions, eos) -> list[int]:
    """Input positions of each trained sequence: BOS + prompt + completion (+ EOS), minus the last token."""
    return [1 + len(tok.encode(p)) + len(tok.encode(c)) + int(e) - 1 for p, c, e in zip(prompts, completions, eos)]


def median_gaps(stamps: list[float]) -> tuple[float | None, list[float]]:
    """Per-step seconds from end-of-step timestamps (stamps[0]: the end of the warm-up step)."""
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return (statistics.median(gaps) if gaps else None), gaps


def matmul_peak(n_max: int, dtype: torch.dtype, reps: int = 5, slow_s: float = 0.25) -> tuple[float, int]:
    """Best FLOP/s of square matmuls at the current torch thread count, and the side it was reached at.
    Sides double from 256 up to `n_max`, stopping early once one matmul takes over `slow_s` (a dtype
    without native support, like bf16 on AVX2, would otherwise take minutes at the full size)."""
    best, at, n = 0.0, 0, 256
    while True:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        torch.matmul(a, b)
        fastest = math.inf
        for _ in range(reps):
            start = time.perf_counter()
            torch.matmul(a, b)
            fastest = min(fastest, time.perf_counter() - start)
        if 2.0 * n**3 / fastest > best:
            best, at = 2.0 * n**3 / fastest, n
        if n * 2 > n_max or fastest > slow_s:
            return best, at
        n *= 2


# -- memory: /proc/self/status -------------------------------------------------------------------------


def mem_mb(field: str) -> float:
    return E.status_kb(field) / 1024


def reset_peak() -> bool:
    """Reset VmHWM to the current VmRSS (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakMeter:
    """Peak RSS during a span: `start()` resets the peak and notes RSS, `stop()` returns (delta, peak) MiB."""

    def __init__(self) -> None:
        self.ok, self.before = False, 0.0

    def start(self) -> None:
        gc.collect()
        self.ok = reset_peak()
        self.before = mem_mb("VmRSS")

    def stop(self) -> dict:
        if not self.ok:
            return {"delta_mb": None, "peak_mb": None}
        peak = mem_mb("VmHWM")
        return {"delta_mb": peak - self.before, "peak_mb": peak}


def run_child(job: str, params: dict, opts, timeout: float = 600) -> dict:
    spec = json.dumps({"job": job, "params": params, "opts": vars(opts)})
    try:
        res = subprocess.run([sys.executable, str(Path(__file__).with_name("run_all.py")), "--child", spec],
                             capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = res.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0][-200:]}


# -- the report ------------------------------------------------------------------------------------------


class Report:
    """Collects each section's table and notes, prints them as markdown and keeps them for the JSON."""

    def __init__(self) -> None:
        self.sections: dict[str, dict] = {}
        self.summary: list[dict] = []

    def table(self, section: str, cols: list[str], rows: list[dict], notes: list[str] = ()) -> None:
        sec = self.sections.setdefault(section, {"tables": [], "notes": []})
        sec["tables"].append({"columns": cols, "rows": rows})
        sec["notes"].extend(notes)
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join(fmt(r.get(c)) for c in cols) + " |")
        for n in notes:
            print(n)
        print()

    def ratio(self, what: str, value: float | None, meaning: str) -> None:
        self.summary.append({"measure": what, "ratio": value, "meaning": meaning})


def fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def div(a, b):
    return None if a is None or b is None or b == 0 else a / b



