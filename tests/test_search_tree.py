"""Tests of the step-level searchers (beam search, DVTS, MCTS) on a scripted step policy and table rewards:
argmax found, widths respected, budgets never exceeded, costs exact, trees usable by learners."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted import StepScriptPolicy, TableReward

from ponder.reward.model import PreferencePair
from ponder.search import BeamConfig, DVTSConfig, MCTSConfig, beam_search, dvts, mcts
from ponder.tasks.arithmetic import Arithmetic
from ponder.tasks.base import split_steps
from ponder.types import Budget, Cost, Problem, Sampling

TASK = Arithmetic()
P1, P2 = Problem("p1", "Q1:\n", "3"), Problem("p2", "Q2:\n", "3")
STEP = Sampling(temperature=1.0, max_new_tokens=8)

# a: looks fine, ends badly; b: best first step, and b -> b2 -> "A: 3" is the best solution
SPEC = {
    "": [("a\n", 0.6), ("b\n", 0.3), ("c\n", 0.1)],
    "a\n": [("A: 1\n", 1.0)],
    "b\n": [("b2\n", 0.5), ("A: 2\n", 0.5)],
    "b\nb2\n": [("A: 3\n", 1.0)],
    "c\n": [("A: 4\n", 1.0)],
}
TABLE = {"a\n": 0.5, "b\n": 0.7, "c\n": 0.2, "a\nA: 1\n": 0.3, "b\nA: 2\n": 0.4, "b\nb2\n": 0.8,
         "b\nb2\nA: 3\n": 0.9, "c\nA: 4\n": 0.1}


def script(spec: dict, problems=(P1, P2)) -> dict:
    return {p.prompt + k: v for p in problems for k, v in spec.items()}


class Recording(StepScriptPolicy):
    """The scripted policy, also keeping every call's samples."""

    def __init__(self, spec: dict, seed: int = 0, problems=(P1, P2)) -> None:
        super().__init__(script(spec, problems), seed=seed)
        self.outputs = []

    def generate(self, prompts, sampling):
        out = super().generate(prompts, sampling)
        self.outputs.append(out)
        return out

    def spent(self, problem: Problem) -> Cost:
        return Cost.total(s.cost for (prompts, _), out in zip(self.calls, self.outputs)
                          for p, group in zip(prompts, out) if p.startswith(problem.prompt) for s in group)


class Counting(TableReward):
    """The table reward, also counting texts scored per problem."""

    def __init__(self, table: dict, default: float = 0.0) -> None:
        super().__init__(table, default)
        self.per_problem: dict[str, int] = {}

    def _count(self, problems):
        for p in problems:
            self.per_problem[p.id] = self.per_problem.get(p.id, 0) + 1

    def score(self, problems, texts):
        self._count(problems)
        return super().score(problems, texts)

    def step_scores(self, problems, texts):
        self._count(problems)
        return super().step_scores(problems, texts)


def check_costs(results, policy: Recording, *rewards: Counting) -> None:
    """Each problem's cost is exactly its samples' costs plus the texts scored for it."""
    for problem, r in zip((P1, P2), results):
        calls = sum(rw.per_problem.get(problem.id, 0) for rw in rewards)
        assert r.cost == policy.spent(problem) + Cost(reward_calls=calls)


def expansion_calls(policy: Recording):
    return [(prompts, s) for prompts, s in policy.calls if s.stop_at_step and s.temperature > 0]


# -- beam search ----------------------------------------------------------------------------------


def test_beam_search_finds_argmax_batches_and_respects_width():
    policy, prm = Recording(SPEC, seed=1), Counting(TABLE)
    config = BeamConfig(width=2, expansions=4)
    results = beam_search([P1, P2], policy, prm, TASK, config=config, sampling=STEP)
    for r in results:
        assert (r.text, r.answer, r.score) == ("b\nb2\nA: 3\n", "3", 0.9)
        assert r.text in [c.text for c in r.candidates]
        assert all(c.finish in ("eos", "step") and TASK.extract_answer(c.text) for c in r.candidates)
    calls = expansion_calls(policy)
    assert len(calls) == len(policy.calls) == 3  # one batched call per round, both problems in it
    assert calls[0][0] == [P1.prompt] * 2 + [P2.prompt] * 2  # the root expanded `width` times
    for prompts, sampling in calls:
        assert sampling.n == 4 and sampling.stop_at_step and sampling.max_new_tokens == 8
        for p in (P1, P2):
            assert 1 <= sum(x.startswith(p.prompt) for x in prompts) <= 2
    check_costs(results, policy, prm)
    assert sum(r.cost.reward_calls for r in results) == prm.calls


