"""The roadmap iteration as phases: initialize, train reward models, evaluate, sweep search, then
(make training data -> learn -> evaluate) per round of the recipe's learner, then report.

Each phase is seeded from the recipe seed and the phase's name alone, writes its result into the
run's state, and saves a checkpoint when it changed the policy. A resumed run skips the phases
already done and reloads the last checkpoint, so it ends with the same numbers as an uninterrupted
run with the same seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from ponder.behaviour import has_behaviours
from ponder.behaviour import per_problem as behaviour_rows
from ponder.config import ConfigError, RunConfig
from ponder.convergence import CONVERGENCE_AT, convergence, convergence_line
from ponder.eval import evaluate, greedy_accuracy
from ponder.learn.base import Round
from ponder.learn.sft import train_sft
from ponder.policy.factory import load_policy, make_policy
from ponder.policy.tiny import PolicyLoadError, TinyPolicy
from ponder.preflight import check_memory, check_room
from ponder.reward.pipeline import RewardData, collect, evaluate_reward_models, load_model, train_models
from ponder.reward.verifier import VerifierReward
from ponder.runs import Run
from ponder.search.scaling import compute_optimal, estimate_difficulty, sweep
from ponder.tasks.base import Task, stable_seed
from ponder.timing import clock
from ponder.training import Checkpointing

SAMPLES_SAVED = 50  # problems per evaluation whose completions go to samples/<phase>.jsonl
def _convergence_probe(run: Run, cfg: RunConfig, policy, task, problems) -> dict:
    """`train_sft`'s probes for init: greedy accuracy part-way through its steps (the result is kept
    in the run directory, so a run resumed after it still reports it)."""
    at = max(1, round(CONVERGENCE_AT * cfg.init.sft.steps))

    def probe() -> None:
        acc, _, _ = greedy_accuracy(policy, task, problems, max_new_tokens=cfg.eval.max_new_tokens, progress=False)
        run.save_phase_data("init_probe", {"step": at, "greedy_accuracy": acc})

    return {at: probe}


def phase_names(cfg: RunConfig) -> list[str]:
    names = ["init"] + (["reward"] if cfg.reward.models else []) + ["eval_init"]
    names += ["baseline"] if cfg.init.baseline else []
    names += ["search"] if cfg.search.methods else []
    for r in range(1, cfg.learn.rounds + 1):
        names += [f"round{r}", f"eval_round{r}"]
    return names


def reward_dir(run_path: Path) -> Path:
    """Where a run keeps its trained reward models, one directory each."""
    return Path(run_path) / "reward"


def prm_dir(run: Run) -> Path:
    """The run's current PRM: the one a distill round fine-tuned last, else the reward phase's."""
    rounds = [p for p in run.state["done"] if p.startswith("round") and (reward_dir(run.path) / f"prm_{p}").is_dir()]
    return reward_dir(run.path) / (f"prm_{rounds[-1]}" if rounds else "prm")


def _load_rewards(run: Run, cfg: RunConfig) -> dict:
    """The recipe's reward models as evaluation uses them: "prm" is the newest PRM; once a round has
    refined it, the reward phase's own PRM is evaluated beside it as "prm0" (frozen against co-evolving)."""
    models = {name: load_model(prm_dir(run) if name == "prm" else reward_dir(run.path) / name)
              for name in cfg.reward.models}
    if "prm" in models and prm_dir(run) != reward_dir(run.path) / "prm":
        models["prm0"] = load_model(reward_dir(run.path) / "prm")
    return models


def _reward_phase(run: Run, cfg: RunConfig, policy, task, progress: bool, echo) -> dict:
    """Sample and label the reward data (kept in the run, so a resumed run does not relabel), then train
    every reward model of the recipe on it."""
    seed = stable_seed(cfg.seed, "reward")
    saved = run.load_phase_data("reward")
    if saved is None:
        data = collect(policy, task, cfg.reward, seed=seed, progress=progress)
        run.save_phase_data("reward", data.to_json())
    else:
        data = RewardData.from_json(saved, {})
    echo(f"[reward] {len(data.texts)} solutions labelled ({cfg.reward.labels}, "
         f"{data.verified(task) / max(len(data.outcomes), 1):.1%} verified); training {', '.join(cfg.reward.models)}")
    stats = train_models(policy, task, data, cfg.reward, seed=seed, out_dir=reward_dir(run.path), log=run.log,
                         progress=progress)
    return {"models": stats, "solutions": len(data.texts), "verified": data.verified(task),
            "label_cost": data.cost.as_dict()}


