"""The store's bookkeeping: readiness per field, per-task consumption, whole groups, versions, clearing."""

from rlkit.store.index import StoreIndex


def add_group(index: StoreIndex, group: str, size: int, version: int = 0, fields=("sample",)) -> list[int]:
    return [index.add(group, size, version, {name: f"{group}/{i}/{name}" for name in fields}) for i in range(size)]


def test_field_readiness_gates_consumers() -> None:
    index = StoreIndex()
    ids = add_group(index, "g0", 2)
    assert index.take("train", ("sample", "reward"), 10) == []
    index.set_field(ids[0], "reward", "r0")
    taken = index.take("train", ("sample", "reward"), 10)
    assert [entry_id for entry_id, _ in taken] == [ids[0]]
    assert taken[0][1] == {"sample": "g0/0/sample", "reward": "r0"}


def test_each_task_consumes_independently() -> None:
    index = StoreIndex()
    add_group(index, "g0", 3)
    assert len(index.take("reward", ("sample",), 10)) == 3
    assert index.take("reward", ("sample",), 10) == []
    assert len(index.take("audit", ("sample",), 2)) == 2
    assert len(index.take("audit", ("sample",), 10)) == 1


def test_whole_groups_only_hands_out_complete_groups() -> None:
    index = StoreIndex()
    first = add_group(index, "a", 2)
    index.add("b", 2, 0, {"sample": "b/0"})  # group b is missing a member
    for entry_id in first:
        index.set_field(entry_id, "reward", 1.0)
    assert index.count_ready("train", ("sample", "reward"), whole_groups=True) == 1
    taken = index.take("train", ("sample", "reward"), 5, whole_groups=True)
    assert sorted(entry_id for entry_id, _ in taken) == sorted(first)


def test_whole_groups_limit_counts_groups_not_samples() -> None:
    index = StoreIndex()
    for name in "abc":
        add_group(index, name, 4)
    taken = index.take("train", ("sample",), 2, whole_groups=True)
    assert len(taken) == 8


def test_min_version_filters_stale_samples() -> None:
    index = StoreIndex()
    add_group(index, "old", 2, version=1)
    new = add_group(index, "new", 2, version=3)
    taken = index.take("train", ("sample",), 10, whole_groups=True, min_version=2)
    assert sorted(entry_id for entry_id, _ in taken) == sorted(new)


def test_clear_drops_consumed_entries_and_late_writes() -> None:
    index = StoreIndex()
    ids = add_group(index, "g", 2)
    index.take("train", ("sample",), 10, whole_groups=True, clear=True)
    assert len(index) == 0 and index.cleared == 2
    assert index.stats()["groups"] == 0
    assert index.set_field(ids[0], "reward", 1.0) is False


def test_partitions_keep_eval_out_of_training() -> None:
    index = StoreIndex()
    train = index.add("t", 1, 0, {"sample": 1}, partition="train")
    evaluation = index.add("e", 1, 0, {"sample": 2}, partition="eval")
    assert [i for i, _ in index.take("train", ("sample",), 5, partition="train")] == [train]
    assert [i for i, _ in index.take("eval", ("sample",), 5, partition="eval")] == [evaluation]
    assert len(index.take("reward", ("sample",), 5, partition=None)) == 2


def test_waits_run_from_the_last_requested_field_to_the_take() -> None:
    now = [100.0]
    index = StoreIndex(clock=lambda: now[0])
    first = index.add("g", 1, 0, {"sample": "s0"})
    now[0] = 101.0
    index.set_field(first, "reward", "r0")
    now[0] = 101.25
    assert index.take("learner", ("sample", "reward"), 1) != []
    now[0] = 103.0
    index.add(None, 1, 0, {"sample": "s1"})
    assert len(index.take("reward", ("sample",), 5)) == 2  # waited 3.0 s and 0 s
    waits = index.drain_waits()
    assert waits == {"learner": [0.25], "reward": [3.0, 0.0]}
    assert index.drain_waits() == {}  # drained


def test_counting_stops_at_enough() -> None:
    index = StoreIndex()
    for i in range(5):
        index.add(f"g{i}", 1, 0, {"sample": i})
    assert index.count_ready("t", ("sample",)) == 5
    assert index.count_ready("t", ("sample",), enough=2) == 2
    assert index.count_ready("t", ("sample",), whole_groups=True, enough=3) == 3
    assert index.count_ready("t", ("reward",), enough=3) == 0
