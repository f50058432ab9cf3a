"""`ponder run --workers 2`: the whole loop with generation and verification on 2 local Ray workers
gives the same summary as the same recipe in process."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
pytest.importorskip("ray")

from test_e2e import TINY

from ponder.cli import main

# no prefix cache: each worker would cache only its own batches' prefixes, so tokens_encoded (not the
# samples) would differ from one process's
SETS = [*TINY, "search.prefix_cache_mb=0", 'search.methods=["greedy","majority","beam","mcts"]',
        "learn.rounds=1", "policy.batch_size=16", "init.demos=2000", "init.sft.steps=300", "eval.problems=24",
        "search.problems=6", "learn.problems=40"]


def _run(runs, name, *extra):
    args = ["run", "addition", "--quiet", "--runs-dir", str(runs), "--name", name, *extra]
    for s in SETS:
        args += ["--set", s]
    return main(args)


@pytest.mark.slow
def test_two_ray_workers_give_the_in_process_summary(tmp_path):
    assert _run(tmp_path, "local") == 0
    assert _run(tmp_path, "ray", "--workers", "2") == 0
    local = json.loads((tmp_path / "local" / "summary.json").read_text())
    ray = json.loads((tmp_path / "ray" / "summary.json").read_text())
    local.pop("name"), ray.pop("name")
    assert ray == local
    assert local["learning"][0]["kept"] > 0  # the round learned from verified samples


def test_workers_flags_are_checked(tmp_path, capsys):
    assert main(["run", "--runs-dir", str(tmp_path), "--workers", "-1"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert main(["run", "--runs-dir", str(tmp_path), "--name", "b", "--ray-address", "auto"]) == 2
    assert "--ray-address needs --workers" in capsys.readouterr().err
