"""Step-level beam search guided by a process reward model, and the machinery DVTS and MCTS share.

A partial solution is a run of steps, each ending in a newline; the policy extends it one step at a
time (`Sampling(stop_at_step=True)`) from the prompt `problem.prompt + partial`. Every round makes
one batched `generate` call covering the active beams of all problems, scores the children with the
process reward, and keeps the best. A child is finished when its step ended at EOS or its text
holds an answer (`task.extract_answer` is not None); a step cut at the token cap ("length") is a
dead end and is dropped.

Context length: a partial solution whose prompt leaves no room to generate (`policy.room(prompt)` < 1)
is finished whatever its text: kept as a candidate if it holds an answer, else a dead end that is never
expanded (nor rolled out by lookahead). A problem whose own prompt has no room is not searched at all.
Each call's `max_new_tokens` is also capped by the largest room among its prompts, and the budget's
worst case counts each problem's prompts at that lower cap.

Budget rule (shared by every step-level searcher; the budget is per problem). Before each call the
searcher bounds what the call can possibly report for a problem, `worst_case`:
  tokens_generated <= rows * max_new_tokens, policy_calls <= rows * (max_new_tokens + 1) (one forward
  pass per generated token plus a prefill per sample), tokens_encoded <= n * sum(utf-8 bytes of the
  prompt + 1) (no tokenizer makes more tokens than bytes, plus one for BOS; n copies in case the
  engine encodes every sample's prompt), where rows = prompts * n;
plus the reward calls the round will need for scoring. A problem joins a call with as many of its
best prompts as fit that worst case at the full step cap. When no problem can afford even one prompt
at the full cap, those that can afford one at some lower cap get a last round at the smallest such
cap, and then stop. Lookahead and rollout calls lower their cap the same way. FLOPs cannot be bounded
before a call, so a budget that caps them is refused (ValueError). A search cut short by its budget
returns its best finished candidate, or else its best partial one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ponder.policy.base import Policy
from ponder.reward.base import AGGREGATIONS, ProcessReward, aggregate
from ponder.search.best_of_n import select_best
from ponder.search.voting import weighted_vote
from ponder.tasks.base import Task, split_steps
from ponder.types import Budget, Cost, Problem, Sample, Sampling, SearchResult

SELECTIONS = ("score", "weighted_vote")


def check_settings(obj: object, name: str) -> None:
    """Validate the fields a step-search config may have; the ValueError names the field."""
    for f in ("width", "expansions", "max_steps", "subtrees", "simulations"):
        v = getattr(obj, f, 1)
        if v is None and f == "subtrees":
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}.{f} must be an integer >= 1, got {v!r}")
    lookahead = getattr(obj, "lookahead", 0)
    if not isinstance(lookahead, int) or lookahead < 0:
        raise ValueError(f"{name}.lookahead must be an integer >= 0, got {lookahead!r}")
    if getattr(obj, "score", "last") not in AGGREGATIONS:
        raise ValueError(f"{name}.score must be one of {', '.join(AGGREGATIONS)}, got {obj.score!r}")
    if getattr(obj, "select", "score") not in SELECTIONS:
        raise ValueError(f"{name}.select must be one of {', '.join(SELECTIONS)}, got {obj.select!r}")


@dataclass(frozen=True)
class BeamConfig:
    """Beam search settings: `width` beams, each expanded into `expansions` children per step."""

    width: int = 4
    expansions: int = 4
    max_steps: int = 16
    score: str = "last"
    """How a child's PRM step scores become one value: last, min, product or mean."""
    select: str = "score"
    """Final choice among finished candidates: best value ("score") or "weighted_vote" by value."""
    lookahead: int = 0
    """Score a child after rolling it out this many more steps greedily (0: score the child itself)."""

    def __post_init__(self) -> None:
        check_settings(self, "BeamConfig")


# -- budget ---------------------------------------------------------------------------------------


def check_budget(budget: Budget | None) -> None:
    if budget is not None and budget.flops is not None:
        raise ValueError("Budget.flops cannot be enforced by step-level search (a call's FLOPs are unknown "
                         "before it runs); cap tokens_generated, tokens_encoded or policy_calls instead")


