"""Per-token log-probs and entropies of response tokens, without the full logits tensor.

A causal LM's logits for a batch are [B, L, V] floats; for real vocabularies (V ≈ 150k) that
tensor, in fp32 and kept for backward, dominates learner memory. Here the transformer body
runs once, only the hidden states that predict response tokens are kept, and those are
projected to the vocabulary a chunk of tokens at a time, each chunk under activation
checkpointing: backward recomputes one chunk's logits instead of storing all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

if TYPE_CHECKING:
    from rlkit.types import TrainBatch


def token_logprobs_and_entropy(
    model: nn.Module,
    input_ids: Tensor,  # [B, P+R] long, prompts left-padded, responses right-padded
    attention_mask: Tensor,  # [B, P+R], 1 = real token
    position_ids: Tensor,  # [B, P+R] long
    response_width: int,  # R: the response occupies the last R columns
    temperature: float,
    chunk_size: int,
    with_entropy: bool = True,
    min_chunks: int = 0,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs [B, R] of the response tokens under logits / temperature, and the
    full-vocabulary entropies [B, R] of that distribution (None if not asked for).

    The valid tokens are projected in `max(ceil(n / chunk_size), min_chunks)` near-equal
    chunks. Under ZeRO-3 each call of the LM head gathers its weight collectively, so ranks
    holding different token counts must agree on one chunk count (`min_chunks`); results do
    not depend on it.

    Padding positions of the response hold 0 in both outputs. The projection runs in the
    model's dtype and everything after it (temperature, log_softmax, entropy) in fp32, the way
    vLLM computes the log-probs it samples with.
    """
    if response_width < 1 or response_width >= input_ids.shape[1]:
        raise ValueError(
            f"response_width={response_width} for sequences of width {input_ids.shape[1]}: "
            "need at least one prompt column before the response and one response column"
        )
    batch = input_ids.shape[0]
    hidden = _final_hidden_states(model, input_ids, attention_mask, position_ids)
    # The hidden state at column j predicts the token at column j + 1.
    predicting = hidden[:, -response_width - 1 : -1, :].reshape(batch * response_width, -1)
    targets = input_ids[:, -response_width:].reshape(-1)
    valid = attention_mask[:, -response_width:].reshape(-1).nonzero().squeeze(-1)
    lm_head = model.get_output_embeddings()

    logprob_parts: list[Tensor] = []
    entropy_parts: list[Tensor] = []
    chunks = max(-(-valid.numel() // chunk_size), min_chunks)
    for rows in torch.tensor_split(valid, chunks) if chunks else ():
        args = (lm_head, predicting.index_select(0, rows), targets.index_select(0, rows), temperature, with_entropy)
        if torch.is_grad_enabled():
            logprob, entropy = checkpoint(_project_chunk, *args, use_reentrant=False)
        else:
            logprob, entropy = _project_chunk(*args)
        logprob_parts.append(logprob)
        entropy_parts.append(entropy)

    logprobs = _scatter(logprob_parts, valid, batch * response_width, predicting).view(batch, response_width)
    if not with_entropy:
        return logprobs, None
    entropies = _scatter(entropy_parts, valid, batch * response_width, predicting).view(batch, response_width)
    return logprobs, entropies


def batch_logprobs(
    model: nn.Module, batch: TrainBatch, temperature: float, chunk_size: int, with_entropy: bool = True, min_chunks: int = 0
) -> tuple[Tensor, Tensor | None]:
    """`token_logprobs_and_entropy` for the response columns of a padded TrainBatch."""
    return token_logprobs_and_entropy(
        model, batch.input_ids, batch.attention_mask, batch.position_ids,
        response_width=batch.responses.shape[1], temperature=temperature, chunk_size=chunk_size,
        with_entropy=with_entropy, min_chunks=min_chunks,
    )


def _final_hidden_states(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
    """Last hidden states [B, L, H] after the final norm, i.e. what the LM head reads.

    HuggingFace causal LMs split into a body (`get_decoder()`: embeddings, layers and the final
    norm, e.g. Qwen2Model / LlamaModel) and the `lm_head`; calling the body skips the head.
    """
    body = model.get_decoder()
    output = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]


def _project_chunk(
    lm_head: nn.Module, hidden: Tensor, targets: Tensor, temperature: float, with_entropy: bool
) -> tuple[Tensor, Tensor]:
    """Log-prob of each target and entropy for one chunk of hidden states [N, H]."""
    # The head is called as a module (not through its weight) so ZeRO-3 hooks gather it.
    logits = lm_head(hidden).float()
    if temperature != 1.0:
        logits = logits / temperature
    log_normalizer = torch.logsumexp(logits, dim=-1)
    logprob = logits.gather(-1, targets[:, None]).squeeze(-1) - log_normalizer
    if not with_entropy:
        return logprob, torch.zeros_like(logprob)
    entropy = log_normalizer - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)
    return logprob, entropy


def _scatter(parts: list[Tensor], rows: Tensor, size: int, like: Tensor) -> Tensor:
    """Place per-valid-token values back at their rows of a flat [size] zero tensor."""
    out = torch.zeros(size, dtype=torch.float32, device=like.device)
    if not parts:
        return out
    return out.index_copy(0, rows, torch.cat(parts))
