"""Computed claims and paired comparisons (`ponder.claims`), and the aggregate over seeds
(`ponder.replicate`), on hand-made run results whose effects are known."""

import json

import numpy as np
import pytest

from ponder.claims import claims, comparisons, correlation_interval, effect_text
from ponder.replicate import aggregate, figures, write_aggregate
from ponder.report import build_summary
from ponder.runs import RunDirError, write_json


def _hits(n: int, rate: float, seed: int) -> list[float]:
    return (np.random.default_rng(seed).random(n) < rate).astype(float).tolist()


def _improve(base: list[float], k: int) -> list[float]:
    """`base` with its first k failures turned into successes: exactly k more problems solved."""
    out, flipped = list(base), 0
    for i, v in enumerate(out):
        if v == 0 and flipped < k:
            out[i], flipped = 1.0, flipped + 1
    return out


def _row(method: str, n: int, hits: list[float]) -> dict:
    return {"method": method, "n": n, "accuracy": sum(hits) / len(hits), "tokens_generated": 40 * n * len(hits),
            "per_problem": hits}


def _results(n=1000, vote_gain=60, scale_gain=80, learn_gains=(50, 40), beam_gain=60) -> dict:
    greedy = _hits(n, 0.6, 0)
    maj1 = _hits(n, 0.55, 1)
    maj16 = _improve(maj1, scale_gain)
    vote16 = _improve(maj16, vote_gain)
    res = {"init": {"params": 1000, "train_tokens": 10},
           "eval_init": {"greedy_accuracy": sum(greedy) / n, "greedy_per_problem": greedy,
                         "search": [_row("majority", 1, maj1), _row("majority", 16, maj16),
                                    _row("prm_vote", 1, maj1), _row("prm_vote", 16, vote16)]}}
    g = greedy
    for k, gain in enumerate(learn_gains, 1):
        g = _improve(g, gain)
        res[f"round{k}"] = {"train_tokens": 5, "sample_tokens": 5}
        res[f"eval_round{k}"] = {"greedy_accuracy": sum(g) / n, "greedy_per_problem": g,
                                 "search": [_row("majority", 1, g), _row("majority", 16, g)]}
    bon = _hits(200, 0.6, 5)
    beam = _improve(bon, beam_gain)
    res["search"] = {"problems": 200, "rows": [
        {"method": "greedy", "size": 1, "accuracy": 0.6, "tokens_generated": 40},
        {"method": "best_of_n", "size": 4, "accuracy": sum(bon) / 200, "tokens_generated": 160},
        {"method": "best_of_n", "size": 16, "accuracy": sum(bon) / 200, "tokens_generated": 640},
        {"method": "beam", "size": 4, "accuracy": sum(beam) / 200, "tokens_generated": 500}],
        "per_problem": {"greedy@1": _hits(200, 0.6, 6), "best_of_n@4": bon, "best_of_n@16": bon, "beam@4": beam}}
    return res


def _by_id(cs: list[dict]) -> dict:
    return {c["id"]: c for c in cs}


def test_real_effects_hold_and_their_sizes_are_the_paired_differences():
    cs = _by_id(claims(_results(), seed=0))
    assert cs["search_scaling"]["verdict"] == "holds"
    assert cs["search_scaling"]["effect"] == pytest.approx(0.08)
    assert cs["weighted_scaling"]["effect"] == pytest.approx(0.14) and cs["weighted_scaling"]["verdict"] == "holds"
    assert "prm_vote@16 - prm_vote@1" in cs["weighted_scaling"]["evidence"]
    assert cs["weighted_vote"]["effect"] == pytest.approx(0.06) and cs["weighted_vote"]["verdict"] == "holds"
    assert cs["learning"]["effect"] == pytest.approx(0.09) and cs["learning"]["verdict"] == "holds"
    assert cs["learning_round1"]["effect"] == pytest.approx(0.05)
    assert cs["learning_round2"]["effect"] == pytest.approx(0.04) and cs["learning_round2"]["verdict"] == "holds"
    assert cs["prm_search"]["verdict"] == "holds"
    assert "best_of_n@16" in cs["prm_search"]["evidence"]  # the first best-of-N with at least beam's tokens
    for c in cs.values():
        if c["effect"] is not None:
            assert c["lo"] <= c["effect"] <= c["hi"]


