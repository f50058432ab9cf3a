"""Policies: the `Policy` protocol and the built-in engine (`TinyPolicy`) behind it."""

from ponder.policy.base import Policy
from ponder.policy.tiny import PolicyLoadError, TinyPolicy
from ponder.policy.tokenizer import CharTokenizer
from ponder.policy.transformer import ModelConfig

__all__ = ["CharTokenizer", "ModelConfig", "Policy", "PolicyLoadError", "TinyPolicy"]
