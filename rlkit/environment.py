"""Multi-turn environments: the protocol, the registry, and the options a recipe sets.

An environment answers the model's turns: after each turn the rollout worker calls
`step(turn_text)` and appends the returned observation to the context (masked out of the loss),
until the environment says `done`, the model stops, or a turn or token limit is reached. Each
step may carry an immediate reward (a step critic); the sample records them with the turn
boundaries, for rewards such as G-RA and methods such as EMPG and LLDS.

Environments are user code like reward functions: the rollout worker runs them in a separate
process with a per-step timeout (`rlkit.rollout.env_host`), so one that raises or hangs ends its
episode with a recorded error instead of the run.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from collections.abc import Callable

from rlkit.registry import Registry


@dataclass(frozen=True)
class StepResult:
    """What an environment returns for one model turn."""

    observation: str = ""  # text appended after the turn (tool output, search results); not trained on
    reward: float = 0.0  # immediate reward of this step (rule-based step critic)
    done: bool = False  # the episode is over


class Environment(Protocol):
    """One episode's environment. A new instance is made for every episode."""

    stop: tuple[str, ...]  # strings that end the model's turn (e.g. "</calc>"); the string is kept

    def reset(self, prompt: str, ground_truth: str | None, extra: dict[str, Any]) -> None:
        """Start an episode for one dataset row."""
        ...

    def step(self, action: str) -> StepResult:
        """React to the model's turn (its text, up to and including a stop string)."""
        ...


EnvironmentFactory = Callable[..., Environment]  # called with the recipe's env options
ENVIRONMENTS: Registry[EnvironmentFactory] = Registry("environment")


# The environments shipped in envs/, by the module that registers each. They are plug-ins, loaded
# by name as a user's own module is (the core never imports them), and only when asked for.
SHIPPED_ENVIRONMENTS = {"calculator": "envs.calculator", "retrieval_qa": "envs.retrieval_qa",
                        "multistep": "envs.multistep"}


def load_shipped_environments() -> None:
    """Register the shipped environments not registered yet."""
    for name, module in SHIPPED_ENVIRONMENTS.items():
        if name not in ENVIRONMENTS:
            importlib.import_module(module)


@functools.lru_cache(maxsize=64)
def environment_factory(name: str) -> EnvironmentFactory:
    """A registered environment, or your own: "path/to/file.py:ClassName" or "package.module:ClassName"."""
    if ":" not in name:
        if name not in ENVIRONMENTS:
            load_shipped_environments()
        return ENVIRONMENTS.get(name)
    target, attribute = name.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target).expanduser().absolute()
        if not path.is_file():
            raise FileNotFoundError(f"environment file not found: {path}")
        spec = importlib.util.spec_from_file_location(f"rlkit_env_{abs(hash(str(path)))}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if not hasattr(module, attribute):
        raise AttributeError(f"{target} defines no {attribute!r}")
    return getattr(module, attribute)


def build_environment(name: str, options: dict[str, Any] | None = None) -> Environment:
    """A fresh environment instance for one episode."""
    return environment_factory(name)(**dict(options or {}))


@dataclass
class EnvOptions:
    """The `rollout.env` section: multi-turn episodes instead of single responses."""

    name: str | None = None
    """Environment: a registered name (calculator, retrieval_qa, multistep) or your own "file.py:Class"; null =
    single-turn."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the environment's constructor."""
    max_turns: int = 4
    """Most model turns per episode."""
    max_turn_tokens: int = 64
    """Most tokens the model generates in one turn."""
    max_episode_tokens: int = 256
    """Most response tokens per episode, model and observation tokens together."""
    step_timeout_s: float = 5.0
    """Longest one environment call may take; past it the episode ends with status timeout."""

    def problems(self) -> list[str]:
        """Every invalid field (empty when valid)."""
        found = []
        for name in ("max_turns", "max_turn_tokens", "max_episode_tokens"):
            if getattr(self, name) < 1:
                found.append(f"{name}={getattr(self, name)} must be ≥ 1")
        if not self.step_timeout_s > 0:
            found.append(f"step_timeout_s={self.step_timeout_s} must be > 0")
        if self.name is not None:
            try:
                factory = environment_factory(self.name)
            except Exception as exc:  # unknown name, missing file, import error: all reported here
                found.append(f"name: {exc}")
            else:
                try:  # a typo in the options fails here, not in every episode's reset
                    factory(**dict(self.options))
                except Exception as exc:
                    found.append(f"options: {self.name} rejects {dict(self.options)}: {type(exc).__name__}: {exc}")
        return found
