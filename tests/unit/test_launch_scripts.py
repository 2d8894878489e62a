"""The launch scripts refuse to expose a cluster without a token, and a worker without a token
does not start (checked before `ray start` runs, so no cluster is needed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if key != "RAY_AUTH_TOKEN"}
    return subprocess.run(["bash", str(REPO / "launch" / script), *args], capture_output=True, text=True, timeout=30,
                          env={**base, **(env or {})})


@pytest.mark.parametrize("args", [["--ip", "10.0.0.1"], ["--dashboard-host", "0.0.0.0"]])
def test_the_head_refuses_to_turn_auth_off_beyond_loopback(args: list[str]) -> None:
    done = run("ray_head.sh", "--no-auth", *args)
    assert done.returncode == 2
    assert "refusing --no-auth" in done.stderr and "run code on the cluster" in done.stderr


def test_a_worker_without_a_token_does_not_start(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}  # no ~/.ray/auth_token there
    done = run("ray_worker.sh", "--head", "10.0.0.1:6379", "--ip", "10.0.0.2", env=env)
    assert done.returncode == 2 and "no token" in done.stderr


def test_unknown_options_are_refused() -> None:
    for script in ("ray_head.sh", "ray_worker.sh"):
        done = run(script, "--dashboard-host=0.0.0.0")
        assert done.returncode == 2 and "unknown option" in done.stderr
