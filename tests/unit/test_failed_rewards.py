"""A failed reward is not a score of 0 (rlkit.learner.failures, reward.on_failure).

The rewards come from a real reward file run in a ScoringPool that fails on a known subset of
samples (it raises, returns NaN, runs past its timeout, or does not apply). For every registered
policy loss, regularizer, aggregation mode and advantage estimator, the gradient of the loss
the learner builds from that batch equals the gradient of the same loss on the batch with
those rows (and the group left with one row) removed, and the removed rows get none.
"""

from __future__ import annotations

import dataclasses
import random
import textwrap
import zlib
from pathlib import Path

import pytest
import torch

from rlkit.algorithms import ADVANTAGES, AGG_MODES, POLICY_LOSSES, REGULARIZERS, AlgorithmOptions, PolicyLossInputs
from rlkit.algorithms import actor_loss
from rlkit.learner.collate import collate
from rlkit.learner.failures import trainable_rows
from rlkit.learner.inputs import denominators_of, fill_advantages
from rlkit.reward import RewardFnSpec, RewardRequest, ScoringPool
from rlkit.types import FinishReason, Prompt, RewardStatus, Sample, ScoredSample

REWARD_FILE = textwrap.dedent(
    """
    import math, time

    def score(*, response, **kwargs):
        if response == "raise":
            raise RuntimeError("the checker crashed")
        if response == "nan":
            return math.nan
        if response == "sleep":
            time.sleep(30)
        if response == "none":
            return None
        return {"score": float(response), "correct": float(response)}
    """
)

# Group → the response text of each sample (what the reward file does with it).
GROUPS = {
    "g0": ["1", "0", "raise", "1"],  # one error: 3 rows remain
    "g1": ["1", "sleep", "nan", "raise"],  # timeout, invalid, error: 1 row remains, the group leaves
    "g2": ["0", "1", "0", "1", "1"],
    "g3": ["none", "1", "0", "raise"],  # not applicable and an error: 2 rows remain
    "g4": ["0", "1", "1", "0"],
}
FAILED = {"raise": RewardStatus.ERROR, "nan": RewardStatus.INVALID, "sleep": RewardStatus.TIMEOUT,
          "none": RewardStatus.NOT_APPLICABLE}
ABSENT = {("g0", 2), ("g1", 0), ("g1", 1), ("g1", 2), ("g1", 3), ("g3", 0), ("g3", 3)}  # what a run without them lacks


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> list[ScoredSample]:
    """The batch, scored by the real pool (a 1 s timeout kills the sleeper)."""
    path = Path(tmp_path_factory.mktemp("reward")) / "flaky.py"
    path.write_text(REWARD_FILE)
    samples = make_samples()
    with ScoringPool(RewardFnSpec(path=str(path), name="score"), num_processes=2, timeout_s=1.0) as pool:
        rewards = pool.score([RewardRequest(prompt=s.prompt.text, response=s.response_text) for s in samples])
    return [ScoredSample(sample=s, reward=r) for s, r in zip(samples, rewards)]


def make_samples() -> list[Sample]:
    rng = random.Random(7)
    samples = []
    for group, texts in GROUPS.items():
        prompt = Prompt(uid=group, text="q", prompt_ids=[rng.randrange(200) for _ in range(rng.randint(2, 6))],
                        ground_truth=None)
        for index, text in enumerate(texts):
            # The failed group holds the longest responses: a width taken over every row would differ.
            length = rng.randint(11, 14) if group == "g1" else rng.randint(2, 9)
            mask = [1] * length
            if length > 4 and index == 1:
                mask[2] = 0  # an environment token: in context, never in the loss
            samples.append(Sample(
                group_uid=group, index_in_group=index, group_size=len(texts), prompt=prompt,
                response_ids=[rng.randrange(200) for _ in range(length)], response_mask=mask,
                rollout_logprobs=[-rng.uniform(0.2, 3.0) for _ in range(length)], policy_version=0,
                finish=FinishReason.STOP, response_text=text,
            ))
    return samples


def token_values(items: list[ScoredSample], width: int, salt: int) -> torch.Tensor:
    """[B, width] per-token numbers fixed by each sample's identity, so both batches agree."""
    out = torch.zeros(len(items), width)
    for row, item in enumerate(items):
        gen = torch.Generator().manual_seed(zlib.crc32(f"{item.sample.group_uid}/{item.sample.index_in_group}/{salt}".encode()))
        n = item.sample.response_length
        out[row, :n] = torch.rand(n, generator=gen)
    return out


def loss_gradients(items: list[ScoredSample], algorithm: AlgorithmOptions, on_failure: str = "exclude") -> dict:
    """What train_step builds (rows, advantages, masked response, denominators of the rows in the
    loss), then the registered loss and its gradient per sample: {(group, index): [R_i]}."""
    batch = collate(items, pad_token_id=0)
    rows = trainable_rows(items, on_failure)
    width = batch.responses.shape[1]
    old_entropy = 0.5 + 2 * token_values(items, width, 1)
    fill_advantages(batch, rows, algorithm.advantage, algorithm.advantage_options, old_entropy)
    old = batch.rollout_logprobs - 0.05 * token_values(items, width, 2)
    log_prob = (old + 0.3 * (token_values(items, width, 3) - 0.5)).requires_grad_(True)
    entropy = old_entropy - 0.2 * log_prob  # carries a gradient, as the policy's entropy does
    reference = old - 0.1 * token_values(items, width, 4)
    loss, _ = actor_loss(
        PolicyLossInputs(
            log_prob=log_prob, old_log_prob=old, advantages=batch.advantages, response_mask=batch.response_mask,
            entropy=entropy, ref_log_prob=reference, old_entropy=old_entropy, step_ids=batch.step_ids,
            generator=torch.Generator().manual_seed(3), rollout_log_prob=batch.rollout_logprobs,
        ),
        algorithm,
        denominators_of(batch, rows.kept.nonzero().flatten(), algorithm.loss_scale_factor),
    )
    (gradient,) = torch.autograd.grad(loss, log_prob)
    return {(item.sample.group_uid, item.sample.index_in_group): gradient[row, : item.sample.response_length]
            for row, item in enumerate(items)}


