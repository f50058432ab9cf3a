"""Kill a real `ponder run` process at different points, resume it, and get the uninterrupted result.

Each test starts `python -m ponder.cli run` as a subprocess on a reduced recipe, waits (by polling the
run directory, never by sleeping a fixed time) until the run is inside a given phase, kills it, then
runs `ponder run --resume` and checks that:

- the resumed run ends with the same summary.json, and the same final weights, as an uninterrupted
  run with the same overrides (run once per module);
- metrics.jsonl is valid JSON on every line, logs each (phase, step) loss line once with the same
  loss as the uninterrupted run, logs every phase's completion once, in order, and holds the same
  lines as the uninterrupted run (none lost, none repeated).

The recipe is small, but large enough that the init SFT, the evaluation sampling and the learning
round's SFT each last a second or more: the polls see each point with a wide margin. The subprocesses
run single-threaded (OMP_NUM_THREADS=1) so the tests stay light and their timing steady on a busy
machine; the numbers do not depend on the thread count.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_e2e import TINY

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[1] / "src"
NAME = "killed"
PHASES = ["init", "reward", "eval_init", "search", "round1", "eval_round1"]
# TINY, with windows wide enough to land a kill in: ~250 init SFT steps (several seconds), 200 held-out
# problems x (greedy + 8 samples) per evaluation, and a learning round that always trains its 150 steps
# (epochs = 0) on whatever it kept (the init policy verifies a few samples, so it keeps some), and reward
# models trained for 150 steps each.
RECIPE = [*TINY, "init.sft.steps=250", "eval.problems=200", "eval.n=[1,8]", "learn.problems=100",
          "learn.expert_iteration.epochs=0", "learn.expert_iteration.sft.steps=150", "reward.train.steps=150",
          "reward.train.log_every=5"]
POLL_TIMEOUT = 120.0  # seconds to reach a kill point
RUN_TIMEOUT = 300.0  # seconds for a whole (resumed) run


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _run_args(runs_dir: Path, name: str, extra: list[str] = ()) -> list[str]:
    args = [sys.executable, "-m", "ponder.cli", "run", "addition", "--quiet", "--runs-dir", str(runs_dir), "--name", name]
    for s in [*RECIPE, *extra]:
        args += ["--set", s]
    return args


def _start(runs_dir: Path, extra: list[str] = ()) -> subprocess.Popen:
    """Start `ponder run` in the background, its stdout and stderr going to files in runs_dir."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    out, err = open(runs_dir / "stdout.txt", "w"), open(runs_dir / "stderr.txt", "w")  # noqa: SIM115
    try:
        return subprocess.Popen(_run_args(runs_dir, NAME, extra), stdout=out, stderr=err, env=_env(), cwd=runs_dir)
    finally:
        out.close()
        err.close()


def _resume(run: Path) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "ponder.cli", "run", "--quiet", "--resume", str(run)],
                       check=False, capture_output=True, text=True, env=_env(), cwd=run.parent, timeout=RUN_TIMEOUT)
    assert p.returncode == 0, f"resume failed (exit {p.returncode}):\n{p.stderr[-3000:]}"
    return p


