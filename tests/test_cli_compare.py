"""`ponder compare`: several runs' sweeps on one FLOPs axis, and its user errors."""

from __future__ import annotations

import json

from ponder.cli import main


def _run_dir(path, name, params, rows):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"name": name, "model_params": params,
                                                   "search_scaling": {"rows": rows}}))
    return str(path)


def _row(method, size, flops, acc):
    return {"method": method, "size": size, "flops": flops, "accuracy": acc, "tokens_generated": 1.0}


def test_compare_plots_and_lists_points_by_flops(tmp_path, capsys):
    small = _run_dir(tmp_path / "small", "small", 870_000, [_row("greedy", 1, 1e8, 0.8), _row("mcts", 8, 9e8, 0.85),
                                                             _row("mcts", 4, 5e8, 0.3)])
    big = _run_dir(tmp_path / "big", "big", 3_200_000, [_row("greedy", 1, 4e8, 0.9), _row("beam", 2, 2e9, 0.92)])
    out = tmp_path / "cmp.png"
    assert main(["compare", small, big, "--out", str(out), "--methods", "greedy,mcts,beam"]) == 0
    assert out.is_file() and out.stat().st_size > 1000
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("small", "big"))]
    flops = [float(line.split()[4]) for line in lines]
    assert flops == sorted(flops) and len(lines) == 5
    assert lines[0].split()[:3] == ["small", "0.87M", "greedy"]


def test_compare_user_errors(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "none")]) == 2
    assert "no summary.json" in capsys.readouterr().err
    empty = _run_dir(tmp_path / "empty", "e", 1, [])
    assert main(["compare", empty]) == 2
    assert "no search sweep" in capsys.readouterr().err
    other = _run_dir(tmp_path / "other", "o", 1, [_row("greedy", 1, 1.0, 0.5)])
    assert main(["compare", other, "--methods", "mcts", "--out", str(tmp_path / "x.png")]) == 2
    assert "none of the runs has rows" in capsys.readouterr().err


def _learning_dir(path, name, learner, points):
    """A finished run's summary: (learning compute, greedy, majority) after init and each round."""
    path.mkdir(parents=True)
    phases = [{"phase": "init" if i == 0 else f"round{i}", "learning_compute_tokens": c, "greedy_accuracy": g,
               "majority_accuracy": m, "majority_n": 16} for i, (c, g, m) in enumerate(points)]
    (path / "summary.json").write_text(json.dumps({"name": name, "learner": learner, "phases": phases}))
    return str(path)


def test_interpolate_reads_the_curve_only_where_it_was_measured():
    from ponder.cli_compare import interpolate

    pts = [(0, 0.5), (100, 0.7), (300, 0.9)]
    assert interpolate(pts, 0) == 0.5 and interpolate(pts, 300) == 0.9
    assert abs(interpolate(pts, 50) - 0.6) < 1e-12 and abs(interpolate(pts, 200) - 0.8) < 1e-12
    assert interpolate(pts, 301) is None and interpolate(pts, -1) is None


def test_compare_learning_tables_learners_at_equal_compute(tmp_path, capsys):
    a = _learning_dir(tmp_path / "learn_a", "same", "grpo", [(0, 0.5, 0.6), (2e6, 0.7, 0.7), (4e6, 0.8, 0.75)])
    b = _learning_dir(tmp_path / "learn_b", "same", "dpo", [(0, 0.5, 0.6), (1e6, 0.52, 0.62), (3e6, 0.6, 0.7)])
    out = tmp_path / "learners.png"
    assert main(["compare", "--learning", a, b, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and out.with_suffix(".html").is_file()
    header = text.splitlines()[0].split(" | ")
    assert header[3:5] == ["greedy@1.50M", "majority@1.50M"] and header[5] == "greedy@3.00M"
    row_a = next(line for line in text.splitlines() if line.startswith("learn_a")).split(" | ")
    row_b = next(line for line in text.splitlines() if line.startswith("learn_b")).split(" | ")
    # a at 3M tokens: halfway between 0.7 (2M) and 0.8 (4M); b at 3M is its last point
    assert row_a[5] == "75.0%" and row_b[5] == "60.0%"
    assert row_a[3] == "65.0%" and row_b[3] == "54.0%"  # at 1.5M: a 0.5 + 0.2 * 0.75, b 0.52 + 0.08 / 4
    html = out.with_suffix(".html").read_text()
    assert "learn_a" in html and "equal compute" in html


def test_compare_learning_needs_rounds(tmp_path, capsys):
    a = _learning_dir(tmp_path / "a", "learn_a", "grpo", [(0, 0.5, 0.6)])
    assert main(["compare", "--learning", a]) == 2
    assert "no learning round" in capsys.readouterr().err