def test_beam_candidate_samples_join_steps():
    policy, prm = Recording(SPEC, seed=1), Counting(TABLE)
    (r, _) = beam_search([P1, P2], policy, prm, TASK, config=BeamConfig(width=2, expansions=4), sampling=STEP)
    best = next(c for c in r.candidates if c.text == r.text)
    assert best.token_ids == tuple(ord(ch) for ch in r.text) and len(best.logprobs) == len(r.text)
    assert best.cost.tokens_generated == len(r.text) and best.cost.policy_calls == 3


@pytest.mark.parametrize("how, expected", [("last", 0.9), ("min", 0.7), ("mean", pytest.approx(0.8))])
def test_beam_score_aggregation(how, expected):
    r, _ = beam_search([P1, P2], Recording(SPEC, seed=1), Counting(TABLE), TASK,
                       config=BeamConfig(width=3, expansions=4, score=how), sampling=STEP)
    assert r.text == "b\nb2\nA: 3\n" and r.score == expected


def test_weighted_vote_prefers_agreeing_candidates():
    spec = {"": [("p\n", 1 / 3), ("q\n", 1 / 3), ("r\n", 1 / 3)], "p\n": [("A: 1\n", 1.0)], "q\n": [("A: 1\n", 1.0)],
            "r\n": [("A: 2\n", 1.0)]}
    table = {"p\n": 0.5, "q\n": 0.5, "r\n": 0.5, "p\nA: 1\n": 0.4, "q\nA: 1\n": 0.45, "r\nA: 2\n": 0.7}
    by_score, _ = beam_search([P1, P2], Recording(spec, seed=1), Counting(table), TASK,
                              config=BeamConfig(width=3, expansions=6), sampling=STEP)
    by_vote, _ = beam_search([P1, P2], Recording(spec, seed=1), Counting(table), TASK,
                             config=BeamConfig(width=3, expansions=6, select="weighted_vote"), sampling=STEP)
    assert (by_score.answer, by_score.score) == ("2", 0.7)
    assert (by_vote.answer, by_vote.text, by_vote.score) == ("1", "q\nA: 1\n", 0.45)  # best of the winning answer


def test_lookahead_sees_past_a_good_looking_step():
    spec = {"": [("a\n", 0.5), ("b\n", 0.5)], "a\n": [("a2\n", 1.0)], "b\n": [("b2\n", 1.0)],
            "a\na2\n": [("A: 1\n", 1.0)], "b\nb2\n": [("A: 2\n", 1.0)]}
    table = {"a\n": 0.9, "b\n": 0.1, "a\na2\n": 0.1, "b\nb2\n": 0.9, "a\na2\nA: 1\n": 0.2, "b\nb2\nA: 2\n": 0.8}
    plain, _ = beam_search([P1, P2], Recording(spec), Counting(table), TASK,
                           config=BeamConfig(width=1, expansions=8), sampling=STEP)
    policy, prm = Recording(spec), Counting(table)
    results = beam_search([P1, P2], policy, prm, TASK, config=BeamConfig(width=1, expansions=8, lookahead=1),
                          sampling=STEP)
    assert plain.answer == "1" and results[0].answer == "2"
    rollouts = [s for _, s in policy.calls if s.temperature == 0]
    assert rollouts and all(s.n == 1 and s.stop_at_step for s in rollouts)
    check_costs(results, policy, prm)  # the lookahead's tokens are in the cost


def test_partial_return_when_budget_runs_out():
    policy, prm = Recording(SPEC, seed=5), Counting(TABLE)
    budget = Budget(reward_calls=5)  # one round of 4 children fits, a second does not
    results = beam_search([P1, P2], policy, prm, TASK, config=BeamConfig(width=1, expansions=4), sampling=STEP,
                          budget=budget)
    assert len(policy.calls) == 1
    for p, r, group in zip((P1, P2), results, policy.outputs[0]):
        assert r.candidates == () and r.answer is None
        assert r.text == max((s.text for s in group), key=TABLE.__getitem__) and r.score == TABLE[r.text]
        assert budget.allows(r.cost)
    check_costs(results, policy, prm)


