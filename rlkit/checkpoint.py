"""Crash-consistent checkpoints: written aside, verified, then published by one rename.

A checkpoint is a folder `checkpoints/step_<N>/` holding the learner's DeepSpeed files, the
trainer's state and the store's buffered samples, plus `MANIFEST.json` with the size and
SHA-256 of every other file. It is written under `checkpoints/.partial-step_<N>/`, every file
is fsynced, the manifest is written last, and only then is the folder renamed into place (an
atomic rename on one filesystem). A process killed at any point leaves either the previous
checkpoints untouched plus a partial folder, which is ignored and removed, or a complete new
one. Resuming takes the newest checkpoint whose files match its manifest, so a corrupted or
truncated one is skipped with a warning rather than loaded. The last `keep` are kept.

Records (samples, rewards, requests) are saved as JSON through an allowlist of rlkit's own
record types: reading a checkpoint never runs code from it.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from rlkit import types as records

MANIFEST = "MANIFEST.json"
FORMAT = 1
STEP_FOLDER = re.compile(r"^step_(\d+)$")
PARTIAL_PREFIX = ".partial-"

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read."""


class Checkpoints:
    """The checkpoints of one run folder."""

    def __init__(self, run_dir: Path, keep: int = 2) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep = keep

    def begin(self, step: int) -> Path:
        """An empty folder to write checkpoint `step` into (left over partial folders are removed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(PARTIAL_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        folder = self.root / f"{PARTIAL_PREFIX}step_{step}"
        folder.mkdir()
        return folder

    def publish(self, folder: Path, step: int) -> Path:
        """Write the manifest of `folder`, make everything durable, rename it to `step_<N>`,
        verify it, and drop all but the newest `keep` checkpoints."""
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
        manifest = {"format": FORMAT, "step": step,
                    "files": {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}}
        for path in files:
            _fsync(path)
        _write_durably(folder / MANIFEST, json.dumps(manifest, indent=1))
        final = self.root / f"step_{step}"
        if final.exists():  # a checkpoint of this step from before a crash: the new one replaces it
            shutil.rmtree(final)
        os.rename(folder, final)
        _fsync_dir(self.root)
        problem = verify(final)
        if problem:
            raise CheckpointError(f"checkpoint {final} failed verification right after writing: {problem}")
        self._prune()
        return final

    def published(self) -> list[tuple[int, Path]]:
        """(step, folder) of every published checkpoint, newest first (not verified)."""
        found = []
        if self.root.is_dir():
            for path in self.root.iterdir():
                match = STEP_FOLDER.match(path.name)
                if match and path.is_dir():
                    found.append((int(match.group(1)), path))
        return sorted(found, reverse=True)

    def latest_valid(self) -> tuple[int, Path] | None:
        """The newest checkpoint whose files match its manifest; broken ones are reported and skipped."""
        for step, path in self.published():
            problem = verify(path)
            if problem is None:
                return step, path
            log.warning("skipping checkpoint %s: %s", path, problem)
        return None

    def _prune(self) -> None:
        for _, path in self.published()[self.keep:]:
            shutil.rmtree(path, ignore_errors=True)


def verify(folder: Path) -> str | None:
    """None if every file the manifest lists is there with its size and hash, else what is wrong."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest (the write did not finish)"
    except (OSError, ValueError) as error:
        return f"unreadable manifest ({error})"
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        return f"manifest format {manifest.get('format')!r} is not {FORMAT}"
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected.get("bytes"):
            return f"{name} has {path.stat().st_size} bytes, the manifest says {expected.get('bytes')}"
        if _sha256(path) != expected.get("sha256"):
            return f"{name} does not match its SHA-256 in the manifest"
    return None


def write_json(path: Path, value: Any) -> None:
    """`value` (records included) as JSON at `path`."""
    path.write_text(json.dumps(encode(value)))


def read_json(path: Path) -> Any:
    return decode(json.loads(path.read_text()))


# ------------------------------------------------------------------ records as JSON

RECORD_TYPES = {cls.__name__: cls for cls in vars(records).values()
                if isinstance(cls, type) and cls.__module__ == records.__name__
                and (dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum))}


def encode(value: Any) -> Any:
    """JSON-ready form of `value`: rlkit records tagged by type, tuples kept apart from lists."""
    if isinstance(value, enum.Enum):
        return {"__enum__": type(value).__name__, "value": value.value}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__record__": type(value).__name__,
                "fields": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"cannot checkpoint a dict with non-string keys: {list(value)[:3]}")
        return {k: encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot checkpoint a {type(value).__name__}: only rlkit records and plain data are saved")


def decode(value: Any) -> Any:
    """Inverse of `encode`; builds only the types in RECORD_TYPES."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tuple__" in value:
        return tuple(decode(v) for v in value["__tuple__"])
    for tag in ("__record__", "__enum__"):
        if tag in value:
            cls = RECORD_TYPES.get(value[tag])
            if cls is None:
                raise CheckpointError(f"checkpoint names an unknown record type {value[tag]!r}; "
                                      f"only {sorted(RECORD_TYPES)} are read")
            if tag == "__enum__":
                return cls(value["value"])
            return cls(**{name: decode(v) for name, v in value["fields"].items()})
    return {k: decode(v) for k, v in value.items()}


# ------------------------------------------------------------------ durability


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_durably(path: Path, text: str) -> None:
    with path.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