def room_cap(policy: Policy, prompts: Sequence[str], cap: int) -> int:
    """`cap` lowered to the largest room among `prompts` (no sample of them can generate more); `cap`
    itself when there are no prompts."""
    return min(cap, max((policy.room(p) for p in prompts), default=cap))


def has_room(policy: Policy, prompt: str) -> bool:
    """Whether the policy can generate at least one token after `prompt`."""
    return policy.room(prompt) >= 1


def worst_case(prompts: Sequence[str], n: int, cap: int) -> Cost:
    """The most a `generate(prompts, n=n, max_new_tokens=cap)` call can report (module docstring)."""
    rows = len(prompts) * n
    return Cost(tokens_generated=rows * cap, tokens_encoded=n * sum(len(p.encode()) + 1 for p in prompts),
                policy_calls=rows * (cap + 1))


class Ledger:
    """One problem's spending so far against its budget."""

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget
        self.cost = Cost()

    def add(self, cost: Cost) -> None:
        self.cost = self.cost + cost

    def fits(self, extra: Cost) -> bool:
        return self.budget is None or self.budget.allows(self.cost + extra)

    def most(self, limit: int, need: Callable[[int], Cost]) -> int:
        """Largest x in [0, limit] with `fits(need(x))`, for `need` growing with x (need(0) is free)."""
        lo, hi = 0, limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.fits(need(mid)) else (lo, mid - 1)
        return lo


def plan_call(ledgers: Sequence[Ledger], wants: dict[int, int], need: Callable[[int, int, int], Cost], cap: int
              ) -> tuple[dict[int, int], int, bool]:
    """Who joins a call and at what cap: `wants` maps problem -> prompts it would send (best first),
    `need(i, k, cap)` is problem i's worst case for its first k. Returns (problem -> prompts sent,
    cap, last): `last` marks a reduced-cap round for problems that cannot afford the full cap."""
    full = {i: k for i, m in wants.items() if (k := ledgers[i].most(m, lambda k, i=i: need(i, k, cap)))}
    if full or not wants:
        return full, cap, False
    allow = {i: a for i in wants if (a := ledgers[i].most(cap, lambda c, i=i: need(i, 1, c)))}
    return {i: 1 for i in allow}, min(allow.values(), default=cap), True


def seed_stream(seed: int | None) -> Iterator[int | None]:
    """Per-call seeds: None throughout, or seed, seed + 1, ... so no two calls repeat their draws."""
    return itertools.repeat(None) if seed is None else itertools.count(seed)


# -- shared pieces ----------------------------------------------------------------------------------


def path_sample(text: str, samples: Sequence[Sample]) -> Sample:
    """One Sample for a solution built from step samples: full text, tokens and logprobs joined, the
    last step's finish, and the steps' summed cost (shared prefixes count in every candidate)."""
    return Sample(text=text, token_ids=tuple(t for s in samples for t in s.token_ids),
                  logprobs=tuple(x for s in samples for x in s.logprobs),
                  finish=samples[-1].finish if samples else "eos", cost=Cost.total(s.cost for s in samples))


def is_finished(task: Task, text: str, finish: str) -> bool:
    return finish == "eos" or task.extract_answer(text) is not None


def prm_values(prm: ProcessReward, how: str, items: Sequence[tuple[Problem, str]]) -> tuple[list[float], list[int]]:
    """Aggregated PRM value of each (problem, text) in one batched call, and which items were scored:
    a text with no steps is worth 0 and costs no call."""
    scored = [j for j, (_, t) in enumerate(items) if split_steps(t)]
    values = [0.0] * len(items)
    if scored:
        steps = prm.step_scores([items[j][0] for j in scored], [items[j][1] for j in scored])
        for j, s in zip(scored, steps):
            values[j] = aggregate(s, how)
    return values, scored


@dataclass
class Beam:
    """A partial or finished solution in a step search."""

    text: str
    samples: tuple[Sample, ...] = ()
    value: float = 0.0
    group: int = 0
    finished: bool = False
    dead: bool = False
    """No answer and no room left in the context: never expanded again."""


