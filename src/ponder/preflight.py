"""Pre-flight: does everything a recipe will feed the model fit its context? Checked before any work.

A run that trains for fifteen minutes and then dies because a demonstration, a prompt or a generation
budget does not fit `model.max_seq_len` wastes the user's time and leaves a half-made run directory.
`check_context` measures, with the built-in tokenizer, what each phase will ask of the context:

- init SFT: BOS + prompt + demonstration + EOS, for the demonstrations `init.demos` draws;
- every phase that generates (eval, reward, search, the learner): BOS + prompt + that phase's
  `max_new_tokens`, for the problems the phase draws (its split and count);

and raises one `ConfigError` naming the key to change and the length needed. `check_memory` does the
same for an RL learner's activation budget (`memory_mb`) once the policy is built. Characters the built-in
tokenizer cannot encode are reported the same way, and so is a problem space too small for the count
a phase asks for (`init.demos = 20000` of a task with 1,000 distinct problems). Each phase's problems
are drawn in full and measured on at most `sample` of them (the lengths of a procedural task's
problems do not depend on the seed).

Only the built-in backend is checked before the run: a pretrained model's context and tokenizer are
only known once it is loaded. `check_room` makes the same generation checks on a loaded policy of any
backend (its `room` for each prompt), and the loop calls it right after loading a pretrained model,
before any sampling or training: without it, a backend would silently cut every completion at the end
of the context.
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.config import ConfigError, RunConfig
from ponder.policy.tokenizer import CharTokenizer
from ponder.tasks.base import Task, TaskError

SAMPLE = 2000
"""Most problems measured per use."""


@dataclass(frozen=True)
class Use:
    """One way a phase uses the context: its problems and how many tokens it generates after them."""

    what: str  # "eval prompts", ...
    key: str  # the max_new_tokens setting, e.g. "eval.max_new_tokens"
    count_key: str  # the setting of how many problems it draws, e.g. "eval.problems"
    split: str
    problems: int
    max_new_tokens: int


def uses(cfg: RunConfig) -> list[Use]:
    """What the recipe's phases generate after which problems, in the order the run meets them."""
    out = [Use("eval prompts", "eval.max_new_tokens", "eval.problems", "test", cfg.eval.problems,
               cfg.eval.max_new_tokens)]
    if cfg.reward.models:
        out.append(Use("reward-data prompts", "reward.max_new_tokens", "reward.problems", "train", cfg.reward.problems,
                       cfg.reward.max_new_tokens))
    if cfg.search.methods:
        out.append(Use("search prompts", "search.max_new_tokens", "search.problems", "test", cfg.search.problems,
                       cfg.search.max_new_tokens))
    learner = cfg.learn.learner_object
    if cfg.learn.rounds and (cap := learner.max_new_tokens(cfg.learn)) is not None:
        out.append(Use(f"{learner.name} prompts", f"learn.{learner.table}.max_new_tokens", "learn.problems", "train",
                       cfg.learn.problems, cap))
    return out


def _draw(task: Task, split: str, n: int, seed: int, key: str, source: str) -> list:
    """The problems a phase will draw, all of them (a task whose problem space is too small for `n`
    says so now, naming the setting), of which the caller measures the first few."""
    try:
        return task.problems(split, n, seed)
    except TaskError as e:
        raise ConfigError(f"{source}: {key} = {n}: {e}") from None


def _encoded_len(tok: CharTokenizer, text: str, what: str, source: str) -> int:
    try:
        return len(tok.encode(text))
    except ValueError as e:
        raise ConfigError(f"{source}: {what} cannot be used with the built-in character tokenizer: {e}") from None


