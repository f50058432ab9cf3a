"""One benchmark workload in a fresh process (`run_all.py --child SPEC`), for peak memory and the scale
section: the child end of `harness.run_child`."""

from __future__ import annotations

import argparse

import engine_vs_hf as E  # bench/ is this script's directory, hence on sys.path
import torch
from harness import PeakMeter, engine_args, load_default_policy, recipe_task
from sec_grpo import rl_config, rl_probes, trl_trainer, wrap_generation
from sec_scale import scale_child
from sec_search import search_setup

from ponder.learn.rl import train_rl
from ponder.learn.sft import train_sft
from ponder.training import SFTConfig


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


