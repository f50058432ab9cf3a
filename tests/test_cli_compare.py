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
