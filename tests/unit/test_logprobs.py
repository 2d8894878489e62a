"""Chunked log-probs/entropy equal the naive full-logits computation, values and gradients."""

from __future__ import annotations

import pytest
import torch

from rlkit.learner.collate import collate
from rlkit.learner.logprobs import batch_logprobs, token_logprobs_and_entropy
from rlkit.models import resolve_model
from rlkit.types import FinishReason, Prompt, Reward, RewardStatus, Sample, ScoredSample


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    loaded = AutoModelForCausalLM.from_pretrained(resolve_model("tiny"), dtype=torch.float32)
    # Random-init weights give near-uniform logits; sharpen them (through the final norm, which
    # only the head reads) so entropies and log-probs vary from token to token.
    with torch.no_grad():
        loaded.get_decoder().norm.weight.mul_(6.0)
    return loaded


def scored(prompt_ids: list[int], response_ids: list[int]) -> ScoredSample:
    sample = Sample(
        group_uid="g",
        index_in_group=0,
        group_size=1,
        prompt=Prompt(uid="p", text="", prompt_ids=prompt_ids, ground_truth=None),
        response_ids=response_ids,
        response_mask=[1] * len(response_ids),
        rollout_logprobs=[0.0] * len(response_ids),
        policy_version=0,
        finish=FinishReason.STOP,
        response_text="",
    )
    return ScoredSample(sample=sample, reward=Reward(score=0.0, status=RewardStatus.OK))


def ragged_batch(pad_token_id: int):
    """Prompts of different lengths (left padding) and responses of different lengths."""
    generator = torch.Generator().manual_seed(1)
    shapes = [(3, 7), (9, 2), (5, 5), (1, 6)]
    def ids(length: int) -> list[int]:
        return torch.randint(0, 256, (length,), generator=generator).tolist()

    items = [scored(ids(p), ids(r)) for p, r in shapes]
    return items, collate(items, pad_token_id)


def naive(model, batch, temperature: float):
    """Full logits for every position, divided by T, then log_softmax and entropy."""
    width = batch.responses.shape[1]
    logits = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
    ).logits
    logits = logits[:, -width - 1 : -1, :].float() / temperature
    logp = torch.log_softmax(logits, dim=-1)
    logprobs = logp.gather(-1, batch.responses[..., None]).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return logprobs, entropy


def chunked(model, batch, temperature: float, chunk_size: int, with_entropy: bool = True):
    return batch_logprobs(model, batch, temperature, chunk_size, with_entropy)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_size", [1, 5, 4096])
def test_values_match_naive(model, temperature: float, chunk_size: int) -> None:
    _, batch = ragged_batch(model.config.pad_token_id)
    valid = batch.attention_mask[:, -batch.responses.shape[1] :].bool()
    with torch.no_grad():
        expected_lp, expected_h = naive(model, batch, temperature)
        logprobs, entropy = chunked(model, batch, temperature, chunk_size)
    torch.testing.assert_close(logprobs[valid], expected_lp[valid], rtol=0, atol=1e-5)
    torch.testing.assert_close(entropy[valid], expected_h[valid], rtol=0, atol=1e-5)
    # Padding positions hold zeros, never values computed from pad tokens.
    assert torch.all(logprobs[~valid] == 0) and torch.all(entropy[~valid] == 0)
    # Sanity of the fixture: the distributions are far from uniform, so the comparison bites.
    assert entropy[valid].std() > 0.1 and logprobs[valid].std() > 0.1


def test_without_entropy_returns_none(model) -> None:
    _, batch = ragged_batch(model.config.pad_token_id)
    with torch.no_grad():
        logprobs, entropy = chunked(model, batch, 1.0, 4, with_entropy=False)
        expected, _ = chunked(model, batch, 1.0, 4)
    assert entropy is None
    torch.testing.assert_close(logprobs, expected, rtol=0, atol=0)


@pytest.mark.parametrize("chunk_size", [3, 4096])
def test_gradients_match_naive(model, chunk_size: int) -> None:
    _, batch = ragged_batch(model.config.pad_token_id)
    valid = batch.attention_mask[:, -batch.responses.shape[1] :].float()
    weights = torch.randn(valid.shape, generator=torch.Generator().manual_seed(2)) * valid
    parameters = [p for p in model.parameters() if p.requires_grad]

    def grads(logprobs, entropy):
        objective = (weights * logprobs).sum() + 0.3 * (weights * entropy).sum()
        return torch.autograd.grad(objective, parameters)

    expected = grads(*naive(model, batch, 0.8))
    actual = grads(*chunked(model, batch, 0.8, chunk_size))
    for name_param, want, got in zip(model.named_parameters(), expected, actual):
        assert torch.isfinite(got).all(), name_param[0]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name_param[0])


def test_left_padding_does_not_change_results(model) -> None:
    """Each row alone (no padding at all) gives the same log-probs as inside the padded batch."""
    items, batch = ragged_batch(model.config.pad_token_id)
    with torch.no_grad():
        together, together_h = chunked(model, batch, 1.0, 7)
        for row, item in enumerate(items):
            alone, alone_h = chunked(model, collate([item], model.config.pad_token_id), 1.0, 7)
            length = len(item.sample.response_ids)
            torch.testing.assert_close(together[row, :length], alone[0], rtol=0, atol=1e-5)
            torch.testing.assert_close(together_h[row, :length], alone_h[0], rtol=0, atol=1e-5)


def test_response_width_out_of_range_is_refused(model) -> None:
    _, batch = ragged_batch(model.config.pad_token_id)
    with pytest.raises(ValueError, match="response_width"):
        token_logprobs_and_entropy(
            model, batch.input_ids, batch.attention_mask, batch.position_ids, batch.input_ids.shape[1], 1.0, 8
        )


@pytest.mark.parametrize("min_chunks", [0, 7, 40])
def test_forced_chunk_count_changes_nothing(model, min_chunks: int) -> None:
    """Ranks agree on a chunk count (ZeRO-3); more chunks than tokens means empty chunks."""
    _, batch = ragged_batch(model.config.pad_token_id)
    valid = batch.attention_mask[:, -batch.responses.shape[1] :].float()
    parameters = [p for p in model.parameters() if p.requires_grad]
    results = []
    for forced in (0, min_chunks):
        logprobs, entropy = token_logprobs_and_entropy(
            model, batch.input_ids, batch.attention_mask, batch.position_ids, batch.responses.shape[1], 1.0, 4,
            min_chunks=forced,
        )
        grads = torch.autograd.grad(((logprobs + entropy) * valid).sum(), parameters)
        results.append((logprobs.detach(), entropy.detach(), grads))
    (lp0, h0, g0), (lp1, h1, g1) = results
    torch.testing.assert_close(lp1, lp0, rtol=0, atol=1e-5)
    torch.testing.assert_close(h1, h0, rtol=0, atol=1e-5)
    for want, got in zip(g0, g1):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
