"""The benchmark suite behind `make bench`: one command, one table per section, then a summary of ratios.

    make bench                                       # = .venv/bin/python bench/run_all.py (< 10 min on 2 cores)
    .venv/bin/python bench/run_all.py --quick        # every section at toy sizes: a smoke run
    .venv/bin/python bench/run_all.py --sections sampling grpo --threads 2 --out /tmp/results.json

Ratios, not absolute times, are the claim. Every comparison is measured side by side in this one run:
the same model weights, batch, prompt and output lengths, sampling settings and torch threads on both
sides; timed sections warm up first and report medians. The model is the default recipe's policy
(`--checkpoint`, default runs/default/checkpoints/init), or a random model of its shape (4 x 128, 0.87M
parameters) when that is missing or with `--random`: speed does not depend on training, but with a
random model nothing ends at EOS, so every sample runs to its token cap.

Sections (`--sections` takes names or numbers; default all):

1. sampling  tokens/s of the built-in engine (`TinyPolicy.generate`) against Hugging Face `generate` on
   the same weights converted to a `LlamaForCausalLM`, at batch 1 and 64, EOS off on both sides
   (bench/engine_vs_hf.py: its `load_policy`, `Runner`, `time_engines`).
2. grpo      one GRPO step (sample + verifier reward + one update) of `ponder.learn.rl.train_rl` against
   TRL's `GRPOTrainer` on the converted model, with a `PreTrainedTokenizerFast` whose ids are exactly
   `CharTokenizer`'s. Matched: starting weights, problem pool, prompts per step, group size, max new
   tokens, temperature, lr, AdamW betas (0.9, 0.95), grad clip 1, clip eps 0.2, no KL term, one update
   per batch, group-std-normalised advantages, per-sequence mean loss (TRL `loss_type="grpo"`), float32,
   no gradient checkpointing. Each runs 1 warm-up + `--rl-steps` steps; a step's time is the gap between
   consecutive end-of-step timestamps (train_rl's `log` callback, a TRL `TrainerCallback`), median
   reported. Sampling+scoring is timed by wrapping ponder's `sample_rollout` (the module attribute
   `train_rl` calls) and TRL's `_generate_and_score_completions`; "update" is the rest of the step on
   both sides (forward + backward, optimizer step, bookkeeping).
   Not matched, by design of each library: TRL prefills each of a prompt's copies (ponder once), and
   each side draws its own problems and samples, so completion lengths (EOS) differ a little: the table
   gives tokens sampled per step too.
3. search    beam search and MCTS guided by the default run's PRM with the prefix KV cache off and on
   (bench/search_cache.py `run`), after a small warm-up; without a finished run (runs/default with
   reward/prm), the random-model tree workload of bench/prefix_cache.py.
4. train     training throughput and model FLOP/s as a fraction of this machine's measured matmul peak
   (the best of a few square `torch.matmul`s at the same thread count, fp32 and bf16). FLOPs of a
   trained sequence of T input positions (prompt + completion, BOS in, last token out, padding not
   counted): 6 * N * T + 6 * n_layer * d_model * T * (T + 1), i.e. 3x the forward's 2 FLOPs per
   parameter (N = every parameter, the tied embedding counted once as the LM head) plus causal
   attention (QK^T and AV, 4 * d_model FLOPs per attended position and layer in the forward). Rows:
   SFT (`train_sft`, batch `--sft-batch` of task demonstrations) and the RL update (ponder's
   `ponder.learn.rl.update` calls in section 2's steps, timed by a wrapper); decoding (section 1,
   2 * N FLOPs per token plus attention) for contrast.
5. memory    peak resident set of each workload above, one fresh process each (this script with
   `--child`): the rise of VmHWM over VmRSS during one run, and the process's absolute peak (libraries
   included: TRL's imports are large). Each child first runs its workload at toy size, which pages in
   the library code it needs (the first backward pass alone maps ~100 MiB of libtorch); a full-size
   warm-up would hide the peak instead, as glibc keeps freed memory. Linux only
   (/proc/self/clear_refs); elsewhere "n/a". GRPO steps are split at the end of sampling+scoring.
6. scale     sampling and one SFT step against model size (0.87M, ~3M = 4 x 256, ~25M = 8 x 512), batch
   (1, 16, 64) and new tokens per row (64, 128): one axis at a time from the base point (0.87M, batch
   16, 64 tokens), random models with max_seq_len 256 (positions only; no parameters change), each
   configuration in its own process (time and peak RSS).
7. profile   where the time of one decode step of the built-in engine at batch 64 goes: the top torch
   ops by self CPU time (torch.profiler), grouped by kind, the share of wall time spent inside ops at
   all (the rest is Python and dispatch), the top Python functions (cProfile) and the compute-bound
   floor (FLOPs / fp32 peak).

Results also go to `--out` (default bench/results.json) as JSON. The suite never fails as a whole:
a section that cannot run (TRL missing, no finished run) prints why in its table.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import copy
import cProfile
import gc
import io
import itertools
import json
import math
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network at run time
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import engine_vs_hf as E  # bench/ is this script's directory, hence on sys.path
import torch

from ponder.config import load_recipe
from ponder.learn import rl, sft
from ponder.learn.rl import RLConfig, train_rl
from ponder.learn.sft import SFTConfig, train_sft
from ponder.policy import ModelConfig, TinyPolicy
from ponder.policy.tokenizer import SPECIALS, CharTokenizer
from ponder.tasks import make_task

SECTIONS = ("sampling", "grpo", "search", "train", "memory", "scale", "profile")
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


# -- section 2 parts: ponder's GRPO step, TRL's GRPOTrainer -----------------------------------------


@contextlib.contextmanager
def rl_probes(on_sampled=None):
    """Wrap `ponder.learn.rl.sample_rollout` and `.update` (what `train_rl` calls) with timers; records
    per call the seconds, and for updates the trained sequences' input lengths. `on_sampled` runs after
    each sampling (memory readings), outside the timed span."""
    rec: dict[str, list] = {"sample_s": [], "update_s": [], "update_lens": [], "sample_tokens": []}
    orig_sample, orig_update = rl.sample_rollout, rl.update

    def sample_rollout(*a, **k):
        start = time.perf_counter()
        out = orig_sample(*a, **k)
        rec["sample_s"].append(time.perf_counter() - start)
        rec["sample_tokens"].append(sum(out.lengths))
        if on_sampled:
            on_sampled()
        return out

    def update(policy, opt, params, rollout, rows, loss_fn, **k):
        start = time.perf_counter()
        out = orig_update(policy, opt, params, rollout, rows, loss_fn, **k)
        rec["update_s"].append(time.perf_counter() - start)
        rec["update_lens"].append(input_lengths(policy.tokenizer, rollout.prompts, rollout.texts, rollout.eos))
        return out

    rl.sample_rollout, rl.update = sample_rollout, update
    try:
        yield rec
    finally:
        rl.sample_rollout, rl.update = orig_sample, orig_update


def rl_config(opts, steps: int) -> RLConfig:
    return RLConfig(advantage="grpo", steps=steps, prompts_per_step=opts.rl_prompts, group_size=opts.rl_group,
                    temperature=opts.rl_temperature, max_new_tokens=opts.rl_new_tokens, lr=opts.rl_lr,
                    clip_eps=0.2, epochs_per_batch=1, kl_coef=0.0, grad_clip=1.0)


def ponder_grpo(opts, policy: TinyPolicy, task, problems, steps: int) -> dict:
    """1 warm-up + `steps` GRPO steps of train_rl; per-step medians of the whole step and its parts."""
    stamps: list[float] = []
    with rl_probes() as rec:
        train_rl(policy, None, task, problems, rl_config(opts, 1 + steps), seed=opts.seed, progress=False,
                 log=lambda _: stamps.append(time.perf_counter()))
    step_s, _ = median_gaps(stamps)
    sample_s = statistics.median(rec["sample_s"][1:])
    return {"step_s": step_s, "sample_s": sample_s, "update_s": step_s - sample_s,
            "update_call_s": statistics.median(rec["update_s"][1:]),
            "sample_tokens": statistics.mean(rec["sample_tokens"][1:]), "update_lens": rec["update_lens"][1:]}


def char_tokenizer_fast(ct: CharTokenizer):
    """A `PreTrainedTokenizerFast` with exactly `CharTokenizer`'s ids: a BPE model without merges over
    the specials then the charset (so every character is one token), BOS prepended, `Fuse` decoding."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, processors

    vocab = {t: i for i, t in enumerate(SPECIALS)} | {ch: ct.encode(ch)[0] for ch in ct.charset}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single=f"{SPECIALS[ct.bos_id]} $A",
                                                      special_tokens=[(SPECIALS[ct.bos_id], ct.bos_id)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token=SPECIALS[ct.pad_id],
                                                bos_token=SPECIALS[ct.bos_id], eos_token=SPECIALS[ct.eos_id])