def test_no_effect_is_within_noise_and_a_reversed_one_is_contradicted():
    res = _results(vote_gain=0, learn_gains=(0, 0))
    cs = _by_id(claims(res, seed=0))
    assert cs["weighted_vote"]["verdict"] == "within noise"
    assert cs["learning"]["verdict"] == "within noise"
    # swap the vote rows of a run where it won by 6 points: now it loses by 6
    rows = (res := _results(vote_gain=60))["eval_init"]["search"]
    rows[1]["per_problem"], rows[3]["per_problem"] = rows[3]["per_problem"], rows[1]["per_problem"]
    assert _by_id(claims(res, seed=0))["weighted_vote"]["verdict"] == "contradicted"


def test_a_small_real_effect_on_few_problems_is_within_noise():
    res = _results(n=50, vote_gain=1)
    assert _by_id(claims(res, seed=0))["weighted_vote"]["verdict"] == "within noise"


def test_what_a_recipe_did_not_run_is_not_measured():
    res = {"init": {}, "eval_init": {"greedy_accuracy": 0.5, "greedy_per_problem": [1.0, 0.0],
                                     "search": [_row("majority", 4, [1.0, 0.0])]}}
    cs = _by_id(claims(res, seed=0))
    for cid in ("search_scaling", "weighted_scaling", "weighted_vote", "prm_search", "small_vs_big", "learning", "entropy",
                "overoptimization", "self_correction", "learned_corrections", "prm_follows"):
        assert cs[cid]["verdict"] == "not measured", cid
        assert cs[cid]["effect"] is None


def test_a_prm_that_follows_the_policy_is_judged_against_the_frozen_one_on_the_last_evaluation():
    res = _results()
    frozen = _hits(1000, 0.5, 7)
    for phase, gain in (("eval_round1", 0), ("eval_round2", 50)):
        res[phase]["search"] += [_row("prm0_vote", 1, frozen), _row("prm0_vote", 16, frozen),
                                 _row("prm_vote", 16, _improve(frozen, gain))]
    c = _by_id(claims(res, seed=0))["prm_follows"]
    assert c["verdict"] == "holds" and c["effect"] == pytest.approx(0.05)
    assert c["evidence"] == "prm_vote@16 - prm0_vote@16, eval_round2, 1000 problems"
    res["eval_round2"]["search"][-1]["per_problem"] = frozen  # no better than frozen at the end
    assert _by_id(claims(res, seed=0))["prm_follows"]["verdict"] == "within noise"


def test_old_runs_without_per_problem_scores_are_not_measured():
    res = _results()
    for row in res["eval_init"]["search"]:
        del row["per_problem"]
    cs = _by_id(claims(res, seed=0))
    assert cs["search_scaling"]["verdict"] == "not measured" and cs["weighted_vote"]["verdict"] == "not measured"
    assert cs["weighted_scaling"]["verdict"] == "not measured"


def test_entropy_claim_from_a_falling_entropy_and_rising_reward():
    steps = np.arange(20)
    rng = np.random.default_rng(0)
    curves = {"entropy": (1.0 - 0.03 * steps + rng.normal(0, 0.01, 20)).tolist(),
              "reward_mean": (0.3 + 0.02 * steps + rng.normal(0, 0.01, 20)).tolist()}
    c = _by_id(claims({}, seed=0, curves=curves))["entropy"]
    assert c["verdict"] == "holds" and c["effect"] < -0.9 and c["direction"] == -1
    rising = {"entropy": curves["reward_mean"], "reward_mean": curves["reward_mean"]}
    assert _by_id(claims({}, seed=0, curves=rising))["entropy"]["verdict"] == "contradicted"
    few = {"entropy": [1.0, 0.9], "reward_mean": [0.1, 0.2]}
    assert _by_id(claims({}, seed=0, curves=few))["entropy"]["verdict"] == "not measured"