@dataclass
class _State:
    problem: Problem
    ledger: Ledger
    groups: dict[int, list[Beam]]
    finished: list[Beam]
    partial: Beam | None = None
    depth: int = 0
    done: bool = False

    def ranked(self) -> list[Beam]:
        return sorted((b for g in self.groups.values() for b in g), key=lambda b: -b.value)


def run_step_search(problems: Sequence[Problem], policy: Policy, prm: ProcessReward, task: Task, *, width: int,
                    expansions: int, max_steps: int, how: str, lookahead: int, sampling: Sampling,
                    budget: Budget | None, group_width: int, split_first: int = 0) -> list[_State]:
    """The beam loop. Round one expands the root `width` times; each later round expands every beam.
    Children are ranked by value within their group and each group keeps its `group_width` best;
    with `split_first`, the first round's best `split_first` distinct children each start a group."""
    check_budget(budget)
    states = [_State(p, Ledger(budget), {0: [Beam("")] * width}, []) for p in problems]
    for st in states:
        if not has_room(policy, st.problem.prompt):  # nothing can be generated: no search at all
            st.groups, st.done = {}, True
    seeds = seed_stream(sampling.seed)
    while True:
        wants = {i: sum(map(len, s.groups.values())) for i, s in enumerate(states)
                 if not s.done and s.groups and s.depth < max_steps}
        if not wants:
            return states

        def need(i: int, k: int, cap: int) -> Cost:
            prompts = [states[i].problem.prompt + b.text for b in states[i].ranked()[:k]]
            return worst_case(prompts, expansions, room_cap(policy, prompts, cap)) + Cost(reward_calls=k * expansions)

        run, cap, last = plan_call([s.ledger for s in states], wants, need, sampling.max_new_tokens)
        for i in wants:
            states[i].done = last  # a reduced-cap round is a problem's last; no round at all ends it too
        batch = [(i, b) for i, k in run.items() for b in states[i].ranked()[:k]]
        if not batch:
            continue
        prompts = [states[i].problem.prompt + b.text for i, b in batch]
        step = Sampling(n=expansions, temperature=sampling.temperature, top_p=sampling.top_p,
                        max_new_tokens=room_cap(policy, prompts, cap), stop_at_step=True, seed=next(seeds))
        groups = policy.generate(prompts, step)
        children: dict[int, dict[str, Beam]] = {i: {} for i in run}
        for (i, parent), samples in zip(batch, groups):
            for s in samples:
                states[i].ledger.add(s.cost)
                text = parent.text + s.text
                if s.finish != "length" and text not in children[i]:
                    child = Beam(text, parent.samples + (s,), group=parent.group,
                                 finished=is_finished(task, text, s.finish))
                    child.dead = not child.finished and not has_room(policy, states[i].problem.prompt + text)
                    children[i][text] = child
        kids = [(i, c) for i in run for c in children[i].values()]
        judged = _lookahead(states, policy, task, kids, lookahead, sampling, seeds) if lookahead else {}
        values, scored = prm_values(prm, how, [(states[i].problem, judged.get(id(c), c.text)) for i, c in kids])
        for j in scored:
            states[kids[j][0]].ledger.add(Cost(reward_calls=1))
        for (i, c), v in zip(kids, values):
            c.value = v
        for i in run:
            _select(states[i], list(children[i].values()), group_width, split_first)


def _select(st: _State, children: list[Beam], group_width: int, split_first: int) -> None:
    """Finished children join the pool; each group keeps the live ones among its best `group_width`."""
    st.depth += 1
    st.finished += [c for c in children if c.finished]
    for c in children:  # a dead end can still be the best partial solution
        if not c.finished and (st.partial is None or c.value > st.partial.value):
            st.partial = c
    ranked = sorted(children, key=lambda c: -c.value)
    if split_first and st.depth == 1:
        seeds = ranked[:split_first]
        for g, c in enumerate(seeds):
            c.group = g
        st.groups = {c.group: [c] for c in seeds if not (c.finished or c.dead)}
        return
    st.groups, taken = {}, {}
    for c in ranked:
        taken[c.group] = taken.get(c.group, 0) + 1
        if taken[c.group] <= group_width and not (c.finished or c.dead):
            st.groups.setdefault(c.group, []).append(c)


