"""Section 2: one GRPO step (sample + verifier reward + one update) of ponder's `train_rl` against TRL's
`GRPOTrainer` on the same converted model (see run_all.py's docstring for what is matched)."""

from __future__ import annotations

import atexit
import contextlib
import copy
import shutil
import statistics
import tempfile
import time
import traceback
import warnings

import torch
from harness import Report, div, input_lengths, load_default_policy, median_gaps, recipe_task

from ponder.learn import rl
from ponder.learn.rl import RLConfig, train_rl
from ponder.policy import TinyPolicy
from ponder.policy.tokenizer import SPECIALS, CharTokenizer

# -- the two sides: ponder's GRPO step, TRL's GRPOTrainer -----------------------------------------


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



