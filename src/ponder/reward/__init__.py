"""Rewards: what scores a solution (or each of its steps) for search and learning."""

from ponder.reward.verifier import OutcomeReward, VerifierReward

__all__ = ["OutcomeReward", "VerifierReward"]
