"""Start or stop a private single-machine Ray head for `ray job submit`.

    python launch/local_cluster.py start   # prints the job-submission address, writes .ray-local/cluster.json
    ray job submit --address http://127.0.0.1:<port> --working-dir . -- python -m rlkit.train recipes/tiny_cpu.yaml
    python launch/local_cluster.py stop

The head binds to 127.0.0.1 on free ports with its own temp dir, in its own process group, so
stopping it ends exactly the processes it started — never Ray's global stop command, which ends every
Ray process on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

STATE = Path(".ray-local") / "cluster.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_range(size: int) -> tuple[int, int]:
    """A block of ports that are free now, for the head's worker processes."""
    for start in range(20000 + (os.getpid() % 50) * 400, 60000, size):
        if all(_port_free(port) for port in range(start, start + size, 20)):
            return start, start + size - 1
    raise RuntimeError("no free block of worker ports")


def _distinct_free_ports(count: int, exclude: range) -> list[int]:
    """`count` different free ports, none inside `exclude`."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = free_port()
        if port not in exclude and port not in chosen:
            chosen.append(port)
    return chosen


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def cluster_env() -> dict[str, str]:
    """The head's environment: loopback only, no token auth, this interpreter's bin first on PATH
    (a job's `python` must be the one rlkit is installed in).

    Auth is pinned off rather than inherited: `ray.init()` in the calling process sets
    RAY_AUTH_MODE=token in its environment, and a head and client that disagree refuse jobs. The
    head listens on 127.0.0.1 only.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update({
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    })
    return env


def start(num_cpus: int, state: Path = STATE, timeout_s: float = 120.0) -> dict:
    """Start the head and wait until it accepts jobs; returns {address, pgid, temp_dir, ...}."""
    worker_ports = _free_range(200)
    ports = _distinct_free_ports(10, exclude=range(worker_ports[0], worker_ports[1] + 1))
    gcs_port, dashboard_port = ports[0], ports[1]
    temp_dir = tempfile.mkdtemp(prefix="rlkit-ray-head-", dir="/tmp")
    ray_bin = Path(sys.executable).parent / "ray"
    command = [
        str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}", f"--dashboard-port={dashboard_port}", "--dashboard-host=127.0.0.1",
        "--include-dashboard=true", f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}", "--disable-usage-stats",
        # Every listening port chosen here, distinct and free: Ray's defaults (the agent's 52365,
        # the client server's 10001) clash with any other Ray instance on the machine.
        f"--dashboard-agent-listen-port={ports[2]}", f"--dashboard-agent-grpc-port={ports[3]}",
        f"--metrics-export-port={ports[4]}", f"--runtime-env-agent-port={ports[5]}",
        f"--node-manager-port={ports[6]}", f"--object-manager-port={ports[7]}",
        f"--ray-client-server-port={ports[8]}",
        f"--min-worker-port={worker_ports[0]}", f"--max-worker-port={worker_ports[1]}",
    ]
    log = open(Path(temp_dir) / "head.log", "w")
    process = subprocess.Popen(command, env=cluster_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    info = {"address": f"http://127.0.0.1:{dashboard_port}", "gcs_address": f"127.0.0.1:{gcs_port}",
            "pgid": process.pid, "temp_dir": temp_dir, "log": log.name}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray head exited with code {process.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"{info['address']}/api/version", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(1.0)
    else:
        stop(info)
        raise TimeoutError(f"ray head did not accept connections within {timeout_s:.0f}s; see {log.name}")
    try:
        _wait_for_job_agent(info["address"], deadline)
    except TimeoutError:
        stop(info)
        raise
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(info))
    return info


def _wait_for_job_agent(address: str, deadline: float) -> None:
    """The dashboard answers before the head's job agent registers ("No available agent to
    submit job"); ready means a no-op job is accepted and finishes."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    os.environ["RAY_AUTH_MODE"] = "disabled"  # must match the head (see cluster_env)
    client = JobSubmissionClient(address)
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            job = client.submit_job(entrypoint="true")
            break
        except RuntimeError as error:
            last_error = error
            time.sleep(2.0)
    else:
        raise TimeoutError(f"the Ray head's job agent did not come up: {last_error}")
    while time.monotonic() < deadline:
        if client.get_job_status(job) in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return
        time.sleep(1.0)
    raise TimeoutError("a no-op probe job did not finish on the new Ray head")


def stop(info: dict | None = None, state: Path = STATE) -> None:
    """End the head's process group (SIGTERM, then SIGKILL)."""
    if info is None:
        if not state.is_file():
            print("no local cluster recorded; nothing to stop")
            return
        info = json.loads(state.read_text())
    pgid = int(info["pgid"])
    for sig, wait_s in ((signal.SIGTERM, 8.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:  # reap the head if we started it, so no zombie keeps the group alive
                os.waitpid(pgid, os.WNOHANG)
            except ChildProcessError:
                pass
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
    if state.is_file():
        state.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--num-cpus", type=int, default=max(4, os.cpu_count() or 1),
                        help="logical CPUs the head offers (actors reserve these; not a thread limit)")
    args = parser.parse_args()
    if args.action == "start":
        info = start(args.num_cpus)
        print(f"Ray head ready. Submit jobs with:\n  RAY_AUTH_MODE=disabled ray job submit --address {info['address']} "
              f"--working-dir . -- python -m rlkit.train recipes/tiny_cpu.yaml\n"
              "Stop it with: python launch/local_cluster.py stop")
    else:
        stop()


if __name__ == "__main__":
    main()
