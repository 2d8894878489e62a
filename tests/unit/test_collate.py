"""collate: row layout, masks, position ids, group indices; padding never leaks into values."""

from __future__ import annotations

import pytest
import torch

from rlkit.learner.collate import collate, trim_padding
from rlkit.types import FinishReason, Prompt, Reward, RewardStatus, Sample, ScoredSample

PAD = 999


def scored(group: str, prompt: list[int], response: list[int], mask: list[int] | None = None, score: float = 1.0,
           version: int = 0) -> ScoredSample:
    sample = Sample(
        group_uid=group,
        index_in_group=0,
        group_size=2,
        prompt=Prompt(uid=group, text="", prompt_ids=prompt, ground_truth=None),
        response_ids=response,
        response_mask=mask if mask is not None else [1] * len(response),
        rollout_logprobs=[-0.5 - i for i in range(len(response))],
        policy_version=version,
        finish=FinishReason.STOP,
        response_text="",
    )
    return ScoredSample(sample=sample, reward=Reward(score=score, status=RewardStatus.OK))


@pytest.fixture
def items() -> list[ScoredSample]:
    return [
        scored("b", [1, 2, 3], [10, 11], score=0.0, version=3),
        scored("a", [4], [12, 13, 14, 15], mask=[1, 0, 0, 1], score=1.0, version=4),
        scored("b", [5, 6], [], score=0.5, version=4),
    ]


def test_layout_left_pads_prompts_and_right_pads_responses(items) -> None:
    batch = collate(items, PAD)
    assert batch.input_ids.shape == (3, 3 + 4) and batch.prompt_width == 3 and len(batch) == 3
    assert batch.input_ids.tolist() == [
        [1, 2, 3, 10, 11, PAD, PAD],
        [PAD, PAD, 4, 12, 13, 14, 15],
        [PAD, 5, 6, PAD, PAD, PAD, PAD],
    ]
    assert batch.attention_mask.tolist() == [
        [1, 1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1, 1],
        [0, 1, 1, 0, 0, 0, 0],
    ]
    # Responses start at column P in every row, and `responses` is that slice of input_ids.
    assert torch.equal(batch.responses, batch.input_ids[:, batch.prompt_width :])


def test_position_ids_count_real_tokens_only(items) -> None:
    batch = collate(items, PAD)
    for row in range(len(batch)):
        real = batch.attention_mask[row].bool()
        assert batch.position_ids[row][real].tolist() == list(range(int(real.sum())))
        first_real = int(real.nonzero()[0])
        assert torch.all(batch.position_ids[row, :first_real] == 0)  # left padding clipped at 0


def test_masks_logprobs_and_scores(items) -> None:
    batch = collate(items, PAD)
    assert batch.response_mask.dtype == torch.float32
    # The sample's own mask (env/tool tokens masked out) is kept; padding is 0.
    assert batch.response_mask.tolist() == [[1, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]]
    assert batch.rollout_logprobs.tolist() == [[-0.5, -1.5, 0, 0], [-0.5, -1.5, -2.5, -3.5], [0, 0, 0, 0]]
    assert batch.scores.tolist() == [0.0, 1.0, 0.5]
    assert batch.policy_versions.tolist() == [3, 4, 4]
    assert torch.all(batch.advantages == 0) and batch.advantages.shape == batch.response_mask.shape


def test_group_index_is_dense_by_first_appearance(items) -> None:
    batch = collate(items + [scored("c", [7], [8]), scored("a", [7], [8])], PAD)
    assert batch.group_index.tolist() == [0, 1, 0, 2, 1]


def test_pad_value_never_appears_in_real_positions(items) -> None:
    """Whatever the pad id is, it only sits where the attention mask is 0."""
    for pad in (0, 10, PAD):
        batch = collate(items, pad)
        other = collate(items, pad + 1)
        real = batch.attention_mask.bool()
        assert torch.equal(batch.input_ids[real], other.input_ids[real])
        assert torch.all(batch.input_ids[~real] == pad)
        assert torch.equal(batch.position_ids, other.position_ids)


def test_all_empty_responses_keep_one_column() -> None:
    batch = collate([scored("a", [1, 2], [])], PAD)
    assert batch.responses.shape == (1, 1) and batch.response_mask.sum() == 0


def test_inconsistent_or_empty_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="empty batch"):
        collate([], PAD)
    with pytest.raises(ValueError, match="empty prompt"):
        collate([scored("a", [], [1])], PAD)
    with pytest.raises(ValueError, match="one entry per response token"):
        collate([scored("a", [1], [1, 2], mask=[1])], PAD)


def test_trim_padding_drops_only_all_pad_columns(items) -> None:
    batch = collate(items, PAD)
    short = batch.select(torch.tensor([0, 2]))  # prompts of 3 and 2 tokens, responses of 2 and 0
    trimmed = trim_padding(short)
    assert trimmed.input_ids.tolist() == [[1, 2, 3, 10, 11], [PAD, 5, 6, PAD, PAD]]
    assert trimmed.prompt_width == 3 and trimmed.responses.shape == (2, 2)
    assert torch.equal(trimmed.position_ids, short.position_ids[:, :5])
    assert trimmed.response_mask.tolist() == [[1, 1], [0, 0]]
    assert trimmed.rollout_logprobs.tolist() == [[-0.5, -1.5], [0, 0]]
    # Nothing to drop: the full batch comes back unchanged.
    assert torch.equal(trim_padding(batch).input_ids, batch.input_ids)
    # Left padding common to all rows goes too.
    alone = trim_padding(batch.select(torch.tensor([1])))
    assert alone.input_ids.tolist() == [[4, 12, 13, 14, 15]] and alone.position_ids.tolist() == [[0, 1, 2, 3, 4]]
