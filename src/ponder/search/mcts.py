"""Monte Carlo tree search over solution steps (PUCT), batched across problems, with its trees kept for learners.

One tree per problem; a node is a partial solution and its children are candidate next steps. Each
simulation round picks one leaf per tree by PUCT, Q + c_puct * P * sqrt(N_parent) / (1 + N), where an
unvisited child's Q is its parent's mean value (or `fpu`) and ties go to the higher prior. A new leaf
is expanded by sampling `expansions` next steps in one `generate` call covering every tree. A child's
prior is exp(summed step log-probabilities) normalised among its siblings; samples with the same step
text merge into one child whose prior sums over the distinct token sequences that spell it (the same
sequence drawn twice counts once, so the prior estimates the policy's probability of the text rather
than how often it was drawn). The leaf is valued by the PRM (its prefix's aggregated step scores), by
a rollout from it to the end scored by `rollout_reward`, or by a mix of both; rollouts are a second
batched call and their tokens count in the cost. A finished node (EOS or an answer) is terminal and
valued by its outcome score, from `rollout_reward` when one is given and from the PRM's own `score`
otherwise (never the task's verifier); nodes at `max_steps` and dead ends (no complete step at the
full cap) are terminal too, and so is a node whose prompt leaves no room in the policy's context
(`policy.room` < 1; a root without room is never expanded). Each call's `max_new_tokens`, rollouts'
included, is capped by the largest room among its prompts, and a step cut at its prompt's room counts
as cut at the full cap. Values are backed up as running means along the path. Budgets follow
beam.py's rule; a tree that cannot afford its next round stops.

The answer is the most-visited path to a finished node: from the root, go to the most-visited child
(ties: higher Q, then prior) among those with a visited finished node below, down to that node.
Without one, the best-scoring finished rollout; else a finished node the budget left unvisited (the
child of the most-visited parent, score 0); else the end of the most-visited path (a partial).
The trees come back with visit counts, mean values, priors and step texts, and give step preference
pairs and per-step value targets for learners.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ponder.policy.base import Policy
from ponder.reward.base import AGGREGATIONS, OutcomeReward, ProcessReward
from ponder.reward.model import PreferencePair, RewardExample
from ponder.search.beam import (
    Ledger,
    check_budget,
    has_room,
    is_finished,
    path_sample,
    plan_call,
    prm_values,
    room_cap,
    seed_stream,
    worst_case,
)
from ponder.tasks.base import Task, split_steps
from ponder.types import Budget, Cost, Problem, Sample, Sampling, SearchResult

VALUES = ("prm", "rollout", "both")


@dataclass(frozen=True)
class MCTSConfig:
    """MCTS settings. `temperature` None uses the sampling's; `mix` weighs the rollout in value="both"."""

    simulations: int = 32
    c_puct: float = 1.0
    expansions: int = 4
    temperature: float | None = None
    max_steps: int = 16
    value: str = "prm"
    """Leaf value: "prm" (PRM of the leaf prefix), "rollout" (outcome of a rollout), or "both" mixed."""
    mix: float = 0.5
    score: str = "last"
    """How PRM step scores become a leaf value: last, min, product or mean."""
    fpu: float | None = None
    """PUCT value of an unvisited child: None for its parent's mean value, or a fixed number (with
    values in [0, 1], 1.0 tries every sampled step once before revisiting any)."""

    def __post_init__(self) -> None:
        for name in ("simulations", "expansions", "max_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"MCTSConfig.{name} must be an integer >= 1, got {v!r}")
        if not (math.isfinite(self.c_puct) and self.c_puct >= 0):
            raise ValueError(f"MCTSConfig.c_puct must be a finite number >= 0, got {self.c_puct!r}")
        if self.temperature is not None and not self.temperature >= 0:
            raise ValueError(f"MCTSConfig.temperature must be >= 0 or None, got {self.temperature!r}")
        if self.value not in VALUES:
            raise ValueError(f"MCTSConfig.value must be one of {', '.join(VALUES)}, got {self.value!r}")
        if not 0 <= self.mix <= 1:
            raise ValueError(f"MCTSConfig.mix must be in [0, 1], got {self.mix!r}")
        if self.fpu is not None and not math.isfinite(self.fpu):
            raise ValueError(f"MCTSConfig.fpu must be a finite number or None, got {self.fpu!r}")
        if self.score not in AGGREGATIONS:
            raise ValueError(f"MCTSConfig.score must be one of {', '.join(AGGREGATIONS)}, got {self.score!r}")


@dataclass(eq=False)
class Node:
    """A partial solution in a search tree: `text` is every step from the root (prompt excluded)."""

    step: str
    text: str
    prior: float = 1.0
    parent: Node | None = None
    samples: tuple[Sample, ...] = ()
    """The step samples from the root to here."""
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    value_sum: float = 0.0
    finished: bool = False
    terminal: bool = False
    expanded: bool = False
    outcome: float | None = None
    """Outcome score of a terminal node, once evaluated."""

    @property
    def q(self) -> float:
        """Mean backed-up value (0 before any visit)."""
        return self.value_sum / self.visits if self.visits else 0.0

    def path(self) -> list[Node]:
        """The nodes from the root down to this one."""
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]


