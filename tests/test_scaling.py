"""Tests of the test-time compute sweep and compute-optimal selection (ponder.search.scaling), on the
scripted step policy and table rewards: rows and costs exact, sampling prefixes cheaper, the per-bin
choice right and within budget, config validation, the plot written."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted import StepScriptPolicy, TableReward

from ponder.config import ConfigError, build
from ponder.search import (
    SearchConfig,
    SearchSpec,
    assign_bins,
    compute_optimal,
    estimate_difficulty,
    plot_scaling,
    sweep,
)
from ponder.search.scaling import METHODS
from ponder.tasks.arithmetic import Arithmetic
from ponder.types import Cost, Problem

TASK = Arithmetic()
PROBLEMS = [Problem("p1", "Q1:\n", "1"), Problem("p2", "Q2:\n", "2"), Problem("p3", "Q3:\n", "3")]
SPEC = {"": [("a\n", 0.5), ("b\n", 0.5)], "a\n": [("A: 1\n", 0.5), ("A: 2\n", 0.5)],
        "b\n": [("A: 2\n", 0.7), ("A: 3\n", 0.3)]}
TABLE = {"a\n": 0.6, "b\n": 0.5, "a\nA: 1\n": 0.9, "a\nA: 2\n": 0.4, "b\nA: 2\n": 0.5, "b\nA: 3\n": 0.8}
SMALL = {"majority": (1, 2, 4), "weighted_vote": (1, 4), "best_of_n": (2, 4), "beam": (1, 2), "dvts": (2,),
         "mcts": (2, 4), "problems": 3, "expansions": 2, "max_new_tokens": 16, "max_steps": 4}


class Recording(StepScriptPolicy):
    """The scripted policy over PROBLEMS, keeping every call's samples."""

    def __init__(self, seed: int = 0, spec: dict = SPEC, problems=PROBLEMS) -> None:
        super().__init__({p.prompt + k: v for p in problems for k, v in spec.items()}, seed=seed)
        self.outputs = []

    def generate(self, prompts, sampling):
        out = super().generate(prompts, sampling)
        self.outputs.append(out)
        return out

    def spent(self) -> Cost:
        return Cost.total(s.cost for out in self.outputs for g in out for s in g)


def test_sweep_one_row_per_method_and_size():
    cfg = SearchConfig(**SMALL)
    rows = sweep(PROBLEMS, Recording(seed=1), TableReward(TABLE), TASK, cfg, seed=7, progress=False)
    assert [(r["method"], r["size"]) for r in rows] == [(m, s) for m in METHODS for s in cfg.sizes(m)]
    for r in rows:
        assert len(r["per_problem"]) == len(r["per_problem_tokens"]) == 3
        assert set(r["per_problem"]) <= {0.0, 1.0}
        assert r["accuracy"] == pytest.approx(sum(r["per_problem"]) / 3)
        assert r["tokens_generated"] == pytest.approx(sum(r["per_problem_tokens"]) / 3) and r["tokens_generated"] > 0
        assert r["encode_ratio"] == pytest.approx(r["tokens_encoded"] / r["tokens_generated"])
        assert r["knob"] == {"greedy": None, "beam": "width", "dvts": "width", "mcts": "simulations"}.get(r["method"], "n")


def test_sweep_is_deterministic_given_the_seed():
    cfg = SearchConfig(**SMALL)
    a = sweep(PROBLEMS, Recording(seed=1), TableReward(TABLE), TASK, cfg, seed=3, progress=False)
    b = sweep(PROBLEMS, Recording(seed=2), TableReward(TABLE), TASK, cfg, seed=3, progress=False)
    assert [r for r in a if r["method"] != "greedy"] == [r for r in b if r["method"] != "greedy"]


