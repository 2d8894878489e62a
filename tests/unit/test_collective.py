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
    notice = BroadcastNotice(1, tensor_spec(state.items(), torch.bfloat16), bucket_bytes)

    def member(rank, sock, port):
        group = WeightGroup(rank, 3, HOST, port, "gloo", 30, sock)
        if rank == 0:
            group.send(notice, group.packed(state, notice))
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


def start_broadcaster(engines: int, timeout_s: float = 30) -> tuple[WeightBroadcaster, list[WeightGroup]]:
    """Rank 0's broadcaster and `engines` engine members, joined."""
    broadcaster = WeightBroadcaster(HOST, engines + 1, "gloo", timeout_s, torch.device("cpu"))
    host, port = broadcaster.address
    groups: dict[int, WeightGroup] = {}
    joining = [threading.Thread(
                   target=lambda r=rank: groups.setdefault(r, WeightGroup(r, engines + 1, host, port, "gloo", timeout_s)))
               for rank in range(1, engines + 1)]
    for thread in joining:
        thread.start()
    broadcaster.wait_idle()  # the group formed
    for thread in joining:
        thread.join(30)
    return broadcaster, [groups[rank] for rank in range(1, engines + 1)]


def test_the_broadcast_sends_a_snapshot_so_training_can_change_the_weights_meanwhile() -> None:
    state = {"w": torch.ones(4, 4), "b": torch.zeros(4)}
    broadcaster, (engine,) = start_broadcaster(1)
    notice = broadcaster.broadcast(1, state, None, 1 << 20)
    state["w"].add_(5.0)  # the next train step, while the engine has not come for the weights yet
    first = dict(engine.receive(notice))
    assert torch.equal(first["w"], torch.ones(4, 4)), "the engine got weights changed after the broadcast began"

    second_notice = broadcaster.broadcast(2, state, torch.bfloat16, 1 << 20)  # waits for the first to finish
    second = dict(engine.receive(second_notice))
    assert second["w"].dtype == torch.bfloat16 and torch.equal(second["w"], torch.full((4, 4), 6.0, dtype=torch.bfloat16))
    broadcaster.wait_idle()
    broadcaster.close()


def test_engines_that_come_late_and_in_any_order_each_get_the_version_announced() -> None:
    """Three engines (gloo forwards through a tree then), coming one by one while the learner moves on."""
    broadcaster, engines = start_broadcaster(3)
    received: dict[tuple[int, int], torch.Tensor] = {}

    def engine_takes(index: int, notice: BroadcastNotice) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: received.setdefault((index, notice.version), dict(engines[index].receive(notice))["w"]))
        thread.start()
        return thread

    notices = {}
    for version in (1, 2, 3):
        state = {"w": torch.full((8,), float(version))}
        sending = threading.Thread(target=lambda v=version, s=state: notices.setdefault(v, broadcaster.broadcast(v, s, None, 16)))
        sending.start()  # blocks until the previous version reached every engine
        sending.join(0.5)
        threads = []
        while version not in notices:
            sending.join(0.05)
        for index in (2, 0, 1):  # the last rank first, then the others, each a little later
            threads.append(engine_takes(index, notices[version]))
            threads[-1].join(0.1)
        for thread in threads:
            thread.join(30)
    broadcaster.wait_idle()
    for (index, version), tensor in received.items():
        assert torch.equal(tensor, torch.full((8,), float(version))), f"engine {index} got other bytes for version {version}"
    assert len(received) == 9
    broadcaster.close()


def test_an_engine_that_never_comes_is_named_and_the_failure_sticks() -> None:
    broadcaster, _ = start_broadcaster(2, timeout_s=1)
    broadcaster.broadcast(1, {"w": torch.ones(2)}, None, 1 << 20)  # no engine comes for it
    with pytest.raises(RuntimeError, match=r"failed to send weight version 1: engine\(s\) of group rank \[1, 2\] did not come"):
        broadcaster.wait_idle()
    with pytest.raises(RuntimeError, match="failed to send weight version 1"):  # the group is unusable from now on
        broadcaster.broadcast(2, {"w": torch.ones(2)}, None, 1 << 20)
    broadcaster.close()


def test_a_group_no_engine_joins_fails_with_the_address() -> None:
    broadcaster = WeightBroadcaster(HOST, 2, "gloo", 2, torch.device("cpu"))
    with pytest.raises(RuntimeError, match="weight broadcast group \\(127.0.0.1:\\d+\\) failed to join the group"):
        broadcaster.wait_idle()
    broadcaster.close()


def test_auto_broadcasts_over_nccl_only_when_every_member_holds_a_whole_gpu() -> None:
    assert resolve_transport("auto", rollout_gpus=1, learner_gpus=1) == "nccl"
    assert resolve_transport("auto", rollout_gpus=0.5, learner_gpus=1) == "object_store"  # two engines on one GPU
    assert resolve_transport("auto", rollout_gpus=0, learner_gpus=1) == "object_store"
    assert resolve_transport("auto", rollout_gpus=0, learner_gpus=0) == "object_store"
    assert resolve_transport("gloo", rollout_gpus=1, learner_gpus=1) == "gloo"
    assert resolve_transport("object_store", rollout_gpus=1, learner_gpus=1) == "object_store"
    with pytest.raises(ValueError, match="sync.transport=nccl needs a whole GPU for every rollout worker and learner rank"):
        resolve_transport("nccl", rollout_gpus=1, learner_gpus=0)


def test_config_rejects_an_unknown_transport_and_an_empty_bucket() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("recipes/tiny_cpu.yaml", ["sync.transport=collective", "sync.bucket_mb=0"])
    message = str(caught.value)
    assert "sync.transport: 'collective' is not one of auto, object_store, nccl, gloo" in message
    assert "sync.bucket_mb must be > 0" in message
    with pytest.raises(ConfigError,
                       match=r"sync.transport=nccl needs a whole GPU per rollout worker \(rollout.gpus_per_worker=0\)"):
        load_config("recipes/tiny_cpu.yaml", ["sync.transport=nccl"])
