"""RISE online self-verification: the policy also learns to grade its own solutions.

Liu et al., "Trust, But Verify: A Self-Verification Approach to Reinforcement Learning with
Verifiable Rewards", arXiv 2505.13445 (ALGORITHMS.md §9). Each step, after the solutions are
scored, a few of them are wrapped in a critique prompt whose ground truth is the verifier's own
score of that solution. The policy samples verification responses to those prompts with the same
weights; they are scored (the rating must equal the verifier's score) and trained on in the same
batch as the solutions, each verification prompt forming its own group.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

from rlkit.types import Prompt, RewardStatus, ScoredSample

VERIFICATION_SOURCE = "rise_verification"  # data_source of the critique prompts built here
CORRECT, WRONG, NO_ANSWER = 1.0, -0.5, -1.0  # §9.1, for solutions and ratings alike
GENERATION_SCORES = (CORRECT, WRONG, NO_ANSWER)  # the verifier's scores of a solution (§9.1)

DEFAULT_TEMPLATE = (
    "Below is a math problem and a proposed solution. Check the solution step by step and rate it.\n\n"
    "Problem:\n{question}\n\nProposed solution:\n{response}\n\n"
    "Rating rules: if the solution has no final answer inside \\boxed{{}}, the rating is \\boxed{{-1}}; "
    "if its boxed answer is correct, \\boxed{{1}}; if its boxed answer is wrong, \\boxed{{-0.5}}.\n"
    "Summarize your check briefly, then give the rating inside \\boxed{{}} at the very end."
)
DEFAULT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass
class RiseConfig:
    """The `rise` section: online self-verification (RISE)."""

    enable: bool = False
    """Add verification trajectories to every training batch."""
    critique_batch_size: int = 4
    """Solutions per step turned into verification prompts (spread over the step's groups, §9.2)."""
    template: str = DEFAULT_TEMPLATE
    """Critique prompt with {question} and {response} placeholders; asks for the §9.1 rating in \\boxed{}."""
    system_prompt: str = DEFAULT_SYSTEM
    """System message of verification prompts (the official one)."""
    max_prompt_tokens: int = 512
    """Longest verification prompt; a long solution is cut from the right to fit."""
    seed: int = 0
    """Seed of the choice of solutions."""

    def problems(self) -> list[str]:
        found = []
        if self.critique_batch_size < 1:
            found.append(f"critique_batch_size={self.critique_batch_size} must be ≥ 1")
        for placeholder in ("{question}", "{response}"):
            if placeholder not in self.template:
                found.append(f"template lacks the {placeholder} placeholder")
        try:
            self.template.format(question="q", response="r")
        except (KeyError, IndexError, ValueError) as exc:
            found.append(f"template cannot be filled ({type(exc).__name__}: {exc}); write literal braces as {{{{ }}}}")
        if self.max_prompt_tokens < 16:
            found.append(f"max_prompt_tokens={self.max_prompt_tokens} is too small for a critique prompt")
        return found


def gradable(item: ScoredSample) -> bool:
    """A solution the verifier scored (status ok). A scored solution outside the RISE scale is a
    configuration error: the critique's ground truth is that score."""
    if item.reward.status != RewardStatus.OK:
        return False  # a failed or not-applicable reward has no verdict to learn from
    if not any(abs(item.reward.score - allowed) < 1e-9 for allowed in GENERATION_SCORES):
        raise ValueError(
            f"RISE needs generation scores in {GENERATION_SCORES} (correct / wrong boxed / no boxed answer), "
            f"got {item.reward.score}; use the RISE reward, reward.fn.module=rewards.rise:score"
        )
    return True


def downsample(groups: Sequence[Sequence[ScoredSample]], size: int, rng: random.Random) -> list[ScoredSample]:
    """`size` solutions: base = size // G from each group and one more from each of the first
    size % G groups, drawn uniformly without replacement inside the group (§9.2). Only
    solutions with a verdict are eligible."""
    groups = [[item for item in group if gradable(item)] for group in groups]
    if not groups:
        return []
    base, extra = divmod(size, len(groups))
    chosen = []
    for index, group in enumerate(groups):
        take = min(len(group), base + (1 if index < extra else 0))
        chosen += rng.sample(list(group), take)
    return chosen


def verification_prompt(item: ScoredSample, tokenizer: Any, config: RiseConfig, uid: str) -> Prompt | None:
    """The critique prompt for one scored solution; its ground truth is the verifier's score.
    The solution is cut from the right to fit `max_prompt_tokens`; None when even the question
    and the template alone do not fit (that solution is not verified)."""
    if not gradable(item):
        raise ValueError(f"solution {item.sample.group_uid}/{item.sample.index_in_group} has no verdict to verify")
    score = item.reward.score
    question = item.sample.prompt.user_text or item.sample.prompt.text
    response = item.sample.response_text
    text, ids = _render(tokenizer, config, question, response)
    while len(ids) > config.max_prompt_tokens and response:
        overflow = len(ids) - config.max_prompt_tokens
        response_ids = tokenizer.encode(response, add_special_tokens=False)
        response = tokenizer.decode(response_ids[: max(0, len(response_ids) - overflow - 1)])
        text, ids = _render(tokenizer, config, question, response)
    if len(ids) > config.max_prompt_tokens:
        return None
    return Prompt(
        uid=uid,
        text=text,
        prompt_ids=ids,
        ground_truth=f"{score:.1f}",
        data_source=VERIFICATION_SOURCE,
        extra={"solution_uid": item.sample.prompt.uid},
        user_text=config.template.format(question=question, response=response),
    )


def _render(tokenizer: Any, config: RiseConfig, question: str, response: str) -> tuple[str, list[int]]:
    messages = [
        {"role": "system", "content": config.system_prompt},
        {"role": "user", "content": config.template.format(question=question, response=response)},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text, list(tokenizer(text, add_special_tokens=False)["input_ids"])


def verification_metrics(scored: Sequence[ScoredSample]) -> dict[str, float]:
    """Accuracy of the verification responses whose rating was scored, their share of the batch,
    and how many could not be scored (counted, not taken as wrong)."""
    verifications = [item for item in scored if item.sample.prompt.data_source == VERIFICATION_SOURCE]
    rated = [item for item in verifications if item.reward.status == RewardStatus.OK]
    metrics = {"rise/verification_frac": len(verifications) / max(1, len(scored)),
               "rise/verification_failed": float(len(verifications) - len(rated))}
    if rated:
        metrics["rise/verification_accuracy"] = sum(item.reward.score == CORRECT for item in rated) / len(rated)
    return metrics
