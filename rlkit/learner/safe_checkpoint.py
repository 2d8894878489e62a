"""Checkpoint loading that never runs code from the file.

DeepSpeed's own checkpoint reader unpickles without restriction: a tampered file could run
anything when a run resumes. This engine loads with `weights_only=True` and lets
through only the plain DeepSpeed data types its checkpoints hold; anything else is
refused with the file's name, before any object in it is built.
"""

from __future__ import annotations

import pickle
import re

import torch

# What DeepSpeed's ZeRO-0..3 checkpoints pickle besides tensors and builtins (found with
# torch.serialization.get_unsafe_globals_in_checkpoint): data holders, no behaviour on load.
ALLOWED_TYPES = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",  # fp16 runs
    "deepspeed.utils.tensor_fragment.fragment_address",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
)


class CheckpointRefused(RuntimeError):
    """A checkpoint file holds something other than tensors and plain data."""


def _allowed() -> list[type]:
    import importlib

    types = []
    for path in ALLOWED_TYPES:
        module, _, name = path.rpartition(".")
        types.append(getattr(importlib.import_module(module), name))
    return types


def safe_load(path: str, map_location=None):
    """torch.load without code execution: tensors, builtins and ALLOWED_TYPES only."""
    try:
        with torch.serialization.safe_globals(_allowed()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)", str(error))
        what = f"it pickles {found.group(1)}" if found else "it holds objects other than tensors and plain data"
        raise CheckpointRefused(
            f"refusing to load {path}: {what}. "
            "rlkit never unpickles arbitrary objects; the file is corrupt or was tampered with, so resume "
            "from another checkpoint (delete this one) or start the run afresh."
        ) from error


def install(engine) -> None:
    """Make a DeepSpeed engine read checkpoints with `safe_load` (saving is unchanged)."""
    engine.checkpoint_engine.load = safe_load
