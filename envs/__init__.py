"""Multi-turn environments (tool use, search-style QA, gated multi-step tasks) register here."""

from envs import calculator  # noqa: F401
from envs import retrieval_qa  # noqa: F401
from envs import multistep  # noqa: F401
