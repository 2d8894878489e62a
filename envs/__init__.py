"""Multi-turn environments (tool use, search-style QA, gated multi-step tasks) register here."""

from envs import calculator  # noqa: F401