def _search_phase(run: Run, cfg: RunConfig, policy, task, progress: bool) -> dict:
    """The test-time scaling sweep of the current policy, guided by the run's PRM, and the
    compute-optimal curve over difficulty bins."""
    sc = cfg.search
    problems = task.problems("test", sc.problems, cfg.test_seed)
    prm = load_model(reward_dir(run.path) / "prm")
    seed = stable_seed(cfg.seed, "search")
    rows = sweep(problems, policy, prm, task, sc, seed=seed, progress=progress)
    difficulty = estimate_difficulty(problems, policy, task, sc.difficulty_samples, sc.temperature,
                                     stable_seed(seed, "difficulty"), top_p=sc.top_p, max_new_tokens=sc.max_new_tokens)
    optimal = compute_optimal(rows, difficulty, sc.difficulty_bins, holdout=sc.holdout)
    table = [{k: v for k, v in r.items() if not k.startswith("per_problem")} for r in rows]
    run.log({"phase": "search", "step": 0, **{f"{r['method']}@{r['size']}": r["accuracy"] for r in rows}})
    return {"rows": table, "compute_optimal": optimal, "problems": len(problems),
            "per_problem": {f"{r['method']}@{r['size']}": r["per_problem"] for r in rows},
            "problem_ids": [p.id for p in problems], "difficulty": difficulty}  # ponder compare pairs runs on these


def _eval_phase(run: Run, cfg: RunConfig, policy, task, problems, phase: str, progress: bool) -> dict:
    ev = cfg.eval
    rewards = _load_rewards(run, cfg)
    res = evaluate(policy, task, problems, ns=ev.n, temperature=ev.temperature, top_p=ev.top_p,
                   max_new_tokens=ev.max_new_tokens, seed=stable_seed(cfg.seed, phase), progress=progress,
                   rewards=rewards)
    rows = []
    for p, g, group in zip(problems[:SAMPLES_SAVED], res["greedy_samples"], res["samples"]):
        rows.append({"id": p.id, "prompt": p.prompt, "answer": p.answer, "greedy": g.text,
                     "greedy_correct": task.verify(p, g.text),
                     "samples": [{"text": s.text, "correct": task.verify(p, s.text)} for s in group[:4]]})
    run.write_samples(phase, rows)
    out = {"greedy_accuracy": res["greedy_accuracy"], "greedy_tokens": res["greedy_tokens"], "search": res["search"],
           "greedy_per_problem": res["greedy_per_problem"]}  # per-problem scores: the report's intervals
    if rewards:
        out["reward_models"] = evaluate_reward_models(rewards, task, problems, res["samples"], ns=ev.n)
    if has_behaviours(task):  # per problem: the report's behaviour rates and their intervals
        out["behaviours"] = {"greedy": behaviour_rows(task, problems, [[g] for g in res["greedy_samples"]]),
                             "sampled": behaviour_rows(task, problems, res["samples"])}
    run.log({"phase": phase, "step": 0, "greedy_accuracy": out["greedy_accuracy"],
             **{f"{r['method']}@{r['n']}": r["accuracy"] for r in res["search"]}})
    return out


def _demonstrations(cfg: RunConfig, task: Task) -> list[tuple[str, str]]:
    """(prompt, demonstration) of init's training problems, for those the task can demonstrate."""
    demos = []
    for p in task.problems("train", cfg.init.demos, cfg.seed):
        d = task.demonstration(p)
        if d is not None:
            demos.append((p.prompt, d))
    if not demos:
        raise ValueError(f"task {task.name} has no demonstrations to initialize a policy from")
    return demos