def _lookahead(states: list[_State], policy: Policy, task: Task, kids: list[tuple[int, Beam]], k: int,
               sampling: Sampling, seeds: Iterator[int | None]) -> dict[int, str]:
    """Roll each live child out up to `k` more steps greedily; returns id(child) -> text to score.
    Each step is one batched call; a child stops at a finished or cut step, when its prompt has no
    room left, or when out of budget."""
    texts = {id(c): c.text for _, c in kids if not c.finished}
    rolling = [(i, c) for i, c in kids if not (c.finished or c.dead)]
    pending = {i: sum(1 for j, _ in kids if j == i) for i, _ in kids}  # reward calls still to come
    for _ in range(k):
        by_problem: dict[int, list[Beam]] = {}
        for i, c in rolling:
            by_problem.setdefault(i, []).append(c)

        def need(i: int, n: int, cap: int, by_problem=by_problem) -> Cost:
            prompts = [states[i].problem.prompt + texts[id(c)] for c in by_problem[i][:n]]
            return worst_case(prompts, 1, room_cap(policy, prompts, cap)) + Cost(reward_calls=pending[i])

        run, cap, _ = plan_call([s.ledger for s in states], {i: len(v) for i, v in by_problem.items()}, need,
                                sampling.max_new_tokens)
        batch = [(i, c) for i, n in run.items() for c in by_problem[i][:n]]
        if not batch:
            break
        prompts = [states[i].problem.prompt + texts[id(c)] for i, c in batch]
        greedy = Sampling(n=1, temperature=0.0, max_new_tokens=room_cap(policy, prompts, cap), stop_at_step=True,
                          seed=next(seeds))
        out = policy.generate(prompts, greedy)
        rolling = []
        for (i, c), (s,) in zip(batch, out):
            states[i].ledger.add(s.cost)
            if s.finish != "length":
                text = texts[id(c)] = texts[id(c)] + s.text
                if not is_finished(task, text, s.finish) and has_room(policy, states[i].problem.prompt + text):
                    rolling.append((i, c))
    return texts


def results(states: Sequence[_State], task: Task, select: str) -> list[SearchResult]:
    """One SearchResult per problem: the chosen finished candidate (by value, or by value-weighted
    vote and then the best-valued candidate of the winning answer), else the best partial beam.
    `candidates` are all finished beams, each as one Sample of the full solution (`path_sample`)."""
    out = []
    for st in states:
        pool = st.finished
        if pool:
            values = [b.value for b in pool]
            best = select_best(values)
            if select == "weighted_vote":
                answers = [task.extract_answer(b.text) for b in pool]
                w = weighted_vote(answers, values)
                if w is not None:
                    best = max((j for j in range(len(pool)) if answers[j] == answers[w]), key=lambda j: (values[j], -j))
            chosen = pool[best]
        else:
            chosen = st.partial or Beam("")
        out.append(SearchResult(problem_id=st.problem.id, text=chosen.text, answer=task.extract_answer(chosen.text),
                                score=chosen.value, cost=st.ledger.cost,
                                candidates=tuple(path_sample(b.text, b.samples) for b in pool)))
    return out


def beam_search(problems: Sequence[Problem], policy: Policy, prm: ProcessReward, task: Task, *, config: BeamConfig,
                sampling: Sampling, budget: Budget | None = None) -> list[SearchResult]:
    """Step-level beam search: keep `config.width` beams ranked by PRM value, expand each into
    `config.expansions` next steps per round. `sampling` gives temperature, top_p, the per-step token
    cap (max_new_tokens) and seed; its n and stop_at_step are ignored."""
    states = run_step_search(problems, policy, prm, task, width=config.width, expansions=config.expansions,
                             max_steps=config.max_steps, how=config.score, lookahead=config.lookahead,
                             sampling=sampling, budget=budget, group_width=config.width)
    return results(states, task, config.select)