def test_sampling_methods_share_one_pass_and_report_their_own_prefix_cost():
    policy, prm = Recording(seed=1), TableReward(TABLE)
    sizes = (1, 2, 4)
    cfg = SearchConfig(methods=("majority", "weighted_vote", "best_of_n"), majority=sizes, weighted_vote=sizes,
                       best_of_n=sizes, problems=3, max_new_tokens=16)
    rows = sweep(PROBLEMS, policy, prm, TASK, cfg, seed=5, progress=False)
    assert len(policy.calls) == 1 and policy.calls[0][1].n == 4  # the largest N, drawn once
    assert prm.calls == 3 * 4  # every sample scored once
    (groups,) = policy.outputs
    for r in rows:
        n = r["size"]
        own = Cost.total(s.cost for g in groups for s in g[:n])
        assert r["tokens_generated"] == pytest.approx(own.tokens_generated / 3)
        assert r["tokens_encoded"] == pytest.approx(own.tokens_encoded / 3)
        assert r["policy_calls"] == pytest.approx(own.policy_calls / 3)
        assert r["reward_calls"] == (0 if r["method"] == "majority" else n)
        assert r["per_problem_tokens"] == [sum(s.cost.tokens_generated for s in g[:n]) for g in groups]
    for method in ("majority", "weighted_vote", "best_of_n"):
        tokens = [r["tokens_generated"] for r in rows if r["method"] == method]
        assert tokens == sorted(tokens) and tokens[0] < tokens[-1]
    best = next(r for r in rows if (r["method"], r["size"]) == ("best_of_n", 4))
    for p, g, hit in zip(PROBLEMS, groups, best["per_problem"]):
        chosen = max(g, key=lambda s: TABLE[s.text])  # the PRM's favourite (ties: first)
        assert hit == TASK.verify(p, chosen.text)


def test_greedy_is_one_temperature_zero_sample():
    policy = Recording(seed=1)
    (row,) = sweep(PROBLEMS, policy, TableReward(TABLE), TASK, SearchConfig(methods=("greedy",), problems=3),
                   seed=0, progress=False)
    ((prompts, sampling),) = policy.calls
    assert prompts == [p.prompt for p in PROBLEMS] and (sampling.n, sampling.temperature) == (1, 0.0)
    texts = [g[0].text for g in policy.outputs[0]]
    assert row["per_problem"] == [TASK.verify(p, t) for p, t in zip(PROBLEMS, texts)]
    assert row["reward_calls"] == 0


@pytest.mark.parametrize("method", ["beam", "dvts", "mcts"])
def test_tree_rows_report_the_searchers_mean_cost(method):
    policy, prm = Recording(seed=1), TableReward(TABLE)
    cfg = SearchConfig(methods=(method,), **{**SMALL, method: (2,)})
    (row,) = sweep(PROBLEMS, policy, prm, TASK, cfg, seed=0, progress=False)
    spent = policy.spent()
    assert row["tokens_generated"] == pytest.approx(spent.tokens_generated / 3)
    assert row["tokens_encoded"] == pytest.approx(spent.tokens_encoded / 3)
    assert row["policy_calls"] == pytest.approx(spent.policy_calls / 3)
    assert row["reward_calls"] == pytest.approx(prm.calls / 3)
    assert all(s.stop_at_step for _, s in policy.calls if s.temperature > 0)


def test_tree_methods_need_a_process_reward():
    class Outcome:
        calls = 0

        def score(self, problems, texts):
            return [0.0] * len(texts)

    with pytest.raises(ValueError, match="step_scores"):
        sweep(PROBLEMS, Recording(), Outcome(), TASK, SearchConfig(methods=("beam",)), seed=0, progress=False)
    rows = sweep(PROBLEMS, Recording(), Outcome(), TASK, SearchConfig(methods=("majority",), majority=(2,)), seed=0,
                 progress=False)
    assert len(rows) == 1


