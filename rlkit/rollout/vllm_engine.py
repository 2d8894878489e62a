"""Generation with vLLM: its CPU build on CPU machines, its CUDA build on GPUs.

The engine runs in the calling process (no engine-core subprocess): weights can then be handed
over as in-memory tensors (`collective_rpc("reload_weights")`) and, on CPU, start-up takes seconds
instead of a minute.

Log-probs: vLLM reports the sampled token's log-prob after temperature and top-p
(`logprobs_mode="processed_logprobs"`). With top_p = 1 that is exactly log_softmax(logits / T).
With top_p < 1 it is renormalised over the nucleus, so those responses are re-scored with one
prefill pass at temperature T, to keep the shared convention (top-p never changes a log-prob).
Prompt log-probs, which that pass and `token_logprobs` use, are always taken at temperature 1 by
vLLM; for T ≠ 1 the model's logits are scaled by 1/T during the pass (vLLM's logits processor
`scale`), which yields log_softmax(logits / T) exactly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import torch

from rlkit.rollout.engine import (
    EngineOptions,
    SamplingOptions,
    check_request,
    check_weights,
    eos_token_ids,
    logprob_temperature,
)
from rlkit.types import FinishReason, Generation

_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}  # anything else: ABORT


class VllmEngine:
    """A vLLM `LLM` in this process, with weights replaceable without a restart."""

    def __init__(self, model_path: Path, options: EngineOptions) -> None:
        self.on_cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if self.on_cuda else "cpu")
        _configure_environment(options, self.on_cuda)
        from transformers import AutoTokenizer
        from vllm import LLM

        self.model_path = Path(model_path)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.eos_ids = eos_token_ids(self.model_path, self.tokenizer)
        self.max_model_len = options.max_model_len
        self.expected_shapes = _hf_parameter_shapes(self.model_path)
        self._seeds = random.Random()  # per-request seeds when the caller gives none
        memory = (
            {"gpu_memory_utilization": options.gpu_memory_utilization}
            if self.on_cuda
            else {"kv_cache_memory_bytes": int(options.kv_cache_gib * (1 << 30))}
        )
        with _host_state_kept():
            torch.set_num_threads(options.num_threads)
            self.llm = LLM(
                model=str(model_path),
                dtype=options.dtype,
                max_model_len=options.max_model_len,
                enforce_eager=True,  # CPU: compiling costs minutes; CUDA graphs: not tried yet
                logprobs_mode="processed_logprobs",  # after temperature: what the learner computes
                max_logprobs=0,  # only the sampled / prompt token's own log-prob is ever asked
                seed=0,  # only seeds global RNGs (restored below); each request has its own
                **memory,
            )
        self.vocab_size = self.llm.llm_engine.model_config.get_vocab_size()
        _say_reload_warnings_once()

    def generate(
        self, prompt_ids: list[list[int]], n: int, sampling: SamplingOptions
    ) -> list[list[Generation]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        check_request(prompt_ids, n, sampling, self.max_model_len, self.vocab_size)
        base_seed = sampling.seed if sampling.seed is not None else self._seeds.randrange(1 << 31)
        # Greedy samples are identical: decode once per prompt, repeat below (vLLM refuses n > 1).
        copies = n if sampling.temperature > 0 else 1
        params = [
            SamplingParams(
                n=copies,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                logprobs=0,  # the sampled token's log-prob only
                flat_logprobs=True,
                seed=base_seed + index * n,  # vLLM gives the i-th sample seed + i
                stop_token_ids=self.eos_ids,
                detokenize=False,  # decoded below, exactly as the hf engine does
            )
            for index in range(len(prompt_ids))
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids], params, use_tqdm=False
        )
        results = [
            [self._to_generation(sample) for sample in out.outputs] * (n // copies)
            for out in outputs
        ]
        if sampling.top_p < 1 and sampling.temperature > 0:
            results = self._rescored(prompt_ids, results, sampling.temperature)
        return results

    def _rescored(
        self, prompt_ids: list[list[int]], results: list[list[Generation]], temperature: float
    ) -> list[list[Generation]]:
        """Replace nucleus-renormalised log-probs by full-distribution ones (see module doc)."""
        pairs = [(p, g.response_ids) for p, group in zip(prompt_ids, results) for g in group]
        scores = iter(self._score(pairs, temperature))
        return [[replace(g, logprobs=next(scores)) for g in group] for group in results]

    def _to_generation(self, sample) -> Generation:
        flat = sample.logprobs  # FlatLogprobs: entry start_indices[i] is the sampled token's
        tokens = list(sample.token_ids)
        return Generation(
            response_ids=tokens,
            logprobs=[flat.logprobs[start] for start in flat.start_indices],
            finish=_FINISH.get(sample.finish_reason, FinishReason.ABORT),
            text=self.tokenizer.decode(tokens, skip_special_tokens=True),
        )

    def token_logprobs(
        self, prompt_ids: list[int], response_ids: list[int], temperature: float = 1.0
    ) -> list[float]:
        if not prompt_ids:
            raise ValueError("token_logprobs needs a non-empty prompt")
        return self._score([(prompt_ids, response_ids)], temperature)[0]

    def _score(
        self, pairs: list[tuple[list[int], list[int]]], temperature: float
    ) -> list[list[float]]:
        """Log-prob of each response token in one prefill pass over prompt + response."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        todo = [(prompt, response) for prompt, response in pairs if response]
        for prompt, response in todo:
            if len(prompt) + len(response) > self.max_model_len:
                raise ValueError(
                    f"prompt + response is {len(prompt) + len(response)} tokens, over "
                    f"max_model_len={self.max_model_len}; raise the engine's max_model_len"
                )
        params = SamplingParams(
            max_tokens=1, temperature=0, prompt_logprobs=0, flat_logprobs=True, detokenize=False
        )
        with self._logits_scaled(1.0 / logprob_temperature(temperature)):
            outputs = self.llm.generate(
                [TokensPrompt(prompt_token_ids=p + r) for p, r in todo], params, use_tqdm=False
            )
        scored = iter(
            _prompt_token_logprobs(out.prompt_logprobs, len(p), len(r))
            for out, (p, r) in zip(outputs, todo)
        )
        return [next(scored) if response else [] for _, response in pairs]

    @contextlib.contextmanager
    def _logits_scaled(self, factor: float) -> Iterator[None]:
        if factor == 1.0:
            yield
            return
        (previous,) = self.llm.collective_rpc(_scale_logits, args=(factor,))
        try:
            yield
        finally:
            self.llm.collective_rpc(_set_logit_scale, args=(previous,))

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        weights = list(named_tensors)
        check_weights(weights, self.expected_shapes)  # vLLM would fail half-way through
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
        self.llm.reset_prefix_cache()  # cached KV was computed with the old weights

    def close(self) -> None:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        cleanup_dist_env_and_memory()  # lets a later engine in this process start


