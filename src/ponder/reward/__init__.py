"""Rewards: what scores a solution (or each of its steps) for search and learning."""

from ponder.reward.base import AGGREGATIONS, OutcomeReward, ProcessReward, aggregate
from ponder.reward.ensemble import ENSEMBLE_RULES, ProcessRewardEnsemble, RewardEnsemble, ensemble_scores
from ponder.reward.metrics import (
    auroc,
    best_of_n_curve,
    first_error_index,
    predicted_first_error,
    process_bench_f1,
    step_f1,
)
from ponder.reward.shaping import (
    TRANSFORMS,
    ShapedReward,
    clip_process_rewards,
    delta_process_rewards,
    format_reward,
    length_penalty,
    potential_shaping,
    returns,
    shape_steps,
)
from ponder.reward.verifier import GoldStepReward, VerifierReward

__all__ = ["AGGREGATIONS", "GoldStepReward", "OutcomeReward", "ProcessReward", "VerifierReward", "aggregate"]

# shaping, ensembles and reward-model metrics
__all__ += [
    "ENSEMBLE_RULES",
    "TRANSFORMS",
    "ProcessRewardEnsemble",
    "RewardEnsemble",
    "ShapedReward",
    "auroc",
    "best_of_n_curve",
    "clip_process_rewards",
    "delta_process_rewards",
    "ensemble_scores",
    "first_error_index",
    "format_reward",
    "length_penalty",
    "potential_shaping",
    "predicted_first_error",
    "process_bench_f1",
    "returns",
    "shape_steps",
    "step_f1",
]