def _baseline_phase(run: Run, cfg: RunConfig, task: Task, problems, place: Callable, progress: bool, echo) -> dict:
    """The policy init is measured against (`init.baseline`): the same model, seed, demonstration problems
    and SFT settings, trained on the demonstrations of the task with the baseline's settings, for as
    many steps as make init's demonstration tokens at its mean demonstration length; then evaluated
    like eval_init on the same problems. Its checkpoint is kept, but the rounds continue from init's."""
    demos = _demonstrations(cfg, cfg.baseline_task())
    policy = place(make_policy(cfg, seed=stable_seed(cfg.seed, "model")))  # init's starting weights
    tok = getattr(policy, "local", policy).tokenizer
    mean = sum(len(tok.encode(d)) + 1 for _, d in demos) / len(demos)  # + EOS, a target as in nll_loss
    init_tokens = run.state["results"]["init"]["train_tokens"]
    steps = max(1, round(init_tokens / (cfg.init.sft.batch_size * mean)))
    settings = ", ".join(f"{k} = {v}" for k, v in cfg.init.baseline.items())
    echo(f"[baseline] the same model on demonstrations with {settings}: {steps} SFT steps, to match init's "
         f"{init_tokens} demonstration tokens")
    stats = train_sft(policy, demos, replace(cfg.init.sft, steps=steps), seed=stable_seed(cfg.seed, "init"),
                      log=run.log, phase="baseline", progress=progress,
                      checkpointing=_checkpointing(run, policy, "baseline", cfg.checkpoint_every))
    run.save_checkpoint(policy, "baseline", last=False)
    result = _eval_phase(run, cfg, policy, task, problems, "baseline", progress)
    echo(f"[baseline] greedy accuracy {result['greedy_accuracy']:.1%}")
    return {**result, "settings": dict(cfg.init.baseline), "steps": steps, "train_tokens": stats["tokens"],
            "init_train_tokens": init_tokens, "final_loss": stats["final_loss"]}


def _checkpointing(run: Run, policy, phase: str, every: int) -> Checkpointing:
    """Mid-phase saves into the run directory, and the saved progress of this phase if there is one."""
    partial = run.load_partial(phase)
    resume = None
    if partial is not None:
        policy_dir, tensors, meta = partial
        policy.load_weights(policy_dir)
        resume = (tensors, meta)
    return Checkpointing(save=lambda tensors, meta: run.save_partial(policy, phase, tensors, meta), every=every,
                         resume=resume)


class _RunStore:
    """A learning round's view of the run directory (`ponder.learn.base.RoundStore`): what a learner
    carries between rounds sits beside the round's checkpoint, `checkpoints/<round>.<name>`; a refined
    PRM goes to `reward/prm_<round>`, where evaluation and later rounds find it."""

    def __init__(self, run: Run, cfg: RunConfig, phase: str) -> None:
        self.run, self.phase = run, phase
        rounds = [p for p in phase_names(cfg) if p.startswith("round")]
        self.earlier = rounds[: rounds.index(phase)]
        self._prm = None

    def _beside(self, phase: str, name: str) -> Path:
        return self.run.checkpoint_dir(phase).with_name(f"{phase}.{name}")

    def path(self, name: str) -> Path:
        return self._beside(self.phase, name)

    def previous(self, name: str) -> Path | None:
        found = (self._beside(phase, name) for phase in reversed(self.earlier))
        return next((path for path in found if path.exists()), None)

    def prm(self):
        if self._prm is None:  # loaded once a round: the search half and the learning half share it
            self._prm = load_model(prm_dir(self.run))
        return self._prm

    def save_prm(self, model) -> None:
        model.save(reward_dir(self.run.path) / f"prm_{self.phase}")


