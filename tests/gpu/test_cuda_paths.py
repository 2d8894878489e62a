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
    from rlkit.rollout.engine import EngineOptions, SamplingOptions
    from rlkit.rollout.engines import build_engine

    engine = build_engine("hf", "tiny", EngineOptions())
    prompts = [[257, 84, 82, 68, 81, 198, 54, 71], [257, 84, 82, 68]]
    generations = engine.generate(prompts, 2, SamplingOptions(max_new_tokens=8, seed=0))
    assert [len(group) for group in generations] == [2, 2]
    first = generations[0][0]
    rescored = engine.token_logprobs(prompts[0], first.response_ids)
    assert rescored == pytest.approx(first.logprobs, abs=1e-3)
    engine.close()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="an NCCL group needs a GPU per member")
def test_nccl_weight_broadcast_goes_gpu_to_gpu_while_training_goes_on() -> None:
    """sync.transport=nccl: rank 0's snapshot reaches an engine on another GPU, cast as announced,
    though rank 0 changes its weights right after starting the broadcast."""
    import threading

    from rlkit.collective import WeightGroup
    from rlkit.learner.broadcast import WeightBroadcaster

    state = {"w": torch.randn(64, 32, device="cuda:0"), "ids": torch.arange(9, device="cuda:0")}
    expected = {"w": state["w"].to(torch.bfloat16).cpu(), "ids": state["ids"].cpu()}
    broadcaster = WeightBroadcaster("127.0.0.1", 2, "nccl", 60, torch.device("cuda:0"))
    host, port = broadcaster.address
    engine: dict[str, object] = {}

    def on_gpu1(work) -> threading.Thread:
        def run() -> None:
            torch.cuda.set_device(1)
            try:
                work()
            except BaseException as error:  # noqa: BLE001 - asserted below
                engine["error"] = error

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    # The engine reports its device without an index, as the engines do.
    on_gpu1(lambda: engine.setdefault("group", WeightGroup(1, 2, host, port, "nccl", 60, device="cuda"))).join(60)
    broadcaster.wait_idle()
    assert "error" not in engine, engine.get("error")
    group = engine["group"]
    assert group.device == torch.device("cuda:1")

    notice = broadcaster.broadcast(1, state, torch.bfloat16, 4096)
    state["w"].add_(1.0)  # the next train step
    on_gpu1(lambda: engine.setdefault("received", dict(group.receive(notice)))).join(60)
    broadcaster.wait_idle()
    assert "error" not in engine, engine.get("error")
    received = engine["received"]
    assert received["w"].device == torch.device("cuda:1") and received["w"].dtype == torch.bfloat16
    assert torch.equal(received["w"].cpu(), expected["w"]) and torch.equal(received["ids"].cpu(), expected["ids"])
    broadcaster.close()
