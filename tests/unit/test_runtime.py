"""Process placement helpers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rlkit.runtime import pin_cpus


def test_pinning_restricts_the_process_and_its_children_to_the_cores() -> None:
    core = min(os.sched_getaffinity(0))
    program = (
        "import os, subprocess, sys\n"
        "from rlkit.runtime import pin_cpus\n"
        f"pin_cpus([{core}], 'rollout')\n"
        "child = subprocess.run([sys.executable, '-c', 'import os; print(sorted(os.sched_getaffinity(0)))'],"
        " capture_output=True, text=True).stdout.strip()\n"
        "print(sorted(os.sched_getaffinity(0)), child)\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"[{core}] [{core}]"


def test_pinning_to_a_core_this_process_cannot_use_names_the_available_ones() -> None:
    before = os.sched_getaffinity(0)
    with pytest.raises(ValueError, match=r"learner.cpu_cores=\[4096\]: core\(s\) \[4096\] are not available"):
        pin_cpus([4096], "learner")
    pin_cpus([], "learner")  # nothing to do
    assert os.sched_getaffinity(0) == before


def test_gloo_stays_on_loopback_only_on_one_machine(monkeypatch) -> None:
    from rlkit.runtime import actor_env

    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    assert actor_env(single_machine=True).get("GLOO_SOCKET_IFNAME") == "lo"
    assert "GLOO_SOCKET_IFNAME" not in actor_env(single_machine=False)  # gloo picks the routable interface
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth1")
    assert actor_env(single_machine=False)["GLOO_SOCKET_IFNAME"] == "eth1"  # the user's choice travels


def test_an_actors_environment_follows_the_device_it_holds() -> None:
    from rlkit.runtime import actor_env

    on_gpu, on_cpu = actor_env(single_machine=False, gpu=True), actor_env(single_machine=False, gpu=False)
    assert "DS_ACCELERATOR" not in on_gpu and "VLLM_CPU_OMP_THREADS_BIND" not in on_gpu
    assert on_cpu["DS_ACCELERATOR"] == "cpu" and on_cpu["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