def trl_trainer(opts, policy: TinyPolicy, task, problems, steps: int, callbacks=()):
    """TRL's GRPOTrainer on a Llama copy of `policy`, set up like `rl_config` (see the module docstring)."""
    import transformers
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from ponder.policy.hf_convert import to_hf_llama

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    tok = char_tokenizer_fast(policy.tokenizer)
    for p in problems[:8]:  # the weights only mean something if both sides see the same ids
        text = p.prompt + (task.demonstration(p) or "")
        if tok(text)["input_ids"] != [policy.tokenizer.bos_id] + policy.tokenizer.encode(text):
            raise RuntimeError("the fast tokenizer's ids differ from CharTokenizer's")
    hf = to_hf_llama(policy.model, pad_id=policy.tokenizer.pad_id, bos_id=policy.tokenizer.bos_id,
                     eos_id=policy.tokenizer.eos_id)
    data = Dataset.from_dict({"prompt": [p.prompt for p in problems], "problem": list(range(len(problems)))})

    def verifier(prompts, completions, problem, **_):  # the task's verifier, as ponder's VerifierReward
        return [float(task.verify(problems[i], c)) for i, c in zip(problem, completions)]

    out = tempfile.mkdtemp(prefix="bench_trl_")  # the trainer wants one; nothing is saved there
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    args = GRPOConfig(
        output_dir=out, max_steps=steps, per_device_train_batch_size=opts.rl_prompts * opts.rl_group,
        num_generations=opts.rl_group, max_completion_length=opts.rl_new_tokens, temperature=opts.rl_temperature,
        top_k=0, top_p=1.0, learning_rate=opts.rl_lr, lr_scheduler_type="constant", warmup_steps=0, adam_beta1=0.9,
        adam_beta2=0.95, weight_decay=0.0, max_grad_norm=1.0, beta=0.0, epsilon=0.2, loss_type="grpo",
        scale_rewards="group", num_iterations=1, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        logging_steps=10**6, save_strategy="no", report_to="none", disable_tqdm=True, seed=opts.seed,
        dataloader_num_workers=0, log_completions=False,
        generation_kwargs={"suppress_tokens": [policy.tokenizer.pad_id, policy.tokenizer.bos_id]},  # as ponder
    )
    trainer = GRPOTrainer(model=hf, reward_funcs=verifier, args=args, train_dataset=data, processing_class=tok,
                          callbacks=list(callbacks))
    trainer.remove_callback(transformers.PrinterCallback)  # its end-of-training dict would clutter the tables
    torch.set_num_threads(opts.threads)  # in case the trainer's setup changed it
    return trainer, out


def wrap_generation(trainer, rec: dict, after=None) -> None:
    """Time TRL's sampling + scoring (`_generate_and_score_completions`) and count its completion tokens."""
    orig = trainer._generate_and_score_completions

    def timed(*a, **k):
        start = time.perf_counter()
        out = orig(*a, **k)
        rec.setdefault("sample_s", []).append(time.perf_counter() - start)
        mask = out.get("completion_mask") if isinstance(out, dict) else None
        rec.setdefault("sample_tokens", []).append(int(mask.sum()) if mask is not None else None)
        if after:
            after()
        return out

    trainer._generate_and_score_completions = timed


