"""The run directory: resolved config, metrics log, checkpoints, samples, state for resuming.

    runs/<name>/
      config.toml        the resolved recipe (what actually ran; `ponder run config.toml` repeats it)
      metrics.jsonl      one JSON object per logged step: phase, step, loss, accuracy, tokens, time;
                         each phase's `phase_done` line: its seconds, and by activity (`ponder.timing`)
      state.json         phases finished, their results, and the metrics line count at that point
      checkpoints/<phase>/  model.safetensors + config.json after each phase that changes the policy
      samples/<phase>.jsonl  completions from each evaluation, for reading what the model does
      summary.json       machine-readable results (no wall-clock fields: equal seeds give equal files)
      plots/*.png, report.html

Every file is written atomically (a temporary file, then a rename), so a crash leaves either the old
or the new version. `state.json` is written last in a phase; on resume, metrics lines past its count
(from a phase that did not finish) are dropped, so the log never holds duplicates.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any


class RunDirError(ValueError):
    """A run directory problem the user can fix (exists already, not a run, ...)."""


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and a rename, fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


class Run:
    """An open run directory. Create with `Run.create` (new) or `Run.open` (resume)."""

    def __init__(self, path: Path, state: dict) -> None:
        self.path = path
        self.state = state
        self._tb = None
        self._t0 = time.time() - state.get("elapsed", 0.0)

    @classmethod
    def create(cls, path: str | Path, *, force: bool = False) -> Run:
        path = Path(path)
        if path.exists():
            if not force:
                raise RunDirError(f"{path} already exists; choose another --name, pass --force to overwrite it, "
                                  f"or --resume {path} to continue it")
            if path.is_dir() and not (path / "state.json").exists() and any(path.iterdir()):
                raise RunDirError(f"{path} exists and is not a ponder run; refusing to delete it")
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        (path / "checkpoints").mkdir(parents=True)
        run = cls(path, {"done": [], "results": {}, "metrics_lines": 0, "elapsed": 0.0})
        run.save_state()
        return run

    @classmethod
    def open(cls, path: str | Path) -> Run:
        path = Path(path)
        state_file = path / "state.json"
        if not state_file.is_file():
            raise RunDirError(f"{path}: not a ponder run directory (no state.json)")
        try:
            state = json.loads(state_file.read_text())
        except json.JSONDecodeError as e:
            raise RunDirError(f"{state_file}: unreadable ({e})") from None
        run = cls(path, state)
        run._truncate_metrics(state.get("metrics_lines", 0))
        return run

    # -- metrics -------------------------------------------------------------------------------------

    def _truncate_metrics(self, lines: int) -> None:
        f = self.path / "metrics.jsonl"
        if not f.exists():
            return
        kept = f.read_text().splitlines(keepends=True)[:lines]
        write_atomic(f, "".join(line for line in kept if line.endswith("\n")))

    def log(self, record: dict) -> None:
        """Append one metrics line (adds wall time) and mirror numbers to TensorBoard if installed."""
        record = {**record, "time": round(time.time() - self._t0, 3)}
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        self.state["metrics_lines"] = self.state.get("metrics_lines", 0) + 1
        self._tensorboard(record)

    def _tensorboard(self, record: dict) -> None:
        if self._tb is False:
            return
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional extra is not installed
                self._tb = False
                return
            self._tb = SummaryWriter(str(self.path / "tensorboard"))
        step = record.get("step", self.state["metrics_lines"])
        for k, v in record.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "time"):
                self._tb.add_scalar(f"{record.get('phase', 'run')}/{k}", v, step)

    def metrics(self) -> list[dict]:
        f = self.path / "metrics.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []

    # -- phases and checkpoints ----------------------------------------------------------------------

    def done(self, phase: str) -> bool:
        return phase in self.state["done"]

    def finish_phase(self, phase: str, result: Any = None) -> None:
        """Record a finished phase and its result; written last, so a crash before it redoes the phase."""
        if result is not None:
            self.state["results"][phase] = result
        if phase not in self.state["done"]:
            self.state["done"].append(phase)
        self.state.pop("partial", None)
        self.save_state()
        self._remove_partials(phase)
        (self.path / "checkpoints" / f"{phase}.data.json").unlink(missing_ok=True)

    def save_state(self) -> None:
        self.state["elapsed"] = time.time() - self._t0
        write_json(self.path / "state.json", self.state)

    def checkpoint_dir(self, phase: str) -> Path:
        return self.path / "checkpoints" / phase

    def save_checkpoint(self, policy, phase: str, *, last: bool = True) -> Path:
        """Save the policy under checkpoints/<phase> atomically (a temporary directory, then a rename);
        with `last`, it is the policy a resumed run continues from."""
        final = self.checkpoint_dir(phase)
        tmp = final.with_name(final.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        policy.save(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        if last:
            self.state["last_checkpoint"] = phase
        return final

    def save_partial(self, policy, phase: str, tensors: dict, meta: dict) -> None:
        """Save a phase's progress (policy weights, loop tensors, loop meta) under
        checkpoints/<phase>.partial-<step>, then record it in state.json with the metrics line count it
        goes with, then delete older saves: a kill at any point leaves state.json naming a complete save."""
        from safetensors.torch import save_file

        name = f"{phase}.partial-{meta['step']}"
        final = self.path / "checkpoints" / name
        tmp = final.with_name(final.name + ".tmp")
        for d in (tmp, final):
            if d.exists():
                shutil.rmtree(d)
        policy.save(tmp / "policy")
        save_file(tensors, str(tmp / "loop.safetensors"))
        write_atomic(tmp / "loop.json", json.dumps(meta))
        tmp.rename(final)
        self.state["partial"] = {"phase": phase, "dir": name}
        self.save_state()
        self._remove_partials(phase, keep=name)

    def _remove_partials(self, phase: str, keep: str | None = None) -> None:
        for d in (self.path / "checkpoints").glob(f"{phase}.partial-*"):
            if d.name != keep:
                shutil.rmtree(d)

    def load_partial(self, phase: str) -> tuple[Path, dict, dict] | None:
        """(policy dir, loop tensors, loop meta) of a phase's saved progress, or None."""
        from safetensors.torch import load_file

        partial = self.state.get("partial")
        if not partial or partial["phase"] != phase:
            return None
        d = self.path / "checkpoints" / partial["dir"]
        return d / "policy", load_file(str(d / "loop.safetensors")), json.loads((d / "loop.json").read_text())

    def save_phase_data(self, phase: str, data: Any) -> None:
        """Keep what a phase produced before its training step (e.g. a round's kept samples)."""
        write_json(self.path / "checkpoints" / f"{phase}.data.json", data)

    def load_phase_data(self, phase: str) -> Any:
        f = self.path / "checkpoints" / f"{phase}.data.json"
        return json.loads(f.read_text()) if f.exists() else None

    def write_samples(self, phase: str, rows: list[dict]) -> None:
        write_atomic(self.path / "samples" / f"{phase}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))

    def close(self) -> None:
        if self._tb:
            self._tb.close()
