"""Ray session and process environment for actors.

A run joins the cluster it is told to (`ray.address`, or the one `ray job submit` points it
to through RAY_ADDRESS) or starts a private local one bound to 127.0.0.1. It never stops a
cluster it did not start.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator

# Environment every actor gets: offline, loopback-only, one thread per process on CPU.
ACTOR_ENV_DEFAULTS = {
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "GLOO_SOCKET_IFNAME": "lo",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "OMP_NUM_THREADS": "1",
    "VLLM_LOGGING_LEVEL": "WARNING",  # vLLM logs every weight reload at INFO
}


def pin_cpus(cores: list[int], stage: str) -> None:
    """Run this process (and the processes it starts) on `cores` only; [] leaves it to the OS.

    Giving rollout and learner cores of their own keeps an asynchronous run's stages from
    slowing each other down (each also runs as many torch threads as it has cores)."""
    if not cores:
        return
    available = sorted(os.sched_getaffinity(0))
    missing = sorted(set(cores) - set(available))
    if missing:
        raise ValueError(
            f"{stage}.cpu_cores={list(cores)}: core(s) {missing} are not available to this process "
            f"(available: {available}); pick from those, or [] to let the OS schedule"
        )
    os.sched_setaffinity(0, set(cores))


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def actor_env(single_machine: bool = True, gpu: bool | None = None) -> dict[str, str]:
    """Environment for actors: defaults for the kind of device they use, overridden by the
    caller's env. `gpu` says whether the actor holds a GPU (None: whether this process sees
    one; on a cluster the driver's node says nothing about the actor's). Gloo is kept on the
    loopback interface only when every actor runs on one machine."""
    env = dict(ACTOR_ENV_DEFAULTS)
    if not single_machine:
        env.pop("GLOO_SOCKET_IFNAME", None)
    if not (cuda_available() if gpu is None else gpu):
        env["DS_ACCELERATOR"] = "cpu"
    else:
        for key in ("GLOO_SOCKET_IFNAME", "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "OMP_NUM_THREADS"):
            env.pop(key, None)
    for key in list(env) + ["TORCH_EXTENSIONS_DIR", "RLKIT_CACHE", "WANDB_MODE", "VLLM_LOGGING_LEVEL", "GLOO_SOCKET_IFNAME"]:
        if key in os.environ:
            env[key] = os.environ[key]
    env.setdefault("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/rlkit/torch_extensions"))
    return env


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[None]:
    """Join `address` (or RAY_ADDRESS), else start a private local cluster; shut down what we started."""
    import ray

    if ray.is_initialized():
        yield
        return
    target = address or os.environ.get("RAY_ADDRESS")
    if target:
        ray.init(address=target, log_to_driver=True)
    else:
        cpus = num_cpus or max(4, os.cpu_count() or 1)
        temp_dir = tempfile.mkdtemp(prefix="rlkit-ray-", dir="/tmp")
        restore = _keep_local_cluster_on_loopback()
        try:
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=True)
        finally:
            restore()
    try:
        yield
    finally:
        ray.shutdown()


def _keep_local_cluster_on_loopback() -> Callable[[], None]:
    """A private one-machine cluster listens on 127.0.0.1 only. Ray binds its servers to every
    interface unless its node address is loopback, which it picks when
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: the processes Ray starts read the variable, and this
    process already imported Ray, so its copy of the flag is set too."""
    import ray._private.ray_constants as ray_constants

    before = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"), ray_constants.ENABLE_RAY_CLUSTER
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False

    def restore() -> None:  # once the cluster has started: later clusters of this process choose afresh
        if before[0] is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = before[0]
        ray_constants.ENABLE_RAY_CLUSTER = before[1]

    return restore