@dataclass(eq=False)
class Tree:
    """One problem's search tree; `simulations` counts completed simulations (the root's visits)."""

    problem: Problem
    root: Node
    simulations: int = 0

    def nodes(self) -> Iterator[Node]:
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def preference_pairs(self, min_gap: float = 0.1, min_visits: int = 1) -> list[PreferencePair]:
        """Step preference pairs: at each node, its highest-Q child over its lowest-Q child (both with
        at least `min_visits` visits) when the gap is at least `min_gap`. The pair's prompt is the
        problem prompt plus the prefix; chosen and rejected are the two step texts."""
        pairs = []
        for node in self.nodes():
            kids = [c for c in node.children if c.visits >= min_visits]
            if len(kids) < 2:
                continue
            hi = max(kids, key=lambda c: (c.q, c.visits))
            lo = min(kids, key=lambda c: (c.q, -c.visits))
            if hi.q - lo.q >= min_gap:
                pairs.append(PreferencePair(prompt=self.problem.prompt + node.text, chosen=hi.step, rejected=lo.step))
        return pairs

    def value_examples(self, min_visits: int = 1) -> list[RewardExample]:
        """(prefix, value) examples for a value or process model: every non-root node with at least
        `min_visits` visits, its targets the Q of each node on its path (one per non-blank step)."""
        out = []
        for n in self.nodes():
            if n.parent is None or n.visits < min_visits:
                continue
            # a blank step (an empty sample) is no step of the text: it gets no target
            targets = tuple(p.q for p in n.path()[1:] if split_steps(p.step))
            if targets and len(targets) == len(split_steps(n.text)):
                out.append(RewardExample(prompt=self.problem.prompt, text=n.text, targets=targets))
        return out


def _select_leaf(root: Node, c_puct: float, fpu: float | None) -> Node:
    node = root
    while node.expanded and not node.terminal:
        scale, first = c_puct * math.sqrt(node.visits), node.q if fpu is None else fpu
        node = max(node.children, key=lambda ch: (ch.q if ch.visits else first) + scale * ch.prior / (1 + ch.visits))
    return node


def _expand(leaf: Node, samples: Sequence[Sample], task: Task, max_steps: int, full_cap: bool,
            room: Callable[[str], bool] = lambda text: True) -> None:
    """Children of `leaf` from its sampled steps (cut steps dropped, equal steps merged); `room(text)`
    says whether a child with that text can still be extended (else it is terminal)."""
    good = [s for s in samples if s.finish != "length"]
    if not good:
        leaf.terminal = full_cap  # a dead end, unless the cap was lowered by the budget
        return
    paths = {(s.text, s.token_ids): s for s in good}  # one draw of each token sequence counts once
    logp = {key: sum(s.logprobs) for key, s in paths.items()}
    top = max(logp.values())
    total = sum(math.exp(x - top) for x in logp.values())
    by_step: dict[str, Node] = {}
    depth = len(leaf.path())
    for s in good:
        if s.text not in by_step:
            text = leaf.text + s.text
            done = is_finished(task, text, s.finish)
            by_step[s.text] = Node(s.text, text, 0.0, leaf, leaf.samples + (s,), finished=done,
                                   terminal=done or depth >= max_steps or not room(text))
    for (text, _), x in logp.items():
        by_step[text].prior += math.exp(x - top) / total
    leaf.children = sorted(by_step.values(), key=lambda c: -c.prior)
    leaf.expanded = True