class Caching(Recording):
    """A scripted policy with a prefix-cache switch, recording whether the cache was on for each call."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.prefix_cache = None
        self.switches: list[float] = []
        self.cached: list[bool] = []

    def set_prefix_cache(self, mb):
        self.switches.append(mb)
        self.prefix_cache = type("Cache", (), {"max_bytes": int(mb * 2**20)})() if mb > 0 else None
        return self.prefix_cache

    def generate(self, prompts, sampling):
        self.cached.append(self.prefix_cache is not None)
        return super().generate(prompts, sampling)


@pytest.mark.parametrize("mb", [0.0, 2.0])
def test_prefix_cache_only_during_tree_search(mb):
    policy = Caching()
    policy.set_prefix_cache(3.0)  # the caller's own cache
    cfg = SearchConfig(**{**SMALL, "prefix_cache_mb": mb})
    sweep(PROBLEMS, policy, TableReward(TABLE), TASK, cfg, seed=0, progress=False)
    tree = [s.stop_at_step for _, s in policy.calls]
    assert any(tree) and not all(tree)
    assert policy.cached == [t and mb > 0 for t in tree]
    assert policy.prefix_cache is not None and policy.prefix_cache.max_bytes == 3 * 2**20  # restored
    if mb:  # a fresh cache for each (method, size)
        assert policy.switches.count(mb) == sum(len(cfg.sizes(m)) for m in ("beam", "dvts", "mcts"))


def test_prefix_cache_lowers_tree_search_encoding_on_the_tiny_policy():
    from conftest import make_tiny_policy

    problems = [Problem(f"t{k}", f"Q: {k}+{k}\n", str(2 * k)) for k in range(3)]
    prm = TableReward({}, default=0.5)
    rows = {}
    for mb in (0.0, 4.0):
        policy = make_tiny_policy(0, std=0.3)
        cfg = SearchConfig(methods=("beam",), beam=(2,), expansions=4, max_new_tokens=6, max_steps=3,
                           temperature=1.5, prefix_cache_mb=mb, problems=3)
        (rows[mb],) = sweep(problems, policy, prm, TASK, cfg, seed=1, progress=False)
        assert policy.prefix_cache is None
    assert rows[4.0]["tokens_generated"] == rows[0.0]["tokens_generated"]  # the same search...
    assert rows[4.0]["tokens_encoded"] < rows[0.0]["tokens_encoded"]  # ...re-reading less
    assert rows[4.0]["encode_ratio"] < rows[0.0]["encode_ratio"]


def test_estimate_difficulty_is_the_verified_pass_rate():
    spec = {"": [("A: 5\n", 1.0)]}
    problems = [Problem("r", "R:\n", "5"), Problem("w", "W:\n", "6")]
    assert estimate_difficulty(problems, Recording(spec=spec, problems=problems), TASK, 8, 1.0, 0) == [1.0, 0.0]
    rates = estimate_difficulty(PROBLEMS, Recording(), TASK, 40, 1.0, seed=3)
    assert rates == estimate_difficulty(PROBLEMS, Recording(seed=9), TASK, 40, 1.0, seed=3)
    assert all(0 <= x <= 1 and (x * 40) == int(x * 40) for x in rates)
    assert rates[1] > rates[2]  # "2" is the policy's likeliest answer, "3" its rarest


# -- compute-optimal -------------------------------------------------------------------------------


def row(method, size, per_problem, tokens):
    tokens = [tokens] * len(per_problem) if isinstance(tokens, (int, float)) else tokens
    return {"method": method, "size": size, "accuracy": sum(per_problem) / len(per_problem),
            "tokens_generated": sum(tokens) / len(tokens), "per_problem": per_problem, "per_problem_tokens": tokens}


# problems 0, 1 are hard (bin 0) and 2, 3 easy (bin 1): cheap A solves the easy ones, costly B the hard ones
HAND = [row("A", 1, [0, 0, 1, 1], 10), row("B", 1, [0, 0, 0, 0], 20), row("B", 4, [1, 1, 0, 0], [150, 150, 50, 50])]
DIFFICULTY = [0.1, 0.2, 0.8, 0.9]


def test_compute_optimal_picks_per_bin_under_budget():
    curve = compute_optimal(HAND, DIFFICULTY, 2, holdout=False)
    assert [c["budget"] for c in curve] == [10.0, 20.0, 100.0]
    assert [c["choice"] for c in curve] == [{0: "A@1", 1: "A@1"}, {0: "A@1", 1: "A@1"}, {0: "B@4", 1: "A@1"}]
    assert [c["accuracy"] for c in curve] == [0.5, 0.5, 1.0]
    assert curve[2]["tokens_generated"] == pytest.approx((150 + 150 + 10 + 10) / 4)
    assert all(c["method"] == "compute_optimal" and c["tokens_generated"] <= c["budget"] for c in curve)
    assert all(c["problems_scored"] == 4 and not c["holdout"] for c in curve)
    # each problem's own tokens count: B on the hard bin costs 75 of the mean, not half of B's 100
    (c,) = compute_optimal(HAND, DIFFICULTY, 2, holdout=False, budgets=[70])
    assert c["choice"] == {0: "A@1", 1: "A@1"} and c["accuracy"] == 0.5
    assert compute_optimal(HAND, DIFFICULTY, 2, holdout=False, budgets=[5]) == []  # nothing fits
    assert compute_optimal(HAND + [{"method": "compute_optimal"}], DIFFICULTY, 2, holdout=False) == curve


def test_compute_optimal_holdout_chooses_on_one_half_and_scores_the_other():
    # bin 0 = problems 0..3 (chosen on 0 and 2, scored on 1 and 3); X fits the choosing half, Y the scoring half
    rows = [row("X", 1, [1, 0, 1, 0, 1, 1, 1, 1], 10), row("Y", 1, [0, 1, 0, 1, 1, 1, 1, 1], 10)]
    difficulty = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    (held,) = compute_optimal(rows, difficulty, 2)
    assert held["holdout"] and held["problems_scored"] == 4
    assert held["choice"][0] == "X@1" and held["accuracy"] == 0.5  # X's bin-0 hits were all on the choosing half
    (full,) = compute_optimal(rows, difficulty, 2, holdout=False)
    assert full["accuracy"] == 0.75
    with pytest.raises(ValueError, match="at least 2"):
        compute_optimal([row("X", 1, [1], 1)], [0.5], 2)
    with pytest.raises(ValueError, match="difficulty has 3"):
        compute_optimal(rows, [0.0, 0.5, 1.0], 2)


def test_assign_bins_are_quantiles_with_ties_together():
    assert assign_bins(list(range(8)), 4) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert assign_bins([0.0, 0.0, 0.0, 1.0], 2) == [0, 0, 0, 1]
    assert assign_bins([0.5, 0.1, 0.9], 1) == [0, 0, 0]
    with pytest.raises(ValueError, match="bins"):
        assign_bins([0.1], 0)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(2, 7), bins=st.integers(1, 3), options=st.integers(1, 4))
def test_compute_optimal_is_the_best_feasible_choice(data, n, bins, options):
    hits = st.lists(st.integers(0, 1), min_size=n, max_size=n)
    costs = st.lists(st.integers(1, 50), min_size=n, max_size=n)
    rows = [row(f"m{k}", k + 1, data.draw(hits), data.draw(costs)) for k in range(options)]
    difficulty = data.draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=n, max_size=n))
    curve = compute_optimal(rows, difficulty, bins, holdout=False)
    bin_of = assign_bins(difficulty, bins)
    used = sorted(set(bin_of))
    for c in curve:
        budget = c["budget"]
        assert c["tokens_generated"] <= budget + 1e-9
        fixed = [r["accuracy"] for r in rows if r["tokens_generated"] <= budget]
        assert c["accuracy"] >= max(fixed) - 1e-12
        best = 0.0  # brute force over every assignment of options to bins
        for pick in itertools.product(range(options), repeat=len(used)):
            by_bin = dict(zip(used, pick))
            tokens = sum(rows[by_bin[bin_of[i]]]["per_problem_tokens"][i] for i in range(n)) / n
            if tokens <= budget + 1e-9:
                best = max(best, sum(rows[by_bin[bin_of[i]]]["per_problem"][i] for i in range(n)) / n)
        assert c["accuracy"] == pytest.approx(best)
    for c in compute_optimal(rows, difficulty, bins):  # holdout: chosen on half, but never over budget either
        assert c["tokens_generated"] <= c["budget"] + 1e-9 and c["problems_scored"] == n // 2


# -- config, specs and plot --------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, field", [
    ({"methods": ("beam", "beam")}, "methods"), ({"methods": ("oracle",)}, "methods"),
    ({"best_of_n": ()}, "best_of_n"), ({"beam": (4, 2)}, "beam"), ({"mcts": (0, 4)}, "mcts"),
    ({"majority": (1, 1)}, "majority"), ({"dvts": (2.5,)}, "dvts"), ({"problems": 0}, "problems"),
    ({"temperature": 0.0}, "temperature"), ({"top_p": 1.5}, "top_p"), ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"expansions": 0}, "expansions"), ({"c_puct": -1.0}, "c_puct"), ({"c_puct": float("inf")}, "c_puct"),
    ({"prefix_cache_mb": -1.0}, "prefix_cache_mb"), ({"difficulty_bins": 0}, "difficulty_bins"),
    ({"difficulty_samples": 0}, "difficulty_samples"), ({"max_steps": 0}, "max_steps"),
])
def test_search_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=f"SearchConfig.{field}"):
        SearchConfig(**kwargs)


def test_search_config_from_a_recipe_table():
    cfg = build(SearchConfig, {"methods": ["best_of_n", "beam", "mcts"], "best_of_n": [4, 16], "beam": [2, 4],
                               "mcts": [8, 16], "prefix_cache_mb": 64}, "search", "recipe.toml")
    assert cfg.best_of_n == (4, 16) and cfg.beam == (2, 4) and cfg.mcts == (8, 16) and cfg.prefix_cache_mb == 64.0
    specs = cfg.specs()
    assert [(s.method, s.budgets, s.knob) for s in specs] == [("best_of_n", (4, 16), "n"), ("beam", (2, 4), "width"),
                                                              ("mcts", (8, 16), "simulations")]
    assert specs[2].settings(8) == {"simulations": 8, "expansions": 4, "max_steps": 16, "c_puct": 1.0}
    with pytest.raises(ConfigError, match="search.beam"):
        build(SearchConfig, {"beam": 4}, "search", "recipe.toml")
    with pytest.raises(ConfigError, match="unknown key 'search.beem'"):
        build(SearchConfig, {"beem": [4]}, "search", "recipe.toml")


@pytest.mark.parametrize("kwargs, field", [({"method": "oracle"}, "method"), ({"budgets": ()}, "budgets"),
                                           ({"budgets": (4, 2)}, "budgets"), ({"expansions": 0}, "expansions"),
                                           ({"c_puct": -0.5}, "c_puct"), ({"max_steps": 0}, "max_steps")])
def test_search_spec_validation(kwargs, field):
    with pytest.raises(ValueError, match=f"SearchSpec.{field}"):
        SearchSpec(**{"method": "beam", **kwargs})


def test_search_spec_settings_and_greedy():
    assert SearchSpec("greedy").settings(1) == {} and SearchSpec("greedy").knob is None
    assert SearchSpec("weighted_vote", (2, 8)).settings(8) == {"n": 8}
    assert SearchSpec("dvts", (4,), expansions=3).settings(4) == {"width": 4, "expansions": 3, "max_steps": 16}
    with pytest.raises(ValueError, match="SearchSpec.budgets"):
        SearchSpec("greedy", (1, 2))


def test_plot_scaling_writes_a_png(tmp_path):
    rows = HAND + compute_optimal(HAND, DIFFICULTY, 2, holdout=False)
    out = tmp_path / "plots" / "scaling.png"
    assert plot_scaling(rows, out)
    assert out.is_file() and out.read_bytes()[:4] == b"\x89PNG"
    assert plot_scaling(rows, tmp_path / "flops.png", x="flops") is False  # no row has flops
    assert not (tmp_path / "flops.png").exists()
