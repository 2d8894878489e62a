"""Every benchmark script runs in its `--quick` mode (tiny model, few steps) and writes the JSON
it promises: the keys later figures are read from, and values that make sense. Each runs from a
foreign working directory, writing only into tmp_path. Those that take over 20 s are slow."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(path.stem for path in (REPO / "benchmarks").glob("*.py"))
HELPERS = {"report", "training_runs"}  # imported by the scripts, not run
TESTED = {"async_vs_sync", "engines", "learner_step", "logprob_memory", "methods_tiny", "store", "task_recipes",
          "tiny_throughput", "vs_trl"}


def run_quick(script: str, tmp_path: Path, *extra: str, timeout_s: float = 600) -> dict[str, Any]:
    """`python benchmarks/<script>.py --quick --out <tmp>/<script>.json ...` from tmp_path; the JSON."""
    out = tmp_path / f"{script}.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{script}.py"), "--quick", "--out", str(out), *extra],
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"wrote {out}" in done.stdout
    result = json.loads(out.read_text())
    assert result["machine"]["cpus"] >= 1 and result["machine"]["python"].startswith("3.")
    return result


def positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_every_benchmark_script_has_a_quick_mode_and_a_smoke_test() -> None:
    assert set(SCRIPTS) - HELPERS == TESTED
    for script in TESTED:
        assert '"--quick"' in (REPO / "benchmarks" / f"{script}.py").read_text(), script


def test_store(tmp_path: Path) -> None:
    result = run_quick("store", tmp_path)
    assert {(r["system"], r["n"], r["paced_rate"]) for r in result["results"]} == {
        (system, 512, rate) for system in ("store", "plain") for rate in (None, 640.0)}
    for row in result["results"]:
        assert positive(row["samples_per_s"]) and 0 < row["latency_p50_ms"] <= row["latency_p95_ms"], row
        assert row["entries_left"] == 0, row  # every sample consumed and cleared
    assert positive(result["headline"]["value"]) and positive(result["paced_p50_ms"]["value"])


def test_logprob_memory(tmp_path: Path) -> None:
    result = run_quick("logprob_memory", tmp_path)
    naive, chunked = result["results"]
    assert (naive["variant"], chunked["variant"], chunked["chunk_size"]) == ("naive", "chunked", 128)
    assert naive["agrees"] and chunked["agrees"]  # the chunked path computes the same numbers
    assert 0 < chunked["vs_naive"] < 1 and chunked["vs_naive"] == result["headline"]["value"]
    assert result["setting"] == {"vocab": 32000, "batch": 2, "prompt": 16, "response": 512}


def test_learner_step(tmp_path: Path) -> None:
    result = run_quick("learner_step", tmp_path)
    assert len(result["seconds"]) == 2 and all(positive(s) for s in result["seconds"])
    assert result["headline"]["value"] == pytest.approx(sum(result["seconds"]) / 2)
    assert result["recipe"] == "recipes/tiny_cpu.yaml" and result["settings"]["zero_stage"] == 2
    assert result["profile"] is None


@pytest.mark.slow
def test_engines(tmp_path: Path) -> None:
    result = run_quick("engines", tmp_path)
    assert [r["engine"] for r in result["results"]] == ["vllm", "hf"]
    assert result["setting"]["model"] == "tiny"
    for row in result["results"]:
        assert len(row["rounds"]) == 1 and positive(row["tokens_per_s"])
        assert 0 < row["rounds"][0]["tokens"] <= 4 * 2 * 8  # prompts × samples × new tokens
    vllm, hf = result["results"]
    assert result["headline"]["value"] == pytest.approx(vllm["tokens_per_s"] / hf["tokens_per_s"])


@pytest.mark.slow
def test_tiny_throughput(tmp_path: Path) -> None:
    result = run_quick("tiny_throughput", tmp_path)
    assert result["steps"] == 2 and [r["engine"] for r in result["results"]] == ["hf", "vllm"]
    for row in result["results"]:
        assert row["steps_measured"] == 1 and row["samples_per_step"] == 16  # 4 prompts × 4 samples
        assert all(positive(row[key]) for key in ("samples_per_s", "step_s", "train_s", "sync_s")), row


@pytest.mark.slow
def test_methods_tiny(tmp_path: Path) -> None:
    result = run_quick("methods_tiny", tmp_path)
    assert [r["method"] for r in result["results"]] == ["kl_cov"]
    for row in result["results"]:
        assert row["steps"] == 2 and row["nan_values"] == 0 and row["skipped_updates"] == 0, row
        assert 0 <= row["reward_first3"] <= 1 and positive(row["step_s"])
    kl_cov = result["results"][0]["method_metrics_last"]
    assert any(key.startswith("actor/kl_cov/") for key in kl_cov), kl_cov


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the benchmark pins rollout and learner to a core each")
def test_async_vs_sync(tmp_path: Path) -> None:
    result = run_quick("async_vs_sync", tmp_path, "--runs-dir", str(tmp_path / "runs"))
    assert result["recipe"] == "recipes/tiny_cpu.yaml" and result["steps"] == 3
    assert [r["k"] for r in result["results"]] == [0, 1]
    sync, stale = result["results"]
    assert sync["staleness_max"] == 0 and stale["staleness_max"] <= 1  # k bounds the lag
    assert all(positive(r["samples_per_s"]) for r in result["results"])
    assert result["headline"]["value"] == pytest.approx(stale["samples_per_s"] / sync["samples_per_s"])


@pytest.mark.slow
def test_task_recipes(tmp_path: Path) -> None:
    result = run_quick("task_recipes", tmp_path, "--runs-dir", str(tmp_path / "runs"), timeout_s=800)  # SmolLM2, an env
    (row,) = result["results"]
    assert row["recipe"] == "calculator_math" and row["steps"] == 2 and result["eval_prompts"] == 4
    assert len(row["per_step"]["reward/mean"]) == 2 and positive(row["wall_s"])
    assert row["eval_before"]["eval/num_prompts"] == 4 and "eval/accuracy_se" in row["eval_after"]
    assert "rollout/turns_per_episode" in row["first_third"]  # the calculator environment ran


@pytest.mark.slow
def test_vs_trl(tmp_path: Path) -> None:
    """TRL itself is installed once, without dependencies, into rlkit's cache outside the checkout."""
    result = run_quick("vs_trl", tmp_path, "--runs-dir", str(tmp_path / "runs"))
    assert [(r["system"], r["mode"]) for r in result["results"]] == [("trl", "GRPOTrainer 1.16.0"), ("rlkit", "k=1 pinned")]
    assert result["setting"]["model"] == "tiny" and result["setting"]["steps"] == 3
    for row in result["results"]:
        assert row["steps"] == 3 and positive(row["samples_per_s"]) and len(row["rewards"]) == 3, row
    assert result["headline"]["value"] == pytest.approx(result["results"][1]["vs_trl"])
