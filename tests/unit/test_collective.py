"""The weight-broadcast group over real gloo (threads of this process as its members), and how a
recipe picks the transport. Engines and learner ranks on it: tests/integration/test_weight_sync.py."""

from __future__ import annotations

import threading

import pytest
import torch

from rlkit.collective import ALIGN_BYTES, BroadcastNotice, WeightGroup, bucket_size, layout, listen, tensor_spec
from rlkit.config.load import ConfigError, load_config
from rlkit.learner.broadcast import WeightBroadcaster
from rlkit.sync import resolve_transport

HOST = "127.0.0.1"


def state_dict() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "embed.weight": torch.randn(33, 8, generator=generator),
        "norm.weight": torch.randn(8, generator=generator).to(torch.bfloat16),
        "position_ids": torch.arange(17, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "scale": torch.tensor(2.5),  # 0-dim
        "empty": torch.randn(0, 4, generator=generator),
        "transposed": torch.randn(6, 5, generator=generator).t(),  # not contiguous
    }


def run_members(world_size: int, member) -> dict[int, object]:
    """Run `member(rank, listening_socket, port)` for every rank in threads; their results by rank."""
    sock = listen(HOST)
    port = sock.getsockname()[1]
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def run(rank: int) -> None:
        try:
            results[rank] = member(rank, sock if rank == 0 else None, port)
        except BaseException as error:  # noqa: BLE001 - re-raised below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("bucket_bytes", [64, 1 << 20])
def test_every_member_receives_the_state_cast_to_the_announced_dtype(bucket_bytes: int) -> None:
    state = state_dict()
    notice = BroadcastNotice(tensor_spec(state.items(), torch.bfloat16), bucket_bytes)

    def member(rank, sock, port):
        group = WeightGroup(rank, 3, HOST, port, "gloo", 30, sock)
        if rank == 0:
            group.send(group.pack(state, notice))
            return None
        return dict(group.receive(notice))

    received = run_members(3, member)
    for rank in (1, 2):
        got = received[rank]
        assert list(got) == list(state)
        for name, tensor in state.items():
            expected = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
            assert got[name].dtype == expected.dtype and got[name].shape == expected.shape, name
            assert torch.equal(got[name], expected), name


def test_layout_is_aligned_and_keeps_buckets_under_the_size_unless_one_tensor_is_larger() -> None:
    spec = tensor_spec(state_dict().items())
    for bucket_bytes in (1, 64, 200, 1 << 20):
        buckets = layout(spec, bucket_bytes)
        assert [slot.name for bucket in buckets for slot in bucket] == [name for name, _, _ in spec]
        for bucket in buckets:
            assert all(slot.offset % ALIGN_BYTES == 0 for slot in bucket)
            assert len(bucket) == 1 or bucket_size(bucket) <= bucket_bytes
    assert len(layout(spec, 1 << 20)) == 1
    assert len(layout(spec, 1)) == len(spec)


def test_the_broadcast_sends_a_snapshot_so_training_can_change_the_weights_meanwhile() -> None:
    state = {"w": torch.ones(4, 4), "b": torch.zeros(4)}
    broadcaster = WeightBroadcaster(HOST, 2, "gloo", 30, torch.device("cpu"))
    host, port = broadcaster.address
    engine: dict[str, WeightGroup] = {}
    joining = threading.Thread(target=lambda: engine.setdefault("group", WeightGroup(1, 2, host, port, "gloo", 30)))
    joining.start()
    broadcaster.wait_idle()  # the group formed
    joining.join(30)

    notice = broadcaster.broadcast(state, None, 1 << 20)
    state["w"].add_(5.0)  # the next train step, while the engine has not received yet
    first = dict(engine["group"].receive(notice))
    assert torch.equal(first["w"], torch.ones(4, 4)), "the engine got weights changed after the broadcast began"

    second_notice = broadcaster.broadcast(state, torch.bfloat16, 1 << 20)  # waits for the first to finish
    second = dict(engine["group"].receive(second_notice))
    assert second["w"].dtype == torch.bfloat16 and torch.equal(second["w"], torch.full((4, 4), 6.0, dtype=torch.bfloat16))
    broadcaster.wait_idle()
    broadcaster.close()


def test_a_group_no_engine_joins_fails_with_what_to_check() -> None:
    broadcaster = WeightBroadcaster(HOST, 2, "gloo", 2, torch.device("cpu"))
    with pytest.raises(RuntimeError, match="engines did not join the weight-broadcast group at 127.0.0.1:") as caught:
        broadcaster.wait_idle()
    assert "firewall" in str(caught.value)
    broadcaster.close()


def test_auto_broadcasts_over_nccl_only_when_both_sides_hold_gpus() -> None:
    assert resolve_transport("auto", rollout_gpus=1, learner_gpus=1) == ("collective", "nccl")
    assert resolve_transport("auto", rollout_gpus=0, learner_gpus=1) == ("object_store", None)
    assert resolve_transport("auto", rollout_gpus=0, learner_gpus=0) == ("object_store", None)
    assert resolve_transport("collective", rollout_gpus=0, learner_gpus=0) == ("collective", "gloo")
    assert resolve_transport("object_store", rollout_gpus=1, learner_gpus=1) == ("object_store", None)


def test_config_rejects_an_unknown_transport_and_an_empty_bucket() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("recipes/tiny_cpu.yaml", ["sync.transport=nccl", "sync.bucket_mb=0"])
    message = str(caught.value)
    assert "sync.transport: 'nccl' is not one of auto, object_store, collective" in message
    assert "sync.bucket_mb must be > 0" in message
