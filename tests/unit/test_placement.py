"""Placement checks on cluster descriptions (the real two-node run is tests/integration/test_multinode.py)."""

from __future__ import annotations

from rlkit.config.load import load_config
from rlkit.config.resolve import resolve_config
from rlkit.stages import stage_demands
from rlkit.placement import StageDemand, check_fits

NODES = [
    {"ip": "10.0.0.1", "id": "a", "resources": {"CPU": 8.0, "GPU": 2.0, "learner_node": 1.0}},
    {"ip": "10.0.0.2", "id": "b", "resources": {"CPU": 8.0, "GPU": 1.0}},
]


def demand(stage: str, count: int, **bundle: float) -> StageDemand:
    return StageDemand(stage, count, bundle, f"{stage}.keys")


def test_a_demand_that_fits_has_no_problems() -> None:
    assert check_fits([demand("learner", 2, CPU=1, GPU=1), demand("rollout", 1, CPU=2, GPU=1)], NODES) == []


def test_more_gpus_than_the_cluster_has_names_stages_totals_and_keys() -> None:
    problems = check_fits([demand("learner", 2, CPU=1, GPU=1), demand("rollout", 2, CPU=1, GPU=1)], NODES)
    assert len(problems) == 1
    assert "need 4 GPU in total (learner 2 × 1 + rollout 2 × 1) but the cluster has 3" in problems[0]
    assert "10.0.0.1: 2 GPU; 10.0.0.2: 1 GPU" in problems[0] and "learner.keys; rollout.keys" in problems[0]


def test_a_bundle_no_single_node_can_hold() -> None:
    problems = check_fits([demand("learner", 1, CPU=1, GPU=3)], NODES)
    assert any("learner: no single node can hold one actor's 1 CPU, 3 GPU" in p for p in problems), problems


def test_a_custom_resource_no_node_offers() -> None:
    problems = check_fits([demand("rollout", 1, CPU=1, rollout_node=1)], NODES)
    assert "rollout asks for rollout_node, which no node of the cluster has" in problems[0]
    assert "ray start --resources" in problems[0]


def test_zero_amounts_and_empty_stages_ask_for_nothing() -> None:
    assert check_fits([demand("reward", 0, CPU=1), demand("rollout", 1, CPU=1, GPU=0)], NODES) == []


def test_recipe_keys_become_stage_demands() -> None:
    config = load_config("recipes/tiny_cpu.yaml", ["learner.resources={learner_node: 1}", "rollout.gpus_per_worker=1",
                                                   "reward.num_workers=2"])
    demands = {d.stage: d for d in stage_demands(resolve_config(config, cluster_has_gpus=False))}
    assert demands["learner"].count == 2
    assert demands["learner"].nonzero_bundle() == {"CPU": 1.0, "learner_node": 1.0}  # no GPUs: none asked for
    assert demands["rollout"].nonzero_bundle() == {"CPU": 1.0, "GPU": 1.0}  # asked for explicitly: checked
    assert demands["reward"].count == 2
    assert ({d.stage: d for d in stage_demands(resolve_config(config, cluster_has_gpus=True))}["learner"].nonzero_bundle()["GPU"]
            == 1.0)


def test_placement_keys_are_checked() -> None:
    from rlkit.config.load import ConfigError

    try:
        load_config("recipes/tiny_cpu.yaml", ["placement.strategy=DENSE", "rollout.resources={GPU: 1}"])
    except ConfigError as error:
        text = str(error)
    else:
        raise AssertionError("bad placement keys were accepted")
    assert "placement.strategy: 'DENSE' is not one of PACK, SPREAD, STRICT_PACK, STRICT_SPREAD" in text
    assert "rollout.resources: set GPU with the stage's cpus_/gpus_ keys" in text
