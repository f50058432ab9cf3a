"""Rollout generation and verification fanned out over Ray workers, with the same results as one process.

Sampling and verifying are the loop's embarrassingly parallel parts: learning stays in the driver
process, on one policy, while `RayPolicy` sends the batches of each `generate` call to `workers`
Ray actors that hold copies of it, and `RayVerifier` scores chunks of a list of texts in Ray tasks.
Typical use (what `--workers N` / `--ray-address` do):

    start_ray(workers, address)                  # once; a no-op if Ray is already up
    policy = RayPolicy(policy, workers=workers)  # train `policy` as before: learners see no difference
    reward = RayVerifier(VerifierReward(task), workers=workers)
    ...
    policy.close(); stop_ray()

Why results are identical to the in-process run for the same seed: a seeded `TinyPolicy.generate`
splits its prompts into batches of `prompts_per_batch(sampling)` prompts and draws batch k from its
own generator, seeded `batch_seed(seed, k)`, so batch k generated alone with that seed samples the
same tokens (tests/test_policy.py checks this). `RayPolicy.generate` makes the same batches, sends
batch k to worker k % workers with `seed=batch_seed(seed, k)` and concatenates the answers in order.
Each Sample carries its own share of its batch's cost, so costs add up to the in-process call's too.
An unseeded call first draws a seed from the local policy's generator (one draw per call): runs stay
reproducible from the policy's seed, but that stream differs from an in-process unseeded call's,
which draws every token from the generator itself.

Weights: learners train the local policy (`RayPolicy` forwards `parameters`, `logprobs`, `train`,
`save`, `.model`, ... to it, so it goes wherever a `TinyPolicy` goes). Before each `generate`,
if the local weights changed since the last broadcast (their version key: parameter identities and
in-place version counters, bumped by every optimizer step, `copy_` and `load_state_dict`; or an
explicit `weights_changed()` / `train(True)` / `load_weights`), the state dict is put in the
object store once and every worker loads it and empties its prefix cache. So workers always sample
from the current weights, and a run that never changes them ships them once.

Limits:
- The built-in engine only (`TinyPolicy`): workers rebuild it from its config, tokenizer and state
  dict. The HF and vLLM backends are not wrapped (vLLM has its own tensor/data parallelism).
- Each worker's prefix cache only sees the batches it was sent, so with a prefix cache the hits,
  and hence `tokens_encoded` and `flops`, differ from one process (samples agree up to float
  rounding, as with the cache on or off in one process). Without a prefix cache they are exact.
- Edits that bypass the version counters (`p.data.copy_(...)`) are invisible: call
  `weights_changed()` after them, as `TinyPolicy` asks anyway.
- `copy.deepcopy(ray_policy)` gives a plain in-process copy of the local policy: frozen reference
  policies (KL anchors, DPO's initial policy) only score, so they need no workers.
- `RayVerifier` ships the reward to the workers once, when it is made: wrap verifiers and other
  fixed scorers, not a reward model that is still training.
- On a cluster (`address`), ponder must be importable on every node; weights travel through the
  object store, so no shared file system is needed.
- Exact equality needs the same torch build, and the same float results, in the workers as in the
  driver: workers run one torch thread by default (`threads`); on a different machine or build,
  logits may differ in the last bits and the odd sample with them.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from ponder.policy.base import batch_seed
from ponder.policy.tiny import TinyPolicy
from ponder.policy.tokenizer import CharTokenizer
from ponder.policy.transformer import ModelConfig
from ponder.reward.base import OutcomeReward, check_pairs
from ponder.types import Problem, Sample, Sampling

INSTALL_HINT = "pip install -e '.[ray]'"


def _ray():
    """The `ray` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"distributed runs need Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    return workers


def start_ray(workers: int, address: str | None = None, *, quiet: bool = True) -> None:
    """Start a local Ray instance with `workers` CPUs, or connect to the cluster at `address`
    ("auto", "host:port", "ray://host:port"); a no-op if Ray is already initialized.

    Token authentication follows Ray's own `RAY_AUTH_MODE` variable (set it to "disabled" for a
    private local instance); the dashboard is off; with `quiet`, Ray logs warnings only and worker
    output is not forwarded (worker exceptions still reach the caller)."""
    _check_workers(workers)
    ray = _ray()
    if ray.is_initialized():
        return
    settings: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING if quiet else logging.INFO,
                                "log_to_driver": not quiet}
    if address:
        ray.init(address=address, **settings)
    else:
        ray.init(num_cpus=workers, **settings)


