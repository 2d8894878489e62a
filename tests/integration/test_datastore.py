"""The DataStore actor on a real local Ray cluster."""

from __future__ import annotations

import pytest
import ray

from rlkit.store.datastore import DataStore
from rlkit.store.query import Query, Taken
from rlkit.transport import resolve

pytestmark = pytest.mark.usefixtures("ray_cluster")


@ray.remote(num_cpus=0)
class Producer:
    def produce(self, store, group: str, size: int) -> list[int]:
        # Index 0 is large enough to travel by object reference, the others inline.
        values = [{"group": group, "index": i, "payload": list(range(40_000 if i == 0 else 1000))} for i in range(size)]
        return ray.get(store.put.remote([{"group": group, "group_size": size, "version": 0, "fields": {"sample": v}}
                                         for v in values]))


def test_consumer_blocks_until_producer_writes() -> None:
    store = DataStore.remote()
    waiting = store.get.remote(Query("train", ("sample",), 2, whole_groups=True, timeout_s=60))
    ready, _ = ray.wait([waiting], timeout=0.5)
    assert not ready, "get must wait while nothing is ready"
    producer = Producer.remote()
    ray.get(producer.produce.remote(store, "g0", 2))
    ray.get(producer.produce.remote(store, "g1", 2))
    taken = ray.get(waiting, timeout=30)
    assert len(taken) == 4 and all(isinstance(item, Taken) and item.group in ("g0", "g1") for item in taken)
    values = resolve([item.fields["sample"] for item in taken])
    assert {v["group"] for v in values} == {"g0", "g1"}


def test_objects_survive_their_producer() -> None:
    store = DataStore.remote()
    producer = Producer.remote()
    ray.get(producer.produce.remote(store, "g", 3))
    ray.kill(producer)
    taken = ray.get(store.get.remote(Query("train", ("sample",), 3, timeout_s=10)))
    values = resolve([item.fields["sample"] for item in taken])
    assert [v["index"] for v in values] == [0, 1, 2] and len(values[0]["payload"]) == 40_000
    assert isinstance(taken[0].fields["sample"], ray.ObjectRef) and not isinstance(taken[1].fields["sample"], ray.ObjectRef)


def test_fields_added_later_and_consumed_samples_cleared() -> None:
    store = DataStore.remote()
    ids = ray.get(store.put.remote([{"group": "g", "group_size": 2, "fields": {"sample": i}} for i in range(2)]))
    assert ray.get(store.get.remote(Query("train", ("sample", "reward"), 1, whole_groups=True, timeout_s=0.3))) == []
    scored = ray.get(store.get.remote(Query("reward", ("sample",), 2, timeout_s=5)))
    assert len(scored) == 2
    ray.get(store.set_field.remote(ids, "reward", [1.0, 0.0]))
    taken = ray.get(store.get.remote(Query("train", ("sample", "reward"), 1, whole_groups=True, clear=True, timeout_s=5)))
    assert sorted(resolve([item.fields["reward"] for item in taken])) == [0.0, 1.0]
    stats = ray.get(store.stats.remote())
    assert stats["entries"] == 0 and stats["cleared"] == 2


def test_close_wakes_waiters_with_none() -> None:
    store = DataStore.remote()
    waiting = store.get.remote(Query("rollout", ("prompt",), 1, timeout_s=60))
    ray.get(store.close.remote())
    assert ray.get(waiting, timeout=10) is None


def test_weights_notice_board_and_engine_versions() -> None:
    store = DataStore.remote()
    assert ray.get(store.latest_weights.remote(0)) is None
    ray.get(store.publish_weights.remote(1, [ray.put({"w": 1})]))
    version, (ref,) = ray.get(store.latest_weights.remote(0))
    assert version == 1 and ray.get(ref) == {"w": 1}
    assert ray.get(store.latest_weights.remote(1)) is None
    waiting = store.wait_engines.remote(1, ["rollout-0"], 30)
    ray.get(store.report_engine_version.remote("rollout-0", 1))
    assert ray.get(waiting, timeout=10) == {"rollout-0": 1}
    assert ray.get(store.wait_engines.remote(2, ["rollout-0"], 0.2)) == {"rollout-0": 1}


def test_idle_consumer_wakes_when_new_weights_arrive() -> None:
    store = DataStore.remote()
    waiting = store.get.remote(Query("rollout", ("request",), 1, timeout_s=60, wake_on_weights_above=0))
    ray.get(store.publish_weights.remote(1, [ray.put({"w": 2})]))
    assert ray.get(waiting, timeout=10) == []


def test_state_dicts_travel_as_bytes_and_come_back_exact() -> None:
    import numpy as np
    import torch

    from rlkit.transport import get_tensors, put_tensors

    state = {
        "bf16": torch.randn(3, 5).to(torch.bfloat16),
        "fp32_transposed": torch.randn(4, 6).t(),  # not contiguous
        "int64": torch.arange(7),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    ref = put_tensors(state)
    stored = ray.get(ref)
    # Out-of-band byte arrays, not pickled tensors (that is what saves the two copies).
    assert all(isinstance(data, np.ndarray) and data.dtype == np.uint8 for _, _, data in stored.values())
    back = get_tensors(ref)
    assert back.keys() == state.keys()
    for name, tensor in state.items():
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape, name
        assert torch.equal(back[name], tensor), name