def _metrics(run: Path) -> list[dict]:
    """The complete lines of metrics.jsonl written so far (a line being written is skipped)."""
    try:
        text = (run / "metrics.jsonl").read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def _state(run: Path) -> dict | None:
    try:
        return json.loads((run / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _wait_for(p: subprocess.Popen, runs_dir: Path, what: str, reached: Callable[[], bool]) -> None:
    """Poll until `reached()`; fail clearly if the run exits first or the point never comes."""
    deadline = time.monotonic() + POLL_TIMEOUT
    while time.monotonic() < deadline:
        if reached():
            return
        if p.poll() is not None:
            err = (runs_dir / "stderr.txt").read_text()[-2000:]
            pytest.fail(f"the run exited (code {p.returncode}) before {what}; if it finished, the window is too "
                        f"narrow: raise the steps/problems in RECIPE.\nstderr:\n{err}")
        time.sleep(0.01)
    pytest.fail(f"{what} not reached within {POLL_TIMEOUT:.0f} s")


def _sigkill(p: subprocess.Popen) -> None:
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait(timeout=30) == -signal.SIGKILL


@pytest.fixture
def started(tmp_path):
    """Start-and-clean-up: yields a function that starts a run; any process still alive is killed."""
    procs: list[subprocess.Popen] = []

    def start(extra: list[str] = ()) -> subprocess.Popen:
        procs.append(_start(tmp_path, extra))
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The same recipe run start to finish, once for the module."""
    runs_dir = tmp_path_factory.mktemp("uninterrupted")
    p = subprocess.run(_run_args(runs_dir, "whole"), check=False, capture_output=True, text=True, env=_env(), cwd=runs_dir,
                       timeout=RUN_TIMEOUT)
    assert p.returncode == 0, p.stderr[-3000:]
    run = runs_dir / "whole"
    summary = json.loads((run / "summary.json").read_text())
    # the learning round must really train, or killing "during the learning round" tests nothing
    assert summary["learning"][0]["kept"] > 0 and summary["learning"][0]["train_tokens"] > 0, summary["learning"]
    return run


def _loss_lines(metrics: list[dict]) -> list[dict]:
    return [m for m in metrics if "loss" in m]


def _line_key(m: dict) -> tuple:
    """What identifies a metrics line: its phase, step, event and fields."""
    return m.get("phase"), m.get("step"), m.get("event"), tuple(sorted(m))


def _assert_same_as_uninterrupted(run: Path, whole: Path) -> None:
    assert json.loads((run / "summary.json").read_text()) == json.loads((whole / "summary.json").read_text())
    assert _state(run)["done"] == PHASES
    for phase in ("init", "round1"):
        got = load_file(run / "checkpoints" / phase / "model.safetensors")
        want = load_file(whole / "checkpoints" / phase / "model.safetensors")
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want), f"checkpoints/{phase} weights differ"

    lines = (run / "metrics.jsonl").read_text().splitlines()
    metrics = []
    for i, line in enumerate(lines, start=1):
        try:
            metrics.append(json.loads(line))
        except json.JSONDecodeError as e:
            pytest.fail(f"metrics.jsonl:{i} is not JSON ({e}): {line[:200]!r}")
    keys = Counter((m["phase"], m["step"]) for m in _loss_lines(metrics))
    assert not [k for k, c in keys.items() if c > 1], f"duplicated loss lines: {[k for k, c in keys.items() if c > 1]}"
    assert [m["phase"] for m in metrics if m.get("event") == "phase_done"] == PHASES
    # the same lines as the uninterrupted run: none lost, none repeated (wall-clock values aside)
    assert Counter(map(_line_key, metrics)) == Counter(map(_line_key, _metrics(whole))), \
        "metrics.jsonl does not hold the lines of the uninterrupted run"
    expected = _loss_lines(_metrics(whole))
    assert sorted(keys) == sorted((m["phase"], m["step"]) for m in expected), "logged loss steps differ"
    got = {(m["phase"], m["step"]): m["loss"] for m in _loss_lines(metrics)}
    for m in expected:
        assert got[m["phase"], m["step"]] == pytest.approx(m["loss"], rel=1e-6), (m["phase"], m["step"])


def _has_loss_line(run: Path, phase: str, min_step: int = 0) -> Callable[[], bool]:
    return lambda: any(m.get("phase") == phase and "loss" in m and m["step"] >= min_step for m in _metrics(run))


def _in_eval_init(run: Path) -> Callable[[], bool]:
    def reached() -> bool:
        state = _state(run)
        return (run / "checkpoints" / "init").is_dir() and state is not None \
            and "reward" in state["done"] and "eval_init" not in state["done"]
    return reached


KILL_POINTS = {
    # name: (what, condition on the run directory, phases done when killed)
    "init_sft": ("a loss line of the init SFT", lambda run: _has_loss_line(run, "init"), []),
    "reward_training": ("a loss line of the process reward model's training",
                        lambda run: _has_loss_line(run, "reward_prm"), ["init"]),
    "eval_sampling": ("the evaluation of the initialized policy", _in_eval_init, ["init", "reward"]),
    "learning_round": ("a metrics line of the learning round", lambda run: lambda: any(
        m.get("phase") == "round1" for m in _metrics(run)), ["init", "reward", "eval_init", "search"]),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume_gives_the_uninterrupted_result(point, tmp_path, started, uninterrupted):
    what, condition, done = KILL_POINTS[point]
    run = tmp_path / NAME
    p = started()
    _wait_for(p, tmp_path, what, condition(run))
    _sigkill(p)
    state = _state(run)
    assert state is not None and state["done"] == done, \
        f"killed at the wrong point ({state and state['done']}); widen the window of {what}"
    _resume(run)
    _assert_same_as_uninterrupted(run, uninterrupted)


def test_sigkill_between_mid_phase_checkpoints_then_resume(tmp_path, started, uninterrupted):
    """With `checkpoint_every`, a kill mid-SFT resumes from the last checkpoint, not the phase start."""
    run = tmp_path / NAME
    p = started(["checkpoint_every=5"])
    _wait_for(p, tmp_path, "init SFT step 10", _has_loss_line(run, "init", min_step=10))
    _sigkill(p)
    assert _state(run)["done"] == []
    _resume(run)
    _assert_same_as_uninterrupted(run, uninterrupted)


@pytest.mark.parametrize("phase, done", [("init", []), ("reward_prm", ["init"])])
def test_sigterm_finishes_the_step_checkpoints_and_says_how_to_resume(tmp_path, started, uninterrupted, phase, done):
    run = tmp_path / NAME
    p = started()
    _wait_for(p, tmp_path, f"a loss line of {phase}", _has_loss_line(run, phase))
    os.kill(p.pid, signal.SIGTERM)
    try:
        code = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the run did not exit within 60 s of SIGTERM")
    err = (tmp_path / "stderr.txt").read_text()
    assert code == 130, f"exit code {code} after SIGTERM, expected 130\nstderr:\n{err[-2000:]}"
    assert "--resume" in err, f"stderr does not say how to resume:\n{err[-2000:]}"
    assert "Traceback" not in err
    assert _state(run)["done"] == done
    _resume(run)
    _assert_same_as_uninterrupted(run, uninterrupted)
