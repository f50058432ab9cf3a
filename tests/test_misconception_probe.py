"""tools/misconception_probe.py scores exactly the steps where the teacher may forget a carry."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

from conftest import make_tiny_policy

from ponder.tasks.arithmetic import Arithmetic

_spec = importlib.util.spec_from_file_location("misconception_probe",
                                               Path(__file__).parents[1] / "tools" / "misconception_probe.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def test_the_probe_scores_the_true_step_against_the_teachers_forgotten_carry():
    rows = probe.chances(300, seed=5, digits=3)
    forgetful = Arithmetic(digits=3, misconception=1.0)  # forgets at every chance
    rng = random.Random(5)
    problems = [forgetful.make_problem(rng)[1] for _ in range(300)]
    expected = []
    for p in problems:
        truth = forgetful.trace(p)
        for i, (true_step, demo_step) in enumerate(zip(truth, forgetful.trace(p, teacher=True))):
            if truth[:i] == forgetful.trace(p, teacher=True)[:i] and true_step != demo_step:
                # the first forgotten carry of the demonstration: its prefix is still the true trace
                expected.append((p.prompt + "".join(s + "\n" for s in truth[:i]), true_step + "\n", demo_step + "\n"))
    firsts = {r[0]: r for r in rows}
    assert len(rows) > 100 and len(expected) > 50 and all(9 <= r[3] <= 18 for r in rows)
    for before, right, wrong in expected:
        assert firsts[before][1:3] == (right, wrong)


def test_the_probe_prints_a_row_per_checkpoint(tmp_path, capsys):
    path = tmp_path / "ckpt"
    make_tiny_policy(0).save(path)
    probe.main([str(path), str(path), "--problems", "40"])
    out = capsys.readouterr().out.splitlines()
    table = [line for line in out if line.startswith(f"| {path} |")]
    assert len(table) == 2 and table[0] == table[1]
    mean = float(table[0].split("|")[2])
    assert 0.0 < mean < 1.0
