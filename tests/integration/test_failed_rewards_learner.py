"""The learner's train_step on a real DeepSpeed rank (in this process, gloo, world size 1, the
tiny model): rows whose reward failed weigh nothing in the gradient, for every registered policy
loss and regularizer, and a batch that mixes data sources is interleaved before its mini-batches
are cut.

The gradient is read from hooks on the parameters (the raw gradient, before clipping); the
learning rate is so small that no weight moves, so every call sees the same model.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from rlkit.algorithms import POLICY_LOSSES, REGULARIZERS, AlgorithmOptions
from rlkit.learner import worker as worker_module
from rlkit.learner.options import LearnerOptions
from rlkit.models import resolve_model
from rlkit.types import FinishReason, Prompt, Reward, RewardStatus, Sample, ScoredSample

pytestmark = pytest.mark.slow

OK, ERROR, TIMEOUT, INVALID, NA = (RewardStatus.OK, RewardStatus.ERROR, RewardStatus.TIMEOUT, RewardStatus.INVALID,
                                   RewardStatus.NOT_APPLICABLE)
GROUPS = {  # (status, score) per sample
    "g0": [(OK, 1.0), (OK, 0.0), (ERROR, 0.0), (OK, 1.0)],
    "g1": [(OK, 1.0), (TIMEOUT, 0.0), (INVALID, 0.0), (ERROR, 0.0)],  # one row left: the group leaves
    "g2": [(OK, 0.0), (OK, 1.0), (OK, 0.0), (OK, 1.0), (OK, 1.0)],
    "g3": [(NA, 0.0), (OK, 1.0), (OK, 0.0), (ERROR, 0.0)],
}
ABSENT = {("g0", 2), ("g1", 0), ("g1", 1), ("g1", 2), ("g1", 3), ("g3", 0), ("g3", 3)}
OPTIONS = LearnerOptions(num_ranks=1, zero_stage=0, micro_batch_size=64, lr=1e-30, backend="gloo", ppo_epochs=2)
LOSS_OPTIONS = {"clip_cov": {"clip_cov_ratio": 0.2, "clip_cov_lb": 0.0}, "kl_cov": {"kl_cov_ratio": 0.2}}


def batch(data_source: dict[str, str] | None = None, all_ok: bool = False) -> list[ScoredSample]:
    """GROUPS' samples (with `all_ok`, every reward OK with a 0/1 score), groups in GROUPS' order."""
    rng = random.Random(5)
    items = []
    for group, rewards in GROUPS.items():
        prompt = Prompt(uid=group, text="", prompt_ids=[rng.randrange(256) for _ in range(rng.randint(2, 7))],
                        ground_truth=None, data_source=(data_source or {}).get(group, "default"))
        for index, (status, score) in enumerate(rewards):
            length = rng.randint(10, 14) if group == "g1" else rng.randint(2, 8)
            sample = Sample(
                group_uid=group, index_in_group=index, group_size=len(rewards), prompt=prompt,
                response_ids=[rng.randrange(256) for _ in range(length)], response_mask=[1] * length,
                rollout_logprobs=[-1.5] * length, policy_version=0, finish=FinishReason.STOP, response_text="",
            )
            reward = Reward(score=float(index % 2), status=OK) if all_ok else Reward(score=score, status=status)
            items.append(ScoredSample(sample=sample, reward=reward))
    return items


@pytest.fixture(scope="module")
def learner():
    import torch.distributed as dist

    from rlkit.learner.group import free_port
    from rlkit.learner.worker import LearnerWorker

    worker = LearnerWorker(0, 1, "127.0.0.1", free_port(), str(resolve_model("tiny")), OPTIONS, AlgorithmOptions(),
                           temperature=0.9)
    worker.setup()
    gradients: dict[str, torch.Tensor] = {}
    for name, parameter in worker.engine.module.named_parameters():
        def keep(gradient: torch.Tensor, name: str = name) -> torch.Tensor:
            gradients[name] = gradients[name] + gradient.detach() if name in gradients else gradient.detach().clone()
            return gradient
        parameter.register_hook(keep)
    yield worker, gradients
    dist.destroy_process_group()


def gradient_of(learner, items: list[ScoredSample], algorithm: AlgorithmOptions) -> tuple[dict, dict]:
    worker, gradients = learner
    worker.algorithm = algorithm
    worker.steps_trained = 0  # the same loss seed (Clip-Cov) for both batches
    gradients.clear()
    metrics = worker.train_step(items)
    return {name: value.clone() for name, value in gradients.items()}, metrics


def assert_same_gradient(present: dict, absent: dict) -> None:
    scale = max(float(value.abs().max()) for value in absent.values())
    assert scale > 0
    for name, value in absent.items():
        torch.testing.assert_close(present[name], value, rtol=1e-4, atol=1e-5 * scale,
                                   msg=lambda text, name=name: f"{name}: {text}")


CASES = [AlgorithmOptions(loss=name, loss_options=LOSS_OPTIONS.get(name, {}), entropy_coeff=0.01)
         for name in POLICY_LOSSES.names()]
CASES += [AlgorithmOptions(regularizers={name: {}}) for name in REGULARIZERS.names()]
CASES += [AlgorithmOptions(loss_agg_mode="seq-mean-token-sum-norm")]  # its width ignores the rows left out


@pytest.mark.parametrize("algorithm", CASES, ids=[f"{c.loss}+{'+'.join(c.regularizers) or c.loss_agg_mode}" for c in CASES])
def test_failed_rows_weigh_nothing_in_the_gradient(learner, algorithm: AlgorithmOptions) -> None:
    items = batch()
    present, metrics = gradient_of(learner, items, algorithm)
    kept = [item for item in items if (item.sample.group_uid, item.sample.index_in_group) not in ABSENT]
    absent, clean = gradient_of(learner, kept, algorithm)
    assert_same_gradient(present, absent)
    assert metrics["actor/excluded_samples"] == len(ABSENT) and clean["actor/excluded_samples"] == 0


def test_zero_mode_trains_on_the_failed_rows(learner) -> None:
    """The check above can fail: scoring failures as 0 (the old behaviour) moves the gradient."""
    worker, _ = learner
    items = batch()
    kept = [item for item in items if (item.sample.group_uid, item.sample.index_in_group) not in ABSENT]
    absent, _ = gradient_of(learner, kept, AlgorithmOptions())
    worker.on_failure = "zero"
    try:
        zero, metrics = gradient_of(learner, items, AlgorithmOptions())
    finally:
        worker.on_failure = "exclude"
    assert metrics["actor/excluded_samples"] == 1  # only the not-applicable row
    with pytest.raises(AssertionError):
        assert_same_gradient(zero, absent)


def test_a_batch_of_failures_makes_no_update(learner) -> None:
    items = [dataclasses.replace(item, reward=Reward(score=0.0, status=ERROR)) for item in batch()]
    gradients, metrics = gradient_of(learner, items, AlgorithmOptions())
    assert gradients == {} and metrics["actor/excluded_samples"] == len(items)
    assert "actor/loss" not in metrics and metrics["actor/skipped_steps"] == 0


def test_mixed_sources_are_interleaved_before_mini_batches(learner, monkeypatch) -> None:
    """A RISE-like batch: the verification groups come last, so the first of 2 contiguous
    mini-batches would hold solutions only. Interleaved, each holds one verification group."""
    worker, _ = learner
    seen: list[list[str]] = []
    real = worker_module.collate

    def spy(scored, pad_token_id):
        seen.append([item.sample.group_uid for item in scored])
        return real(scored, pad_token_id)

    monkeypatch.setattr(worker_module, "collate", spy)
    verification = {"g2": "rise_verification", "g3": "rise_verification"}
    items = batch(verification, all_ok=True)
    worker.options = dataclasses.replace(OPTIONS, mini_batches=2)
    try:
        gradient_of(learner, items, AlgorithmOptions())
        gradient_of(learner, items, AlgorithmOptions())
    finally:
        worker.options = OPTIONS
    gradient_of(learner, items, AlgorithmOptions())
    interleaved, again, single = seen
    original = [item.sample.group_uid for item in items]
    assert interleaved == again  # seeded by (seed, step): every rank and every rerun agree
    assert single == original  # one mini-batch: the order does not matter and is kept
    assert sorted(interleaved) == sorted(original)
    runs = [uid for index, uid in enumerate(interleaved) if index == 0 or interleaved[index - 1] != uid]
    assert len(runs) == len(set(runs)) == len(GROUPS)  # each group's rows stay together

    def mini_batches(order: list[str]) -> list[set[str]]:
        half = round(len(order) / 2)  # plan_mini_batches' bounds
        return [set(order[:half]), set(order[half:])]

    assert not all(part & set(verification) for part in mini_batches(original))  # the problem
    assert all(part & set(verification) for part in mini_batches(interleaved))
