"""Reading a W&B run back from its own files, as `wandb sync` would upload it.

An offline run folder (`<dir>/wandb/offline-run-*/`) holds `run-<id>.wandb`: W&B's transaction
log, a LevelDB-style log of `wandb_internal.Record` protobufs (wandb 0.31 reads and writes it in
its Go core and ships no Python reader). This reads that log with wandb's own record definitions
(`wandb.proto.wandb_internal_pb2`), so a test checks what W&B recorded, not a substring of it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32768  # the log is written in blocks; a record's chunks never cross one
HEADER = b":W&B\xe1\xbe\x00"  # ident, magic 0xBEE1 (little-endian), version 0
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    """Every `Record` of a `run-*.wandb` file, in the order W&B wrote them."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if not data.startswith(HEADER):
        raise ValueError(f"{path}: not a W&B transaction log (header {data[:7]!r})")
    offset, pending = len(HEADER), b""
    while offset + 7 <= len(data):
        left = BLOCK - offset % BLOCK
        _checksum, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        if left < 7 or (length == 0 and kind == 0):  # the block's zero padding
            offset += left
            continue
        pending += data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@dataclass
class WandbRun:
    """What one run's transaction log says: identity, config, logged history and summary."""

    run_id: str
    project: str
    name: str
    group: str
    tags: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per logged step
    summary: dict[str, Any] = field(default_factory=dict)


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_run(run_folder: Path) -> WandbRun:
    """The run in an `offline-run-*` (or `run-*`) folder, read from its `run-<id>.wandb` file."""
    (log,) = Path(run_folder).glob("run-*.wandb")
    run = None
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            meta = record.run
            run = WandbRun(meta.run_id, meta.project, meta.display_name, meta.run_group, list(meta.tags),
                           {item.key: json.loads(item.value_json) for item in meta.config.update})
        elif kind == "config" and run is not None:
            run.config.update({_key(item): json.loads(item.value_json) for item in record.config.update})
        elif kind == "history" and run is not None:
            run.history.append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary" and run is not None:
            run.summary.update({_key(item): json.loads(item.value_json) for item in record.summary.update})
    if run is None:
        raise ValueError(f"{log}: no run record")
    return run


def offline_runs(directory: Path) -> list[Path]:
    """The offline run folders W&B wrote under `directory` (a run's output folder)."""
    return sorted(Path(directory).glob("wandb/offline-run-*"))
