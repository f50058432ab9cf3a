"""Test-time compute scaling: accuracy versus compute for every searcher, and compute-optimal selection.

`sweep` runs each search method at each of its sizes over the same held-out problems and reports,
per (method, size), the accuracy and the mean cost per problem (tokens generated and encoded, policy
and reward calls, FLOPs), with each problem's correctness kept so that curves can be recombined.
Methods and their size knob:

  greedy                              one temperature-0 sample (size 1)
  majority, weighted_vote, best_of_n  N samples; votes weighted by, or the best by, the PRM's outcome score
  beam, dvts                          beam width (children per beam: `expansions`)
  mcts                                simulations per problem (children per expansion: `expansions`)

The task's verifier only grades the chosen text; it never chooses. The sampling methods share one
pass of the largest N per problem and each smaller N uses the first N samples (as
`ponder.eval.selection_table` does), but each size reports only what its own N samples cost.

`compute_optimal` then asks, as "Scaling LLM Test-Time Compute Optimally" (Snell et al., 2024) does:
if the method and size may be picked per difficulty bin, what accuracy does each compute budget
buy? Difficulty comes from `estimate_difficulty`, the policy's own pass rate judged by the verifier
(an oracle measure, like that paper's oracle difficulty bins), so the curve is an analysis tool, not
a method that could run without gold answers. `plot_scaling` draws all curves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ponder.policy.base import Policy
from ponder.progress import bar as progress_bar
from ponder.reward.base import OutcomeReward
from ponder.search.beam import BeamConfig, beam_search
from ponder.search.best_of_n import select_best
from ponder.search.dvts import DVTSConfig, dvts
from ponder.search.mcts import MCTSConfig, mcts
from ponder.search.voting import majority_vote, weighted_vote
from ponder.signals import check_stop
from ponder.tasks.base import Task, stable_seed
from ponder.types import Cost, Problem, Sample, Sampling, SearchResult


def _pick_majority(task: Task, group: Sequence[Sample], scores: Sequence[float]) -> int | None:
    return majority_vote([task.extract_answer(x.text) for x in group])


def _pick_weighted(task: Task, group: Sequence[Sample], scores: Sequence[float]) -> int | None:
    return weighted_vote([task.extract_answer(x.text) for x in group], scores)


def _pick_best(task: Task, group: Sequence[Sample], scores: Sequence[float]) -> int | None:
    return select_best(scores)


def _run_beam(problems, policy, prm, task, settings: dict, sampling: Sampling) -> list[SearchResult]:
    return beam_search(problems, policy, prm, task, config=BeamConfig(**settings), sampling=sampling)


def _run_dvts(problems, policy, prm, task, settings: dict, sampling: Sampling) -> list[SearchResult]:
    return dvts(problems, policy, prm, task, config=DVTSConfig(**settings), sampling=sampling)


def _run_mcts(problems, policy, prm, task, settings: dict, sampling: Sampling) -> list[SearchResult]:
    return mcts(problems, policy, prm, task, config=MCTSConfig(**settings), sampling=sampling)[0]


@dataclass(frozen=True)
class Searcher:
    """How the sweep runs one method. Three kinds: "greedy" (one temperature-0 sample), "sampling"
    (chooses among N shared samples with `pick(task, group, scores) -> index or None`; `uses_reward`:
    whether the choice reads the PRM's scores, a reward call per sample) and "tree" (`run(problems,
    policy, prm, task, settings, sampling) -> results`, sized by `knob`, with `extra` settings)."""

    kind: str
    knob: str | None = None
    pick: Callable[[Task, Sequence[Sample], Sequence[float]], int | None] | None = None
    uses_reward: bool = False
    run: Callable[..., list[SearchResult]] | None = None
    extra: tuple[str, ...] = ("expansions", "max_steps")


SEARCHERS: dict[str, Searcher] = {
    "greedy": Searcher("greedy"),
    "majority": Searcher("sampling", "n", _pick_majority),
    "weighted_vote": Searcher("sampling", "n", _pick_weighted, uses_reward=True),
    "best_of_n": Searcher("sampling", "n", _pick_best, uses_reward=True),
    "beam": Searcher("tree", "width", run=_run_beam),
    "dvts": Searcher("tree", "width", run=_run_dvts),
    "mcts": Searcher("tree", "simulations", run=_run_mcts, extra=("expansions", "max_steps", "c_puct")),
}
"""Every method the sweep knows, in the order of the docs: one entry per searcher."""
METHODS = tuple(SEARCHERS)
SAMPLING_METHODS = tuple(m for m, s in SEARCHERS.items() if s.kind == "sampling")
TREE_METHODS = tuple(m for m, s in SEARCHERS.items() if s.kind == "tree")
KNOBS = {m: s.knob for m, s in SEARCHERS.items()}
"""Each method's size knob (greedy has none: its only size is 1)."""
COST_FIELDS = ("tokens_generated", "tokens_encoded", "policy_calls", "reward_calls", "flops")


def _is_int(v: object, low: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _check_sizes(sizes: object, name: str) -> None:
    if (not isinstance(sizes, tuple) or not sizes or not all(_is_int(s) for s in sizes)
            or list(sizes) != sorted(set(sizes))):
        raise ValueError(f"{name} must be a non-empty tuple of increasing integers >= 1, got {sizes!r}")


def _check_number(v: object, name: str, *, low: float, strict: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > low if strict
                                                                                          else v >= low)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low}, got {v!r}")


@dataclass(frozen=True)
class SearchSpec:
    """One search method and the sizes of its knob to sweep, with its fixed settings."""

    method: str
    """One of METHODS."""
    budgets: tuple[int, ...] = (1,)
    """Sizes to sweep, increasing: N for majority/weighted_vote/best_of_n, the beam width for beam and
    dvts, simulations for mcts; greedy only has size 1."""
    expansions: int = 4
    """Children sampled per beam per step (beam, dvts) or per MCTS expansion."""
    c_puct: float = 1.0
    """MCTS exploration constant."""
    max_steps: int = 16
    """Most steps per solution in tree search."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"SearchSpec.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        _check_sizes(self.budgets, "SearchSpec.budgets")
        if SEARCHERS[self.method].kind == "greedy" and self.budgets != (1,):
            raise ValueError(f"SearchSpec.budgets must be (1,) for greedy, got {self.budgets!r}")
        if not _is_int(self.expansions):
            raise ValueError(f"SearchSpec.expansions must be an integer >= 1, got {self.expansions!r}")
        _check_number(self.c_puct, "SearchSpec.c_puct", low=0)
        if not _is_int(self.max_steps):
            raise ValueError(f"SearchSpec.max_steps must be an integer >= 1, got {self.max_steps!r}")

    @property
    def knob(self) -> str | None:
        """The setting that `budgets` sizes: "n", "width", "simulations", or None for greedy."""
        return KNOBS[self.method]

    def settings(self, size: int) -> dict:
        """The searcher settings at one size, e.g. {"width": 4, "expansions": 4} for beam."""
        searcher = SEARCHERS[self.method]
        if searcher.kind == "greedy":
            return {}
        if searcher.kind == "sampling":
            return {searcher.knob: size}
        return {searcher.knob: size, **{name: getattr(self, name) for name in searcher.extra}}


@dataclass(frozen=True)
class SearchConfig:
    """The `[search]` recipe table: which methods to sweep at which sizes, and their shared settings.
    The seed is the run's, passed to `sweep` by the caller."""

    methods: tuple[str, ...] = METHODS
    """Methods to sweep, in this order (any of greedy, majority, weighted_vote, best_of_n, beam, dvts, mcts)."""
    majority: tuple[int, ...] = (1, 4, 16)
    """Sample counts N for majority vote."""
    weighted_vote: tuple[int, ...] = (1, 4, 16)
    """Sample counts N for PRM-weighted majority vote."""
    best_of_n: tuple[int, ...] = (1, 4, 16)
    """Sample counts N for best-of-N by the PRM's outcome score."""
    beam: tuple[int, ...] = (1, 2, 4)
    """Beam widths for PRM-guided beam search."""
    dvts: tuple[int, ...] = (2, 4)
    """Beam widths for DVTS (one beam per subtree)."""
    mcts: tuple[int, ...] = (4, 8, 16)
    """Simulations per problem for MCTS."""
    problems: int = 100
    """Held-out (test split) problems searched."""
    temperature: float = 1.0
    """Sampling temperature for every method but greedy."""
    top_p: float = 1.0
    """Nucleus mass for every method but greedy."""
    max_new_tokens: int = 96
    """Token cap per sample (greedy and sampling methods) and per step (tree search)."""
    max_steps: int = 16
    """Most steps per solution in tree search."""
    expansions: int = 4
    """Children sampled per beam per step (beam, dvts) and per MCTS expansion."""
    c_puct: float = 1.0
    """MCTS exploration constant."""
    prefix_cache_mb: float = 0.0
    """Prefix KV cache (MiB) turned on, fresh, for each tree search when the policy has one; 0 = off."""
    difficulty_bins: int = 5
    """Difficulty quantile bins for compute-optimal selection."""
    difficulty_samples: int = 16
    """Samples per problem for the pass-rate difficulty estimate."""
    holdout: bool = True
    """Compute-optimal: choose per bin on half the problems and score on the other half."""

    def __post_init__(self) -> None:
        if not isinstance(self.methods, tuple) or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"SearchConfig.methods must be a tuple without repeats, got {self.methods!r}")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"SearchConfig.methods: unknown method {m!r} (allowed: {', '.join(METHODS)})")
        for m in METHODS[1:]:
            _check_sizes(getattr(self, m), f"SearchConfig.{m}")
        for name in ("problems", "max_new_tokens", "max_steps", "expansions", "difficulty_bins",
                     "difficulty_samples"):
            if not _is_int(getattr(self, name)):
                raise ValueError(f"SearchConfig.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        _check_number(self.temperature, "SearchConfig.temperature", low=0, strict=True)
        _check_number(self.top_p, "SearchConfig.top_p", low=0, strict=True)
        if self.top_p > 1:
            raise ValueError(f"SearchConfig.top_p must be in (0, 1], got {self.top_p!r}")
        _check_number(self.c_puct, "SearchConfig.c_puct", low=0)
        _check_number(self.prefix_cache_mb, "SearchConfig.prefix_cache_mb", low=0)

    def sizes(self, method: str) -> tuple[int, ...]:
        return (1,) if SEARCHERS[method].kind == "greedy" else getattr(self, method)

    def specs(self) -> list[SearchSpec]:
        """One SearchSpec per listed method, in `methods` order."""
        return [SearchSpec(m, self.sizes(m), self.expansions, self.c_puct, self.max_steps) for m in self.methods]


# -- the sweep ------------------------------------------------------------------------------------------


def _row(method: str, size: int, problems: Sequence[Problem], task: Task, texts: Sequence[str],
         costs: Sequence[Cost]) -> dict:
    """A sweep row from each problem's chosen text and cost."""
    n = max(len(problems), 1)
    correct = [float(task.verify(p, t)) for p, t in zip(problems, texts)]
    row = {"method": method, "size": size, "knob": KNOBS[method], "accuracy": sum(correct) / n}
    total = Cost.total(costs)
    row.update({f: getattr(total, f) / n for f in COST_FIELDS})
    row["encode_ratio"] = row["tokens_encoded"] / row["tokens_generated"] if row["tokens_generated"] else None
    row["per_problem"] = correct
    row["per_problem_tokens"] = [c.tokens_generated for c in costs]
    return row


def _sampling_rows(method: str, sizes: Sequence[int], problems: Sequence[Problem], task: Task,
                   groups: Sequence[Sequence[Sample]], scores: Sequence[Sequence[float]]) -> list[dict]:
    """Rows of one sampling method at each N from shared samples: the first N of each problem."""
    searcher = SEARCHERS[method]
    rows = []
    for n in sizes:
        texts, costs = [], []
        for g, s in zip(groups, scores):
            g, s = g[:n], s[:n]
            pick = searcher.pick(task, g, s)
            texts.append(g[0 if pick is None else pick].text)  # no answer anywhere: nothing to choose
            calls = len(g) if searcher.uses_reward else 0
            costs.append(Cost.total(x.cost for x in g) + Cost(reward_calls=calls))
        rows.append(_row(method, n, problems, task, texts, costs))
    return rows


def sweep(problems: Sequence[Problem], policy: Policy, prm: OutcomeReward, task: Task, cfg: SearchConfig, *,
          seed: int, progress: bool = True) -> list[dict]:
    """Accuracy and mean cost per problem of every method in `cfg.methods` at each of its sizes.

    `problems` are searched as given (`cfg.problems` says how many a caller should draw). Returns
    one row per (method, size), in `cfg.methods` order and increasing size: method, size,
    knob, accuracy, the means per problem of tokens_generated, tokens_encoded, policy_calls,
    reward_calls and flops, encode_ratio (tokens_encoded / tokens_generated, None if nothing was
    generated), per_problem (each problem's verifier score of the chosen text, 0 or 1) and
    per_problem_tokens (each problem's tokens generated). `prm` chooses: its outcome score (`score`)
    weights the votes and picks best-of-N; tree methods need its `step_scores` too.

    The sampling methods share one pass of the largest N; a smaller N's row counts its first N
    samples' costs (a shared call's policy_calls stay on the samples the engine put them on). Tree
    searches run once per (method, size) over all problems together; with `cfg.prefix_cache_mb` > 0
    and a policy that has `set_prefix_cache`, each gets a fresh prefix cache, so its tokens_encoded
    show its own reuse. The policy's prefix cache is off for everything else and is left as it was
    found, emptied.
    """
    specs = cfg.specs()
    if any(s.method in TREE_METHODS for s in specs) and not hasattr(prm, "step_scores"):
        raise ValueError("sweep: beam, dvts and mcts need a process reward (with step_scores)")
    cacheable = hasattr(policy, "set_prefix_cache")
    before = getattr(policy, "prefix_cache", None)
    items = [(s, size) for s in specs for size in s.budgets]
    shared: tuple[list, list] | None = None  # the sampling methods' samples and PRM scores, drawn once
    rows: list[dict] = []
    bar = progress_bar(items, desc="scaling sweep", enabled=progress)
    try:
        if cacheable:
            policy.set_prefix_cache(0)
        for spec, size in bar:
            bar.set_postfix_str(f"{spec.method}@{size}")
            check_stop("scaling sweep")
            searcher = SEARCHERS[spec.method]
            if searcher.kind == "greedy":
                groups = _generate(policy, problems, Sampling(n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens))
                rows.append(_row("greedy", 1, problems, task, [g[0].text for g in groups], [g[0].cost for g in groups]))
            elif searcher.kind == "sampling":
                if shared is None:
                    n_max = max(max(cfg.sizes(m)) for m in cfg.methods if m in SAMPLING_METHODS)
                    groups = _generate(policy, problems, Sampling(n=n_max, temperature=cfg.temperature, top_p=cfg.top_p,
                                                                  max_new_tokens=cfg.max_new_tokens, seed=seed))
                    shared = groups, _score_groups(prm, problems, groups)
                rows += _sampling_rows(spec.method, [size], problems, task, *shared)
            else:
                sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                    seed=stable_seed(seed, spec.method, size) % 2**31)
                if cacheable and cfg.prefix_cache_mb > 0:
                    policy.set_prefix_cache(cfg.prefix_cache_mb)
                try:
                    results = searcher.run(problems, policy, prm, task, spec.settings(size), sampling)
                finally:
                    if cacheable:
                        policy.set_prefix_cache(0)
                rows.append(_row(spec.method, size, problems, task, [r.text for r in results],
                                 [r.cost for r in results]))
    finally:
        bar.close()
        if cacheable and before is not None:
            policy.set_prefix_cache(before.max_bytes / 2**20)
    return rows


def _generate(policy: Policy, problems: Sequence[Problem], sampling: Sampling) -> list[list[Sample]]:
    from ponder.eval import generate_in_chunks  # here, not at the top: ponder.eval imports ponder.search

    return generate_in_chunks(policy, [p.prompt for p in problems], sampling, chunk=max(1, 512 // sampling.n),
                              progress=False)


def _score_groups(prm: OutcomeReward, problems: Sequence[Problem], groups: Sequence[Sequence[Sample]]
                  ) -> list[list[float]]:
    from ponder.eval import score_groups  # here, not at the top: ponder.eval imports ponder.search

    return score_groups(prm, problems, groups)


def estimate_difficulty(problems: Sequence[Problem], policy: Policy, task: Task, n: int, temperature: float,
                        seed: int, *, top_p: float = 1.0, max_new_tokens: int = 96) -> list[float]:
    """Each problem's pass rate: the fraction of `n` policy samples that the task's verifier accepts.

    This uses the gold answers: it is an oracle difficulty measure, for analysing which method suits
    which problems (as the oracle difficulty bins of Snell et al.), not something a deployed search
    could compute. Lower means harder. With the sweep's seed, N and settings it draws the very samples
    the sampling methods saw; another seed gives an independent estimate, less tied to their luck."""
    if not _is_int(n):
        raise ValueError(f"estimate_difficulty: n must be an integer >= 1, got {n!r}")
    groups = _generate(policy, problems, Sampling(n=n, temperature=temperature, top_p=top_p,
                                                  max_new_tokens=max_new_tokens, seed=seed))
    return [sum(task.verify(p, s.text) for s in g) / len(g) for p, g in zip(problems, groups)]


# -- compute-optimal selection ---------------------------------------------------------------------------


def assign_bins(difficulty: Sequence[float], bins: int) -> list[int]:
    """Quantile bin of each problem, 0 for the lowest values: a problem's bin is set by how many
    problems have a strictly lower value, so equal values share a bin (and some bins may be empty)."""
    if not _is_int(bins):
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    order = sorted(difficulty)
    n = len(order)
    below: dict[float, int] = {}
    for k, d in enumerate(order):
        below.setdefault(d, k)
    return [min(bins - 1, below[d] * bins // n) for d in difficulty]


def _halves(bin_of: Sequence[int], holdout: bool) -> tuple[list[int], list[int]]:
    """(problems to choose on, problems to score on): with holdout, every other problem in order of
    (bin, index), so each bin of two or more is split in half; else all problems both times."""
    order = sorted(range(len(bin_of)), key=lambda i: (bin_of[i], i))
    return (order[0::2], order[1::2]) if holdout else (order, order)


def compute_optimal(rows: Sequence[dict], difficulty: Sequence[float], bins: int, *, holdout: bool = True,
                    budgets: Sequence[float] | None = None) -> list[dict]:
    """The compute-optimal curve: at each budget, the best (method, size) per difficulty bin.

    Problems are split into `bins` quantile bins of `difficulty` (`assign_bins`). For each budget (by
    default each distinct mean tokens_generated of the rows), one (method, size) is chosen per bin
    so that the accuracy on the choosing problems is highest while the mean tokens generated per
    problem, over all problems, stays within the budget; ties go to the cheaper choice. Rows need
    `per_problem`, and `per_problem_tokens` where available (else every problem counts the row's
    mean). Returns one row per budget that some choice fits: method "compute_optimal", budget,
    tokens_generated, accuracy, choice ({bin: "method@size"}), holdout, problems_scored.

    Choosing per bin on the problems it is scored on is optimistic (the choice fits their noise), so
    by default (`holdout`) the choice is made on every other problem of each bin and the accuracy is
    that of the other half (a bin's budget share still counts all its problems' tokens, which are
    costs, not grades); with holdout=False it is chosen and scored on all problems, which is
    never below the best single (method, size) within the budget. Both are oracle analyses: the bins
    come from gold-answer pass rates.
    """
    options = [r for r in rows if r.get("method") != "compute_optimal"]
    n = len(difficulty)
    if not options:
        return []
    for r in options:
        if len(r["per_problem"]) != n or len(r.get("per_problem_tokens", difficulty)) != n:
            raise ValueError(f"compute_optimal: row {r['method']}@{r['size']} has {len(r['per_problem'])} "
                             f"problems but difficulty has {n}")
    if holdout and n < 2:
        raise ValueError("compute_optimal: holdout needs at least 2 problems")
    bin_of = assign_bins(difficulty, bins)
    choose, score = _halves(bin_of, holdout)
    members = {b: [i for i in range(n) if bin_of[i] == b] for b in sorted(set(bin_of))}
    tokens = [r.get("per_problem_tokens") or [r["tokens_generated"]] * n for r in options]
    chosen_set = set(choose)
    # per bin and option: (mean-token share over all problems, correct count on the choosing problems)
    table = {b: [(sum(tokens[o][i] for i in idx) / n, sum(options[o]["per_problem"][i] for i in idx
                                                            if i in chosen_set)) for o in range(len(options))]
             for b, idx in members.items()}
    frontier = [(0.0, 0.0, ())]  # (cost, gain, options chosen per bin): the Pareto front over bins so far
    for b in members:
        grown = sorted(((c + dc, g + dg, ch + (o,)) for c, g, ch in frontier for o, (dc, dg) in enumerate(table[b])),
                       key=lambda s: (s[0], -s[1]))
        frontier, best = [], -math.inf
        for state in grown:
            if state[1] > best + 1e-12:
                frontier.append(state)
                best = state[1]
    levels = sorted({float(r["tokens_generated"]) for r in options}) if budgets is None else sorted(budgets)
    out = []
    for budget in levels:
        fits = [s for s in frontier if s[0] <= budget + 1e-9 * max(1.0, abs(budget))]
        if not fits:
            continue
        cost, _, picks = fits[-1]  # the front is increasing in both cost and gain
        pick_of = dict(zip(members, picks))
        acc = sum(options[pick_of[bin_of[i]]]["per_problem"][i] for i in score) / len(score)
        out.append({"method": "compute_optimal", "budget": budget, "tokens_generated": cost, "accuracy": acc,
                    "choice": {b: f"{options[o]['method']}@{options[o]['size']}" for b, o in pick_of.items()},
                    "holdout": holdout, "problems_scored": len(score)})
    return out


# -- plotting ----------------------------------------------------------------------------------------------


def plot_scaling(rows: Sequence[dict], path: str | Path, x: str = "tokens_generated") -> bool:
    """Accuracy versus mean `x` per problem (log scale), one line per method, compute-optimal dashed; rows
    with a 95% interval (`ci`, [lo, hi]) get error bars.
    Writes a PNG at `path`; returns False (writing nothing) when no row has a positive `x`."""
    shown = [r for r in rows if isinstance(r.get(x), (int, float)) and r[x] > 0]
    if not shown:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(r["method"] for r in shown):
        pts = sorted((r for r in shown if r["method"] == method), key=lambda r: r[x])
        optimal = method == "compute_optimal"
        cis = [r.get("ci") for r in pts]
        yerr = None if not all(cis) else [[r["accuracy"] - c[0] for r, c in zip(pts, cis)],
                                          [c[1] - r["accuracy"] for r, c in zip(pts, cis)]]
        ax.errorbar([r[x] for r in pts], [r["accuracy"] for r in pts], yerr=yerr, fmt="--" if optimal else "-o",
                    label=method.replace("_", " "), color="black" if optimal else None, markersize=4, capsize=2,
                    linewidth=2 if optimal else 1.2)
    ax.set_xscale("log")
    ax.set_xlabel(f"{x.replace('_', ' ')} per problem (mean)")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy versus test-time compute")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
