"""Benchmark: sampling throughput of the built-in engine (`TinyPolicy.generate`) against Hugging Face
`generate` on the same weights, converted to an equivalent `LlamaForCausalLM` (`ponder.policy.hf_convert`).

Both sides get the same prompts (real problems of the default recipe's task, BOS first, left-padded
to the batch's longest), the same number of new tokens for every row (EOS is disabled on both sides,
so neither stops early: a random or trained model would otherwise end rows at different times), the
same float32 weights, torch threads, and sampling distribution (temperature `--temperature`, no top-k
or top-p, PAD and BOS never drawn: Hugging Face gets `top_k=0` and `suppress_tokens`). The Hugging
Face model uses its default dynamic KV cache (`use_cache=True`) and SDPA attention.

`--mode prompts` (the default) samples one completion for each of `batch` distinct prompts;
`--mode samples` draws `batch` completions of one prompt (`Sampling(n=batch)` against
`num_return_sequences=batch`; the built-in engine then prefills the prompt once). Each
configuration is warmed up once and timed `--repeats` times, the two engines alternating, and the
median is reported. Our timing is the whole `generate` call (tokenizing, per-token log-probs,
building `Sample`s); Hugging Face's is `model.generate` on ready tensors. The prefix cache is off:
it does nothing for prompts seen once (and would turn the repeats into cache hits).

Peak memory is measured in a fresh process per engine and batch (`--memory`, off with `--quick`):
the peak resident set during one `generate` call (after a small warm-up) minus the resident set
before it, from /proc/self/status after resetting the peak through /proc/self/clear_refs (Linux).

    .venv/bin/python bench/engine_vs_hf.py                      # batch 1 and 64, 64 new tokens
    .venv/bin/python bench/engine_vs_hf.py --batches 1 8 64 --threads 2
    .venv/bin/python bench/engine_vs_hf.py --quick              # a smoke run, seconds

The model is the checkpoint `--checkpoint` (default runs/default/checkpoints/init) if it exists,
else (or with `--random`) a random model of the default recipe's [model] shape, seed 0: throughput
does not depend on training.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from ponder.config import load_recipe
from ponder.policy import TinyPolicy
from ponder.policy.hf_convert import to_hf_llama
from ponder.tasks import make_task
from ponder.types import Sampling

DEFAULT_CHECKPOINT = "runs/default/checkpoints/init"


def load_policy(args) -> tuple[TinyPolicy, str, list[str]]:
    """The built-in float32 policy with EOS disabled, a description of it, and a pool of task prompts."""
    recipe = load_recipe("default")
    path = Path(args.checkpoint)
    if not args.random and (path / "model.safetensors").is_file():
        policy = TinyPolicy.load(path, dtype="float32", prefix_cache_mb=0)
        what = f"checkpoint {path}"
    else:
        policy = TinyPolicy(recipe.model, seed=0, dtype="float32", prefix_cache_mb=0)
        what = "random (seed 0)"
    # no row may stop early: an id no token has, so a drawn EOS is just another token
    policy.tokenizer = copy.copy(policy.tokenizer)
    policy.tokenizer.eos_id = -1
    task = make_task(recipe.task["name"], recipe.task_config())
    prompts = [p.prompt for p in task.problems("test", max(args.batches), args.seed)]
    return policy, what, prompts


def batch_inputs(policy: TinyPolicy, prompts: list[str], batch: int, mode: str):
    """(prompts for ours, Sampling.n, HF input ids, attention mask, num_return_sequences)."""
    ours = prompts[:batch] if mode == "prompts" else prompts[:1]
    n = 1 if mode == "prompts" else batch
    tok = policy.tokenizer
    rows = [[tok.bos_id] + tok.encode(p) for p in ours]
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), tok.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, T - len(r):], mask[b, T - len(r):] = torch.tensor(r), 1
    return ours, n, ids, mask


class Runner:
    """One engine's generate call for one batch, returning the number of tokens generated."""

    def __init__(self, engine: str, policy: TinyPolicy, hf, prompts: list[str], batch: int, args) -> None:
        self.engine, self.policy, self.hf, self.args = engine, policy, hf, args
        self.ours, self.n, self.ids, self.mask = batch_inputs(policy, prompts, batch, args.mode)
        self.calls = 0

    def __call__(self, new_tokens: int | None = None) -> int:
        new = new_tokens or self.args.new_tokens
        seed = self.args.seed + self.calls
        self.calls += 1
        tok = self.policy.tokenizer
        if self.engine == "ours":
            groups = self.policy.generate(self.ours, Sampling(n=self.n, temperature=self.args.temperature,
                                                              max_new_tokens=new, seed=seed))
            lengths = [len(s.token_ids) for g in groups for s in g]
        else:
            torch.manual_seed(seed)
            with torch.no_grad():
                out = self.hf.generate(input_ids=self.ids, attention_mask=self.mask, do_sample=True,
                                       temperature=self.args.temperature, top_k=0, top_p=1.0, max_new_tokens=new,
                                       num_return_sequences=self.n, suppress_tokens=[tok.pad_id, tok.bos_id],
                                       pad_token_id=tok.pad_id, use_cache=True)
            gen = out[:, self.ids.shape[1]:]
            lengths = (gen != tok.pad_id).sum(1).tolist()
        if lengths != [new] * (len(self.ours) * self.n):
            raise RuntimeError(f"{self.engine}: expected {new} new tokens per row, got {sorted(set(lengths))}")
        return sum(lengths)