def _most_visited(node: Node, keep=lambda c: True) -> Node | None:
    kids = [c for c in node.children if c.visits and keep(c)]
    return max(kids, key=lambda c: (c.visits, c.q, c.prior)) if kids else None


def _answer_node(tree: Tree) -> Node | None:
    """End of the most-visited path to a visited finished node, or None when there is none."""
    good: set[int] = set()
    for n in tree.nodes():
        if n.finished and n.visits:
            good.update(id(p) for p in n.path())
    node = tree.root if id(tree.root) in good else None
    while node is not None and not node.finished:
        node = _most_visited(node, lambda c: id(c) in good)
    return node


def mcts(problems: Sequence[Problem], policy: Policy, prm: ProcessReward | None, task: Task, *, config: MCTSConfig,
         sampling: Sampling, rollout_reward: OutcomeReward | None = None, budget: Budget | None = None
         ) -> tuple[list[SearchResult], list[Tree]]:
    """Run `config.simulations` simulations per problem (fewer when the budget runs out) and return one
    SearchResult per problem, chosen as the module docstring says, with the trees. `sampling` gives
    top_p, the per-step token cap (rollouts get cap * remaining steps) and seed. Candidates are the
    finished tree nodes and finished rollouts, each one Sample of the full solution."""
    check_budget(budget)
    use_prm, use_roll = config.value in ("prm", "both"), config.value in ("rollout", "both")
    if use_prm and prm is None:
        raise ValueError(f"MCTSConfig.value={config.value!r} needs a process reward (prm)")
    if use_roll and rollout_reward is None:
        raise ValueError(f"MCTSConfig.value={config.value!r} needs a rollout_reward")
    judge = rollout_reward if rollout_reward is not None else prm
    if judge is None:
        raise ValueError("mcts needs a prm or a rollout_reward to value finished solutions")
    temperature = sampling.temperature if config.temperature is None else config.temperature
    trees = [Tree(p, Node("", "", terminal=not has_room(policy, p.prompt))) for p in problems]
    ledgers = [Ledger(budget) for _ in problems]
    finals: list[list[tuple[Sample, float]]] = [[] for _ in problems]  # finished rollouts and their scores
    seeds, cap0 = seed_stream(sampling.seed), sampling.max_new_tokens
    active = set(range(len(problems)))
    while active:
        active = {i for i in active if trees[i].simulations < config.simulations}
        leaves = {i: _select_leaf(trees[i].root, config.c_puct, config.fpu) for i in sorted(active)}
        judged = {i for i, n in leaves.items() if n.terminal and n.outcome is None}
        for i in [i for i in judged if not ledgers[i].fits(Cost(reward_calls=1))]:
            active.discard(i)
            leaves.pop(i)
            judged.discard(i)
        grow = {i: n for i, n in leaves.items() if not n.terminal}
        reward_need = {i: use_prm * bool(split_steps(n.text)) + use_roll for i, n in grow.items()}
        prompt = {i: trees[i].problem.prompt + n.text for i, n in grow.items()}

        def need(i: int, k: int, cap: int, prompt=prompt, reward_need=reward_need) -> Cost:
            roll = worst_case([prompt[i]], 1, 1) if use_roll else Cost()
            steps = worst_case([prompt[i]] * k, config.expansions, room_cap(policy, [prompt[i]], cap))
            return steps + roll + Cost(reward_calls=reward_need[i] * k)

        run, cap, last = plan_call(ledgers, {i: 1 for i in grow}, need, cap0)
        for i in grow:
            if last:
                active.discard(i)  # a reduced-cap round, or none at all, is a tree's last
            if i not in run:
                leaves.pop(i)
        order = sorted(run)
        if order:
            prompts = [prompt[i] for i in order]
            step = Sampling(n=config.expansions, temperature=temperature, top_p=sampling.top_p,
                            max_new_tokens=room_cap(policy, prompts, cap), stop_at_step=True, seed=next(seeds))
            for i, samples in zip(order, policy.generate(prompts, step)):
                ledgers[i].add(Cost.total(s.cost for s in samples))
                full = cap >= min(cap0, policy.room(prompt[i]))  # each sample had all the tokens it could
                _expand(grow[i], samples, task, config.max_steps, full,
                        lambda text, i=i: has_room(policy, trees[i].problem.prompt + text))
        w_roll = {"prm": 0.0, "rollout": 1.0, "both": config.mix}[config.value]
        values = {i: 0.0 for i in order}
        if use_prm and order:
            v, scored = prm_values(prm, config.score, [(trees[i].problem, grow[i].text) for i in order])
            for j in scored:
                ledgers[order[j]].add(Cost(reward_calls=1))
            values = {i: (1 - w_roll) * x for i, x in zip(order, v)}
        if use_roll and order:
            rolled = _rollouts(trees, ledgers, finals, policy, rollout_reward, task, order, grow, config,
                               temperature, sampling, next(seeds))
            values = {i: values[i] + w_roll * rolled[i] for i in order}
        if judged:
            jl = sorted(judged)
            scores = judge.score([trees[i].problem for i in jl], [leaves[i].text for i in jl])
            for i, s in zip(jl, scores):
                ledgers[i].add(Cost(reward_calls=1))
                leaves[i].outcome = float(s)
        for i, leaf in leaves.items():
            value = leaf.outcome if leaf.terminal and i not in run else values[i]
            for node in leaf.path():
                node.visits += 1
                node.value_sum += value
            trees[i].simulations += 1
    return [_result(t, led, fin, task) for t, led, fin in zip(trees, ledgers, finals)], trees