def test_no_budget_for_anything_returns_empty_partial():
    results = beam_search([P1, P2], Recording(SPEC), Counting(TABLE), TASK, config=BeamConfig(), sampling=STEP,
                          budget=Budget(tokens_generated=0))
    assert [(r.text, r.answer, r.score, r.cost) for r in results] == [("", None, 0.0, Cost())] * 2


# -- DVTS -----------------------------------------------------------------------------------------

SPEC_D = {"": [("a\n", 0.5), ("b\n", 0.5)], "a\n": [("a1\n", 0.5), ("a2\n", 0.5)],
          "b\n": [("b1\n", 0.5), ("b2\n", 0.5)], **{f"{x}\n{x}{k}\n": [(f"A: {k}\n", 1.0)] for x in "ab" for k in "12"}}
TABLE_D = {"a\n": 0.6, "b\n": 0.5, "a\na1\n": 0.9, "a\na2\n": 0.8, "b\nb1\n": 0.3, "b\nb2\n": 0.2,
           "a\na1\nA: 1\n": 0.9, "a\na2\nA: 2\n": 0.8, "b\nb1\nA: 1\n": 0.3, "b\nb2\nA: 2\n": 0.2}


def first_steps_in_round(policy: Recording, k: int, problem: Problem) -> list[str]:
    prompts, _ = expansion_calls(policy)[k]
    return [split_steps(p[len(problem.prompt):])[0] for p in prompts if p.startswith(problem.prompt)]


def test_dvts_subtrees_keep_distinct_first_steps():
    policy, prm = Recording(SPEC_D, seed=2), Counting(TABLE_D)
    results = dvts([P1, P2], policy, prm, TASK, config=DVTSConfig(width=2, expansions=4), sampling=STEP)
    for p in (P1, P2):
        assert sorted(first_steps_in_round(policy, 1, p)) == ["a", "b"]
        assert sorted(first_steps_in_round(policy, 2, p)) == ["a", "b"]  # one greedy beam per subtree
    for r in results:
        assert r.answer == "1" and r.score == 0.9
        assert {c.text.split("\n")[0] for c in r.candidates} == {"a", "b"}
    assert all(sum(x.startswith(P1.prompt) for x in prompts) <= 2 for prompts, _ in policy.calls[1:])
    check_costs(results, policy, prm)
    beam = Recording(SPEC_D, seed=2)  # beam search with the same width crowds into subtree a
    beam_search([P1, P2], beam, Counting(TABLE_D), TASK, config=BeamConfig(width=2, expansions=4), sampling=STEP)
    assert first_steps_in_round(beam, 2, P1) == ["a", "a"]


def test_dvts_wider_subtrees_and_config_errors():
    results = dvts([P1, P2], Recording(SPEC), Counting(TABLE), TASK,
                   config=DVTSConfig(width=4, subtrees=2, expansions=3), sampling=STEP)
    assert all(r.answer == "3" for r in results)
    with pytest.raises(ValueError, match="DVTSConfig.subtrees"):
        DVTSConfig(width=4, subtrees=3)
    with pytest.raises(ValueError, match="DVTSConfig.expansions"):
        DVTSConfig(expansions=0)


@pytest.mark.parametrize("kwargs, field", [({"width": 0}, "width"), ({"max_steps": -1}, "max_steps"),
                                           ({"lookahead": -1}, "lookahead"), ({"score": "max"}, "score"),
                                           ({"select": "vote"}, "select")])
def test_beam_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=f"BeamConfig.{field}"):
        BeamConfig(**kwargs)


def test_flops_budget_refused():
    with pytest.raises(ValueError, match="flops"):
        beam_search([P1], Recording(SPEC), Counting(TABLE), TASK, config=BeamConfig(), sampling=STEP,
                    budget=Budget(flops=1e9))


# -- MCTS -----------------------------------------------------------------------------------------

ARMS = {"": [("A: 1\n", 0.4), ("A: 2\n", 0.3), ("A: 3\n", 0.2), ("A: 4\n", 0.1)]}
ARM_REWARD = {"A: 1\n": 0.3, "A: 2\n": 0.5, "A: 3\n": 0.2, "A: 4\n": 1.0}
# x looks better (prior and PRM) but the best leaf is under y
TWO = {"": [("x\n", 0.7), ("y\n", 0.3)], "x\n": [("A: 1\n", 0.5), ("A: 2\n", 0.5)],
       "y\n": [("A: 3\n", 0.3), ("A: 4\n", 0.7)]}