def make_runners(policy: TinyPolicy, prompts: list[str], batch: int, args, hf=None) -> dict[str, Runner]:
    return {e: Runner(e, policy, hf, prompts, batch, args) for e in ("ours", "hf")}


def time_engines(runners: dict[str, Runner], repeats: int) -> tuple[dict[str, int], dict[str, float], dict[str, float]]:
    """Warm each runner up once, then time `repeats` calls of each, the engines alternating (so drifting
    load hits both alike). Returns per engine: tokens per call, median seconds, tokens per second."""
    for run in runners.values():
        run()  # warm-up
    times: dict[str, list[float]] = {e: [] for e in runners}
    tokens = {}
    for _ in range(repeats):
        for engine, run in runners.items():
            start = time.perf_counter()
            tokens[engine] = run()
            times[engine].append(time.perf_counter() - start)
    med = {e: statistics.median(t) for e, t in times.items()}
    return tokens, med, {e: tokens[e] / med[e] for e in runners}


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child(args) -> None:
    """Measure one engine's peak RSS delta for one batch in this fresh process; print it as JSON."""
    engine, batch = args.child.split(":")
    torch.set_num_threads(args.threads)
    policy, _, prompts = load_policy(args)
    hf = to_hf_llama(policy.model, eos_id=None) if engine == "hf" else None
    run = Runner(engine, policy, hf, prompts, int(batch), args)
    Runner(engine, policy, hf, prompts, 1, args)(2)  # load lazily initialized code paths, small
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set to the current one
        before = status_kb("VmRSS")
        run()
        peak = status_kb("VmHWM")
        print(json.dumps({"peak_delta_mb": (peak - before) / 1024}))
    except OSError:
        print(json.dumps({"peak_delta_mb": None}))


def measure_memory(engine: str, batch: int, args) -> float | None:
    cmd = [sys.executable, __file__, "--child", f"{engine}:{batch}", "--threads", str(args.threads),
           "--new-tokens", str(args.new_tokens), "--mode", args.mode, "--seed", str(args.seed),
           "--temperature", str(args.temperature), "--checkpoint", args.checkpoint,
           "--batches", *map(str, args.batches)] + (["--random"] if args.random else [])
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])["peak_delta_mb"]
    except (IndexError, KeyError, json.JSONDecodeError):
        print(f"memory measurement failed for {engine} batch {batch}: {res.stderr.strip()[-500:]}", file=sys.stderr)
        return None