def trl_grpo(opts, policy: TinyPolicy, task, problems, steps: int) -> dict:
    """1 warm-up + `steps` GRPOTrainer steps, timed like `ponder_grpo`."""
    from transformers import TrainerCallback

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    trainer, _ = trl_trainer(opts, policy, task, problems, 1 + steps, [Stamp()])
    rec: dict = {}
    wrap_generation(trainer, rec)
    trainer.train()
    step_s, _ = median_gaps(stamps)
    sample_s = statistics.median(rec["sample_s"][1:])
    tokens = [t for t in rec["sample_tokens"][1:] if t is not None]
    return {"step_s": step_s, "sample_s": sample_s, "update_s": step_s - sample_s,
            "sample_tokens": statistics.mean(tokens) if tokens else None, "threads": torch.get_num_threads()}


# -- children: one workload in a fresh process, for peak memory and the scale section -----------------


def child(spec: dict) -> dict:
    opts = argparse.Namespace(**spec["opts"])
    torch.set_num_threads(opts.threads)
    job, p = spec["job"], spec["params"]
    meter = PeakMeter()
    if job == "sample":
        args = engine_args(opts, batches=[p["batch"]], new_tokens=opts.new_tokens)
        policy, _, prompts = E.load_policy(args)
        hf = None
        if p["engine"] == "hf":
            from ponder.policy.hf_convert import to_hf_llama

            hf = to_hf_llama(policy.model, eos_id=None)
        run = E.Runner(p["engine"], policy, hf, prompts, p["batch"], args)
        E.Runner(p["engine"], policy, hf, prompts, 1, args)(2)  # small warm-up: load lazy code paths
        meter.start()
        run()
        return meter.stop()
    if job == "grpo":
        policy, _ = load_default_policy(opts)
        _, task = recipe_task()
        problems = task.problems("train", opts.rl_pool, opts.seed)
        parts: dict = {}
        tiny = argparse.Namespace(**{**vars(opts), "rl_prompts": 1, "rl_group": 2, "rl_new_tokens": 2})

        def sampled():  # split the step: the peak so far is sampling's; then measure the update afresh
            parts["sample"] = meter.stop()
            meter.start()

        if p["side"] == "ponder":
            train_rl(policy, None, task, problems, rl_config(tiny, 1), seed=opts.seed, progress=False)  # warm-up
            meter.start()
            start_rss = meter.before
            with rl_probes(on_sampled=sampled):
                train_rl(policy, None, task, problems, rl_config(opts, 1), seed=opts.seed, progress=False)
        else:
            trl_trainer(tiny, policy, task, problems, 1)[0].train()  # warm-up, on its own copy of the weights
            trainer, _ = trl_trainer(opts, policy, task, problems, 1)
            wrap_generation(trainer, {}, after=sampled)
            meter.start()
            start_rss = meter.before
            trainer.train()
        upd, smp = meter.stop(), parts.get("sample", {})
        if upd["peak_mb"] is None or smp.get("peak_mb") is None:
            return {"peak_mb": None, "delta_mb": None}
        peak = max(smp["peak_mb"], upd["peak_mb"])
        return {"peak_mb": peak, "delta_mb": peak - start_rss, "sample_delta_mb": smp["delta_mb"],
                "update_delta_mb": upd["delta_mb"]}
    if job == "search":
        runner = search_setup(opts)
        runner("warmup", 0)
        meter.start()
        runner(p["searcher"], p["cache_mb"])
        return meter.stop()
    if job == "sft":
        policy, _ = load_default_policy(opts)
        _, task = recipe_task()
        examples = [(q.prompt, task.demonstration(q)) for q in task.problems("train", 256, opts.seed)]
        train_sft(policy, examples, SFTConfig(steps=1, batch_size=1, warmup=0), seed=0, progress=False)  # warm-up
        meter.start()
        train_sft(policy, examples, SFTConfig(steps=1, batch_size=opts.sft_batch, lr=1e-3, warmup=0), seed=0,
                  progress=False)
        return meter.stop()
    if job == "scale":
        return scale_child(opts, p, meter)
    raise ValueError(f"unknown child job {job!r}")


def run_child(job: str, params: dict, opts, timeout: float = 600) -> dict:
    spec = json.dumps({"job": job, "params": params, "opts": vars(opts)})
    try:
        res = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True,
                             timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = res.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0][-200:]}


# -- section 3 setup ---------------------------------------------------------------------------------


def has_search_run(opts) -> bool:
    run_dir = Path(opts.search_run)
    return (run_dir / "reward" / "prm").is_dir() and (run_dir / "checkpoints" / "init").is_dir()


def search_setup(opts):
    """A callable (searcher, cache_mb) -> (tokens generated, tokens encoded, seconds, what was chosen) on
    the default run's policy and PRM (bench/search_cache.py), or on bench/prefix_cache.py's random tree
    workload; searcher "warmup" runs a small search and returns None."""
    run_dir = Path(opts.search_run)
    if has_search_run(opts):
        import search_cache as S

        from ponder.reward.pipeline import load_model

        try:
            cfg, source = load_recipe(str(run_dir / "config.toml")), "its config.toml"
        except ValueError:  # a run made by another version of ponder: its task is the default recipe's
            cfg, source = load_recipe("default"), "the default recipe (its config.toml is another version's)"
        task = make_task(cfg.task["name"], cfg.task_config())
        policy = TinyPolicy.load(run_dir / "checkpoints" / "init", dtype="float32")
        prm = load_model(run_dir / "reward" / "prm")
        problems = task.problems("test", opts.search_problems, cfg.seed)
        args = argparse.Namespace(seed=opts.seed, width=opts.search_width, simulations=opts.search_simulations)

        def run(searcher: str, cache_mb: float):
            if searcher == "warmup":
                S.run("beam", policy, prm, task, problems[:1], args, 0)
                return None
            texts, cost, secs = S.run(searcher, policy, prm, task, problems, args, cache_mb)
            return cost.tokens_generated, cost.tokens_encoded, secs, texts

        run.what = (f"{run_dir} (task from {source}): PRM-guided search on {len(problems)} test problems, beam "
                    f"width {opts.search_width}, MCTS {opts.search_simulations} simulations, expansions 4, "
                    f"temperature 0.5, <= 64 tokens/step")
        run.searchers = ("beam", "mcts")
        return run
    import prefix_cache as P

    args = argparse.Namespace(prompts=opts.search_problems * 4, children=4, levels=3 if opts.quick else 5,
                              keep=opts.search_problems * 4, step_tokens=12, temperature=1.0, seed=opts.seed)
    cfg = ModelConfig(n_layer=4, n_head=4, d_model=128, max_seq_len=96)
    roots = [f"Q: {i * 37 % 1000}+{i * 91 % 1000}\n" for i in range(args.prompts)]

    def run(searcher: str, cache_mb: float):
        policy = P.make_policy(cfg, 0.5, opts.seed, cache_mb)
        if searcher == "warmup":
            P.tree_search(policy, roots[:2], argparse.Namespace(**{**vars(args), "levels": 1}))
            return None
        start = time.perf_counter()
        drawn, totals = P.tree_search(policy, roots, args)
        return totals["generated"], totals["encoded"], time.perf_counter() - start, drawn

    run.what = (f"no finished run at {run_dir} (needs reward/prm): bench/prefix_cache.py's random tree workload, "
                f"{args.prompts} prompts, 4 children, {args.levels} levels")
    run.searchers = ("tree",)
    return run


