"""`rlkit sweep` planning and `rlkit compare` on run folders written here (the end-to-end sweep
on real training runs, as Ray jobs, is in tests/integration/test_job_submit.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rlkit.cli import main
from rlkit.compare import band, compare, find_runs, group_runs, smoothed
from rlkit.config.load import ConfigError, load_config
from rlkit.sweep import SweepRun, plan_sweep, write_manifest

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml")


def test_plan_names_groups_and_seeds_every_run(tmp_path: Path) -> None:
    runs = plan_sweep(RECIPE, ["grpo", "clip_cov"], 2, "cmp", tmp_path, ["run.steps=3"])
    assert [(run.method, run.seed) for run in runs] == [("grpo", 0), ("grpo", 1), ("clip_cov", 0), ("clip_cov", 1)]
    config = load_config(RECIPE, runs[3].overrides)
    assert config.algorithm.loss == "clip_cov"  # the method's block from recipes/math_clip_cov.yaml
    assert config.logging.wandb_group == "cmp"
    assert config.logging.wandb_tags == ["clip_cov", "seed1", "cmp"]
    assert config.run.name == "cmp-clip_cov-s1" and config.run.steps == 3
    assert config.run.output_dir == str(tmp_path / "clip_cov" / "seed1")
    # A seed reaches every source of randomness, not only the data order.
    assert (config.run.seed, config.rollout.sampling.seed, config.learner.seed, config.algorithm.seed) == (1, 1, 1, 1)


def test_plan_fails_before_any_run_on_a_bad_method_or_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no recipe for method"):
        plan_sweep(RECIPE, ["grpo", "ppo2"], 1, "x", tmp_path, [])
    with pytest.raises(ConfigError, match='did you mean "learner.lr"'):
        plan_sweep(RECIPE, ["grpo"], 1, "x", tmp_path, ["learner.lrr=1"])
    assert main(["sweep", RECIPE, "--methods", "grpo", "--out", str(tmp_path / "s"), "learner.lrr=1"]) == 1
    assert main(["sweep", RECIPE, "--methods", "grpo", "--out", str(tmp_path / "s"), "--parallel", "0"]) == 1


def fake_run(folder: Path, tag: str, seed: int, reward_slope: float, steps: int = 6) -> Path:
    """A run folder as `rlkit train` writes it: config.yaml, metrics.jsonl, summary.json."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"run": {"name": f"{tag}-s{seed}"},
                                                        "logging": {"wandb_tags": [tag, f"seed{seed}"]}}))
    rows = [{"step": 0, "eval/accuracy": 0.2}]
    for step in range(1, steps + 1):
        rows.append({"step": step, "reward/mean": reward_slope * step + 0.01 * seed, "entropy/mean": 1.0 - 0.1 * step,
                     "response_length/mean": 20.0 + seed, "throughput/elapsed_s": 10.0 * step + seed,
                     "timing/step_s": 10.0})
    rows.append({"step": steps, "eval/accuracy": 0.2 + reward_slope})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    after = 0.2 + reward_slope
    (folder / "summary.json").write_text(json.dumps({
        "eval_before": {"eval/accuracy": 0.2, "eval/accuracy_se": (0.2 * 0.8 / 300) ** 0.5, "eval/num_prompts": 300.0},
        "eval_after": {"eval/accuracy": after, "eval/accuracy_se": (after * (1 - after) / 300) ** 0.5,
                       "eval/num_prompts": 300.0}}))
    return folder


def test_compare_groups_by_method_and_writes_figure_and_table(tmp_path: Path) -> None:
    for seed in (0, 1):
        fake_run(tmp_path / "a" / f"s{seed}", "grpo", seed, 0.1)
        fake_run(tmp_path / "b" / f"s{seed}", "steer", seed, 0.05)
    runs = find_runs([str(p) for p in sorted(tmp_path.glob("*/s*"))])
    groups = group_runs(runs)
    assert {name: len(items) for name, items in groups.items()} == {"grpo": 2, "steer": 2}
    grid, mean, low, high = band(groups["grpo"], "reward/mean", "step")
    assert grid == [1, 2, 3, 4, 5, 6]
    assert mean[0] == pytest.approx(0.105) and low[0] == pytest.approx(0.1) and high[0] == pytest.approx(0.11)
    # Wall time: seed 1 is 1 s behind; both interpolated onto their joint times within the common span.
    grid, mean, _, _ = band(groups["grpo"], "reward/mean", "wall")
    assert grid[:3] == [11.0, 20.0, 21.0] and grid[-1] == 60.0
    assert mean[1] == pytest.approx((0.2 + (0.1 * 1.9 + 0.01)) / 2)

    figure, table = compare([str(p) for p in sorted(tmp_path.glob("*/s*"))], str(tmp_path / "out"), "test")
    assert figure.stat().st_size > 10_000 and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = table.read_text()
    grpo_row = next(line for line in text.splitlines() if line.startswith("| grpo |"))
    # Last-10-step reward of seed 0: mean of 0.1..0.6 = 0.35; seed 1: 0.36 → 0.355 ± 0.007.
    assert "| 2 | 0.355 ± 0.007 |" in grpo_row
    # Held-out before | after | the after accuracy's binomial standard error sqrt(0.3 · 0.7 / 300).
    assert "| 0.20 ± 0.00 | 0.30 ± 0.00 | 0.026 (n=300) |" in grpo_row
    steer_row = next(line for line in text.splitlines() if line.startswith("| steer |"))
    assert "| 0.20 ± 0.00 | 0.25 ± 0.00 | 0.025 (n=300) |" in steer_row  # sqrt(0.25 · 0.75 / 300)


def test_compare_reads_a_sweep_manifest_and_skips_failed_runs(tmp_path: Path) -> None:
    fake_run(tmp_path / "grpo" / "seed0", "ignored-tag", 0, 0.1)
    runs = [SweepRun("grpo", 0, str(tmp_path / "grpo" / "seed0"), [], status="ok"),
            SweepRun("steer", 0, str(tmp_path / "steer" / "seed0"), [], status="failed")]
    write_manifest(tmp_path, RECIPE, "sw", runs)
    found = find_runs([str(tmp_path)])
    assert [(run.label, run.run_dir.name) for run in found] == [("grpo", "seed0")]  # the manifest's method names it


def test_compare_says_what_a_folder_lacks(tmp_path: Path, capsys) -> None:
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "neither a run folder (no metrics.jsonl) nor a sweep folder" in capsys.readouterr().err


def test_smoothing_is_a_trailing_mean() -> None:
    points = [(1, 0.0), (2, 1.0), (3, 2.0), (4, 3.0)]
    assert smoothed(points, 1) == points
    assert smoothed(points, 2) == [(1, 0.0), (2, 0.5), (3, 1.5), (4, 2.5)]
    assert smoothed(points, 3)[-1] == (4, 2.0)
