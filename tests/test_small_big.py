"""Small policy + search against a big policy greedy (`ponder.small_big`, `ponder compare`): pairing
checks, the FLOPs budget, cross-fitted option choice, the claim and the difficulty bins."""

from __future__ import annotations

import json

import pytest

from ponder import small_big
from ponder.cli import main


def _row(key, flops):
    method, size = key.split("@")
    return {"method": method, "size": int(size), "flops": flops, "accuracy": 0.0, "tokens_generated": 1.0}


def _sweep(name, params, scores, flops, ids=None, difficulty=None):
    n = len(next(iter(scores.values())))
    return {"name": name, "params": params, "rows": [_row(k, flops[k]) for k in scores], "per_problem": scores,
            "problem_ids": ids or [f"p{i}" for i in range(n)], "difficulty": difficulty or []}


def test_pairing_needs_the_same_problems_and_kept_scores():
    small = _sweep("small", 1, {"greedy@1": [1, 0]}, {"greedy@1": 1.0})
    big = _sweep("big", 4, {"greedy@1": [1, 1]}, {"greedy@1": 4.0}, ids=["p0", "q1"])
    with pytest.raises(small_big.SweepMismatch, match="small and big swept different problems"):
        small_big.matched_search(small, big)
    old = {**small, "problem_ids": []}
    with pytest.raises(small_big.SweepMismatch, match="small: its sweep kept no problem ids"):
        small_big.matched_search(old, big)
    no_greedy = _sweep("big", 4, {"beam@2": [1, 1]}, {"beam@2": 4.0})
    with pytest.raises(small_big.SweepMismatch, match="no greedy row"):
        small_big.matched_search(small, no_greedy)


def test_options_over_the_budget_are_never_picked_and_each_half_is_scored_by_the_other_halfs_choice():
    n = 8
    even = [1.0 if i % 2 == 0 else 0.0 for i in range(n)]  # right on the even problems only
    odd = [1.0 - x for x in even]
    scores = {"greedy@1": [0.0] * n, "majority@2": even, "best_of_n@3": odd, "best_of_n@16": [1.0] * n}
    flops = {"greedy@1": 1.0, "majority@2": 2.0, "best_of_n@3": 3.0, "best_of_n@16": 16.0}
    big = _sweep("big", 4, {"greedy@1": [0.0] * n}, {"greedy@1": 3.7})
    m = small_big.matched_search(_sweep("small", 1, scores, flops), big)
    assert m["budget"] == 3.7 and "best_of_n@16" not in m["options"]  # perfect, but over the budget
    # the even problems are scored by the option best on the odd ones, and the other way round
    assert m["picks"] == ["best_of_n@3", "majority@2"]
    assert m["scores"] == [0.0] * n  # each pick is wrong on exactly the half it scores: no selection bias
    assert m["flops"] == [3.0, 2.0]


def test_reward_calls_count_a_whole_greedy_solution_at_the_policys_size():
    scores = {"greedy@1": [0.0, 0.0], "weighted_vote@3": [1.0, 1.0], "majority@3": [0.0, 1.0]}
    small = _sweep("small", 1000, scores, {"greedy@1": 1e5, "weighted_vote@3": 3e5, "majority@3": 3e5})
    for r in small["rows"]:
        r.update(tokens_generated=40.0, tokens_encoded=10.0, reward_calls=3.0 if r["method"] == "weighted_vote" else 0.0)
    big = _sweep("big", 4000, {"greedy@1": [0.0, 0.0]}, {"greedy@1": 4e5})
    # weighted_vote@3: 3e5 policy FLOPs + 3 calls x 2 x 1000 params x 50 tokens = 6e5, over the 4e5 budget
    m = small_big.matched_search(small, big)
    assert m["options"] == ["greedy@1", "majority@3"] and m["picks"] == ["majority@3", "greedy@1"]
    roomy = _sweep("big", 4000, {"greedy@1": [0.0, 0.0]}, {"greedy@1": 6e5})
    assert "weighted_vote@3" in small_big.matched_search(small, roomy)["options"]


def test_ties_go_to_the_cheaper_option():
    scores = {"greedy@1": [1.0, 1.0], "majority@3": [1.0, 1.0]}
    m = small_big.matched_search(_sweep("small", 1, scores, {"greedy@1": 1.0, "majority@3": 3.0}),
                                 _sweep("big", 4, {"greedy@1": [0.0, 0.0]}, {"greedy@1": 4.0}))
    assert m["picks"] == ["greedy@1", "greedy@1"]


def test_claim_holds_when_search_beats_big_greedy_and_is_not_measured_without_a_fitting_option():
    n = 200
    small = _sweep("small", 1_000_000, {"greedy@1": [0.0] * n, "weighted_vote@3": [1.0] * 150 + [0.0] * 50},
                   {"greedy@1": 1e6, "weighted_vote@3": 3e6})
    big = _sweep("big", 4_000_000, {"greedy@1": [1.0] * 50 + [0.0] * 150}, {"greedy@1": 4e6})
    c = small_big.claim(small, big, seed=0)
    assert c["verdict"] == "holds" and c["n"] == n and c["effect"] == pytest.approx(0.75 - 0.25)
    assert c["lo"] < c["effect"] < c["hi"] and "weighted_vote@3" in c["evidence"]
    reverse = small_big.claim(small, {**big, "per_problem": {"greedy@1": [1.0] * n}}, seed=0)
    assert reverse["verdict"] == "contradicted"
    tight = _sweep("big", 4_000_000, {"greedy@1": [1.0] * n}, {"greedy@1": 5e5})  # below the small's greedy
    none = small_big.claim(small, tight, seed=0)
    assert none["verdict"] == "not measured" and "fits" in none["evidence"]


