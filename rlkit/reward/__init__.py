"""Reward stage building blocks: the reward-function contract, loading a function from a recipe,
and running it in killable worker processes. Light imports only (no torch): worker processes
import this package."""

from rlkit.reward.contract import CONTRACT_KEYWORDS, RewardRequest
from rlkit.reward.isolation import ScoringPool
from rlkit.reward.loader import RewardFnSpec, check_reward_fn, load_reward_fn

__all__ = [
    "CONTRACT_KEYWORDS",
    "RewardFnSpec",
    "RewardRequest",
    "ScoringPool",
    "check_reward_fn",
    "load_reward_fn",
]
