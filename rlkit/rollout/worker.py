"""RolloutWorker: pulls prompt requests from the store, generates, writes samples back.

It runs on its own (`run` loops until the store closes) and, between requests, loads the
newest weights the learner published — so the controller never shuttles data to it. It knows
the store only as an actor handle; it imports no other stage.
"""

from __future__ import annotations

import dataclasses
import os
import time
import zlib
from typing import Any

import ray
import torch

from rlkit.collective import BroadcastNotice, WeightGroup
from rlkit.rollout.engine import SamplingOptions
from rlkit.rollout.engines import build_engine
from rlkit.rollout.env_host import EnvHost
from rlkit.rollout.episodes import run_episodes
from rlkit.rollout.options import RolloutConfig
from rlkit.runtime import pin_cpus
from rlkit.store.query import Query
from rlkit.transport import get_tensors, resolve
from rlkit.types import FinishReason, Generation, RolloutRequest, Sample

POLL_S = 5.0  # longest an idle worker waits before re-checking (it is woken earlier by news)


class RolloutWorker:
    """One engine replica. Wrapped with `ray.remote` by the controller."""

    def __init__(self, name: str, store: Any, model_path: str, rollout: RolloutConfig,
                 env: dict[str, str] | None = None) -> None:
        """`rollout` is the recipe's rollout section; `env` the environment variables of the
        device this worker's bundle holds (set before the engine starts)."""
        os.environ.update(env or {})
        pin_cpus(list(rollout.cpu_cores), "rollout")
        self.name = name
        self.store = store
        self.sampling = rollout.sampling
        self.prompts_per_request = rollout.prompts_per_request
        self.version = 0
        self.requests_done = 0
        self.weight_group: WeightGroup | None = None
        self.engine = build_engine(rollout.engine, model_path, rollout.engine_options)
        self.max_model_len = rollout.engine_options.max_model_len
        self.environment = rollout.env if rollout.env.name else None
        self.env_host = (
            EnvHost(self.environment.name, self.environment.options, self.environment.step_timeout_s)
            if self.environment
            else None
        )
        ray.get(self.store.report_engine_version.remote(self.name, self.version))

    def ready(self) -> str:
        return self.name

    def node_id(self) -> str:
        """The Ray node this worker runs on (placement checks)."""
        return ray.get_runtime_context().get_node_id()

    def run(self) -> dict[str, float]:
        """Serve requests until the store closes; returns counters for the final report."""
        while True:
            self._load_newer_weights()
            taken = ray.get(self.store.get.remote(Query(
                task="rollout", fields=("request",), limit=self.prompts_per_request, min_items=1, clear=True,
                partition=None, timeout_s=POLL_S, wake_on_weights_above=self.version)))
            if taken is None:
                return {"requests": self.requests_done}
            if not taken:
                continue
            self._serve(resolve([item.fields["request"] for item in taken]))

    def _serve(self, requests: list[RolloutRequest]) -> None:
        # Requests with the same decoding settings share one engine call.
        batches: dict[tuple[bool, int | None, int], list[RolloutRequest]] = {}
        for request in requests:
            batches.setdefault((request.greedy, request.max_new_tokens, request.n), []).append(request)
        for (greedy, max_new_tokens, n), batch in batches.items():
            sampling = dataclasses.replace(
                self.sampling,
                temperature=0.0 if greedy else self.sampling.temperature,
                max_new_tokens=max_new_tokens or self.sampling.max_new_tokens,
                seed=request_seed(self.sampling.seed, batch),
            )
            started = time.perf_counter()
            samples = self._episodes(batch, sampling) if self.env_host else self._single_turn(batch, n, sampling)
            seconds = time.perf_counter() - started
            entries = [
                {"group": s.group_uid, "group_size": s.group_size, "version": self.version,
                 "partition": request.partition, "fields": {"sample": s}}
                for request, s in samples
            ]
            counters = {
                "timing/rollout_generate_s": seconds,
                "rollout/generated_tokens": sum(sum(s.response_mask) for _, s in samples),
                "rollout/generated_samples": len(samples),
                "rollout/generated_truncated": sum(s.finish == FinishReason.LENGTH for _, s in samples),
            }
            if self.env_host:
                for status in ("error", "timeout"):
                    counters[f"rollout/env_{status}"] = sum(s.env_status == status for _, s in samples)
                counters["rollout/env_turns"] = sum(len(s.turn_boundaries) for _, s in samples)
            ray.get(self.store.put.remote(entries, counters))  # one call: samples and their counts land together
            self.requests_done += len(batch)

    def _single_turn(
        self, batch: list[RolloutRequest], n: int, sampling: SamplingOptions
    ) -> list[tuple[RolloutRequest, Sample]]:
        generations = self.engine.generate([r.prompt.prompt_ids for r in batch], n, sampling)
        return [
            (request, self._sample(request, index, generation))
            for request, outputs in zip(batch, generations)
            for index, generation in enumerate(outputs)
        ]

    def _sample(self, request: RolloutRequest, index: int, generation: Generation) -> Sample:
        return Sample(
            group_uid=request.group_uid,
            index_in_group=index,
            group_size=request.n,
            prompt=request.prompt,
            response_ids=list(generation.response_ids),
            response_mask=[1] * len(generation.response_ids),
            rollout_logprobs=list(generation.logprobs),
            policy_version=self.version,
            finish=generation.finish,
            response_text=generation.text,
        )

    def _episodes(self, batch: list[RolloutRequest], sampling: SamplingOptions) -> list[tuple[RolloutRequest, Sample]]:
        assert self.env_host is not None and self.environment is not None
        episodes = run_episodes(self.engine, self.env_host, batch, sampling, self.environment, self.max_model_len)
        return [
            (
                episode.request,
                Sample(
                    group_uid=episode.request.group_uid,
                    index_in_group=episode.index,
                    group_size=episode.request.n,
                    prompt=episode.request.prompt,
                    response_ids=episode.response_ids,
                    response_mask=episode.mask,
                    rollout_logprobs=episode.logprobs,
                    policy_version=self.version,
                    finish=episode.finish,
                    response_text=episode.text,
                    turn_boundaries=tuple(episode.turn_starts),
                    step_rewards=tuple(episode.step_rewards),
                    env_status=episode.env_status,
                    env_error=episode.env_error,
                ),
            )
            for episode in episodes
        ]

    def join_weight_group(self, host: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float) -> None:
        """Join learner rank 0's weight-broadcast group (collective: returns once all have joined).
        NCCL receives onto the engine's GPU; gloo onto the host, and loading copies to the engine."""
        device = self.engine.device if backend == "nccl" else torch.device("cpu")
        self.weight_group = WeightGroup(rank, world_size, host, port, backend, timeout_s, device=device)

    def _load_newer_weights(self) -> None:
        latest = ray.get(self.store.latest_weights.remote(self.version))
        if latest is None:
            return
        version, (weights,) = latest
        if isinstance(weights, BroadcastNotice):
            if self.weight_group is None or weights.version != version:
                raise RuntimeError(f"{self.name}: a weight broadcast of version {weights.version} announced as {version}, "
                                   f"group joined: {self.weight_group is not None}")
            self.engine.load_weights(self.weight_group.receive(weights))  # the learner sends once all engines are ready
        else:
            self.engine.load_weights(get_tensors(weights).items())
        self.version = version
        ray.get(self.store.report_engine_version.remote(self.name, version))

    def token_logprobs(self, prompt_ids: list[int], response_ids: list[int], temperature: float = 1.0) -> list[float]:
        """The engine's log-probs of a fixed sequence (to check a weight sync)."""
        self._load_newer_weights()
        return self.engine.token_logprobs(prompt_ids, response_ids, temperature)


def request_seed(seed: int | None, batch: list[RolloutRequest]) -> int | None:
    """The sampling seed of one engine call: the recipe's seed plus a hash of its first request,
    so a sample depends on what is asked, not on which worker asks or how many calls it made
    before (runs repeat, and resume, exactly)."""
    if seed is None:
        return None
    return (seed + zlib.crc32(batch[0].group_uid.encode())) % (1 << 31)
