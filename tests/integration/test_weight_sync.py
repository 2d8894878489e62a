"""Weights flow learner → engines without a restart, and engine log-probs then match the learner's."""

from __future__ import annotations

import pytest
import ray

from rlkit.algorithms import AlgorithmOptions
from rlkit.learner.group import LearnerGroup
from rlkit.learner.options import LearnerOptions
from rlkit.models import resolve_model
from rlkit.rollout.engine import EngineOptions, SamplingOptions
from rlkit.rollout.options import RolloutConfig
from rlkit.rollout.worker import RolloutWorker
from rlkit.runtime import actor_env
from rlkit.store.datastore import DataStore
from rlkit.sync import WeightSync, WeightSyncError
from rlkit.types import FinishReason, Prompt, Reward, RewardStatus, Sample

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

PROMPT = [257, 84, 82, 68, 81, 198, 54, 71, 64, 83, 258, 198, 257, 64]
RESPONSE = [17, 220, 10, 220, 18, 30, 220, 64, 65, 66]


def scored_batch(groups: int = 2, n: int = 4) -> list[tuple[ray.ObjectRef, ray.ObjectRef]]:
    prompt = Prompt(uid="p", text="x", prompt_ids=PROMPT, ground_truth="1")
    pairs = []
    for g in range(groups):
        for i in range(n):
            response = RESPONSE[: 4 + i]
            sample = Sample(f"g{g}", i, n, prompt, response, [1] * len(response), [-1.0] * len(response), 0,
                            FinishReason.LENGTH, "")
            pairs.append((ray.put(sample), ray.put(Reward(float(i % 2), RewardStatus.OK))))
    return pairs


@pytest.fixture(scope="module")
def setup():
    model = str(resolve_model("tiny"))
    env = actor_env()
    store = DataStore.remote()
    learners = LearnerGroup(model, LearnerOptions(num_ranks=2, zero_stage=2, lr=5e-2, micro_batch_size=4),
                            AlgorithmOptions(), temperature=1.0, env=env)
    worker_cls = ray.remote(num_cpus=1)(RolloutWorker)
    workers = {
        engine: worker_cls.remote(f"rollout-{engine}", store, model, RolloutConfig(
            engine=engine, engine_options=EngineOptions(max_model_len=256), sampling=SamplingOptions(max_new_tokens=8),
            prompts_per_request=4), env)
        for engine in ("hf", "vllm")
    }
    ray.get([w.ready.remote() for w in workers.values()])
    yield store, learners, workers
    learners.shutdown()
    for worker in workers.values():
        ray.kill(worker)


def test_engines_match_learner_after_sync(setup) -> None:
    store, learners, workers = setup
    before = {e: ray.get(w.token_logprobs.remote(PROMPT, RESPONSE)) for e, w in workers.items()}
    reference_before = learners.logprobs(PROMPT, RESPONSE)
    for engine, values in before.items():
        assert values == pytest.approx(reference_before, abs=2e-4), f"{engine} disagrees with the learner at start"

    learners.train_step(scored_batch())
    after_learner = learners.logprobs(PROMPT, RESPONSE)
    assert max(abs(a - b) for a, b in zip(after_learner, reference_before)) > 1e-3, "the step must change the policy"

    sync = WeightSync(learners, store, list(f"rollout-{e}" for e in workers), timeout_s=120, dtype="float32")
    sync.publish(1, wait=False)
    after = {e: ray.get(w.token_logprobs.remote(PROMPT, RESPONSE)) for e, w in workers.items()}  # loads v1 first
    sync.wait(1)
    for engine, values in after.items():
        assert values == pytest.approx(after_learner, abs=2e-4), f"{engine} log-probs differ from the learner after sync"


def test_broadcast_sync_reaches_every_engine_without_blocking_the_learner(setup) -> None:
    """sync.transport=gloo: learner rank 0 broadcasts to the vLLM and HF engines."""
    store, learners, workers = setup
    names = [f"rollout-{e}" for e in workers]
    sync = WeightSync(learners, store, names, timeout_s=120, dtype="float32", transport="gloo",
                      bucket_mb=0.25)  # several buckets for the tiny model
    sync.connect(list(workers.values()))
    learners.train_step(scored_batch())
    expected = learners.logprobs(PROMPT, RESPONSE)

    versions = ray.get(store.wait_engines.remote(0, names, 0))
    sync.publish(10, wait=False)  # returns before any engine has come for the weights
    assert ray.get(store.wait_engines.remote(10, names, 0)) == versions, "publish without wait must not wait for the engines"
    # Each engine joins the broadcast between requests (here: before scoring).
    after = dict(zip(workers, ray.get([w.token_logprobs.remote(PROMPT, RESPONSE) for w in workers.values()])))
    sync.wait(10)
    for engine, values in after.items():
        assert values == pytest.approx(expected, abs=2e-4), f"{engine} log-probs differ from the learner after the broadcast"

    # The next version goes out once the previous one is done, here in bfloat16.
    learners.train_step(scored_batch())
    expected = learners.logprobs(PROMPT, RESPONSE)
    sync.dtype = "bfloat16"
    sync.publish(11, wait=False)
    after = dict(zip(workers, ray.get([w.token_logprobs.remote(PROMPT, RESPONSE) for w in workers.values()])))
    sync.wait(11)
    for engine, values in after.items():  # bf16 weights: close to the learner's fp32, not equal
        assert values == pytest.approx(expected, abs=5e-2), f"{engine} did not load version 11"
        assert values != pytest.approx(expected, abs=1e-6), f"{engine} cannot match fp32 exactly with bf16 weights"


def test_a_member_that_cannot_join_the_group_is_named_with_its_reason(setup) -> None:
    store, learners, workers = setup
    sync = WeightSync(learners, store, ["rollout-hf"], timeout_s=20, dtype="float32", transport="nccl")  # no GPU here
    with pytest.raises(WeightSyncError, match=r"(rollout-hf|learner rank 0) could not join the nccl weight-broadcast "
                                              r"group at .*needs a CUDA build of torch and a GPU on every member"):
        sync.connect([workers["hf"]])


def test_sync_fails_loudly_when_an_engine_never_loads(setup) -> None:
    store, learners, _ = setup
    sync = WeightSync(learners, store, ["rollout-missing"], timeout_s=2, dtype="float32")
    with pytest.raises(WeightSyncError, match="rollout-missing"):
        sync.publish(5)