def test_correlation_interval_by_hand():
    c = correlation_interval([1, 2, 3, 4], [2, 4, 6, 8], seed=0)
    assert c["effect"] == pytest.approx(1.0) and c["n"] == 4
    with pytest.raises(ValueError, match="equal length"):
        correlation_interval([1, 2, 3], [1, 2], seed=0)


def test_comparisons_are_paired_on_the_same_problems():
    out = comparisons(_results(), seed=0)
    rounds = [c for c in out if c["where"] == "eval_round1 vs eval_init" and c["a"] == "greedy round1"]
    assert len(rounds) == 1 and rounds[0]["diff"] == pytest.approx(0.05) and rounds[0]["n"] == 1000
    vs_greedy = {c["a"] for c in out if c["where"] == "eval_init"}
    assert vs_greedy == {"majority@16", "prm_vote@16"}
    assert {c["a"] for c in out if c["where"] == "search"} == {"best_of_n@4", "best_of_n@16", "beam@4"}


def test_summary_carries_intervals_claims_and_no_per_problem_lists():
    res = _results()
    summary = build_summary({"name": "x", "seed": 3}, res)
    init = summary["phases"][0]
    lo, hi = init["greedy_ci"]
    assert lo < init["greedy_accuracy"] < hi and init["problems"] == 1000
    assert hi - lo == pytest.approx(2 * 1.96 * (0.6 * 0.4 / 1000) ** 0.5, abs=0.01)
    assert all(r["ci"] is not None and "per_problem" not in r for r in summary["search"]["init"])
    assert all("ci" in r for r in summary["search_scaling"]["rows"])
    assert "per_problem" not in summary["search_scaling"]
    assert {c["id"] for c in summary["claims"]} >= {"search_scaling", "learning", "entropy"}
    assert json.loads(json.dumps(summary)) == summary  # plain JSON
    assert build_summary({"name": "x", "seed": 3}, res) == summary  # seeded: the same intervals again


def test_aggregate_over_seeds_by_hand(tmp_path):
    summaries = [build_summary({"name": "x", "seed": s}, _results(learn_gains=(g, 0))) for s, g in
                 ((0, 40), (1, 50), (2, 60))]
    agg = aggregate(summaries)
    assert agg["seeds"] == [0, 1, 2]
    g1 = agg["figures"]["greedy/round1"]
    base = sum(_hits(1000, 0.6, 0)) / 1000
    assert g1["values"] == pytest.approx([base + 0.04, base + 0.05, base + 0.06])
    assert g1["mean"] == pytest.approx(base + 0.05)
    assert g1["sd"] == pytest.approx(0.01) and g1["spread"] == pytest.approx(0.02)
    learning = next(c for c in agg["claims"] if c["id"] == "learning")
    assert learning["effect"]["mean"] == pytest.approx(0.05) and learning["verdict"] == "holds"
    assert learning["per_seed"] == ["holds"] * 3 and learning["holds_in"] == 3
    r2 = next(c for c in agg["claims"] if c["id"] == "learning_round2")
    assert r2["verdict"] == "within noise"  # no gain in any seed: its t-interval is [0, 0]
    assert next(c for c in agg["claims"] if c["id"] == "small_vs_big")["verdict"] == "not measured"
    assert set(figures(summaries[0])) == set(agg["per_seed"][0])


def test_aggregate_of_effects_that_disagree_across_seeds_is_within_noise():
    summaries = [build_summary({"name": "x", "seed": s}, _results(vote_gain=g)) for s, g in
                 ((0, 80), (1, -10), (2, 40))]
    vote = next(c for c in aggregate(summaries)["claims"] if c["id"] == "weighted_vote")
    assert vote["verdict"] == "within noise" and vote["holds_in"] == 2


def test_write_aggregate_needs_every_seed(tmp_path):
    root = tmp_path / "multi"
    root.mkdir()
    with pytest.raises(RunDirError, match="not a multi-seed run"):
        write_aggregate(root)
    write_json(root / "replicate.json", {"seeds": [0, 1], "recipe": {}})
    for s in (0,):
        write_json(root / f"seed{s}" / "summary.json", build_summary({"name": "x", "seed": s}, _results()))
    with pytest.raises(RunDirError, match="seeds 1 have no summary"):
        write_aggregate(root)
    write_json(root / "seed1" / "summary.json", build_summary({"name": "x", "seed": 1}, _results()))
    agg = write_aggregate(root)
    assert json.loads((root / "aggregate.json").read_text()) == agg
    page = (root / "report.html").read_text()
    assert "Claims" in page and "seed1/report.html" in page