def _learn_phase(run: Run, cfg: RunConfig, policy, task, phase: str, progress: bool, verifier) -> dict:
    """One learning round of the recipe's learner, in place on `policy`. An offline learner's data is
    kept in the run, so a resumed round trains on it without searching again."""
    lc, seed = cfg.learn, stable_seed(cfg.seed, phase)
    learner = lc.learner_object
    rnd = Round(phase=phase, seed=seed, task=task, problems=task.problems("train", lc.problems, seed), reward=verifier,
                store=_RunStore(run, cfg, phase), log=run.log, progress=progress)
    if not learner.offline:
        return learner.learn(policy, lc, rnd)
    saved = run.load_phase_data(phase)
    if saved is None:
        data, stats = learner.search(policy, lc, rnd)
        saved = {"data": data, "stats": stats, "metrics_before": run.state["metrics_lines"]}
        run.save_phase_data(phase, saved)
    if run.state["metrics_lines"] == saved["metrics_before"]:  # its line is not in the log yet
        run.log(dict(saved["stats"]))
        run.save_state()
    return learner.learn(policy, lc, rnd, saved["data"], saved["stats"],
                         checkpointing=_checkpointing(run, policy, phase, cfg.checkpoint_every))


def _policy_from_checkpoint(cfg: RunConfig) -> TinyPolicy:
    """The recipe's `init.checkpoint`, checked against its [model]; errors name the key."""
    try:
        policy = TinyPolicy.load(cfg.init.checkpoint, dtype=cfg.policy.dtype, batch_size=cfg.policy.batch_size)
    except PolicyLoadError as e:
        raise ConfigError(f"init.checkpoint: {e}") from None
    if policy.config != cfg.model:
        raise ConfigError(f"init.checkpoint: {cfg.init.checkpoint} has model {policy.config}, but the recipe's [model] "
                          f"is {cfg.model}; set [model] to the checkpoint's shape")
    return policy


def run_loop(cfg: RunConfig, run: Run, *, task: Task | None = None, progress: bool = True,
             echo: Callable[[str], None] = print, workers: int = 0, ray_address: str | None = None) -> dict:
    """Run (or resume) every phase of the recipe in `run`; returns the state's results. `task` is the
    recipe's task if the caller already built it. With `workers`, generation and verification fan out
    over that many Ray workers (`ponder.distributed`); the results are the same as in process."""
    task = task or cfg.make_task()
    if not workers:
        return _phases(cfg, run, task, progress, echo, place=lambda p: p, verifier=VerifierReward(task))
    from ponder.distributed import RayPolicy, RayVerifier, start_ray, stop_ray

    start_ray(workers, ray_address)
    placed: list = []

    def place(policy):
        placed.append(RayPolicy(getattr(policy, "local", policy), workers=workers))
        return placed[-1]

    try:
        return _phases(cfg, run, task, progress, echo, place=place,
                       verifier=RayVerifier(VerifierReward(task), workers=workers))
    finally:
        for p in placed:
            p.close()
        stop_ray()


