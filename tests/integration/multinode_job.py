"""Two simulated Ray nodes on this machine (ray.cluster_utils.Cluster), driven by test_multinode.py.

    python tests/integration/multinode_job.py OUT_DIR

Node "learner" (the head, where the driver and the store run) offers the custom resource
`learner_node`; node "rollout" offers `rollout_node`. Each node has its own raylet and object
store, so samples and weights cross between them as they would between machines. Writes
OUT_DIR/result.json with:
- bad_placement: the error a recipe asking for more learner ranks than the learner node holds gets;
- sync: engine log-probs on the rollout node against the learner's, before and after a weight sync,
  by each transport (object store; a gloo broadcast group);
- placement: the node of every stage's actors in a full training run, and its metrics.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

# The learner on one node, rollout and reward on the other (recipe keys, as a user would write them).
SPLIT = ["learner.resources={learner_node: 1}", "rollout.resources={rollout_node: 1}",
         "reward.resources={rollout_node: 0.5}", "placement.timeout_s=60"]


def start_cluster() -> tuple[Cluster, dict[str, str]]:
    memory = 150 * 1024 * 1024
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 3, "resources": {"learner_node": 2}, "object_store_memory": memory, "include_dashboard": False})
    rollout_node = cluster.add_node(num_cpus=3, resources={"rollout_node": 2}, object_store_memory=memory)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    return cluster, {"learner": cluster.head_node.node_id, "rollout": rollout_node.node_id}


def bad_placement(out: Path) -> str:
    from rlkit.config.load import load_config
    from rlkit.config.resolve import resolve_config
    from rlkit.stages import Stages
    from rlkit.models import resolve_model

    config = load_config("recipes/tiny_cpu.yaml", [*SPLIT, "learner.num_ranks=3", f"run.output_dir={out / 'bad'}"])
    try:
        Stages.start(resolve_config(config, cluster_has_gpus=False), str(resolve_model("tiny")))
    except Exception as error:  # noqa: BLE001 - the message is the result
        return f"{type(error).__name__}: {error}"
    return "no error"


def weight_sync_check(out: Path, transport: str) -> dict[str, object]:
    """A learner group and an engine placed as the recipe says (the same placement calls the
    controller makes), one update at a large learning rate, then a sync across the nodes by
    `transport` (object_store, or gloo: a broadcast group spanning both nodes)."""
    from test_weight_sync import PROMPT, RESPONSE, scored_batch

    from rlkit.algorithms import AlgorithmOptions
    from rlkit.config.load import load_config
    from rlkit.config.resolve import resolve_config
    from rlkit.stages import stage_demands
    from rlkit.learner.group import LearnerGroup
    from rlkit.models import resolve_model
    from rlkit.placement import bundle_strategy, describe, release, reserve
    from rlkit.rollout.engine import EngineOptions, SamplingOptions
    from rlkit.rollout.options import RolloutConfig
    from rlkit.rollout.worker import RolloutWorker
    from rlkit.runtime import actor_env
    from rlkit.store.datastore import DataStore
    from rlkit.sync import WeightSync

    config = load_config("recipes/tiny_cpu.yaml", [*SPLIT, "learner.lr=5e-2", f"run.output_dir={out / transport}"])
    model, env = str(resolve_model("tiny")), actor_env(single_machine=False)  # as on two machines
    groups = reserve(stage_demands(resolve_config(config, cluster_has_gpus=False)), "PACK", 60)
    learners = None
    try:
        store = DataStore.remote()
        learners = LearnerGroup(model, dataclasses.replace(config.learner, gpus_per_rank=0.0), AlgorithmOptions(),
                                temperature=1.0, env=env,
                                rank_options=[bundle_strategy(groups, "learner", rank) for rank in range(2)])
        engine = ray.remote(RolloutWorker).options(num_cpus=1, **bundle_strategy(groups, "rollout", 0)).remote(
            "rollout-0", store, model, RolloutConfig(engine="hf", engine_options=EngineOptions(max_model_len=256),
                                                     sampling=SamplingOptions(max_new_tokens=8), prompts_per_request=4),
            env)
        before = ray.get(engine.token_logprobs.remote(PROMPT, RESPONSE))
        sync = WeightSync(learners, store, ["rollout-0"], timeout_s=120, dtype="float32", transport=transport)
        if sync.broadcasts:
            sync.connect([engine])
        learners.train_step(scored_batch())
        learner_after = learners.logprobs(PROMPT, RESPONSE)
        sync.publish(1, wait=False)
        engine_after = ray.get(engine.token_logprobs.remote(PROMPT, RESPONSE))  # loads version 1 first
        sync.wait(1)
        return {"before": before, "learner_after": learner_after, "engine_after": engine_after,
                "engine_node": ray.get(engine.node_id.remote()), "placement": describe(groups)}
    finally:
        if learners is not None:
            learners.shutdown()
        release(groups)


def full_run(out: Path) -> dict[str, object]:
    """The tiny recipe split across the nodes, weights by broadcast (the GPU path's code over gloo)."""
    from rlkit.config.load import load_config
    from rlkit.controller import train

    run_dir = out / "run"
    config = load_config("recipes/tiny_cpu.yaml", [*SPLIT, "run.steps=3", f"run.output_dir={run_dir}",
                                                   "logging.progress_bar=false", "sync.transport=gloo"])
    summary = train(config)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"summary": summary, "placement": json.loads((run_dir / "placement.json").read_text()),
            "steps": [row for row in rows if "reward/mean" in row]}


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    cluster, nodes = start_cluster()
    try:
        result = {"nodes": nodes, "bad_placement": bad_placement(out),
                  "sync": {transport: weight_sync_check(out, transport) for transport in ("object_store", "gloo")},
                  "run": full_run(out)}
    finally:
        ray.shutdown()
        cluster.shutdown()
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
