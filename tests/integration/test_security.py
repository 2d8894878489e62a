"""Security defaults, checked on a real training run (tiny recipe, W&B offline, weights by gloo
broadcast): every socket the run's processes listen on is on loopback, and secret values planted
in the environment appear in none of its files, logs or output.

Both runs here start as a user's `python -m rlkit.train` does: without the loopback flag
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER that the Makefile and tests/conftest.py set, which on its own
keeps Ray on 127.0.0.1; so what keeps them on loopback is rlkit's own code."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlkit.tracking.metrics_log import read_metrics

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

SECRETS = {"WANDB_API_KEY": "sentinel-wandb-5f1c0e9a2b7d4c31", "HF_TOKEN": "hf_sentinel8d2e6a1f3b9c4e7a"}
LOOPBACK_FLAG = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user who runs rlkit without make: no loopback flag, Ray's own auth default."""
    env = {key: value for key, value in os.environ.items() if key not in (LOOPBACK_FLAG, "RAY_AUTH_MODE")}
    return {**env, **extra}


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {root}, [root]
    while frontier:
        current = frontier.pop()
        children = [pid for pid, parent in parents.items() if parent == current and pid not in found]
        found.update(children)
        frontier.extend(children)
    return found


def listening_addresses(pids: set[int]) -> dict[str, list[int]]:
    """Local address → pids, for every listening TCP socket the processes hold."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found: dict[str, list[int]] = {}
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(address_hex)
            # /proc prints each 32-bit word in host (little-endian) order.
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
            address = ipaddress.ip_address(packed)
            found.setdefault(f"{address}:{int(port_hex, 16)}", []).append(inodes[fields[9]])
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


@pytest.fixture(scope="module")
def secured_run(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("security") / "run"
    env = user_env(**SECRETS, WANDB_MODE="offline")
    started = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "rlkit.train", "recipes/tiny_cpu.yaml", "run.steps=3", "checkpoint.every=1",
         "logging.wandb=true", "sync.transport=gloo", f"run.output_dir={run_dir}", "logging.progress_bar=false"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    listeners: dict[str, list[int]] = {}
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and any(row.get("step") == 2 and "reward/mean" in row for row in read_metrics(metrics)):
            listeners = listening_addresses(descendants(process.pid))  # every stage is up and serving
            break
        time.sleep(0.2)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-4000:]
    ray_dirs = [p for p in Path("/tmp").glob("rlkit-ray-*") if p.stat().st_mtime >= started - 1]
    return {"run_dir": run_dir, "output": output, "listeners": listeners, "ray_dirs": ray_dirs}


def test_every_listener_of_a_run_is_on_loopback(secured_run) -> None:
    listeners = secured_run["listeners"]
    assert len(listeners) >= 5, f"expected Ray, the store, the learner group and the weight group to listen: {listeners}"
    exposed = {address: pids for address, pids in listeners.items() if not is_loopback(address)}
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_planted_secrets_appear_in_no_file_log_or_output(secured_run) -> None:
    run_dir = secured_run["run_dir"]
    files = [p for folder in (run_dir, *secured_run["ray_dirs"]) for p in folder.rglob("*") if p.is_file()]
    assert any("wandb" in str(p) for p in files) and any("checkpoints" in str(p) for p in files)
    for name, secret in SECRETS.items():
        assert secret not in secured_run["output"], f"{name} printed"
        leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
        assert not leaked, f"{name} found in {leaked}"


# A private cluster started by rlkit.runtime.ray_session, as a run without `ray.address` starts
# one: it reports its node address and the flag's value, waits while the test reads its
# listeners, and reports the flag again once the session has ended.
PRIVATE_CLUSTER = """
import json, os, sys
import ray
from rlkit.runtime import ray_session

with ray_session(None, 1):
    print(json.dumps({"node": ray.nodes()[0]["NodeManagerAddress"], "gcs": ray.get_runtime_context().gcs_address,
                      "flag": os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}), flush=True)
    sys.stdin.readline()
print(json.dumps({"flag_after": os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}), flush=True)
"""


def test_a_private_cluster_listens_on_loopback_without_the_flag() -> None:
    """`_keep_local_cluster_on_loopback` (through `ray_session`), on its own: the node address,
    the GCS and every listener of the cluster's processes are on 127.0.0.1, and the process's
    environment is given back as it was (no flag) once the cluster is up."""
    process = subprocess.Popen([sys.executable, "-c", PRIVATE_CLUSTER], cwd=REPO, env=user_env(),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        while not lines or not lines[-1].startswith('{"node"'):  # Ray's own start-up lines come first
            lines.append(process.stdout.readline())
            assert lines[-1], "".join(lines)[-3000:]  # the child ended before its cluster was up
        started = json.loads(lines[-1])
        listeners = listening_addresses(descendants(process.pid))
        output, _ = process.communicate("\n", timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, output[-3000:]
    output = next(line for line in output.splitlines() if line.startswith('{"flag_after"'))
    assert started["node"] == "127.0.0.1" and started["gcs"].startswith("127.0.0.1:"), started
    assert started["flag"] is None and json.loads(output)["flag_after"] is None  # restored right after start
    assert len(listeners) >= 3, f"expected the GCS, raylet and object manager to listen: {listeners}"
    exposed = {address: pids for address, pids in listeners.items() if not is_loopback(address)}
    assert not exposed, f"a private cluster listens beyond loopback: {exposed}"
