"""Checkpoint folders: atomic publish, verification, pruning, crashes at every point of a write,
a full disk, records as JSON without code, and checkpoint files that try to run code."""

from __future__ import annotations

import errno
import time
import json
import os
from pathlib import Path

import pytest
import torch

from rlkit import checkpoint as checkpoint_module
from rlkit.checkpoint import CheckpointError, Checkpoints, decode, encode, read_json, verify, write_json
from rlkit.learner.safe_checkpoint import CheckpointRefused, safe_load
from rlkit.types import FinishReason, Prompt, Reward, RewardStatus, Sample


def write_checkpoint(checkpoints: Checkpoints, step: int, payload: bytes = b"weights") -> Path:
    folder = checkpoints.begin(step)
    (folder / "learner").mkdir()
    (folder / "learner" / "model.pt").write_bytes(payload * 100)
    write_json(folder / "trainer_state.json", {"step": step})
    return checkpoints.publish(folder, step)


def test_publish_renames_a_verified_folder_and_keeps_the_newest_n(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path, keep=2)
    for step in (2, 4, 6):
        write_checkpoint(checkpoints, step)
    assert [step for step, _ in checkpoints.published()] == [6, 4]
    assert checkpoints.latest_valid() == (6, tmp_path / "checkpoints" / "step_6")
    assert not list((tmp_path / "checkpoints").glob(".partial-*"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "no_manifest"])
def test_a_damaged_checkpoint_is_skipped_for_the_previous_one(tmp_path: Path, damage: str) -> None:
    checkpoints = Checkpoints(tmp_path, keep=3)
    write_checkpoint(checkpoints, 2)
    newest = write_checkpoint(checkpoints, 4)
    model = newest / "learner" / "model.pt"
    if damage == "truncate":
        model.write_bytes(model.read_bytes()[:10])
    elif damage == "flip":
        data = bytearray(model.read_bytes())
        data[5] ^= 1
        model.write_bytes(bytes(data))
    elif damage == "delete":
        model.unlink()
    else:
        (newest / "MANIFEST.json").unlink()
    assert verify(newest) is not None
    assert checkpoints.latest_valid() == (2, tmp_path / "checkpoints" / "step_2")


@pytest.mark.parametrize("crash_at", ["before_manifest", "before_rename", "after_rename_before_prune"])
def test_a_crash_at_any_point_of_a_write_leaves_a_valid_checkpoint(tmp_path: Path, monkeypatch, crash_at: str) -> None:
    """The process dies (an exception standing in for SIGKILL) at each point of publishing step 4."""
    checkpoints = Checkpoints(tmp_path, keep=2)
    write_checkpoint(checkpoints, 2)

    class Crash(BaseException):
        pass

    def crash(*_args, **_kwargs):
        raise Crash

    if crash_at == "before_manifest":
        monkeypatch.setattr(checkpoint_module, "_write_durably", crash)
    elif crash_at == "before_rename":
        monkeypatch.setattr(checkpoint_module.os, "rename", crash)
    else:
        monkeypatch.setattr(Checkpoints, "_prune", crash)
    with pytest.raises(Crash):
        write_checkpoint(checkpoints, 4)
    monkeypatch.undo()
    expected = 4 if crash_at == "after_rename_before_prune" else 2
    assert checkpoints.latest_valid()[0] == expected
    # The next write clears the partial folder and publishes normally.
    write_checkpoint(checkpoints, 6)
    assert [step for step, _ in checkpoints.published()] == [6, expected]
    assert not list((tmp_path / "checkpoints").glob(".partial-*"))


def test_a_full_disk_while_saving_loses_no_earlier_checkpoint(tmp_path: Path, monkeypatch) -> None:
    checkpoints = Checkpoints(tmp_path, keep=2)
    write_checkpoint(checkpoints, 2)

    def disk_full(self, *_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_checkpoint(checkpoints, 4)
    monkeypatch.undo()
    assert checkpoints.latest_valid()[0] == 2


def test_records_round_trip_as_json_exactly() -> None:
    prompt = Prompt(uid="p1", text="1+1?", prompt_ids=[1, 2, 3], ground_truth="2")
    sample = Sample("g", 0, 4, prompt, [5, 6], [1, 1], [-0.1234567890123, float("-inf")], 3, FinishReason.STOP, "2",
                    turn_boundaries=(0, 1), step_rewards=(0.5, 1.0))
    reward = Reward(1.0, RewardStatus.OK)
    value = {"entries": [{"fields": {"sample": sample, "reward": reward}, "consumed_by": ["reward"]}], "rng": (3, (1, 2), None)}
    assert decode(json.loads(json.dumps(encode(value)))) == value


def test_reading_records_builds_only_rlkit_types(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    path.write_text(json.dumps({"__record__": "Popen", "fields": {"args": ["touch", str(tmp_path / "pwned")]}}))
    with pytest.raises(CheckpointError, match="unknown record type 'Popen'"):
        read_json(path)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(TypeError, match="cannot checkpoint a PosixPath"):
        encode({"x": tmp_path})


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_file_with_a_malicious_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {"w": torch.ones(2)}, "extra": _RunsCode(str(marker))}, path)
    with pytest.raises(CheckpointRefused, match="it pickles posix.system"):
        safe_load(str(path))
    assert not marker.exists()


def test_safe_load_reads_tensors_and_deepspeed_data(tmp_path: Path) -> None:
    from deepspeed.runtime.zero.config import ZeroStageEnum

    path = tmp_path / "ok.pt"
    torch.save({"w": torch.arange(3), "stage": ZeroStageEnum.gradients, "step": 7}, path)
    loaded = safe_load(str(path))
    assert torch.equal(loaded["w"], torch.arange(3)) and loaded["stage"] == ZeroStageEnum.gradients and loaded["step"] == 7


def test_publish_refuses_a_folder_that_does_not_verify(tmp_path: Path, monkeypatch) -> None:
    checkpoints = Checkpoints(tmp_path, keep=2)
    monkeypatch.setattr(checkpoint_module, "verify", lambda _folder: "model.pt does not match")
    with pytest.raises(CheckpointError, match="failed verification right after writing"):
        write_checkpoint(checkpoints, 2)


def test_a_build_lock_left_by_a_killed_process_is_cleared_and_a_live_one_kept(tmp_path: Path) -> None:
    from rlkit.learner.worker import clear_stale_build_locks

    stale, live = tmp_path / "deepspeed_shm_comm" / "lock", tmp_path / "other_op" / "lock"
    for lock in (stale, live):
        lock.parent.mkdir()
        lock.write_text("")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert clear_stale_build_locks(tmp_path) == [stale]
    assert not stale.exists() and live.exists()