TWO_TABLE = {"x\n": 0.8, "y\n": 0.4, "x\nA: 1\n": 0.5, "x\nA: 2\n": 0.4, "y\nA: 3\n": 1.0, "y\nA: 4\n": 0.3}


def test_mcts_bandit_finds_low_prior_best_arm():
    covered = 0
    for seed in range(10):
        (r,), (tree,) = mcts([P1], Recording(ARMS, seed, (P1,)), Counting(ARM_REWARD), TASK,
                             config=MCTSConfig(simulations=30, expansions=16), sampling=STEP)
        arms = {c.step: c for c in tree.root.children}
        assert sum(c.prior for c in arms.values()) == pytest.approx(1.0)
        if "A: 4\n" in arms:  # the best arm was among the sampled steps
            covered += 1
            assert (r.answer, r.score) == ("4", 1.0)
            assert max(arms.values(), key=lambda c: c.visits).step == "A: 4\n"
            assert arms["A: 4\n"].prior == pytest.approx(0.1 / sum(ARMS[""][i][1] for i in range(4)
                                                                   if ARMS[""][i][0] in arms))
    assert covered >= 5


def test_mcts_goes_through_a_mediocre_first_step():
    covered = 0
    for seed in range(10):
        (r,), (tree,) = mcts([P1], Recording(TWO, seed, (P1,)), Counting(TWO_TABLE), TASK,
                             config=MCTSConfig(simulations=100, expansions=8), sampling=STEP)
        if any(n.text == "y\nA: 3\n" for n in tree.nodes()):
            covered += 1
            assert (r.text, r.answer, r.score) == ("y\nA: 3\n", "3", 1.0)
    assert covered >= 5


def test_mcts_visits_batching_costs_and_learner_data():
    policy, prm = Recording(TWO, seed=1), Counting(TWO_TABLE)
    results, trees = mcts([P1, P2], policy, prm, TASK, config=MCTSConfig(simulations=50, expansions=4),
                          sampling=STEP)
    for tree in trees:
        assert tree.simulations == tree.root.visits == 50
        for node in tree.nodes():
            if node.expanded:  # visited once as a leaf, then through its children
                assert node.visits == 1 + sum(c.visits for c in node.children)
            assert node.q == pytest.approx(node.value_sum / node.visits if node.visits else 0.0)
    for prompts, sampling in policy.calls:
        assert sampling.n == 4 and sampling.stop_at_step
        assert all(sum(x.startswith(p.prompt) for x in prompts) <= 1 for p in (P1, P2))
    check_costs(results, policy, prm)
    tree = trees[0]
    pairs = tree.preference_pairs(min_gap=0.05)
    assert pairs and all(isinstance(p, PreferencePair) for p in pairs)
    for pair in pairs:
        parent = next(n for n in tree.nodes() if P1.prompt + n.text == pair.prompt)
        qs = {c.step: c.q for c in parent.children if c.visits}
        assert qs[pair.chosen] == max(qs.values()) and qs[pair.rejected] == min(qs.values())
        assert qs[pair.chosen] - qs[pair.rejected] >= 0.05
    assert tree.preference_pairs(min_gap=2.0) == []
    examples = tree.value_examples()
    assert examples and len(examples) == sum(1 for n in tree.nodes() if n.parent and n.visits)
    for ex in examples:
        node = next(n for n in tree.nodes() if n.text == ex.text)
        assert ex.prompt == P1.prompt and len(ex.targets) == len(split_steps(ex.text)) and ex.targets[-1] == node.q


@pytest.mark.parametrize("value", ["rollout", "both"])
def test_mcts_rollout_values(value):
    policy, prm, outcome = Recording(TWO, seed=4), Counting(TWO_TABLE), Counting(TWO_TABLE)
    results, _ = mcts([P1, P2], policy, prm if value == "both" else None, TASK, sampling=STEP,
                      config=MCTSConfig(simulations=60, expansions=8, value=value), rollout_reward=outcome)
    rollouts = [s for _, s in policy.calls if not s.stop_at_step]
    assert rollouts and all(s.n == 1 and s.max_new_tokens == 8 * 16 for s in rollouts[:1])
    check_costs(results, policy, prm, outcome)
    for r in results:
        assert r.answer == "3"
        assert any(c.text == "y\nA: 3\n" for c in r.candidates)


