"""A run whose updates keep going non-finite stops with a clear message instead of training on
unchanged weights forever; each skipped update is counted in the metrics first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rlkit.tracking.metrics_log import read_metrics

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

# Finite rewards (the reward contract accepts them) so large that, without std normalisation, the
# policy-gradient loss overflows float32 on every step.
HUGE_REWARD = '''
def score(response: str, ground_truth: str, **_):
    return 3.0e38 if len(response) % 2 else -3.0e38
'''


def test_consecutive_non_finite_steps_stop_the_run_with_what_to_do(tmp_path: Path) -> None:
    reward = tmp_path / "huge.py"
    reward.write_text(HUGE_REWARD)
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "rlkit.train", "recipes/tiny_cpu.yaml", "run.steps=8", "run.max_consecutive_skips=3",
         "algorithm.advantage_options={norm_adv_by_std: false}", f"reward.fn.path={reward}", "reward.fn.name=score",
         "data.eval_path=null", f"run.output_dir={run_dir}", "logging.progress_bar=false"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "NumericalFailure: 3 steps in a row (through step 3) had updates skipped" in done.stderr
    assert "Check rewards and advantages" in done.stderr
    rows = [row for row in read_metrics(run_dir / "metrics.jsonl") if "actor/skipped_steps" in row]
    assert [(row["step"], row["actor/skipped_steps"]) for row in rows] == [(1, 1.0), (2, 1.0), (3, 1.0)]