def stop_ray() -> None:
    """Shut Ray down (a no-op if it is not running, or not installed)."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()


def _get(refs):
    """`ray.get`, re-raising a worker's exception as itself rather than wrapped in a RayTaskError:
    a ValueError (what a user can cause: a prompt too long, bad data) alone, anything else with the
    worker's traceback as its cause."""
    ray = _ray()
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause
        if isinstance(cause, ValueError):
            raise cause from None
        if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
            raise cause from e
        raise


# -- policy -----------------------------------------------------------------------------------------


class _Worker:
    """A Ray actor's copy of the built-in engine. It never learns: it loads what the driver sends."""

    def __init__(self, model: dict, tokenizer: dict, dtype: str, prefix_cache_mb: float, threads: int | None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.policy = TinyPolicy(ModelConfig(**model), tokenizer=CharTokenizer.from_dict(tokenizer), dtype=dtype,
                                 prefix_cache_mb=prefix_cache_mb)
        self.policy.model.eval()
        for p in self.policy.model.parameters():
            p.requires_grad_(False)

    def load(self, state: dict[str, torch.Tensor], dtype: str) -> None:
        self.policy.dtype = dtype
        self.policy.model.load_state_dict(state)
        self.policy.weights_changed()

    def set_prefix_cache(self, mb: float) -> None:
        self.policy.set_prefix_cache(mb)

    def generate(self, prompts: list[str], sampling: Sampling, batch_size: int) -> list[list[Sample]]:
        # the driver's batch size, so this batch (at most prompts_per_batch prompts) is decoded whole,
        # on `sampling.seed` alone, and is never split again
        self.policy.batch_size = batch_size
        return self.policy.generate(prompts, sampling)


class RayPolicy:
    """A `TinyPolicy` whose `generate` runs on `workers` Ray actors; everything else is the local
    policy's (see the module docstring). Starts a local Ray instance if none is running."""

    _OWN = frozenset({"local", "workers", "_actors", "_sent"})

    def __init__(self, policy: TinyPolicy, *, workers: int, threads: int | None = 1,
                 cpus_per_worker: float | None = None) -> None:
        _check_workers(workers)
        if not isinstance(policy, TinyPolicy):
            raise TypeError(f"RayPolicy wraps the built-in engine (TinyPolicy), not {type(policy).__name__}")
        ray = _ray()
        if not ray.is_initialized():
            start_ray(workers)
        self.local = policy
        self.workers = workers
        mb = policy.prefix_cache.max_bytes / 2**20 if policy.prefix_cache is not None else 0
        options: dict[str, Any] = {"scheduling_strategy": "SPREAD"}
        if cpus_per_worker is not None:
            options["num_cpus"] = cpus_per_worker
        actor = ray.remote(**options)(_Worker)
        self._actors = [actor.remote(policy.config.to_dict(), policy.tokenizer.to_dict(), policy.dtype, mb, threads)
                        for _ in range(workers)]
        self._sent: tuple | None = None  # version key of the weights the workers hold; None: resend

    # -- attributes: our own, else the local policy's ----------------------------------------------

    def __getattr__(self, name: str) -> Any:
        local = self.__dict__.get("local")
        if local is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(local, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:  # e.g. `policy.batch_size = 8` must change how the local policy (and so generate) batches
            setattr(self.local, name, value)

    def __deepcopy__(self, memo: dict) -> TinyPolicy:
        return copy.deepcopy(self.local, memo)

    def __repr__(self) -> str:
        return f"RayPolicy({self.local.__class__.__name__}, workers={self.workers})"

    # -- weights --------------------------------------------------------------------------------------

    def _version(self) -> tuple:
        return self.local._weights_key()

    def _refresh(self) -> None:
        """Ship the local weights to every worker if they changed since the last time."""
        key = self._version()
        if key == self._sent:
            return
        ray = _ray()
        state = ray.put({k: v.detach().cpu() for k, v in self.local.model.state_dict().items()})
        _get([a.load.remote(state, self.local.dtype) for a in self._actors])
        self._sent = key

    def weights_changed(self) -> None:
        self.local.weights_changed()
        self._sent = None

    def load_weights(self, path) -> None:
        self.local.load_weights(path)
        self._sent = None

    def train(self, mode: bool = True) -> RayPolicy:
        self.local.train(mode)
        if mode:
            self._sent = None
        return self

    def set_prefix_cache(self, mb: float):
        """Set the prefix cache of the local policy and of every worker (each a fresh one of `mb` MiB)."""
        out = self.local.set_prefix_cache(mb)
        _get([a.set_prefix_cache.remote(mb) for a in self._actors])
        return out

    # -- the Policy protocol ------------------------------------------------------------------------

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[list[Sample]]:
        prompts = list(prompts)
        if not prompts:
            return []
        if not self._actors:
            raise RuntimeError("this RayPolicy is closed: its workers were stopped")
        seed = sampling.seed
        if seed is None:  # one draw from the local generator: reproducible, and batches stay independent
            seed = int(torch.randint(2**62, (1,), generator=self.local.generator))
        self._refresh()
        per_batch = self.local.prompts_per_batch(sampling)
        refs = [self._actors[k % self.workers].generate.remote(prompts[i : i + per_batch],
                                                               replace(sampling, seed=batch_seed(seed, k)),
                                                               self.local.batch_size)
                for k, i in enumerate(range(0, len(prompts), per_batch))]
        return [group for part in _get(refs) for group in part]

    def logprobs(self, prompts: Sequence[str], completions: Sequence[str], *, eos: bool = True):
        return self.local.logprobs(prompts, completions, eos=eos)

    def prompts_per_batch(self, sampling: Sampling) -> int:
        return self.local.prompts_per_batch(sampling)

    def room(self, prompt: str) -> int:
        return self.local.room(prompt)

    def parameters(self):
        return self.local.parameters()

    def num_params(self) -> int:
        return self.local.num_params()

    def save(self, path) -> None:
        self.local.save(path)

    def close(self) -> None:
        """Stop the workers (Ray itself keeps running: `stop_ray()`); the local policy stays usable."""
        ray = _ray()
        if ray.is_initialized():
            for a in self._actors:
                ray.kill(a)
        self._actors = []


# -- verification -----------------------------------------------------------------------------------


def _score_chunk(reward: OutcomeReward, problems: list[Problem], texts: list[str]) -> list[float]:
    return reward.score(problems, texts)


@functools.cache
def _score_task():
    return _ray().remote(num_cpus=1)(_score_chunk)


def parallel_scores(reward: OutcomeReward, problems: Sequence[Problem], texts: Sequence[str], *, workers: int,
                    chunk_size: int | None = None) -> list[float]:
    """`reward.score(problems, texts)` computed in Ray tasks over contiguous chunks (by default one
    per worker), in order. `reward` may be an object ref from `ray.put`, to ship it only once. The
    copies' `calls` counters are not sent back: count the texts yourself (RayVerifier does)."""
    _check_workers(workers)
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    check_pairs(problems, texts)
    if not texts:
        return []
    size = chunk_size or math.ceil(len(texts) / workers)
    refs = [_score_task().remote(reward, list(problems[i : i + size]), list(texts[i : i + size]))
            for i in range(0, len(texts), size)]
    return [float(s) for part in _get(refs) for s in part]


class RayVerifier:
    """An `OutcomeReward` whose `score` runs the wrapped reward in Ray tasks over `workers` chunks of
    the list (or chunks of `chunk_size` texts), as many at once as the cluster has CPUs, and returns
    the scores in order; worth it for expensive verifiers (sandboxed code). Other methods (a process reward's
    `step_scores`, ...) run in-process on the wrapped reward. `calls` counts both. Starts a local Ray
    instance if none is running."""

    def __init__(self, reward: OutcomeReward, *, workers: int, chunk_size: int | None = None) -> None:
        _check_workers(workers)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        ray = _ray()
        if not ray.is_initialized():
            start_ray(workers)
        self.reward, self.workers, self.chunk_size = reward, workers, chunk_size
        self._ref = ray.put(reward)  # shipped once, not with every call
        self._remote_calls = 0

    @property
    def calls(self) -> int:
        return getattr(self.reward, "calls", 0) + self._remote_calls

    def score(self, problems: Sequence[Problem], texts: Sequence[str]) -> list[float]:
        scores = parallel_scores(self._ref, problems, texts, workers=self.workers, chunk_size=self.chunk_size)
        self._remote_calls += len(texts)
        return scores

    def __getattr__(self, name: str) -> Any:
        reward = self.__dict__.get("reward")
        if reward is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(reward, name)


__all__ = ["INSTALL_HINT", "RayPolicy", "RayVerifier", "parallel_scores", "start_ray", "stop_ray"]