def test_difficulty_bins_are_quantiles_of_the_small_pass_rate_easiest_first():
    n = 10
    difficulty = [i / 10 for i in range(n)]  # problem 9 the easiest
    small_search = [1.0 if i >= 5 else 0.0 for i in range(n)]
    big_greedy = [1.0 if i % 2 else 0.0 for i in range(n)]
    small = _sweep("small", 1, {"greedy@1": [0.0] * n, "majority@2": small_search}, {"greedy@1": 1.0, "majority@2": 2.0},
                   difficulty=difficulty)
    big = _sweep("big", 4, {"greedy@1": big_greedy}, {"greedy@1": 4.0})
    rows = small_big.difficulty_bins(small, big, bins=2, seed=0)
    assert [r["bin"] for r in rows] == [1, 2] and [r["problems"] for r in rows] == [5, 5]
    assert rows[0]["pass_rate"] == [0.5, 0.9] and rows[1]["pass_rate"] == [0.0, 0.4]
    assert rows[0]["small_search"]["accuracy"] == 1.0 and rows[1]["small_search"]["accuracy"] == 0.0
    assert rows[0]["big_greedy"]["accuracy"] == pytest.approx(0.6) and rows[1]["big_greedy"]["accuracy"] == pytest.approx(0.4)
    assert rows[0]["big_search"] == rows[0]["big_greedy"]  # the big run has nothing but greedy
    assert rows[0]["small_minus_big"]["effect"] == pytest.approx(0.4)
    assert rows[1]["small_minus_big"]["effect"] == pytest.approx(-0.4)
    # at 0.4 of the big greedy's budget the small run's majority@2 no longer fits, the big run has nothing
    tight = small_big.difficulty_bins(small, big, bins=2, multiple=0.4, seed=0)
    assert tight[0]["small_search"]["accuracy"] == 0.0 and tight[0]["big_search"] is None
    assert "small_minus_big" not in tight[0]
    with pytest.raises(small_big.SweepMismatch, match="no per-problem difficulty"):
        small_big.difficulty_bins({**small, "difficulty": []}, big)


def test_frontier_pairs_both_runs_best_options_at_each_multiple_of_the_big_greedy_budget():
    n = 100
    small = _sweep("small", 1000, {"greedy@1": [0.0] * n, "best_of_n@4": [1.0] * 60 + [0.0] * 40,
                                   "best_of_n@16": [1.0] * 90 + [0.0] * 10},
                   {"greedy@1": 1.0, "best_of_n@4": 4.0, "best_of_n@16": 16.0})
    big = _sweep("big", 4000, {"greedy@1": [1.0] * 50 + [0.0] * 50, "best_of_n@4": [1.0] * 80 + [0.0] * 20},
                 {"greedy@1": 3.5, "best_of_n@4": 14.0})
    rows = small_big.frontier(small, big, multiples=(0.1, 1, 2, 4, 8), seed=0)
    assert [r["multiple"] for r in rows] == [1, 2, 4, 8]  # at 0.1x neither run has an option
    by = {r["multiple"]: r for r in rows}
    assert by[1]["small_picks"] == ["greedy@1", "greedy@1"] and by[1]["big_picks"] == ["greedy@1", "greedy@1"]
    assert by[2]["small_picks"] == ["best_of_n@4"] * 2 and by[2]["small_minus_big"]["effect"] == pytest.approx(0.1)
    assert by[4]["big_picks"] == ["best_of_n@4"] * 2 and by[4]["small_minus_big"]["effect"] == pytest.approx(-0.2)
    assert by[8]["small_picks"] == ["best_of_n@16"] * 2 and by[8]["small_minus_big"]["verdict"] == "holds"
    assert by[1]["small_minus_big"]["verdict"] == "contradicted" and by[1]["budget"] == 3.5


def _run_dir(path, sweep):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"name": sweep["name"], "model_params": sweep["params"],
                                                   "search_scaling": {"rows": sweep["rows"]}}))
    search = {k: sweep[k] for k in ("per_problem", "problem_ids", "difficulty")}
    (path / "state.json").write_text(json.dumps({"results": {"search": search}}))
    return str(path)


def test_compare_prints_the_claim_and_bins_and_writes_them_beside_the_plot(tmp_path, capsys):
    n = 40
    small = _sweep("small", 870_000, {"greedy@1": [0.0] * n, "weighted_vote@3": [1.0] * 30 + [0.0] * 10},
                   {"greedy@1": 1e8, "weighted_vote@3": 3e8}, difficulty=[i / n for i in range(n)])
    big = _sweep("big", 3_200_000, {"greedy@1": [0.0] * 30 + [1.0] * 10}, {"greedy@1": 3.7e8})
    out = tmp_path / "cmp.png"
    assert main(["compare", _run_dir(tmp_path / "s", small), _run_dir(tmp_path / "b", big), "--out", str(out),
                 "--bins", "4"]) == 0
    text = capsys.readouterr().out
    assert "claim small_vs_big: holds, +50.0 [" in text and "| bin | problems |" in text and "| 1x | 0.37 |" in text
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["claim"]["verdict"] == "holds" and len(saved["bins"]) == 4 and saved["frontier"][0]["multiple"] == 1
    # a run made before problem ids were kept: the plot is still drawn, the claim says why it is not measured
    old = tmp_path / "old"
    _run_dir(old, {**big, "problem_ids": []})
    assert main(["compare", _run_dir(tmp_path / "s2", small), str(old), "--out", str(tmp_path / "c2.png")]) == 0
    assert "claim small_vs_big: not measured (big: its sweep kept no problem ids" in capsys.readouterr().out
    assert main(["compare", str(old), "--bins", "0"]) == 2
    assert "--bins must be >= 1" in capsys.readouterr().err
    assert main(["compare", str(old), "--bins-at", "0"]) == 2