def check_context(cfg: RunConfig, task: Task, *, source: str, sample: int = SAMPLE) -> None:
    """Raise ConfigError (one line, naming the key and the length needed) if anything the recipe will
    feed the built-in model does not fit `model.max_seq_len`; do nothing for other backends."""
    if cfg.policy.backend != "tiny":
        return
    tok, limit = CharTokenizer(), cfg.model.max_seq_len
    if not cfg.init.checkpoint:
        longest, count = 0, 0
        for p in _draw(task, "train", cfg.init.demos, cfg.seed, "init.demos", source)[:sample]:
            demo = task.demonstration(p)
            if demo is None:
                continue
            count += 1
            longest = max(longest, 2 + _encoded_len(tok, p.prompt + demo, "a demonstration", source))
        if count and longest > limit:
            raise ConfigError(f"{source}: model.max_seq_len = {limit} is too short for the {task.name} demonstrations: "
                              f"the longest takes {longest} tokens (BOS + prompt + trace + EOS); set "
                              f"model.max_seq_len >= {longest}")
    for use in uses(cfg):
        prompts = [p.prompt for p in _draw(task, use.split, use.problems, cfg.seed, use.count_key, source)[:sample]]
        if not prompts:
            continue
        longest = max(_encoded_len(tok, s, f"a {use.what[:-1]}", source) for s in prompts)
        need = 1 + longest + use.max_new_tokens
        if need > limit:
            room = limit - 1 - longest
            lower = (f"lower {use.key} to {room} or " if room > 0 else "")
            raise ConfigError(f"{source}: model.max_seq_len = {limit} is too short for {use.key} = "
                              f"{use.max_new_tokens}: the longest of the {use.what} takes {longest} tokens, so "
                              f"generating needs {need} (BOS + prompt + {use.max_new_tokens}); {lower}set "
                              f"model.max_seq_len >= {need}")


def check_room(cfg: RunConfig, task: Task, policy, *, source: str, sample: int = SAMPLE) -> None:
    """For a loaded pretrained policy (the built-in model has `check_context`): raise ConfigError (one line, naming the key) if a phase's `max_new_tokens` does not fit after the
    longest of its prompts in the loaded `policy`'s context (`policy.room`); for init's SFT, if a
    demonstration does not fit with its EOS."""
    limit = getattr(policy, "max_seq_len", None)
    context = f"the model's context ({limit} tokens)" if limit else "the model's context"
    wider = " or raise policy.max_seq_len, if the model supports a longer context than it states"
    if cfg.init.sft.steps and not cfg.init.checkpoint:
        for p in _draw(task, "train", cfg.init.demos, cfg.seed, "init.demos", source)[:sample]:
            demo = task.demonstration(p)
            if demo is not None and policy.room(p.prompt + demo) < 1:
                raise ConfigError(f"{source}: a {task.name} demonstration does not fit {context} with its EOS "
                                  f"(problem {p.id}); use a model with a longer context{wider}")
    for use in uses(cfg):
        prompts = [p.prompt for p in _draw(task, use.split, use.problems, cfg.seed, use.count_key, source)[:sample]]
        if not prompts:
            continue
        room = min(policy.room(s) for s in prompts)
        if room < use.max_new_tokens:
            lower = f"lower {use.key} to {room}" if room > 0 else "use shorter prompts"
            raise ConfigError(f"{source}: {use.key} = {use.max_new_tokens} does not fit {context}: the longest of "
                              f"the {use.what} leaves room for {max(room, 0)} new tokens, so its completions would be "
                              f"cut off; {lower}{wider}")


def check_memory(cfg: RunConfig, task: Task, policy, *, source: str, sample: int = SAMPLE) -> None:
    """Raise ConfigError naming `learn.<table>.memory_mb` when the learner's activation budget cannot hold
    even one of its longest rows (the longest training prompt, `max_new_tokens` and EOS), for a built
    policy of any backend: before any work, instead of a failure in the first learning round."""
    if not cfg.learn.rounds:
        return
    learner = cfg.learn.learner_object
    settings = learner.settings(cfg.learn)
    budget = getattr(settings, "memory_mb", 0) or 0
    if not budget:
        return
    from ponder.learn.memory import longest_row

    prompts = [p.prompt for p in _draw(task, "train", cfg.learn.problems, cfg.seed, "learn.problems", source)[:sample]]
    if not prompts:
        return
    tokens, need = longest_row(policy, prompts, settings.max_new_tokens)
    if need > budget:
        key = f"learn.{learner.table}"
        raise ConfigError(f"{source}: {key}.memory_mb = {budget:g} is too small: one sequence of up to {tokens} "
                          f"tokens (the longest training prompt + {key}.max_new_tokens + EOS) needs about {need:.1f} "
                          f"MiB of activations; raise {key}.memory_mb to at least {need:.1f} or lower "
                          f"{key}.max_new_tokens")