def machine() -> str:
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{cpu}; {os.cpu_count()} CPUs ({usable} usable), load average {load}; torch {torch.__version__} "
            f"with {torch.get_num_threads()} thread(s); transformers {transformers.__version__}; "
            f"Python {platform.python_version()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--new-tokens", type=int, default=64, help="tokens generated per row, on both sides")
    ap.add_argument("--mode", choices=("prompts", "samples"), default="prompts",
                    help="prompts: `batch` distinct prompts, 1 sample each; samples: `batch` samples of one prompt")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per engine and batch (median reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, for both engines")
    ap.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="used if it exists, unless --random")
    ap.add_argument("--random", action="store_true", help="a random model of the default recipe's shape")
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                    help="measure peak RSS deltas in subprocesses (default: on, off with --quick)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: 16 new tokens, 1 repeat")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.new_tokens, args.repeats = 16, 1
    if args.memory is None:
        args.memory = not args.quick
    if args.temperature <= 0 or min(args.batches) < 1 or args.new_tokens < 1 or args.repeats < 1:
        raise SystemExit("--temperature, --batches, --new-tokens and --repeats must be positive")
    torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.set_verbosity_error()
    policy, what, prompts = load_policy(args)
    cfg = policy.config
    longest = max(len(policy.tokenizer.encode(p)) for p in prompts) + 1  # + BOS
    if longest + args.new_tokens > cfg.max_seq_len:
        raise SystemExit(f"a prompt of {longest} tokens + {args.new_tokens} new tokens exceeds max_seq_len "
                         f"{cfg.max_seq_len}: lower --new-tokens")
    hf = to_hf_llama(policy.model, eos_id=None)
    dtypes = {str(p.dtype) for p in policy.parameters()} | {str(p.dtype) for p in hf.parameters()}
    print(f"machine: {machine()}")
    print(f"model: {what}, {cfg.n_layer} layers x {cfg.d_model} ({cfg.n_head} heads, max_seq_len {cfg.max_seq_len}), "
          f"{policy.num_params() / 1e6:.2f}M params, weights {'/'.join(sorted(dtypes))} on both sides; "
          f"HF attention {hf.config._attn_implementation}, dynamic KV cache")
    print(f"workload: mode {args.mode} ({'n=1 per prompt' if args.mode == 'prompts' else 'n=batch on one prompt'}), "
          f"{args.new_tokens} new tokens per row (EOS disabled on both sides), temperature {args.temperature}, "
          f"top-k/top-p off, prefix cache off, median of {args.repeats} after 1 warm-up; e.g. prompt {prompts[0]!r}\n")

    rows = []
    for batch in args.batches:
        tokens, med, tps = time_engines(make_runners(policy, prompts, batch, args, hf), args.repeats)
        mem = {e: measure_memory(e, batch, args) for e in med} if args.memory else {}
        rows.append((batch, tokens["ours"], med, tps, mem))

    mb = (lambda x: "n/a" if x is None else f"{x:.1f}")
    head = "| batch | tokens per call | ours s | HF s | ours tokens/s | HF tokens/s | ours / HF |"
    if args.memory:
        head += " ours peak RSS delta MB | HF peak RSS delta MB |"
    print(head + "\n|" + "---:|" * (head.count("|") - 1))
    for batch, n_tok, med, tps, mem in rows:
        line = (f"| {batch} | {n_tok} | {med['ours']:.3f} | {med['hf']:.3f} | {tps['ours']:.0f} | {tps['hf']:.0f} | "
                f"{tps['ours'] / tps['hf']:.2f}x |")
        if args.memory:
            line += f" {mb(mem.get('ours'))} | {mb(mem.get('hf'))} |"
        print(line)
    print(f"\ntorch threads: {torch.get_num_threads()} (both engines); ours: TinyPolicy.generate, HF: "
          f"LlamaForCausalLM.generate(do_sample=True, use_cache=True), transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
