"""How field values travel between stages through the store: small ones inline, large ones by reference.

Putting a value in Ray's object store costs the store actor about 0.7 ms whatever its size
(measured: benchmarks/store.py, docs/performance.md), which would cap a single store near 500
samples/s. A sample's fields are mostly a few KB, so the store keeps values up to
`INLINE_MAX_BYTES` in its own memory and sends them inside its reply, and only larger ones
(long sequences, tensors) go to the object store, where consumers on the same node read them
without a copy. Consumers call `resolve` on what `get` handed them: one `ray.get` for whatever
is a reference, the rest as is.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import ray

if TYPE_CHECKING:  # torch is imported where tensors travel: the store actor never loads it
    import torch

INLINE_MAX_BYTES = 64 * 1024


def size_of(value: Any) -> int:
    """Bytes `value` takes on the wire (arrays by their buffer, anything else pickled)."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if hasattr(value, "element_size") and hasattr(value, "numel"):  # a torch tensor
        return int(value.element_size() * value.numel())
    return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def hold(value: Any, inline_max_bytes: int = INLINE_MAX_BYTES) -> Any:
    """What the store keeps for `value`: the value itself if small, else an object reference."""
    if isinstance(value, ray.ObjectRef) or size_of(value) > inline_max_bytes:
        return value if isinstance(value, ray.ObjectRef) else ray.put(value)
    return value


def resolve(values: Sequence[Any]) -> list[Any]:
    """The values behind what the store handed out, in order, with a single `ray.get`."""
    positions = [i for i, value in enumerate(values) if isinstance(value, ray.ObjectRef)]
    out = list(values)
    for i, value in zip(positions, ray.get([values[i] for i in positions]) if positions else []):
        out[i] = value
    return out


def put_tensors(tensors: dict[str, torch.Tensor]) -> ray.ObjectRef:
    """Put a state dict in the object store as raw byte arrays.

    Ray pickles a torch tensor by copying its storage into the pickle, and unpickles with a
    second copy. A numpy array travels out of band instead: one copy in, and same-node readers
    map it without any copy. For SmolLM2-135M in bf16 that takes a weight sync from 0.66 s
    (put 0.46 + get 0.20) to 0.06 s. The dtype and shape travel beside the bytes, since numpy
    has no bfloat16.
    """
    import torch

    packed = {}
    for name, tensor in tensors.items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        packed[name] = (str(flat.dtype).removeprefix("torch."), tuple(tensor.shape), flat.view(torch.uint8).numpy())
    return ray.put(packed)


def get_tensors(ref: ray.ObjectRef) -> dict[str, torch.Tensor]:
    """The state dict `put_tensors` stored, as read-only views of the object store's memory
    (valid while the tensors are referenced; copy before writing in place)."""
    import warnings

    import torch

    packed = ray.get(ref)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return {name: torch.from_numpy(data).view(getattr(torch, dtype)).reshape(shape)
                for name, (dtype, shape, data) in packed.items()}