@pytest.mark.parametrize("kwargs, field", [({"simulations": 0}, "simulations"), ({"c_puct": -1.0}, "c_puct"),
                                           ({"value": "q"}, "value"), ({"mix": 2.0}, "mix"),
                                           ({"temperature": -1.0}, "temperature"), ({"score": "x"}, "score")])
def test_mcts_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=f"MCTSConfig.{field}"):
        MCTSConfig(**kwargs)


def test_mcts_needs_the_rewards_its_value_uses():
    with pytest.raises(ValueError, match="rollout_reward"):
        mcts([P1], Recording(TWO), Counting(TWO_TABLE), TASK, config=MCTSConfig(value="rollout"), sampling=STEP)
    with pytest.raises(ValueError, match="prm"):
        mcts([P1], Recording(TWO), None, TASK, config=MCTSConfig(value="prm"), sampling=STEP)


# -- budgets, all searchers ---------------------------------------------------------------------------

caps = st.one_of(st.none(), st.integers(0, 120))


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["beam", "lookahead", "dvts", "mcts", "rollout", "both"]), seed=st.integers(0, 99),
       tokens=caps, encoded=st.one_of(st.none(), st.integers(0, 400)), calls=caps, rewards=st.one_of(
           st.none(), st.integers(0, 30)))
def test_budget_never_exceeded(kind, seed, tokens, encoded, calls, rewards):
    budget = Budget(tokens_generated=tokens, tokens_encoded=encoded, policy_calls=calls, reward_calls=rewards)
    policy, prm, outcome = Recording(SPEC, seed), Counting(TABLE), Counting(TABLE)
    problems = [P1, P2]
    if kind in ("beam", "lookahead"):
        config = BeamConfig(width=2, expansions=3, lookahead=int(kind == "lookahead"))
        results = beam_search(problems, policy, prm, TASK, config=config, sampling=STEP, budget=budget)
    elif kind == "dvts":
        results = dvts(problems, policy, prm, TASK, config=DVTSConfig(width=2, expansions=3), sampling=STEP,
                       budget=budget)
    else:
        config = MCTSConfig(simulations=8, expansions=3, value="prm" if kind == "mcts" else kind)
        results, trees = mcts(problems, policy, prm, TASK, config=config, sampling=STEP, budget=budget,
                              rollout_reward=None if kind == "mcts" else outcome)
        assert all(t.simulations == t.root.visits <= 8 for t in trees)
    check_costs(results, policy, prm, outcome)
    for r in results:
        assert budget.allows(r.cost)
        if r.candidates:  # the best finished candidate
            assert r.text in [c.text for c in r.candidates] and r.answer is not None
            if kind in ("beam", "dvts"):
                assert r.score == max(TABLE[c.text] for c in r.candidates)
        else:  # else the best partial one: an unfinished prefix
            assert r.answer is None and (r.text == "" or P1.prompt + r.text in policy.script)


# -- context length: no searcher asks for tokens after a prompt with no room ------------------------

# y -> yy -> "A: 2" is the only way to an answer; x's answer step is longer than x leaves room for
ROOMY = {"": [("x\n", 0.5), ("y\n", 0.5)], "x\n": [("A: 1\n", 1.0)], "y\n": [("yy\n", 1.0)],
         "y\nyy\n": [("A: 2\n", 1.0)]}
ROOMY_TABLE = {"x\n": 0.1, "y\n": 0.9, "x\nA: 1\n": 0.5, "y\nyy\n": 0.95, "y\nyy\nA: 2\n": 1.0}


