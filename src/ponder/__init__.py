"""ponder: o1-style reasoning, reproducible on a laptop.

Policy initialization, reward design, search and learning, iterated, with the accuracy they buy
measured against the compute they cost. The names below are the public API; everything else is
reachable but not promised to stay.
"""

from ponder.config import ConfigError, RunConfig, load_recipe
from ponder.policy import ModelConfig, Policy, TinyPolicy
from ponder.reward import OutcomeReward, ProcessReward, VerifierReward
from ponder.search import best_of_n, majority_vote, select_best, weighted_vote
from ponder.tasks import Task, make_task, register
from ponder.types import Budget, Cost, Problem, Sample, Sampling, SearchResult

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "ConfigError",
    "Cost",
    "ModelConfig",
    "OutcomeReward",
    "Policy",
    "Problem",
    "ProcessReward",
    "RunConfig",
    "Sample",
    "Sampling",
    "SearchResult",
    "Task",
    "TinyPolicy",
    "VerifierReward",
    "best_of_n",
    "load_recipe",
    "majority_vote",
    "make_task",
    "register",
    "select_best",
    "weighted_vote",
]
