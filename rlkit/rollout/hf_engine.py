"""Generation with transformers `generate`: the portable engine (any device, any HF model)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from rlkit.rollout.engine import (
    EngineOptions,
    SamplingOptions,
    check_request,
    check_weights,
    eos_token_ids,
    scaled_logprobs,
)
from rlkit.types import FinishReason, Generation

# generate() keeps every step's logits ([rows, V] fp32 per step) until it returns; prompts are
# sent in groups small enough to keep that under this many bytes.
_LOGITS_BUDGET_BYTES = 1 << 30


class HFEngine:
    """transformers `generate` with a KV cache over a left-padded batch of prompts."""

    def __init__(self, model_path: Path, options: EngineOptions) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(options.num_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=getattr(torch, options.dtype)
        ).to(self.device)
        self.model.eval()
        self.eos_ids = eos_token_ids(Path(model_path), self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]
        self.max_model_len = options.max_model_len
        self.vocab_size = self.model.get_output_embeddings().weight.shape[0]

    def generate(
        self, prompt_ids: list[list[int]], n: int, sampling: SamplingOptions
    ) -> list[list[Generation]]:
        check_request(prompt_ids, n, sampling, self.max_model_len, self.vocab_size)
        prompt_bytes = n * sampling.max_new_tokens * self.vocab_size * 4
        group = max(1, _LOGITS_BUDGET_BYTES // prompt_bytes)
        results: list[list[Generation]] = []
        with _seeded(sampling.seed, self.device):
            for start in range(0, len(prompt_ids), group):
                results.extend(self._generate_group(prompt_ids[start : start + group], n, sampling))
        return results

    def _generate_group(
        self, prompt_ids: list[list[int]], n: int, sampling: SamplingOptions
    ) -> list[list[Generation]]:
        input_ids, attention_mask = self._left_pad(prompt_ids)
        do_sample = sampling.temperature > 0
        # Greedy samples are identical: decode once per prompt, repeat below (HF refuses n > 1).
        copies = n if do_sample else 1
        knobs = (
            {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
            if do_sample  # top_k=0: transformers would otherwise default to top-k 50
            else {}
        )
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                do_sample=do_sample,
                max_new_tokens=sampling.max_new_tokens,
                num_return_sequences=copies,
                eos_token_id=self.eos_ids,
                pad_token_id=self.pad_id,
                output_logits=True,  # raw logits, before temperature and top-p
                return_dict_in_generate=True,
                **knobs,
            )
        new_tokens = out.sequences[:, input_ids.shape[1] :]  # [B*copies, S], rows prompt-major
        logprobs = torch.stack(
            [
                scaled_logprobs(step_logits, new_tokens[:, step], sampling.temperature)
                for step, step_logits in enumerate(out.logits)
            ],
            dim=1,
        )  # [B*copies, S]
        rows = [self._to_generation(t.tolist(), lp.tolist()) for t, lp in zip(new_tokens, logprobs)]
        return [
            rows[i * copies : (i + 1) * copies] * (n // copies) for i in range(len(prompt_ids))
        ]

    def _left_pad(self, prompt_ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((len(prompt_ids), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
        for row, ids in enumerate(prompt_ids):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    def _to_generation(self, tokens: list[int], logprobs: list[float]) -> Generation:
        """Cut a generated row after its first EOS (kept: the policy must learn to stop)."""
        stop = next((i for i, token in enumerate(tokens) if token in self.eos_ids), None)
        end = len(tokens) if stop is None else stop + 1
        response = tokens[:end]
        return Generation(
            response_ids=response,
            logprobs=logprobs[:end],
            finish=FinishReason.LENGTH if stop is None else FinishReason.STOP,
            text=self.tokenizer.decode(response, skip_special_tokens=True),
        )

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        weights = list(named_tensors)
        state = self.model.state_dict()  # tensors share storage with the model's parameters
        check_weights(weights, {name: tensor.shape for name, tensor in state.items()})
        with torch.no_grad():
            for name, tensor in weights:
                state[name].copy_(tensor)

    def token_logprobs(
        self, prompt_ids: list[int], response_ids: list[int], temperature: float = 1.0
    ) -> list[float]:
        if not prompt_ids:
            raise ValueError("token_logprobs needs a non-empty prompt")
        if not response_ids:
            return []
        sequence = torch.tensor([prompt_ids + response_ids], device=self.device)
        with torch.no_grad():
            logits = self.model(input_ids=sequence).logits[0, len(prompt_ids) - 1 : -1]
        tokens = torch.tensor(response_ids, device=self.device)
        return scaled_logprobs(logits, tokens, temperature).tolist()

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed sampling for one call without disturbing the caller's random state."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