def _phases(cfg: RunConfig, run: Run, task: Task, progress: bool, echo: Callable[[str], None], *,
            place: Callable, verifier) -> dict:
    test_problems = task.problems("test", cfg.eval.problems, cfg.test_seed)
    policy = None
    if run.state.get("last_checkpoint"):
        policy = place(load_policy(cfg, run.checkpoint_dir(run.state["last_checkpoint"]),
                                   seed=stable_seed(cfg.seed, "model")))
    if run.state["done"] or run.state.get("partial"):
        where = f"after phase {run.state['done'][-1]}" if run.state["done"] else "from the start"
        echo(f"resuming {run.path} {where}" + (f" (phase {run.state['partial']['phase']} from its last save)"
                                               if run.state.get("partial") else ""))
    for phase in phase_names(cfg):
        if run.done(phase):
            continue
        torch.manual_seed(stable_seed(cfg.seed, phase, "torch"))
        span = clock.span()
        if phase == "init" and cfg.init.checkpoint:
            policy = place(_policy_from_checkpoint(cfg))
            check_memory(cfg, task, getattr(policy, "local", policy), source=str(run.path / "config.toml"))
            run.save_checkpoint(policy, phase)
            echo(f"[init] {policy.num_params() / 1e6:.2f}M-parameter transformer from {cfg.init.checkpoint}")
            result = {"train_tokens": 0, "final_loss": None, "params": policy.num_params(), "demos": 0,
                      "checkpoint": cfg.init.checkpoint, "skipped_data_lines": getattr(task, "skipped_lines", 0)}
        elif phase == "init" and cfg.policy.backend != "tiny" and not cfg.init.sft.steps:
            policy = place(make_policy(cfg, seed=stable_seed(cfg.seed, "model")))
            check_room(cfg, task, getattr(policy, "local", policy), source=str(run.path / "config.toml"))
            check_memory(cfg, task, getattr(policy, "local", policy), source=str(run.path / "config.toml"))
            echo(f"[init] {policy.num_params() / 1e6:.1f}M-parameter pretrained model from {cfg.policy.path} "
                 f"({cfg.policy.backend}; no SFT: init.sft.steps = 0)")
            run.save_checkpoint(policy, phase)
            result = {"train_tokens": 0, "final_loss": None, "params": policy.num_params(), "demos": 0,
                      "pretrained": cfg.policy.path, "skipped_data_lines": getattr(task, "skipped_lines", 0)}
        elif phase == "init":
            policy = place(make_policy(cfg, seed=stable_seed(cfg.seed, "model")))
            if cfg.policy.backend != "tiny":  # the built-in model was checked before the run (check_context)
                check_room(cfg, task, getattr(policy, "local", policy), source=str(run.path / "config.toml"))
            check_memory(cfg, task, getattr(policy, "local", policy), source=str(run.path / "config.toml"))
            demos = _demonstrations(cfg, task)
            kind = "transformer" if cfg.policy.backend == "tiny" else "model"
            echo(f"[init] {policy.num_params() / 1e6:.2f}M-parameter {kind}, SFT on {len(demos)} {task.name} "
                 f"demonstrations for {cfg.init.sft.steps} steps")
            probes = _convergence_probe(run, cfg, policy, task, test_problems)
            stats = train_sft(policy, demos, cfg.init.sft, seed=stable_seed(cfg.seed, phase), log=run.log,
                              phase=phase, progress=progress,
                              checkpointing=_checkpointing(run, policy, phase, cfg.checkpoint_every), probes=probes)
            run.save_checkpoint(policy, phase)
            result = {"train_tokens": stats["tokens"], "final_loss": stats["final_loss"],
                      "params": policy.num_params(), "demos": len(demos),
                      "skipped_data_lines": getattr(task, "skipped_lines", 0),
                      "probe": {**(run.load_phase_data("init_probe") or {}), "steps": cfg.init.sft.steps}}
        elif phase == "baseline":
            result = _baseline_phase(run, cfg, task, test_problems, place, progress, echo)
        elif phase == "reward":
            result = _reward_phase(run, cfg, policy, task, progress, echo)
        elif phase == "search":
            result = _search_phase(run, cfg, policy, task, progress)
            best = max(result["rows"], key=lambda r: r["accuracy"])
            echo(f"[search] {len(result['rows'])} method x size points; best {best['method']}@{best['size']} "
                 f"{best['accuracy']:.1%}")
        elif phase.startswith("eval_"):
            result = _eval_phase(run, cfg, policy, task, test_problems, phase, progress)
            echo(f"[{phase}] greedy accuracy {result['greedy_accuracy']:.1%}")
            if phase == "eval_init" and (conv := convergence({**run.state["results"], phase: result})):
                echo(convergence_line(conv))
        else:
            result = _learn_phase(run, cfg, policy, task, phase, progress, verifier)
            run.save_checkpoint(policy, phase)
            extra = (f"kept {result['kept']}, " if "kept" in result else "") + \
                (f"reward {result['reward_first']:.2f} -> {result['final_reward']:.2f}, " if "final_reward" in result
                 else "")
            echo(f"[{phase}] {cfg.learn.learner}: {extra}{result['sample_tokens']} tokens sampled, "
                 f"{result['train_tokens']} trained")
        spent = span.stop()
        run.log({"phase": phase, "step": -1, "event": "phase_done", "seconds": spent["seconds"],
                 "activities": {k: v for k, v in spent.items() if k != "seconds"}})
        run.finish_phase(phase, result)
    return run.state["results"]
