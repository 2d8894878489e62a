"""Shared test set-up: offline, CPU-only, loopback-only environment, one local Ray cluster, the
repository as working directory, and a guard that no test leaves anything in the checkout."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TEST_ENV = {
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DS_ACCELERATOR": "cpu",
    "GLOO_SOCKET_IFNAME": "lo",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "OMP_NUM_THREADS": "1",
}
for _key, _value in TEST_ENV.items():
    os.environ.setdefault(_key, _value)
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/rlkit/torch_extensions"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster():
    """A private local Ray cluster for the whole session (never joins or stops anyone else's)."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    temp_dir = tempfile.mkdtemp(prefix="rlkit-ray-", dir="/tmp")
    ray.init(address="local", num_cpus=8, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=True)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def run_from_the_repository():
    """Recipes name their data relative to the working directory (a Ray job's --working-dir), as
    the README's commands run them: the suite runs from the repository root wherever pytest was
    started. Tests that need another directory chdir themselves."""
    before = os.getcwd()
    os.chdir(REPO)
    yield REPO
    os.chdir(before)


# Written by Python, pytest and linters themselves, or by installing the project: not a test's doing.
NOT_THE_TESTS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "rlkit.egg-info"}
GUARD_SWITCH = "RLKIT_CHECKOUT_GUARD"


def checkout_state(repo: Path = REPO) -> dict[str, str]:
    """Every path of the checkout that differs from the commit: `git status` entry → content hash
    (files), or the files below it (an ignored folder such as runs/). Unchanged tracked files are
    not listed, so the state is small and cheap to take."""
    listing = subprocess.run(
        ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching"],
        cwd=repo, capture_output=True, text=True, check=True).stdout
    state: dict[str, str] = {}
    for entry in filter(None, listing.split("\0")):
        status, name = entry[:2], entry[3:]
        if NOT_THE_TESTS & set(Path(name).parts):
            continue
        path = repo / name
        if path.is_dir():
            state[entry] = " ".join(sorted(str(f.relative_to(path)) for f in path.rglob("*")
                                           if not NOT_THE_TESTS & set(f.parts)))
        elif path.is_file():
            state[entry] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[entry] = status  # deleted
    return state


def changed_paths(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Entries that appeared, vanished or changed between two `checkout_state`s."""
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


@pytest.fixture(scope="session", autouse=True)
def checkout_is_left_unchanged():
    """A test writes into tmp_path, never into the repository: at the end of the session, every
    file of the checkout is as it was at the start (new untracked and ignored files included).
    Other people editing the same checkout while the tests run trip it too; set
    RLKIT_CHECKOUT_GUARD=0 to turn it off for such a run."""
    if os.environ.get(GUARD_SWITCH) == "0" or not (REPO / ".git").exists():  # off, or not a git checkout
        yield
        return
    before = checkout_state()
    yield
    changed = changed_paths(before, checkout_state())
    assert not changed, (
        f"tests changed the checkout (write into tmp_path instead; {GUARD_SWITCH}=0 turns this check off): "
        + ", ".join(key[3:] or key for key in changed))
