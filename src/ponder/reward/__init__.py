"""Rewards: what scores a solution (or each of its steps) for search and learning."""

from ponder.reward.base import AGGREGATIONS, OutcomeReward, ProcessReward, aggregate
from ponder.reward.verifier import GoldStepReward, VerifierReward

__all__ = ["AGGREGATIONS", "GoldStepReward", "OutcomeReward", "ProcessReward", "VerifierReward", "aggregate"]