class Tight(Recording):
    """The recording script policy with a context of `context` characters (prompt included): like
    TinyPolicy, it refuses a prompt with no room and caps each sample by its prompt's own room."""

    def __init__(self, spec: dict, context_after_prompt: int, seed: int = 0, problems=(P1, P2)) -> None:
        super().__init__(spec, seed=seed, problems=problems)
        self.context = len(P1.prompt) + context_after_prompt  # every problem's prompt has P1's length
        self.batched: list[tuple[list[str], Sampling]] = []

    def room(self, prompt: str) -> int:
        return self.context - len(prompt)

    def generate(self, prompts, sampling):
        if any(self.room(p) < 1 for p in prompts):
            raise ValueError("a prompt does not fit the context")
        self.batched.append((list(prompts), sampling))
        return [super(Tight, self).generate([p], Sampling(**{**sampling.__dict__, "max_new_tokens": min(
            sampling.max_new_tokens, self.room(p))}))[0] for p in prompts]

    def check_caps(self) -> None:
        assert self.batched
        for prompts, sampling in self.batched:
            assert sampling.max_new_tokens == min(STEP.max_new_tokens if sampling.stop_at_step else 10**9,
                                                  sampling.max_new_tokens, max(map(self.room, prompts)))
            assert sampling.max_new_tokens <= max(map(self.room, prompts))


def run_searcher(kind: str, policy, prm, budget=None, **kwargs):
    if kind in ("beam", "lookahead"):
        config = BeamConfig(width=2, expansions=4, lookahead=2 * (kind == "lookahead"), **kwargs)
        return beam_search([P1, P2], policy, prm, TASK, config=config, sampling=STEP, budget=budget)
    if kind == "dvts":
        return dvts([P1, P2], policy, prm, TASK, config=DVTSConfig(width=2, expansions=4, **kwargs), sampling=STEP,
                    budget=budget)
    value = {"mcts": "prm"}.get(kind, kind)
    results, trees = mcts([P1, P2], policy, prm if value != "rollout" else None, TASK, sampling=STEP, budget=budget,
                          config=MCTSConfig(simulations=12, expansions=4, value=value, **kwargs),
                          rollout_reward=prm if value != "prm" else None)
    for tree in trees:  # a node without room is terminal and never expanded
        for node in tree.nodes():
            if policy.room(tree.problem.prompt + node.text) < 1:
                assert node.terminal and not node.expanded
    return results


KINDS = ["beam", "lookahead", "dvts", "mcts", "rollout", "both"]


@pytest.mark.parametrize("kind", KINDS)
def test_search_stops_where_the_context_is_full(kind):
    # after y, yy fills the context exactly: a dead end without an answer; after x the answer is cut
    policy, prm = Tight(ROOMY, context_after_prompt=len("y\nyy\n"), seed=3), Counting(ROOMY_TABLE)
    results = run_searcher(kind, policy, prm)
    policy.check_caps()
    for r in results:
        assert r.answer is None and r.candidates == ()
        if kind in ("beam", "dvts"):
            assert (r.text, r.score) == ("y\nyy\n", 0.95)  # the dead end is the best partial solution
    assert all(P1.prompt + "y\nyy\n" not in prompts for prompts, _ in policy.batched)
    check_costs(results, policy, prm)


@pytest.mark.parametrize("kind", KINDS)
def test_search_finds_an_answer_that_fills_the_context(kind):
    policy, prm = Tight(ROOMY, context_after_prompt=len("y\nyy\nA: 2\n"), seed=3), Counting(ROOMY_TABLE)
    results = run_searcher(kind, policy, prm)
    policy.check_caps()
    for r in results:
        assert (r.text, r.answer) == ("y\nyy\nA: 2\n", "2")
    check_costs(results, policy, prm)


@pytest.mark.parametrize("kind", KINDS)
def test_prompt_without_room_is_not_searched(kind):
    policy, prm = Tight(ROOMY, context_after_prompt=0), Counting(ROOMY_TABLE)
    results = run_searcher(kind, policy, prm)
    assert policy.batched == []
    assert [(r.text, r.answer, r.candidates) for r in results] == [("", None, ())] * 2


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 99), context=st.integers(1, 14), tokens=caps,
       encoded=st.one_of(st.none(), st.integers(0, 400)), rewards=st.one_of(st.none(), st.integers(0, 30)))
def test_budget_and_context_together(kind, seed, context, tokens, encoded, rewards):
    budget = Budget(tokens_generated=tokens, tokens_encoded=encoded, reward_calls=rewards)
    policy, prm = Tight(ROOMY, context_after_prompt=context, seed=seed), Counting(ROOMY_TABLE)
    results = run_searcher(kind, policy, prm, budget=budget)
    check_costs(results, policy, prm)
    for r in results:
        assert budget.allows(r.cost)
        assert len(r.text) <= context
