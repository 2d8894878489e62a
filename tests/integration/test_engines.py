"""Both generation engines on the tiny model, checked against a plain torch recomputation.

The reference for every log-prob is the HF model in fp32: logits / T → log_softmax → gather.
Each engine starts once per module (vLLM takes seconds to start).
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pytest
import torch

from rlkit.models import resolve_model
from rlkit.registry import UnknownNameError
from rlkit.rollout.engine import EngineOptions, SamplingOptions
from rlkit.rollout.engines import build_engine
from rlkit.types import FinishReason

ENGINES = ["hf", pytest.param("vllm", marks=pytest.mark.slow)]
QUESTIONS = ["hi", "What is 12 + 7?", "Name three primes, briefly please."]  # unequal lengths


@pytest.fixture(scope="module")
def model_path():
    return resolve_model("tiny")


@pytest.fixture(scope="module")
def tokenizer(model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


@pytest.fixture(scope="module")
def reference(model_path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True
        )["input_ids"]
        for question in QUESTIONS
    ]


@pytest.fixture(scope="module")
def hf_engine(model_path):
    engine = build_engine("hf", model_path, EngineOptions(dtype="float32"))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def vllm_engine(model_path):
    engine = build_engine("vllm", model_path, EngineOptions(dtype="float32", kv_cache_gib=0.5))
    yield engine
    engine.close()


@pytest.fixture(scope="module", params=ENGINES)
def engine(request):
    return request.getfixturevalue(f"{request.param}_engine")


def recompute(model, prompt: list[int], response: list[int], temperature: float) -> torch.Tensor:
    """The learner's formula: log_softmax(logits / T) at each response token."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + response])).logits[0, len(prompt) - 1 : -1]
    return (logits / temperature).log_softmax(-1).gather(-1, torch.tensor(response)[:, None])[:, 0]


def max_error(model, prompts, groups, temperature) -> float:
    errors = [
        torch.tensor(g.logprobs) - recompute(model, p, g.response_ids, temperature)
        for p, group in zip(prompts, groups)
        for g in group
    ]
    return max(error.abs().max().item() for error in errors)


def test_generate_shapes_and_stop_handling(engine, tokenizer, prompts):
    batch = [prompts[i % len(prompts)] for i in range(16)]
    out = engine.generate(batch, 4, SamplingOptions(temperature=1.0, max_new_tokens=64, seed=0))

    assert [len(group) for group in out] == [4] * 16
    eos = tokenizer.eos_token_id
    samples = [g for group in out for g in group]
    for g in samples:
        assert 1 <= len(g.response_ids) <= 64
        assert len(g.logprobs) == len(g.response_ids)
        assert all(math.isfinite(lp) and lp <= 0 for lp in g.logprobs)
        assert eos not in g.response_ids[:-1], "nothing may follow the EOS token"
        if g.finish is FinishReason.STOP:
            assert g.response_ids[-1] == eos  # kept: the policy must learn to stop
        else:
            assert g.finish is FinishReason.LENGTH and len(g.response_ids) == 64
        assert g.text == tokenizer.decode(g.response_ids, skip_special_tokens=True)
    # the tiny model emits EOS about once per hundred tokens: 4096 positions hold several
    assert any(g.finish is FinishReason.STOP for g in samples)
    assert len({tuple(g.response_ids) for g in out[0]}) > 1, "the n samples should differ"


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 1.0), (0.7, 0.8)])
def test_logprobs_match_torch_recomputation(engine, reference, prompts, temperature, top_p):
    sampling = SamplingOptions(temperature=temperature, top_p=top_p, max_new_tokens=24, seed=1)
    out = engine.generate(prompts, 2, sampling)

    assert max_error(reference, prompts, out, temperature) < 1e-4
    g = out[2][1]
    rescored = engine.token_logprobs(prompts[2], g.response_ids, temperature)
    expected = recompute(reference, prompts[2], g.response_ids, temperature)
    assert torch.allclose(torch.tensor(rescored), expected, atol=1e-4)


def test_samples_follow_the_temperature_scaled_distribution(engine, reference, prompts):
    temperature = 0.7
    out = engine.generate(prompts, 16, SamplingOptions(temperature, max_new_tokens=48, seed=3))
    gaps = []  # log p(y) + H(p) per sampled token y, p = softmax(logits / T)
    for prompt, group in zip(prompts, out):
        for g in group:
            with torch.no_grad():
                logits = reference(torch.tensor([prompt + g.response_ids])).logits[0]
            logp = (logits[len(prompt) - 1 : -1] / temperature).log_softmax(-1)
            entropy = -(logp.exp() * logp).sum(-1)
            gaps.append(logp.gather(-1, torch.tensor(g.response_ids)[:, None])[:, 0] + entropy)
    gaps = torch.cat(gaps)
    # y ~ p gives E[log p(y)] = -H(p); sampling at another temperature or cutting the tail
    # (transformers' default top-k 50, say) shifts the mean by many standard errors
    assert gaps.mean().abs() < 4 * gaps.std() / math.sqrt(len(gaps))