def _rollouts(trees, ledgers, finals, policy, reward, task, order, grow, config, temperature, sampling, seed
              ) -> dict[int, float]:
    """Roll each expanded leaf out to the end in one call (cap: the step cap times the steps left,
    lowered to the smallest allowance and to the largest room) and score the rollouts with `reward`."""
    prompts = {i: trees[i].problem.prompt + grow[i].text for i in order}
    want = sampling.max_new_tokens * max(config.max_steps - len(grow[i].path()) + 1 for i in order)
    cap = min(ledgers[i].most(want, lambda c, i=i: worst_case([prompts[i]], 1, room_cap(policy, [prompts[i]], c))
                              + Cost(reward_calls=1))
              for i in order)
    cap = room_cap(policy, list(prompts.values()), max(cap, 1))  # the plan reserved one token for every rollout
    roll = Sampling(n=1, temperature=temperature, top_p=sampling.top_p, max_new_tokens=cap, seed=seed)
    out = [g[0] for g in policy.generate([prompts[i] for i in order], roll)]
    texts = [grow[i].text + s.text for i, s in zip(order, out)]
    scores = reward.score([trees[i].problem for i in order], texts)
    for i, s, text, score in zip(order, out, texts, scores):
        ledgers[i].add(s.cost + Cost(reward_calls=1))
        if is_finished(task, text, s.finish):
            finals[i].append((path_sample(text, grow[i].samples + (s,)), float(score)))
    return {i: float(x) for i, x in zip(order, scores)}


def _result(tree: Tree, ledger: Ledger, finals: list[tuple[Sample, float]], task: Task) -> SearchResult:
    done = [n for n in tree.nodes() if n.finished]
    candidates = tuple(path_sample(n.text, n.samples) for n in done) + tuple(s for s, _ in finals)
    node = _answer_node(tree)
    if node is not None:
        text, score = node.text, node.outcome if node.outcome is not None else node.q
    elif finals:
        best = max(range(len(finals)), key=lambda j: (finals[j][1], -j))
        text, score = finals[best][0].text, finals[best][1]
    elif done:  # finished steps the budget left unevaluated: the one the search stood closest to
        node = max(done, key=lambda n: (n.parent.visits, n.parent.q, n.prior))
        text, score = node.text, node.q
    else:
        node = tree.root
        while (nxt := _most_visited(node)) is not None:
            node = nxt
        text, score = node.text, node.q
    return SearchResult(problem_id=tree.problem.id, text=text, answer=task.extract_answer(text), score=score,
                        cost=ledger.cost, candidates=candidates)
