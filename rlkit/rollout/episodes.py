"""Multi-turn episodes: the model and an environment take turns until the episode ends.

Each episode becomes one response: the model's turns (trained on, mask 1) interleaved with the
environment's observations (context only, mask 0, log-prob 0). The sample records where each
turn starts and each step's immediate reward. All live episodes advance together, one engine
call per turn.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rlkit.environment import EnvOptions
from rlkit.rollout.engine import GenerationEngine, SamplingOptions
from rlkit.rollout.env_host import EnvHost, EnvironmentFailure
from rlkit.types import FinishReason, Generation, RolloutRequest

MAX_CHARS_PER_TOKEN = 64  # an observation longer than this × the tokens left cannot fit


@dataclass
class Episode:
    """One episode as it grows."""

    request: RolloutRequest
    index: int  # sample index within its group
    host_id: int = -1
    stop: tuple[str, ...] = ()
    response_ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turn_starts: list[int] = field(default_factory=list)
    step_rewards: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    finish: FinishReason = FinishReason.STOP
    env_status: str = "ok"  # ok | error | timeout
    env_error: str | None = None
    done: bool = False

    @property
    def text(self) -> str:
        return "".join(self.texts)


def cut_at_stop(generation: Generation, stop: tuple[str, ...], decode: Any) -> Generation:
    """The generation up to and including the first stop string (the shortest token prefix
    whose text contains one). The kept tokens' log-probs are unchanged: each depends only on
    what came before it."""
    if not stop or not any(s in generation.text for s in stop):
        return generation

    def stops(end: int) -> bool:
        text = decode(generation.response_ids[:end])
        return any(s in text for s in stop)

    # Binary search: a prefix's text grows with the prefix, so "holds a stop string" flips once.
    low, high = 1, len(generation.response_ids)
    while low < high:
        middle = (low + high) // 2
        if stops(middle):
            high = middle
        else:
            low = middle + 1
    if not stops(low):
        return generation
    return Generation(generation.response_ids[:low], generation.logprobs[:low], FinishReason.STOP,
                      decode(generation.response_ids[:low]))


def run_episodes(
    engine: GenerationEngine,
    host: EnvHost,
    requests: list[RolloutRequest],
    sampling: SamplingOptions,
    options: EnvOptions,
    max_model_len: int,
) -> list[Episode]:
    """Play `request.n` episodes per request; returns them in request order, then sample index."""
    tokenizer = engine.tokenizer
    episodes = [Episode(request, index) for request in requests for index in range(request.n)]
    for episode in episodes:
        prompt = episode.request.prompt
        try:
            episode.host_id, episode.stop = host.reset(prompt.text, prompt.ground_truth, prompt.extra)
        except EnvironmentFailure as failure:
            _fail(episode, failure)
    for turn_index in range(options.max_turns):
        live = [e for e in episodes if not e.done]
        if not live:
            break
        last_turn = turn_index == options.max_turns - 1
        seed = None if sampling.seed is None else sampling.seed + 7919 * turn_index  # fresh draws every turn
        turn = dataclasses.replace(sampling, max_new_tokens=options.max_turn_tokens, seed=seed)
        contexts = [e.request.prompt.prompt_ids + e.response_ids for e in live]
        for episode, context in zip(live, contexts):
            if len(context) + turn.max_new_tokens > max_model_len:
                episode.done, episode.finish = True, FinishReason.LENGTH
        live = [e for e in live if not e.done]
        if not live:
            break
        outputs = engine.generate([e.request.prompt.prompt_ids + e.response_ids for e in live], 1, turn)
        for episode, (generation,) in zip(live, outputs):
            generation = cut_at_stop(generation, episode.stop, lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
            room = options.max_episode_tokens - len(episode.response_ids)
            _append_turn(episode, generation, room, tokenizer.decode)
            if episode.done:
                continue
            try:
                result = host.step(episode.host_id, generation.text)
            except EnvironmentFailure as failure:
                _fail(episode, failure)
                continue
            episode.step_rewards.append(result.reward)
            if result.done or generation.finish == FinishReason.STOP and not _ended_by_stop_string(generation, episode.stop):
                episode.done = True  # the environment ended it, or the model did (end-of-sequence)
                episode.finish = generation.finish  # LENGTH: its last turn was cut at max_turn_tokens
                continue
            if last_turn:  # no turn left to use an observation: the reward never sees tool output last
                continue
            room = options.max_episode_tokens - len(episode.response_ids)
            if len(result.observation) > room * MAX_CHARS_PER_TOKEN:  # cannot fit: spare tokenizing it
                episode.done, episode.finish = True, FinishReason.LENGTH
                continue
            observation = tokenizer.encode(result.observation, add_special_tokens=False) if result.observation else []
            if len(observation) >= room:
                episode.done, episode.finish = True, FinishReason.LENGTH
                continue
            episode.response_ids += observation
            episode.mask += [0] * len(observation)
            episode.logprobs += [0.0] * len(observation)
            episode.texts.append(result.observation)
    for episode in episodes:
        if not episode.done and episode.env_status == "ok":
            episode.finish = FinishReason.LENGTH  # out of turns
        host.close_episode(episode.host_id)
    return episodes


def _append_turn(episode: Episode, generation: Generation, room: int, decode: Any) -> None:
    ids, logprobs, text = generation.response_ids, generation.logprobs, generation.text
    if len(ids) > room:
        ids, logprobs = ids[:room], logprobs[:room]
        text = decode(ids, skip_special_tokens=True)
        episode.done, episode.finish = True, FinishReason.LENGTH
    episode.turn_starts.append(len(episode.response_ids))
    episode.response_ids += ids
    episode.mask += [1] * len(ids)
    episode.logprobs += list(logprobs)
    episode.texts.append(text)


def _ended_by_stop_string(generation: Generation, stop: tuple[str, ...]) -> bool:
    return any(s in generation.text for s in stop)


def _fail(episode: Episode, failure: EnvironmentFailure) -> None:
    episode.done = True
    episode.env_status = failure.status
    episode.env_error = str(failure)