# -- section 6 child -----------------------------------------------------------------------------------


def scale_policy(size: str, eos: bool) -> TinyPolicy:
    n_layer, n_head, d = SCALE_SIZES[size]
    policy = TinyPolicy(ModelConfig(n_layer=n_layer, n_head=n_head, d_model=d, max_seq_len=SCALE_SEQ), seed=0,
                        dtype="float32", prefix_cache_mb=0)
    if not eos:  # as engine_vs_hf.load_policy: every row runs to its token cap
        policy.tokenizer = copy.copy(policy.tokenizer)
        policy.tokenizer.eos_id = -1
    return policy


def scale_child(opts, p: dict, meter: PeakMeter) -> dict:
    """Time (median of `scale_repeats` runs after the first) and peak RSS (the first run) of sampling
    `batch` rows x `new` tokens, or of SFT steps on `batch` sequences of a prompt + `new` tokens."""
    _, task = recipe_task()
    size, batch, new = p["size"], p["batch"], p["new"]
    if p["workload"] == "sample":
        policy = scale_policy(size, eos=False)
        args = engine_args(opts, batches=[batch], new_tokens=new)
        prompts = [q.prompt for q in task.problems("test", batch, opts.seed)]
        E.Runner("ours", policy, None, prompts, 1, args)(2)
        run = E.Runner("ours", policy, None, prompts, batch, args)
        meter.start()
        times, tokens = [], 0
        for i in range(1 + opts.scale_repeats):
            start = time.perf_counter()
            tokens = run()
            times.append(time.perf_counter() - start)
            if i == 0:
                mem = meter.stop()
        secs = statistics.median(times[1:] or times)
        return {**mem, "seconds": secs, "tokens_per_s": tokens / secs, "params": policy.num_params()}
    policy = scale_policy(size, eos=True)
    demos = [(q.prompt, task.demonstration(q)) for q in task.problems("train", 64, opts.seed)]
    examples = [(q, (d * (new // len(d) + 1))[:new]) for q, d in demos]  # completions of exactly `new` chars
    stamps: list[float] = []
    train_sft(policy, examples, SFTConfig(steps=1, batch_size=1, warmup=0), seed=0, progress=False)  # warm-up
    meter.start()
    train_sft(policy, examples, SFTConfig(steps=1 + opts.scale_repeats, batch_size=batch, lr=1e-4, warmup=0,
                                          log_every=1), seed=0, progress=False,
              log=lambda _: stamps.append(time.perf_counter()))
    mem = meter.stop()
    secs, _ = median_gaps(stamps)
    return {**mem, "seconds": secs, "tokens_per_s": batch * (new + 1) / secs, "params": policy.num_params()}


# -- the sections ----------------------------------------------------------------------------------------


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


def sec_sampling(opts, rep: Report, state: dict) -> None:
    args = engine_args(opts, batches=opts.batches, new_tokens=opts.new_tokens, repeats=opts.repeats)
    policy, what, prompts = E.load_policy(args)
    from ponder.policy.hf_convert import to_hf_llama

    hf = to_hf_llama(policy.model, eos_id=None)
    rows = []
    for batch in opts.batches:
        tokens, med, tps = E.time_engines(E.make_runners(policy, prompts, batch, args, hf), opts.repeats)
        rows.append({"batch": batch, "tokens/call": tokens["ours"], "ours s": med["ours"], "HF s": med["hf"],
                     "ours tok/s": tps["ours"], "HF tok/s": tps["hf"], "ours / HF": tps["ours"] / tps["hf"]})
        rep.ratio(f"sampling batch {batch}: ours / HF tokens/s", tps["ours"] / tps["hf"],
                  ">1: the built-in engine is faster")
    state["sampling"] = {"rows": rows, "model": policy.model, "prompt_len": statistics.mean(
        len(policy.tokenizer.encode(p)) + 1 for p in prompts)}
    rep.table("sampling", list(rows[0]), rows, [
        (f"model: {what}, {policy.num_params() / 1e6:.2f}M params, float32 on both sides; {opts.new_tokens} new tokens "
        f"per row (EOS off), temperature 1, distinct prompts, median of {opts.repeats} after a warm-up, engines "
        f"alternating; HF: LlamaForCausalLM.generate(use_cache=True), SDPA attention")])


def sec_grpo(opts, rep: Report, state: dict) -> None:
    policy, what = load_default_policy(opts)
    _, task = recipe_task()
    problems = task.problems("train", opts.rl_pool, opts.seed)
    trl_policy = copy.deepcopy(policy)  # the same starting weights for TRL's copy
    ours = ponder_grpo(opts, policy, task, problems, opts.rl_steps)
    state["grpo"] = ours
    rows = [{"trainer": "ponder train_rl", "step s": ours["step_s"], "sample+score s": ours["sample_s"],
             "update s": ours["update_s"], "tokens sampled/step": ours["sample_tokens"],
             "sampled tok/s (whole step)": div(ours["sample_tokens"], ours["step_s"]), "step s / ponder": 1.0}]
    try:
        theirs = trl_grpo(opts, trl_policy, task, problems, opts.rl_steps)
        import trl

        rows.append({"trainer": f"TRL {trl.__version__} GRPOTrainer", "step s": theirs["step_s"],
                     "sample+score s": theirs["sample_s"], "update s": theirs["update_s"],
                     "tokens sampled/step": theirs["sample_tokens"],
                     "sampled tok/s (whole step)": div(theirs["sample_tokens"], theirs["step_s"]),
                     "step s / ponder": div(theirs["step_s"], ours["step_s"])})
        rep.ratio("GRPO step: TRL s / ponder s", div(theirs["step_s"], ours["step_s"]), ">1: ponder is faster")
        rep.ratio("GRPO sampling+scoring: TRL s / ponder s", div(theirs["sample_s"], ours["sample_s"]),
                  ">1: ponder is faster")
        rep.ratio("GRPO update: TRL s / ponder s", div(theirs["update_s"], ours["update_s"]), ">1: ponder is faster")
    except ImportError as e:
        rows.append({"trainer": f"TRL: not run ({e}; pip install trl)"})
    except Exception as e:  # noqa: BLE001 - report, do not crash the suite
        rows.append({"trainer": f"TRL: failed ({type(e).__name__}: {str(e).splitlines()[0][:150]})"})
        traceback.print_exc()
    rep.table("grpo", list(rows[0]), rows, [
        (f"model: {what}; {opts.rl_prompts} prompts x {opts.rl_group} samples per step, <= {opts.rl_new_tokens} new "
        f"tokens (EOS on), temperature {opts.rl_temperature}, lr {opts.rl_lr}, verifier reward, CPU float32, "
        f"{opts.threads} thread(s); median of {opts.rl_steps} step(s) after 1 warm-up; update s = step s - "
        f"sample+score s on both sides (backward, optimizer step, bookkeeping)")])


def sec_search(opts, rep: Report, state: dict) -> None:
    run = search_setup(opts)
    run("warmup", 0)
    rows = []
    for searcher in run.searchers:
        off, on = run(searcher, 0), run(searcher, opts.search_cache_mb)
        for label, (gen, enc, secs, _) in (("off", off), ("on", on)):
            rows.append({"search": searcher, "prefix cache": label, "tokens generated": gen, "tokens encoded": enc,
                         "encoded/generated": div(enc, gen), "wall s": secs, "speed-up": off[2] / secs,
                         "same choices": "yes" if off[3] == on[3] else "NO"})
        rep.ratio(f"{searcher} search: wall s cache off / on", off[2] / on[2], ">1: the prefix cache saves time")
        rep.ratio(f"{searcher} search: tokens encoded off / on", div(off[1], on[1]), "re-encoding avoided")
    rep.table("search", list(rows[0]), rows, [run.what + f"; cache {opts.search_cache_mb} MiB when on"])


def sec_train(opts, rep: Report, state: dict) -> None:
    peaks = {k: matmul_peak(opts.matmul_n, dt) for k, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    fp32 = peaks["float32"][0]
    best = max(peaks, key=lambda k: peaks[k][0])
    state["peak"] = fp32
    rows = [{"workload": f"peak: {k} matmul (best of sides 256..{n})", "GFLOP/s": v / 1e9, "of fp32 peak": v / fp32}
            for k, (v, n) in peaks.items()]
    policy, what = load_default_policy(opts)
    n, cfg = policy.num_params(), policy.config
    _, task = recipe_task()
    examples = [(q.prompt, task.demonstration(q)) for q in task.problems("train", 512, opts.seed)]
    lens: list[list[int]] = []
    orig = sft.nll_loss

    def probed(pol, prompts, completions):
        lens.append(input_lengths(pol.tokenizer, prompts, completions, [True] * len(prompts)))
        return orig(pol, prompts, completions)

    stamps: list[float] = []
    sft.nll_loss = probed
    try:
        train_sft(policy, examples, SFTConfig(steps=1 + opts.train_steps, batch_size=opts.sft_batch, lr=1e-3,
                                              warmup=0, log_every=1), seed=opts.seed, progress=False,
                  log=lambda _: stamps.append(time.perf_counter()))
    finally:
        sft.nll_loss = orig
    step_s, _ = median_gaps(stamps)
    flops = statistics.mean(train_flops(n, cfg, x) for x in lens[1:])
    toks = statistics.mean(sum(x) for x in lens[1:])
    rows.append({"workload": f"SFT step, batch {opts.sft_batch}", "step s": step_s, "tokens/step": toks,
                 "tokens/s": toks / step_s, "GFLOP/s": flops / step_s / 1e9, "of fp32 peak": flops / step_s / fp32})
    rep.ratio("SFT: achieved / fp32 matmul peak", flops / step_s / fp32, "model FLOPs utilisation")
    g = state.get("grpo")
    if g is None and ("grpo" not in opts.sections):
        pol2, _ = load_default_policy(opts)
        g = ponder_grpo(opts, pol2, task, task.problems("train", opts.rl_pool, opts.seed), opts.rl_steps)
    if g is not None:
        f_upd = statistics.mean(train_flops(n, cfg, x) for x in g["update_lens"])
        t_upd = statistics.mean(sum(x) for x in g["update_lens"])
        rows.append({"workload": f"RL update (GRPO, {opts.rl_prompts}x{opts.rl_group} samples)",
                     "step s": g["update_call_s"], "tokens/step": t_upd, "tokens/s": t_upd / g["update_call_s"],
                     "GFLOP/s": f_upd / g["update_call_s"] / 1e9, "of fp32 peak": f_upd / g["update_call_s"] / fp32})
        rep.ratio("RL update: achieved / fp32 matmul peak", f_upd / g["update_call_s"] / fp32,
                  "model FLOPs utilisation")
    s = state.get("sampling")
    if s is not None:
        m = s["model"]
        ctx = s["prompt_len"] + opts.new_tokens / 2  # the mean number of attended positions while decoding
        for r in s["rows"]:
            f = m.flops_per_token(ctx) * r["ours tok/s"]
            rows.append({"workload": f"decode, built-in engine, batch {r['batch']}", "tokens/s": r["ours tok/s"],
                         "GFLOP/s": f / 1e9, "of fp32 peak": f / fp32})
    rep.table("train", ["workload", "step s", "tokens/step", "tokens/s", "GFLOP/s", "of fp32 peak"], rows, [
        (f"model: {what}, N = {n / 1e6:.3f}M params; training FLOPs per sequence of T input positions = 6*N*T + "
        f"6*n_layer*d_model*T*(T+1) (fwd+bwd = 3x fwd; tokens = real input positions, prompt included, padding "
        f"not); decode FLOPs/token = 2*N + 4*n_layer*d_model*context; fastest matmul dtype here: {best}; "
        f"median of {opts.train_steps} step(s) after 1 warm-up")])


def sec_memory(opts, rep: Report, state: dict) -> None:
    batches = opts.memory_batches or opts.batches
    jobs = [(f"sampling, {e}, batch {b}", "sample", {"engine": e, "batch": b}) for b in batches
            for e in ("ours", "hf")]
    jobs += [("GRPO step, ponder", "grpo", {"side": "ponder"}), ("GRPO step, TRL", "grpo", {"side": "trl"})]
    search_names = [s for s in (("beam", "mcts") if has_search_run(opts) else ("tree",)) if s in opts.memory_search]
    jobs += [(f"{s} search, cache {c}", "search", {"searcher": s, "cache_mb": opts.search_cache_mb if c == "on" else 0})
             for s in search_names for c in ("off", "on")]
    jobs += [(f"SFT step, batch {opts.sft_batch}", "sft", {})]
    rows, by = [], {}
    for name, job, params in jobs:
        r = run_child(job, params, opts)
        by[name] = r
        rows.append({"workload": name, "peak delta MiB": r.get("delta_mb"), "process peak MiB": r.get("peak_mb"),
                     "sampling part delta MiB": r.get("sample_delta_mb"), "update part delta MiB":
                     r.get("update_delta_mb"), "error": r.get("error")})
    b = max(batches)
    rep.ratio(f"sampling batch {b} peak delta: HF / ours", div(by[f"sampling, hf, batch {b}"].get("delta_mb"),
                                                             by[f"sampling, ours, batch {b}"].get("delta_mb")),
              ">1: the built-in engine needs less")
    rep.ratio("GRPO step process peak: TRL / ponder", div(by["GRPO step, TRL"].get("peak_mb"),
                                                          by["GRPO step, ponder"].get("peak_mb")),
              ">1: ponder needs less (libraries included)")
    cols = ["workload", "peak delta MiB", "process peak MiB", "sampling part delta MiB", "update part delta MiB"]
    if any(r["error"] for r in rows):
        cols.append("error")
    rep.table("memory", cols, rows, [
        ("one fresh process per workload, after a warm-up at toy size (it pages in library code: ~100 MiB for the "
         "first backward pass); peak delta = VmHWM - VmRSS at the start of the "
        "run; process peak = VmHWM (imports included); GRPO: one step from a built policy / trainer "
        "(optimizer state included), split at the end of sampling+scoring")])


def sec_scale(opts, rep: Report, state: dict) -> None:
    base_b, base_n = opts.scale_base_batch, opts.scale_new[0]
    configs = [(s, base_b, base_n) for s in opts.scale_sizes]
    configs += [("default", b, base_n) for b in opts.scale_batches if b != base_b]
    configs += [("default", base_b, n) for n in opts.scale_new if n != base_n]
    rows, res = [], {}
    for size, batch, new in configs:
        sm = run_child("scale", {"workload": "sample", "size": size, "batch": batch, "new": new}, opts)
        ft = run_child("scale", {"workload": "sft", "size": size, "batch": batch, "new": new}, opts)
        res[(size, batch, new)] = (sm, ft)
        n_layer, _, d = SCALE_SIZES[size]
        rows.append({"model": f"{n_layer}x{d} ({fmt((sm.get('params') or ft.get('params') or 0) / 1e6)}M)",
                     "batch": batch, "new tokens": new, "sample s": sm.get("seconds"),
                     "sample tok/s": sm.get("tokens_per_s"), "sample peak delta MiB": sm.get("delta_mb"),
                     "SFT step s": ft.get("seconds"), "SFT trained tok/s": ft.get("tokens_per_s"),
                     "SFT peak delta MiB": ft.get("delta_mb"), "error": sm.get("error") or ft.get("error")})
    base = res[("default", base_b, base_n)]
    largest = opts.scale_sizes[-1]
    big = res[(largest, base_b, base_n)]
    shape = f"{SCALE_SIZES[largest][0]}x{SCALE_SIZES[largest][2]}"
    if largest != "default":
        params = f"param ratio {fmt(div(big[0].get('params'), base[0].get('params')))}x"
        rep.ratio(f"sampling tok/s: {shape} / 4x128 model",
                  div(big[0].get("tokens_per_s"), base[0].get("tokens_per_s")), params)
        rep.ratio(f"SFT tok/s: {shape} / 4x128 model", div(big[1].get("tokens_per_s"), base[1].get("tokens_per_s")),
                  params)
    lo, hi = min(opts.scale_batches), max(opts.scale_batches)
    rep.ratio(f"sampling tok/s: batch {hi} / batch {lo}",
              div(res[("default", hi, base_n)][0].get("tokens_per_s"),
                  res[("default", lo, base_n)][0].get("tokens_per_s")),
              "what batching buys the built-in engine")
    cols = [c for c in rows[0] if c != "error" or any(r["error"] for r in rows)]
    rep.table("scale", cols, rows, [
        (f"one axis at a time from 4x128, batch {base_b}, {base_n} new tokens; random models (max_seq_len "
        f"{SCALE_SEQ}); sampling: distinct task prompts, EOS off; SFT: batch x (prompt + new-tokens chars + EOS), "
        f"AdamW; each configuration in its own process: time = median of {opts.scale_repeats} run(s) after the "
        f"first, memory = peak delta of the first sampling run / of the whole SFT call")])


OP_KINDS = {  # aten op names (no namespace, no trailing in-place "_") by what they do in a decode step
    "matmul": {"mm", "addmm", "bmm", "matmul", "linear", "baddbmm"},
    "sampling": {"multinomial", "softmax", "_softmax", "log_softmax", "_log_softmax", "argmax", "sort", "cumsum",
                 "scatter", "gather", "div"},
    "elementwise / norm": {"mul", "add", "sub", "silu", "rsqrt", "pow", "mean", "cos", "sin", "neg", "exp"},
}


def op_kind(key: str) -> str:
    name = key.removeprefix("aten::")
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    if "scaled_dot_product" in name:
        return "attention"
    for kind, names in OP_KINDS.items():
        if name in names:
            return kind
    return "indexing / copies / other"  # KV-cache writes and reads, masks, compaction, views, .item()


@contextlib.contextmanager
def quiet_stderr():
    """Send file descriptor 2 to /dev/null for a while (C++ libraries write there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def sec_profile(opts, rep: Report, state: dict) -> None:
    b, new = opts.profile_batch, opts.profile_new_tokens
    args = engine_args(opts, batches=[b], new_tokens=new)
    policy, what, prompts = E.load_policy(args)
    run = E.Runner("ours", policy, None, prompts, b, args)
    run()  # warm-up
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    from torch.profiler import ProfilerActivity, profile

    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:  # kineto logs its start and stop
        start = time.perf_counter()
        run()
        prof_wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total_self = sum(e.self_cpu_time_total for e in events) / 1e6  # seconds inside aten ops
    kinds: dict[str, float] = {}
    for e in events:
        kinds[op_kind(e.key)] = kinds.get(op_kind(e.key), 0.0) + e.self_cpu_time_total / 1e6
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    rows = [{"op": e.key, "calls/step": e.count / new, "self ms/step": e.self_cpu_time_total / 1e3 / new,
             "share of wall": e.self_cpu_time_total / 1e6 / prof_wall, "kind": op_kind(e.key)} for e in top]
    n_calls = sum(e.count for e in events)
    pr = cProfile.Profile()
    pr.enable()
    run()
    pr.disable()
    funcs = sorted(pstats.Stats(pr, stream=io.StringIO()).stats.items(), key=lambda kv: kv[1][2], reverse=True)[:6]
    py_lines = [f"{Path(f).name}:{line}({fn}) " if f != "~" else f"{fn} " for (f, line, fn), _ in funcs]
    py_lines = [f"{where}{tt / new * 1e3:.3f} ms own, {ct / new * 1e3:.3f} ms cumulative, {nc / new:.1f} calls per step"
                for where, ((_, _, _), (_, nc, tt, ct, _)) in zip(py_lines, funcs)]
    peak = state.get("peak") or matmul_peak(opts.matmul_n, torch.float32)[0]
    ctx = statistics.mean(len(policy.tokenizer.encode(p)) + 1 for p in prompts[:b]) + new / 2
    floor = b * policy.model.flops_per_token(ctx) / peak  # seconds per step if compute-bound at the peak
    step = wall / new
    matmul_share = kinds.get("matmul", 0.0) / prof_wall
    rep.ratio(f"decode step, batch {b}: time in matmul ops / wall (profiled)", matmul_share,
              "low: the step is overhead-bound, not compute-bound")
    rep.ratio(f"decode step, batch {b}: compute floor / measured", floor / step, "1 would be the fp32 matmul peak")
    notes = [
        (f"model: {what}; batch {b}, {new} new tokens (1 prefill + {new - 1} decode forwards), EOS off; "
        f"{step * 1e3:.2f} ms per token step unprofiled ({prof_wall / new * 1e3:.2f} ms profiled); compute floor at "
        f"the fp32 peak {floor * 1e3:.3f} ms ({floor / step:.1%} of the step)"),
        f"{n_calls / new:.0f} aten op calls per step; {total_self / prof_wall:.0%} of profiled wall time is inside "
        f"aten ops, the rest Python and dispatch; by kind (share of wall): "
        + ", ".join(f"{k} {v / prof_wall:.0%}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])),
        "top Python functions by own time (cProfile of one generate call, per token step):",
        *("    " + ln for ln in py_lines)]
    rep.table("profile", list(rows[0]), rows, notes)


SECTION_FNS = {"sampling": sec_sampling, "grpo": sec_grpo, "search": sec_search, "train": sec_train,
               "memory": sec_memory, "scale": sec_scale, "profile": sec_profile}
TITLES = {"sampling": "Sampling throughput: built-in engine vs Hugging Face generate (same weights)",
          "grpo": "One GRPO step (sample + score + update): ponder train_rl vs TRL GRPOTrainer",
          "search": "Tree search with the prefix KV cache off and on",
          "train": "Training throughput and achieved FLOP/s vs the measured matmul peak",
          "memory": "Peak memory (RSS), one fresh process per workload",
          "scale": "Scale: sampling and an SFT step vs model size, batch and new tokens",
          "profile": "Profile: one decode step of the built-in engine"}


def machine_info(opts) -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    for mod in ("transformers", "trl", "tokenizers"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = "not installed"
    return info


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS),
                    help=f"names or numbers 1-{len(SECTIONS)}: {' '.join(SECTIONS)}")
    ap.add_argument("--quick", action="store_true", help="toy sizes everywhere: a smoke run")
    ap.add_argument("--threads", type=int, default=usable, help="torch threads for every measurement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default=E.DEFAULT_CHECKPOINT, help="the default policy, if it exists")
    ap.add_argument("--random", action="store_true", help="a random model of the default shape, checkpoint or not")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")), help="JSON results file")
    g = ap.add_argument_group("sizes (--quick overrides them)")
    g.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="sampling batches (section 1, 5)")
    g.add_argument("--new-tokens", type=int, default=64, help="sampling: new tokens per row")
    g.add_argument("--repeats", type=int, default=5, help="sampling: timed calls per engine and batch")
    g.add_argument("--rl-prompts", type=int, default=16, help="GRPO: prompts per step")
    g.add_argument("--rl-group", type=int, default=8, help="GRPO: samples per prompt")
    g.add_argument("--rl-new-tokens", type=int, default=64, help="GRPO: max new tokens")
    g.add_argument("--rl-temperature", type=float, default=0.7)
    g.add_argument("--rl-lr", type=float, default=1e-4)
    g.add_argument("--rl-steps", type=int, default=3, help="GRPO: timed steps after 1 warm-up, per trainer")
    g.add_argument("--rl-pool", type=int, default=256, help="GRPO: training problems both trainers draw from")
    g.add_argument("--search-run", default="runs/default", help="a finished run with reward/prm")
    g.add_argument("--search-problems", type=int, default=16)
    g.add_argument("--search-width", type=int, default=4)
    g.add_argument("--search-simulations", type=int, default=8)
    g.add_argument("--search-cache-mb", type=float, default=256)
    g.add_argument("--memory-batches", type=int, nargs="+", help="sampling batches measured in section 5 "
                   "(default: --batches)")
    g.add_argument("--memory-search", nargs="+", default=["beam", "mcts", "tree"],
                   help="searchers measured in section 5 (tree: the fallback workload)")
    g.add_argument("--sft-batch", type=int, default=64)
    g.add_argument("--train-steps", type=int, default=3, help="SFT: timed steps after 1 warm-up")
    g.add_argument("--matmul-n", type=int, default=2048, help="side of the peak-FLOP/s matmul")
    g.add_argument("--scale-sizes", nargs="+", choices=list(SCALE_SIZES), default=list(SCALE_SIZES),
                   help="model shapes: default 4x128, d256 4x256, d512 8x512")
    g.add_argument("--scale-batches", type=int, nargs="+", default=[1, 16, 64])
    g.add_argument("--scale-new", type=int, nargs="+", default=[64, 128], help="the first is the base point")
    g.add_argument("--scale-base-batch", type=int, default=16)
    g.add_argument("--scale-repeats", type=int, default=2)
    g.add_argument("--profile-batch", type=int, default=64)
    g.add_argument("--profile-new-tokens", type=int, default=64)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if opts.child:
        return opts
    if opts.quick:
        opts.batches, opts.new_tokens, opts.repeats = [1, 8], 8, 1
        opts.rl_prompts, opts.rl_group, opts.rl_new_tokens, opts.rl_steps, opts.rl_pool = 2, 2, 8, 1, 16
        opts.search_problems, opts.search_width, opts.search_simulations = 2, 2, 2
        opts.sft_batch, opts.train_steps, opts.matmul_n = 8, 1, 256
        opts.scale_batches, opts.scale_new, opts.scale_base_batch, opts.scale_repeats = [1, 4], [8, 16], 4, 1
        opts.scale_sizes, opts.memory_batches, opts.memory_search = ["default", "d512"], [8], ["beam", "tree"]
        opts.profile_batch, opts.profile_new_tokens = 8, 8
    chosen = []
    for s in opts.sections:
        name = SECTIONS[int(s) - 1] if s.isdigit() and 1 <= int(s) <= len(SECTIONS) else s
        if name not in SECTIONS:
            ap.error(f"unknown section {s!r} (choose from {', '.join(SECTIONS)} or 1-{len(SECTIONS)})")
        chosen.append(name)
    opts.sections = [s for s in SECTIONS if s in chosen]
    opts.scale_sizes = ["default", *(s for s in SCALE_SIZES if s in opts.scale_sizes and s != "default")]
    if opts.scale_base_batch not in opts.scale_batches:
        ap.error("--scale-base-batch must be one of --scale-batches")
    return opts


def main(argv=None) -> None:
    opts = parse_args(argv)
    if opts.child:
        warnings.filterwarnings("ignore")
        print(json.dumps(child(json.loads(opts.child))))
        return
    torch.set_num_threads(opts.threads)
    info = machine_info(opts)
    load = info["load_average"]
    print(f"machine: {info['cpu']}; {info['cpus']} CPUs ({info['usable_cpus']} usable); torch {info['torch']} with "
          f"{info['torch_threads']} thread(s); transformers {info['transformers']}; trl {info['trl']}; Python "
          f"{info['python']}; load average {' / '.join(f'{x:.2f}' for x in load) if load else 'n/a'}")
    if load and load[0] > 0.5:
        print(f"note: the 1-minute load average is {load[0]:.1f} before starting: other work competes for the "
              "cores, so absolute times are inflated and ratios noisier; with more than one thread, multi-threaded "
              "ops also wait at OpenMP barriers for descheduled threads (--threads 1 suffers less)")
    print(f"sections: {', '.join(opts.sections)}{' (--quick sizes)' if opts.quick else ''}\n")
    rep, state, timings = Report(), {}, {}
    total = time.perf_counter()
    for name in opts.sections:
        print(f"## {SECTIONS.index(name) + 1}. {TITLES[name]}\n")
        start = time.perf_counter()
        try:
            SECTION_FNS[name](opts, rep, state)
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the others
            traceback.print_exc()
            rep.table(name, ["error"], [{"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}])
        timings[name] = time.perf_counter() - start
        torch.set_num_threads(opts.threads)
    print("## Summary: ratios measured side by side in this run\n")
    rep.table("summary", ["measure", "ratio", "meaning"], rep.summary)
    end_load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"section seconds: {', '.join(f'{k} {v:.0f}' for k, v in timings.items())}; total "
          f"{time.perf_counter() - total:.0f} s; load average at the end "
          f"{' / '.join(f'{x:.2f}' for x in end_load) if end_load else 'n/a'}")
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "load_average_end": end_load,
                               "options": {k: v for k, v in vars(opts).items() if k != "child"},
                               "section_seconds": timings, "sections": rep.sections, "summary": rep.summary},
                              indent=2, default=str))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