def assert_absent_rows_weigh_nothing(scored: list[ScoredSample], algorithm: AlgorithmOptions) -> None:
    present = loss_gradients(scored, algorithm)
    absent = loss_gradients([i for i in scored if (i.sample.group_uid, i.sample.index_in_group) not in ABSENT], algorithm)
    assert set(present) - set(absent) == ABSENT
    for key in ABSENT:
        assert torch.count_nonzero(present[key]) == 0, key
    assert any(torch.count_nonzero(value) for value in absent.values())
    for key, value in absent.items():
        torch.testing.assert_close(present[key], value, rtol=1e-5, atol=1e-7, msg=lambda text, key=key: f"{key}: {text}")


# ---------------------------------------------------------------- the statuses are real


def test_the_reward_fails_on_the_known_subset(scored: list[ScoredSample]) -> None:
    for item in scored:
        expected = FAILED.get(item.sample.response_text, RewardStatus.OK)
        assert item.reward.status == expected, (item.sample.response_text, item.reward)
    assert trainable_rows(scored).excluded == len(ABSENT)


# ---------------------------------------------------------------- gradient equality, every registered part

LOSS_OPTIONS = {  # so that each loss's own selection acts on this small batch
    "clip_cov": {"clip_cov_ratio": 0.2, "clip_cov_lb": 0.0, "clip_cov_ub": 10.0},
    "kl_cov": {"kl_cov_ratio": 0.2},
}
ADVANTAGE_OPTIONS = {"grpo_lambda": {"alpha": 0.6, "top_lambda": 0.5}}


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("loss", POLICY_LOSSES.names())
def test_failed_rows_weigh_nothing_in_every_loss(scored, loss: str, agg: str) -> None:
    algorithm = AlgorithmOptions(loss=loss, loss_options=LOSS_OPTIONS.get(loss, {}), loss_agg_mode=agg,
                                 entropy_coeff=0.01, kl_coef=0.05, rollout_correction="tis")
    assert_absent_rows_weigh_nothing(scored, algorithm)


@pytest.mark.parametrize("regularizer", REGULARIZERS.names())
def test_failed_rows_weigh_nothing_in_every_regularizer(scored, regularizer: str) -> None:
    assert_absent_rows_weigh_nothing(scored, AlgorithmOptions(regularizers={regularizer: {}}))


@pytest.mark.parametrize("advantage", ADVANTAGES.names())
def test_failed_rows_leave_the_statistics_of_every_estimator(scored, advantage: str) -> None:
    algorithm = AlgorithmOptions(advantage=advantage, advantage_options=ADVANTAGE_OPTIONS.get(advantage, {}))
    assert_absent_rows_weigh_nothing(scored, algorithm)


def test_a_fixed_scale_factor_is_unaffected_too(scored) -> None:
    assert_absent_rows_weigh_nothing(scored, AlgorithmOptions(loss_agg_mode="seq-mean-token-sum-norm", loss_scale_factor=16.0))


# ---------------------------------------------------------------- the other modes


def rows_of(scored: list[ScoredSample], on_failure: str) -> dict:
    rows = trainable_rows(scored, on_failure)
    return {(i.sample.group_uid, i.sample.index_in_group): (bool(rows.kept[r]), float(rows.scores[r]))
            for r, i in enumerate(scored)}


def test_minimum_gives_a_failed_row_its_groups_lowest_score(scored) -> None:
    rows = rows_of(scored, "minimum")
    assert rows[("g0", 2)] == (True, 0.0)  # g0's scores are 1, 0, 1
    assert [rows[("g1", k)] for k in range(4)] == [(True, 1.0)] * 4  # the only success is 1
    assert rows[("g3", 3)] == (True, 0.0) and rows[("g3", 0)] == (False, 0.0)  # not applicable stays out
    timed_out = next(r for r, i in enumerate(scored) if i.reward.status == RewardStatus.TIMEOUT)
    assert float(trainable_rows(scored, "minimum").components["correct"][timed_out]) == 1.0  # g1's worst success's


def test_minimum_leaves_out_a_group_without_any_success(scored) -> None:
    broken = [dataclasses.replace(i, reward=dataclasses.replace(i.reward, status=RewardStatus.ERROR, score=0.0))
              if i.sample.group_uid == "g4" else i for i in scored]
    assert not any(kept for (group, _), (kept, _) in rows_of(broken, "minimum").items() if group == "g4")


def test_zero_is_the_old_behaviour(scored) -> None:
    rows = rows_of(scored, "zero")
    assert rows[("g0", 2)] == (True, 0.0)
    assert [rows[("g1", k)] for k in range(4)] == [(True, 1.0), (True, 0.0), (True, 0.0), (True, 0.0)]
    assert rows[("g3", 0)] == (False, 0.0)
    assert trainable_rows(scored, "zero").excluded == 1


def test_a_group_left_with_one_row_leaves_the_loss_in_every_mode(scored) -> None:
    one_left = [i for i in scored if i.sample.group_uid != "g2" or i.sample.index_in_group == 0]
    for mode in ("exclude", "minimum", "zero"):
        assert rows_of(one_left, mode)[("g2", 0)] == (False, 0.0)


def test_an_unknown_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="exclude, minimum, zero"):
        trainable_rows([], "skip")
