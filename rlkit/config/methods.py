"""A method's settings, as its recipe `recipes/math_<method>.yaml` states them, as overrides.

Each method recipe starts from the GRPO recipe (`base:`) and states only its method block. The
same block applied to any other recipe runs that method there: the tiny test runs and method
comparisons use this, so a method's settings live in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rlkit.config.load import ConfigError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
NOT_METHOD = ("base", "run")  # what a method recipe sets that is not part of the method


def method_names(recipes: Path = RECIPES) -> list[str]:
    """Methods that have a recipe, e.g. ['bnpo', 'clip_cov', …]."""
    return sorted(path.stem.removeprefix("math_") for path in recipes.glob("math_*.yaml"))


def method_block(method: str, recipes: Path = RECIPES) -> dict[str, Any]:
    """The sections `recipes/math_<method>.yaml` sets besides `base` and `run`."""
    path = recipes / f"math_{method}.yaml"
    if not path.is_file():
        raise ConfigError(
            str(path), [f"no recipe for method {method!r}; methods with a recipe: {', '.join(method_names(recipes))}"]
        )
    content = yaml.safe_load(path.read_text()) or {}
    return {section: values for section, values in content.items() if section not in NOT_METHOD}


def method_overrides(method: str, recipes: Path = RECIPES) -> list[str]:
    """`method_block` as `key=value` overrides, for `load_config(recipe, overrides)`."""
    overrides = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and not prefix.endswith(("_options", "regularizers")):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            overrides.append(f"{prefix}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")

    walk("", method_block(method, recipes))
    return overrides
