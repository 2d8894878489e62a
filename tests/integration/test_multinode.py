"""Two simulated nodes (ray.cluster_utils.Cluster): the learner on one, rollout and reward on the
other, placed by recipe keys. The cluster runs in a child process (tests/integration/
multinode_job.py) because a process joins one Ray cluster at a time and the session's own
cluster is already up. Select with `pytest -k multinode`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("multinode")
    done = subprocess.run([sys.executable, str(REPO / "tests" / "integration" / "multinode_job.py"), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads((out / "result.json").read_text())


def test_multinode_stages_run_on_the_nodes_the_recipe_names(result) -> None:
    nodes, placement = result["nodes"], result["run"]["placement"]
    assert [bundle["node_id"] for bundle in placement["learner"]] == [nodes["learner"]] * 2
    assert [bundle["node_id"] for bundle in placement["rollout"]] == [nodes["rollout"]]
    assert [bundle["node_id"] for bundle in placement["reward"]] == [nodes["rollout"]]
    for check in result["sync"].values():
        assert check["engine_node"] == nodes["rollout"]  # the engine actor sits in its bundle
    assert placement["weight_sync"] == "gloo"


@pytest.mark.parametrize("transport", ["object_store", "gloo"])
def test_multinode_weights_cross_nodes_and_engine_logprobs_match_the_learner(result, transport: str) -> None:
    sync = result["sync"][transport]
    moved = max(abs(a - b) for a, b in zip(sync["before"], sync["engine_after"]))
    mismatch = max(abs(a - b) for a, b in zip(sync["learner_after"], sync["engine_after"]))
    assert moved > 1e-2, "the update did not change the engine's log-probs: weights never arrived"
    assert mismatch < 1e-4, f"engine and learner disagree by {mismatch} after the sync"


def test_multinode_run_finishes_with_metrics(result) -> None:
    steps = result["run"]["steps"]
    assert [row["step"] for row in steps] == [1, 2, 3]
    for row in steps:
        assert row["rollout/samples"] == 16 and row["actor/skipped_steps"] == 0
        assert row["actor/rollout_logprob_diff"] < 1e-3  # each batch came from the weights being trained
    assert result["run"]["summary"]["eval_after"]["eval/num_prompts"] == 8


def test_multinode_bad_placement_fails_at_start_with_what_the_cluster_has(result) -> None:
    message = result["bad_placement"]
    assert message.startswith("PlacementError: the recipe's placement does not fit this cluster")
    assert "need 3 learner_node in total (learner 3 × 1) but the cluster has 2" in message
    assert "learner.num_ranks" in message
