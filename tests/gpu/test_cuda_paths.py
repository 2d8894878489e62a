"""CUDA checks: chunked log-probs and the HF engine on a GPU agree with the CPU.

Skipped without a CUDA device (CI never has one); run them on a GPU node with `pytest tests/gpu`.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_chunked_logprobs_on_cuda_match_cpu() -> None:
    from transformers import AutoModelForCausalLM

    from rlkit.learner.logprobs import token_logprobs_and_entropy
    from rlkit.models import resolve_model

    model = AutoModelForCausalLM.from_pretrained(resolve_model("tiny"), dtype=torch.float32)
    torch.manual_seed(0)
    input_ids = torch.randint(4, 200, (3, 24))
    mask = torch.ones_like(input_ids)
    positions = torch.arange(24).expand(3, 24)
    cpu, cpu_entropy = token_logprobs_and_entropy(model, input_ids, mask, positions, 10, 1.0, 7)
    model = model.cuda()
    gpu, gpu_entropy = token_logprobs_and_entropy(model, input_ids.cuda(), mask.cuda(), positions.cuda(), 10, 1.0, 7)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gpu_entropy.cpu(), cpu_entropy, atol=1e-4, rtol=1e-4)


def test_hf_engine_generates_on_cuda_with_matching_logprobs() -> None:
    from rlkit.rollout.engine import EngineOptions, SamplingOptions, build_engine

    engine = build_engine("hf", "tiny", EngineOptions())
    prompts = [[257, 84, 82, 68, 81, 198, 54, 71], [257, 84, 82, 68]]
    generations = engine.generate(prompts, 2, SamplingOptions(max_new_tokens=8, seed=0))
    assert [len(group) for group in generations] == [2, 2]
    first = generations[0][0]
    rescored = engine.token_logprobs(prompts[0], first.response_ids)
    assert rescored == pytest.approx(first.logprobs, abs=1e-3)
    engine.close()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="an NCCL group needs a GPU per member")
def test_nccl_weight_group_broadcasts_gpu_to_gpu() -> None:
    """sync.transport=collective on GPUs: rank 0's state reaches another GPU, cast as announced."""
    import threading

    from rlkit.collective import BroadcastNotice, WeightGroup, listen, tensor_spec

    state = {"w": torch.randn(64, 32, device="cuda:0"), "ids": torch.arange(9, device="cuda:0")}
    notice = BroadcastNotice(tensor_spec(state.items(), torch.bfloat16), 4096)
    sock = listen("127.0.0.1")
    port = sock.getsockname()[1]
    received: dict[str, torch.Tensor] = {}

    def engine() -> None:
        group = WeightGroup(1, 2, "127.0.0.1", port, "nccl", 60, device="cuda:1")
        received.update(group.receive(notice))

    thread = threading.Thread(target=engine)
    thread.start()
    learner = WeightGroup(0, 2, "127.0.0.1", port, "nccl", 60, sock, device="cuda:0")
    learner.send(learner.pack(state, notice))
    thread.join(60)
    assert received["w"].device == torch.device("cuda:1") and received["w"].dtype == torch.bfloat16
    torch.testing.assert_close(received["w"].cpu(), state["w"].to(torch.bfloat16).cpu())
    assert torch.equal(received["ids"].cpu(), state["ids"].cpu())