RELOAD_LOGGER = "vllm.model_executor.model_loader.reload.layerwise"


class OncePerMessage(logging.Filter):
    """Lets each distinct message through once. vLLM warns "RotaryEmbedding: Failed to load
    weights" on every weight reload: the rotary cache is computed, never loaded, so the warning
    says nothing new after the first time and only buries the progress lines."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def _say_reload_warnings_once() -> None:
    target = logging.getLogger(RELOAD_LOGGER)
    if not any(isinstance(existing, OncePerMessage) for existing in target.filters):
        target.addFilter(OncePerMessage())


def _configure_environment(options: EngineOptions, on_cuda: bool) -> None:
    """vLLM reads these when imported and when the engine starts, so set them first."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process: weights pass as tensors
    if not on_cuda:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        os.environ["OMP_NUM_THREADS"] = str(options.num_threads)
        # The legacy variable would override options.kv_cache_gib (passed as bytes) and only
        # holds whole GiB.
        os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)


@contextlib.contextmanager
def _host_state_kept() -> Iterator[None]:
    """Undo what vLLM's in-process start changes in the host process.

    Its CPU worker replaces `torch.set_num_threads` with a no-op (later calls from other code in
    this process would be silently ignored) and seeds the global random generators.
    """
    import numpy as np

    set_num_threads = torch.set_num_threads
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads = set_num_threads
        random.setstate(py_state)
        np.random.set_state(np_state)


def _hf_parameter_shapes(model_path: Path) -> dict[str, torch.Size]:
    """Names and shapes of the HF model's state dict, built on the meta device (no memory)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name: tensor.shape for name, tensor in model.state_dict().items()}


def _logits_processor(worker):
    processor = getattr(worker.model_runner.get_model(), "logits_processor", None)
    if processor is None or not hasattr(processor, "scale"):
        raise NotImplementedError(
            "this vLLM model has no logits_processor.scale, so log-probs at temperature ≠ 1 "
            "cannot be computed here; use temperature 1 with top_p 1, or the hf engine"
        )
    return processor


def _scale_logits(worker, factor: float) -> float:
    """Runs inside vLLM's worker: multiplies the logits by `factor`; returns the old scale."""
    processor = _logits_processor(worker)
    previous = processor.scale
    processor.scale = previous * factor
    return previous


def _set_logit_scale(worker, scale: float) -> None:
    _logits_processor(worker).scale = scale


def _prompt_token_logprobs(flat, prompt_len: int, response_len: int) -> list[float]:
    """The response tokens' entries of a FlatLogprobs over prompt + response."""
    positions = range(prompt_len, prompt_len + response_len)
    return [flat.logprobs[flat.start_indices[position]] for position in positions]