def test_seed_makes_sampling_reproducible(engine, prompts):
    def sample(seed):
        sampling = SamplingOptions(temperature=1.0, max_new_tokens=16, seed=seed)
        return [[g.response_ids for g in group] for group in engine.generate(prompts, 3, sampling)]

    first = sample(seed=7)
    assert sample(seed=7) == first
    assert sample(seed=8) != first


def test_load_weights_syncs_without_restart(engine, reference, tokenizer, prompts):
    # a prompt longer than a KV block (vLLM caches whole blocks), so a stale cache would show
    message = {"role": "user", "content": "Count the letters: " + "abc " * 150}
    long_prompt = tokenizer.apply_chat_template([message], add_generation_prompt=True)["input_ids"]
    prompts = [*prompts, long_prompt]
    sampling = SamplingOptions(temperature=0.8, max_new_tokens=16, seed=2)
    engine.generate(prompts, 2, sampling)  # fills any prefix cache with the old weights
    perturbed = copy.deepcopy(reference)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in perturbed.state_dict().values():
            tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
    response = [65, 66, 67, 10, 68]

    try:
        engine.load_weights(perturbed.state_dict().items())
        synced = torch.tensor(engine.token_logprobs(prompts[0], response, 0.8))
        assert torch.allclose(synced, recompute(perturbed, prompts[0], response, 0.8), atol=1e-4)
        assert (synced - recompute(reference, prompts[0], response, 0.8)).abs().max() > 1e-2
        assert max_error(perturbed, prompts, engine.generate(prompts, 2, sampling), 0.8) < 1e-4
    finally:
        engine.load_weights(reference.state_dict().items())
    restored = torch.tensor(engine.token_logprobs(prompts[0], response, 0.8))
    assert torch.allclose(restored, recompute(reference, prompts[0], response, 0.8), atol=1e-4)


def test_bad_weight_names_are_refused_before_any_change(engine, reference, prompts):
    state = reference.state_dict()
    before = engine.token_logprobs(prompts[1], [70, 71, 72])
    good = ("model.norm.weight", torch.zeros_like(state["model.norm.weight"]))
    typo = ("model.layers.0.mlp.up_proj.weigth", state["model.layers.0.mlp.up_proj.weight"])

    with pytest.raises(ValueError, match=r"unknown parameter .*up_proj\.weigth.*did you mean"):
        engine.load_weights([good, typo])
    with pytest.raises(ValueError, match=r"has shape \(3,\), the model expects"):
        engine.load_weights([("model.norm.weight", torch.zeros(3))])
    assert engine.token_logprobs(prompts[1], [70, 71, 72]) == before


def test_overlong_request_is_refused_with_the_fix(engine, prompts):
    too_long = prompts[0] * (1024 // len(prompts[0]))
    fix = "exceeds max_model_len=1024.*raise the engine's max_model_len"
    with pytest.raises(ValueError, match=fix):
        engine.generate([prompts[0], too_long], 1, SamplingOptions(max_new_tokens=64))


@pytest.mark.slow
def test_engines_agree_on_greedy_decoding(hf_engine, vllm_engine, prompts):
    greedy = SamplingOptions(temperature=0.0, max_new_tokens=24)
    hf_out = hf_engine.generate(prompts, 2, greedy)
    vllm_out = vllm_engine.generate(prompts, 2, greedy)

    for hf_group, vllm_group in zip(hf_out, vllm_out):
        assert hf_group[0].response_ids == hf_group[1].response_ids  # greedy: n equal copies
        assert hf_group[0].response_ids == vllm_group[0].response_ids
        assert torch.allclose(
            torch.tensor(hf_group[0].logprobs), torch.tensor(vllm_group[0].logprobs), atol=1e-4
        )


@pytest.mark.slow
def test_vllm_leaves_the_host_thread_setting_working(vllm_engine):
    # vLLM's CPU worker swaps torch.set_num_threads for a no-op in its process (here: ours)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(before + 1)
        assert torch.get_num_threads() == before + 1
    finally:
        torch.set_num_threads(before)


def test_unknown_engine_name_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match=r'did you mean "vllm"\?\); valid: hf, vllm'):
        build_engine("vlm", "tiny")


def test_importing_the_interface_does_not_import_vllm():
    code = "import sys, rlkit.rollout.engine; sys.exit('vllm' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.slow
def test_vllm_reload_warnings_are_said_once_not_every_sync(vllm_engine, reference):
    """vLLM warns about the rotary cache (computed, never loaded) on every reload; after the first
    one it is noise between the progress lines."""
    import logging

    from rlkit.rollout.vllm_engine import RELOAD_LOGGER

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger(RELOAD_LOGGER)
    logger.addHandler(handler)
    try:
        for _ in range(3):
            vllm_engine.load_weights(reference.state_dict().items())
    finally:
        logger.removeHandler(handler)
    assert len(seen) == len(set(seen)), f"a reload warning was repeated: {seen}"
