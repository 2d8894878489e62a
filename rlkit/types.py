"""Records that flow between stages.

Frozen dataclasses with plain-Python payloads (lists of ints/floats), so they pickle small
through Ray's object store and never drag an accelerator tensor across processes. The learner
turns a list of them into one padded :class:`TrainBatch`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import torch


class FinishReason(str, enum.Enum):
    """Why generation of one response stopped."""

    STOP = "stop"  # end-of-sequence or a stop string
    LENGTH = "length"  # hit max_new_tokens
    ABORT = "abort"  # engine aborted the request


class RewardStatus(str, enum.Enum):
    """Outcome of scoring one sample. Anything but OK is counted in metrics, never hidden as 0."""

    OK = "ok"
    NOT_APPLICABLE = "not_applicable"  # the function returned None: "does not apply"
    ERROR = "error"  # the function raised
    TIMEOUT = "timeout"  # the function ran past its per-sample timeout and was killed
    INVALID = "invalid"  # the function returned something that is not a finite number


@dataclass(frozen=True)
class Prompt:
    """One dataset row, rendered and tokenized."""

    uid: str  # stable id of the dataset row ("train-17")
    text: str  # prompt after the chat template
    prompt_ids: list[int]  # [P] token ids of `text`
    ground_truth: str | None  # reference answer for verifiable rewards
    data_source: str = "default"  # task name, lets one reward file serve several tasks
    extra: dict[str, Any] = field(default_factory=dict)
    user_text: str = ""  # the last user message before the chat template (RISE quotes the question)


@dataclass(frozen=True)
class RolloutRequest:
    """One prompt to sample `n` responses for: what the rollout stage reads from the store."""

    group_uid: str  # unique per request: the n samples share it
    prompt: Prompt
    n: int
    batch_index: int  # training batch this request belongs to (admission control)
    greedy: bool = False  # evaluation requests decode greedily
    max_new_tokens: int | None = None  # None = the rollout's configured budget
    partition: str = "train"  # store partition the samples go to ("train" or "eval")


@dataclass(frozen=True)
class Generation:
    """One response as an engine returns it, before it becomes a Sample."""

    response_ids: list[int]  # [R]
    logprobs: list[float]  # [R] log-prob of each sampled token under the engine's policy
    finish: FinishReason
    text: str


@dataclass(frozen=True)
class Sample:
    """One response to one prompt, as the rollout stage writes it to the store."""

    group_uid: str  # one per (prompt, request): the n samples of a prompt share it
    index_in_group: int  # 0..group_size-1
    group_size: int  # n
    prompt: Prompt
    response_ids: list[int]  # [R]
    response_mask: list[int]  # [R] 1 = generated token that counts in the loss
    rollout_logprobs: list[float]  # [R] from the engine that sampled it
    policy_version: int  # weights version that produced it
    finish: FinishReason
    response_text: str
    turn_boundaries: tuple[int, ...] = ()  # token offsets where turns start (multi-turn)
    step_rewards: tuple[float, ...] = ()  # per-step rewards from an environment (multi-turn)
    env_status: str = "none"  # none (single-turn) | ok | error | timeout: how the environment fared
    env_error: str | None = None  # what went wrong, when env_status is error or timeout

    @property
    def response_length(self) -> int:
        return len(self.response_ids)


@dataclass(frozen=True)
class Reward:
    """The reward stage's verdict on one sample."""

    score: float  # 0.0 when status is not OK; use `status` to tell failures apart
    status: RewardStatus
    components: dict[str, float] = field(default_factory=dict)  # named parts of the score
    error: str | None = None  # short reason when status is ERROR / TIMEOUT / INVALID
    seconds: float = 0.0  # wall time spent scoring


@dataclass(frozen=True)
class ScoredSample:
    """A sample joined with its reward: what the learner consumes."""

    sample: Sample
    reward: Reward


@dataclass
class TrainBatch:
    """Padded tensors for one learner step. Prompts left-padded, responses right-padded.

    Layout of a row: [pad … prompt | response … pad]; the response always starts at column P.
    """

    input_ids: torch.Tensor  # [B, P+R] long
    attention_mask: torch.Tensor  # [B, P+R] long, 1 = real token
    position_ids: torch.Tensor  # [B, P+R] long
    responses: torch.Tensor  # [B, R] long, response token ids
    response_mask: torch.Tensor  # [B, R] float, 1 = counts in the loss
    rollout_logprobs: torch.Tensor  # [B, R] float
    scores: torch.Tensor  # [B] float64, sequence reward
    advantages: torch.Tensor  # [B, R] float, 0 at masked positions
    group_index: torch.Tensor  # [B] long, dense group id within the batch
    policy_versions: torch.Tensor  # [B] long
    step_ids: torch.Tensor  # [B, R] long, step (turn) index within the response, −1 where masked

    @property
    def prompt_width(self) -> int:
        return self.input_ids.shape[1] - self.responses.shape[1]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: torch.Tensor | slice) -> TrainBatch:
        """A sub-batch of rows (micro-batching, data-parallel sharding)."""
        return TrainBatch(**{name: getattr(self, name)[rows] for name in self.__dataclass_fields__})
