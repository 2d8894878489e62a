"""Scored samples → one padded TrainBatch (prompts left-padded, responses right-padded).

With every response starting at the same column P, the hidden states that predict response
tokens are the contiguous slice [P-1, P+R-1) for every row, and per-token tensors line up as [B, R].
"""

from __future__ import annotations

import torch

from rlkit.algorithms.steps import step_ids_from_mask
from rlkit.types import ScoredSample, TrainBatch


def collate(scored: list[ScoredSample], pad_token_id: int) -> TrainBatch:
    """Pad `scored` into a TrainBatch; advantages are zeros until an estimator fills them."""
    if not scored:
        raise ValueError("collate needs at least one scored sample; got an empty batch")
    for item in scored:
        _check_sample(item)
    samples = [item.sample for item in scored]
    prompt_width = max(len(sample.prompt.prompt_ids) for sample in samples)
    # At least one response column keeps shapes valid when every response is empty.
    response_width = max(1, max(len(sample.response_ids) for sample in samples))
    rows = len(samples)

    prompt_ids = torch.full((rows, prompt_width), pad_token_id, dtype=torch.long)
    prompt_attention = torch.zeros((rows, prompt_width), dtype=torch.long)
    responses = torch.full((rows, response_width), pad_token_id, dtype=torch.long)
    response_attention = torch.zeros((rows, response_width), dtype=torch.long)
    response_mask = torch.zeros((rows, response_width), dtype=torch.float32)
    rollout_logprobs = torch.zeros((rows, response_width), dtype=torch.float32)
    for row, sample in enumerate(samples):
        prompt = sample.prompt.prompt_ids
        prompt_ids[row, prompt_width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        prompt_attention[row, prompt_width - len(prompt) :] = 1
        length = len(sample.response_ids)
        if length:
            responses[row, :length] = torch.tensor(sample.response_ids, dtype=torch.long)
            response_attention[row, :length] = 1
            response_mask[row, :length] = torch.tensor(sample.response_mask, dtype=torch.float32)
            rollout_logprobs[row, :length] = torch.tensor(sample.rollout_logprobs, dtype=torch.float32)

    attention_mask = torch.cat([prompt_attention, response_attention], dim=1)
    groups: dict[str, int] = {}
    return TrainBatch(
        input_ids=torch.cat([prompt_ids, responses], dim=1),
        attention_mask=attention_mask,
        position_ids=(attention_mask.cumsum(dim=1) - 1).clamp(min=0),
        responses=responses,
        response_mask=response_mask,
        rollout_logprobs=rollout_logprobs,
        scores=torch.tensor([item.reward.score for item in scored], dtype=torch.float64),  # exact for thresholds and bounds
        advantages=torch.zeros((rows, response_width), dtype=torch.float32),
        group_index=torch.tensor([groups.setdefault(s.group_uid, len(groups)) for s in samples], dtype=torch.long),
        policy_versions=torch.tensor([sample.policy_version for sample in samples], dtype=torch.long),
        step_ids=step_ids_from_mask(response_mask, [sample.turn_boundaries for sample in samples]),
    )


def _check_sample(item: ScoredSample) -> None:
    sample = item.sample
    if not sample.prompt.prompt_ids:
        raise ValueError(
            f"sample {sample.group_uid}/{sample.index_in_group} has an empty prompt: the first "
            "response token needs at least one prompt token to be predicted from"
        )
    length = len(sample.response_ids)
    if len(sample.response_mask) != length or len(sample.rollout_logprobs) != length:
        raise ValueError(
            f"sample {sample.group_uid}/{sample.index_in_group}: response_ids ({length}), response_mask "
            f"({len(sample.response_mask)}) and rollout_logprobs ({len(sample.rollout_logprobs)}) must have "
            "one entry per response token; the rollout stage wrote an inconsistent sample"
        )


def trim_padding(batch: TrainBatch) -> TrainBatch:
    """Drop columns that are padding in every row (leading prompt, trailing response columns).

    A micro-batch of short rows taken from a batch padded to its longest row then costs only
    its own length. The response still starts at the (new) prompt width.
    """
    prompt_width = batch.prompt_width
    prompt_columns = batch.attention_mask[:, :prompt_width].any(dim=0).nonzero()
    first = int(prompt_columns[0]) if prompt_columns.numel() else prompt_width - 1
    response_columns = batch.attention_mask[:, prompt_width:].any(dim=0).nonzero()
    width = int(response_columns[-1]) + 1 if response_columns.numel() else 1
    full = slice(first, prompt_width + width)
    response = slice(0, width)
    return TrainBatch(
        input_ids=batch.input_ids[:, full],
        attention_mask=batch.attention_mask[:, full],
        position_ids=batch.position_ids[:, full],
        responses=batch.responses[:, response],
        response_mask=batch.response_mask[:, response],
        rollout_logprobs=batch.rollout_logprobs[:, response],
        scores=batch.scores,
        advantages=batch.advantages[:, response],
        group_index=batch.group_index,
        policy_versions=batch.policy_versions,
        step_ids=batch.step_ids[:, response],
    )