def test_self_correction_compares_init_with_the_baseline_at_the_largest_common_vote():
    res = _results()
    init = res["eval_init"]["search"][1]["per_problem"]  # majority@16
    plain = list(init)
    for i, v in enumerate(plain):  # the plain policy misses 70 of the problems init's vote solves
        if v == 1.0 and sum(a - b for a, b in zip(init, plain)) < 70:
            plain[i] = 0.0
    res["baseline"] = {"settings": {"check": 0.0}, "train_tokens": 990, "init_train_tokens": 1000,
                       "greedy_per_problem": res["eval_init"]["greedy_per_problem"],
                       "search": [_row("majority", 1, plain), _row("majority", 16, plain)]}
    c = _by_id(claims(res, seed=0))["self_correction"]
    assert c["effect"] == pytest.approx(0.07) and c["verdict"] == "holds"
    assert c["evidence"] == "majority@16 init - majority@16 baseline (check = 0.0, 990 against 1000 training tokens), " \
                            "1000 problems"
    del res["baseline"]["search"]  # no samples: judged on greedy, where the two are equal
    res["baseline"]["search"] = []
    c = _by_id(claims(res, seed=0))["self_correction"]
    assert c["evidence"].startswith("greedy init - greedy baseline") and c["effect"] == 0
    del res["baseline"]
    assert _by_id(claims(res, seed=0))["self_correction"]["verdict"] == "not measured"


def test_effects_are_written_in_their_units():
    assert effect_text("learning", 0.055, 0.021, 0.089) == "+5.5 [+2.1, +8.9] points"
    assert effect_text("entropy", -0.62, -0.8, -0.31) == "r = -0.62 [-0.80, -0.31]"
    assert effect_text("learned_corrections", 0.12, 0.08, 0.16) == "+0.120 [+0.080, +0.160] per solution"
    assert effect_text("learning", None) == "" and effect_text("learning", 0.1) == "+10.0 points"


def test_learned_corrections_compare_successful_corrections_per_solution_last_round_against_init():
    res = _results()
    fixed_init = [0.0] * 500 + [0.25] * 500
    fixed_last = [0.5] * 500 + [0.25] * 500  # half the problems gain half a successful correction per solution
    checks = [0.5] * 1000
    res["eval_init"]["behaviours"] = {"sampled": {"fixed_per_solution": fixed_init, "check_rate": checks}}
    res["eval_round1"]["behaviours"] = {"sampled": {"fixed_per_solution": [9.0] * 1000, "check_rate": checks}}
    res["eval_round2"]["behaviours"] = {"sampled": {"fixed_per_solution": fixed_last, "check_rate": checks}}
    c = _by_id(claims(res, seed=0))["learned_corrections"]
    assert c["effect"] == pytest.approx(0.25) and c["verdict"] == "holds"
    assert c["evidence"] == "corrections that fixed a wrong step per sampled solution, round2 - init, 1000 problems"
    res["eval_round2"]["behaviours"]["sampled"]["fixed_per_solution"] = [0.0] * 1000
    assert _by_id(claims(res, seed=0))["learned_corrections"]["verdict"] == "contradicted"
    for phase in ("eval_init", "eval_round2"):  # a policy that never checks (the default recipe): nothing to judge
        res[phase]["behaviours"]["sampled"] = {"fixed_per_solution": [0.0] * 1000, "check_rate": [0.0] * 1000}
    c = _by_id(claims(res, seed=0))["learned_corrections"]
    assert c["verdict"] == "not measured" and "no solution checked a step" in c["evidence"]
    del res["eval_init"]["behaviours"]  # a task without behaviours
    assert _by_id(claims(res, seed=0))["learned_corrections"]["verdict"] == "not measured"
