"""Config: recipes + overrides, every problem reported at once, and the CLI around it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlkit.cli import main as cli
from rlkit.config import ConfigError, load_config, to_yaml
from rlkit.config.fielddocs import field_docs, walk_fields
from rlkit.config.load import parse_overrides
from rlkit.config.schema import TrainConfig

REPO = Path(__file__).parents[2]
TINY = str(REPO / "recipes" / "tiny_cpu.yaml")


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def problems_of(*overrides: str, recipe: str | None = TINY) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(recipe, list(overrides))
    return raised.value.problems


def test_recipe_overrides_defaults_and_cli_overrides_recipe() -> None:
    config = load_config(TINY, ["learner.lr=3e-6", "rollout.n=8", "logging.wandb_tags=[a,b]"])
    assert config.run.name == "tiny-cpu"  # from the recipe
    assert config.learner.lr == pytest.approx(3e-6)  # YAML reads 3e-6 as a string; converted
    assert config.rollout.n == 8
    assert config.logging.wandb_tags == ["a", "b"]
    assert config.rollout.sampling.top_p == 1.0  # untouched default
    assert config.run.output_dir == "runs/tiny-cpu"  # interpolated from run.name


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of("learner.lrr=1", "rollout.n=abc", "algorithm.loss=grop", "rollout.engine=vlm", "trainer.steps=3")
    text = "\n".join(problems)
    assert len(problems) == 5
    assert 'unknown key "learner.lrr" (did you mean "learner.lr"?)' in text
    assert '"rollout.n" must be int, got \'abc\'' in text
    assert "unknown policy loss 'grop' (did you mean \"grpo\"?); valid: " in text
    assert "unknown rollout engine 'vlm' (did you mean \"vllm\"?); valid: hf, vllm" in text
    assert 'unknown key "trainer" (did you mean "run.steps"?)' in text


def test_component_options_are_checked_against_the_component() -> None:
    (problem,) = problems_of("algorithm.loss_options.clip_ratio_hgh=0.3")
    assert 'unknown key "algorithm.loss_options.clip_ratio_hgh" (did you mean "clip_ratio_high"?)' in problem
    (problem,) = problems_of("algorithm.loss_options.clip_ratio_c=0.5")
    assert "clip_ratio_c must be > 1" in problem


@pytest.mark.parametrize(
    "override, expected",
    [
        ("rollout.n=1", "group-relative advantages need at least 2 samples"),
        ("rollout.sampling.temperature=0", "training needs sampling"),
        ("learner.mini_batches=3", "does not divide the batch of 16 samples"),
        ("learner.zero_stage=5", "ZeRO stages are 0, 1, 2 or 3"),
        ("learner.attn_implementation=flash", "valid kernels are sdpa, eager"),
        ("model.path=/nonexistent", "no config.json in '/nonexistent'"),
        ("data.train_path=missing.jsonl", "data.train_path: no file at"),
        ("reward.fn.path=nope.py", "reward file 'nope.py' not found"),
        ("algorithm.loss_agg_mode=token_mean", 'did you mean "token-mean"'),
        ("sync.max_staleness=-1", "sync.max_staleness must be ≥ 0"),
        ("run.steps=0", "run.steps=0: must be ≥ 1"),
    ],
)
def test_cross_field_and_reference_rules(override: str, expected: str) -> None:
    assert any(expected in problem for problem in problems_of(override)), problems_of(override)


def test_malformed_override_and_bad_recipe_files(tmp_path: Path) -> None:
    assert any("not of the form key=value" in p for p in problems_of("learner.lr"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    assert "not valid YAML" in problems_of(recipe=str(bad))[0]
    assert "recipe file not found" in problems_of(recipe=str(tmp_path / "none.yaml"))[0]
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("run: !!python/object/apply:os.system ['echo hacked']\n")
    assert "not valid YAML" in problems_of(recipe=str(unsafe))[0]  # safe_load refuses object tags


def test_override_parsing_builds_nested_typed_values() -> None:
    tree, problems = parse_overrides(["a.b=1", "a.c=true", "d=null", "e=[1, 2]", "f=text"])
    assert problems == []
    assert tree == {"a": {"b": 1, "c": True}, "d": None, "e": [1, 2], "f": "text"}


def test_resolved_config_round_trips_through_yaml(tmp_path: Path) -> None:
    config = load_config(TINY, ["learner.lr=2e-5"])
    saved = tmp_path / "config.yaml"
    saved.write_text(to_yaml(config))
    assert load_config(str(saved), semantic=False) == config


def test_every_field_has_a_docstring() -> None:
    missing = [key for key, _kind, doc, _default in walk_fields(TrainConfig) if not doc]
    assert missing == []
    assert "ZeRO" in field_docs(__import__("rlkit.learner.options", fromlist=["x"]).LearnerOptions)["zero_stage"]


def test_cli_check_and_show_config(capsys) -> None:
    assert cli(["check", TINY]) == 0
    assert "configuration is valid" in capsys.readouterr().out
    assert cli(["check", TINY, "learner.lrr=1", "rollout.n=0"]) == 1
    err = capsys.readouterr().err
    assert "2 problems" in err or "problems" in err
    assert cli(["show-config", TINY, "rollout.n=6"]) == 0
    assert "'n': 6" in capsys.readouterr().out
    assert cli(["show-config", "--docs"]) == 0
    assert "learner.zero_stage = 2" in capsys.readouterr().out


def test_config_reference_doc_is_generated_from_the_code() -> None:
    from rlkit.config.reference import markdown

    assert (REPO / "docs" / "config.md").read_text() == markdown(), (
        "regenerate: python -m rlkit.config.reference > docs/config.md")
