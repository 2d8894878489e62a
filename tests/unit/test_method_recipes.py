"""The per-method recipes: each loads, selects its method, and differs from the GRPO recipe only
in the method block (plus its run name, and the extra updates an off-policy method needs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rlkit.algorithms import ADVANTAGES, POLICY_LOSSES, REGULARIZERS, method_names
from rlkit.config.load import ConfigError, load_config

RECIPES = Path(__file__).parents[2] / "recipes"
METHOD_RECIPES = sorted(RECIPES.glob("math_*.yaml"))
METHODS = set(method_names())  # every registered method, so a new one without a recipe fails here


def flat(config) -> dict:
    out = {}
    for section in dataclasses.fields(config):
        for key, value in dataclasses.asdict(getattr(config, section.name)).items():
            out[f"{section.name}.{key}"] = value
    return out


def test_one_recipe_per_method() -> None:
    assert {path.stem.removeprefix("math_") for path in METHOD_RECIPES} == METHODS


@pytest.mark.parametrize("path", METHOD_RECIPES, ids=lambda path: path.stem)
def test_method_recipe_differs_from_grpo_only_in_the_method_block(path: Path) -> None:
    method = path.stem.removeprefix("math_")
    config = load_config(path)
    algorithm = config.algorithm
    assert method in (algorithm.advantage, algorithm.loss) or method in algorithm.regularizers
    for name, registry in ((algorithm.advantage, ADVANTAGES), (algorithm.loss, POLICY_LOSSES)):
        assert name in registry
    assert all(name in REGULARIZERS for name in algorithm.regularizers)
    assert path.read_text().startswith("# "), "each recipe starts with a comment naming the paper"
    assert "arXiv" in path.read_text().split("\nbase:")[0]
    base = flat(load_config(RECIPES / "smollm2_math_grpo.yaml"))
    changed = {key for key, value in flat(config).items() if base[key] != value}
    allowed = {key for key in base if key.startswith("algorithm.")} | {"run.name", "run.output_dir"}
    if method in ("kl_cov", "llds"):
        allowed.add("learner.mini_batches")
    assert changed <= allowed, changed - allowed


def test_base_recipes_merge_and_refuse_cycles(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("base: b.yaml\nrun:\n  steps: 7\n")
    (tmp_path / "b.yaml").write_text(f"base: {RECIPES / 'tiny_cpu.yaml'}\nrun:\n  steps: 5\n  name: from-b\n")
    config = load_config(tmp_path / "a.yaml")
    assert config.run.steps == 7 and config.run.name == "from-b" and config.model.path == "tiny"
    (tmp_path / "c.yaml").write_text("base: d.yaml\n")
    (tmp_path / "d.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "e.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_config(tmp_path / "e.yaml")


def test_a_recipe_naming_a_reward_path_replaces_its_bases_module(tmp_path: Path) -> None:
    reward = tmp_path / "r.py"
    reward.write_text("def score(*, response):\n    return 1.0\n")
    (tmp_path / "child.yaml").write_text(f"base: {RECIPES / 'smollm2_math_grpo.yaml'}\nreward:\n  fn:\n    path: {reward}\n")
    config = load_config(tmp_path / "child.yaml")
    assert config.reward.fn.path == str(reward) and config.reward.fn.module is None
