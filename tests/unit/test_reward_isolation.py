"""ScoringPool: whatever a reward function does, the caller gets one Reward per item with a status."""

from __future__ import annotations

import math
import os
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rlkit.reward import RewardFnSpec, RewardRequest, ScoringPool
from rlkit.reward.contract import judge
from rlkit.types import RewardStatus

REWARD_FILE = textwrap.dedent(
    """
    import math, os, signal, time

    def by_response(*, response, extra, **kwargs):
        # One function whose behaviour is chosen by the response text.
        kind = response
        if kind == "raise":
            raise ValueError("no answer in " + "x" * 500)
        if kind == "string":
            return "1.0"
        if kind == "nan":
            return math.nan
        if kind == "none":
            return None
        if kind == "dict":
            return {"score": 0.25, "format": 1, "length": 3.5}
        if kind == "lambda-in-dict":
            return {"score": 1.0, "fn": lambda: 0}
        if kind == "exit":
            os._exit(3)
        if kind == "hang":
            with open(extra["pid_file"], "w") as f:
                f.write(str(os.getpid()))
            time.sleep(10_000)
        if kind == "hang-ignoring-sigterm":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with open(extra["pid_file"], "w") as f:
                f.write(str(os.getpid()))
            while True:
                time.sleep(0.01)
        if kind == "regex-in-c":  # catastrophic backtracking: hangs inside C, holding the GIL
            import re
            with open(extra["pid_file"], "w") as f:
                f.write(str(os.getpid()))
            re.match(r"(a+)+$", "a" * 64 + "b")
        if kind == "leak":  # starts processes and returns without waiting for them
            import subprocess
            children = [subprocess.Popen(["sleep", "300"]) for _ in range(3)]
            with open(extra["pid_file"], "w") as f:
                f.write(" ".join(str(c.pid) for c in children))
            return 1.0
        if kind == "fork-burst":  # forks many processes that each sleep, then hangs
            pids = []
            for _ in range(40):
                pid = os.fork()
                if pid == 0:
                    time.sleep(300)
                    os._exit(0)
                pids.append(pid)
            with open(extra["pid_file"], "w") as f:
                f.write(" ".join(str(p) for p in pids))
            time.sleep(10_000)
        if kind == "huge-list":
            return [1.0] * 5_000_000
        return float(kind)

    def index_and_pid(*, response, extra):
        time.sleep(extra.get("sleep", 0.0))
        return {"score": float(response), "pid": float(os.getpid())}
    """
)


@pytest.fixture(scope="module")
def reward_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rewards") / "my_rewards.py"
    path.write_text(REWARD_FILE)
    return path


@pytest.fixture(scope="module")
def pool(reward_file: Path):
    with ScoringPool(RewardFnSpec(path=str(reward_file), name="by_response"), num_processes=2, timeout_s=1.0) as p:
        yield p


def request(response: str, **extra: object) -> RewardRequest:
    return RewardRequest(prompt="What is 1 + 1?", response=response, ground_truth="2", extra=extra)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_each_kind_of_return_value_gets_its_status(pool: ScoringPool) -> None:
    kinds = ["2.5", "raise", "string", "nan", "none", "dict", "lambda-in-dict"]
    rewards = pool.score([request(kind) for kind in kinds])
    by_kind = dict(zip(kinds, rewards))

    assert by_kind["2.5"].status is RewardStatus.OK and by_kind["2.5"].score == 2.5
    assert by_kind["raise"].status is RewardStatus.ERROR
    assert by_kind["raise"].error.startswith("ValueError: no answer in xxx")
    assert len(by_kind["raise"].error) <= 200
    assert by_kind["string"].status is RewardStatus.INVALID and "str '1.0'" in by_kind["string"].error
    assert by_kind["nan"].status is RewardStatus.INVALID and "nan" in by_kind["nan"].error
    assert by_kind["none"].status is RewardStatus.NOT_APPLICABLE and by_kind["none"].error is None
    assert by_kind["dict"].status is RewardStatus.OK
    assert (by_kind["dict"].score, by_kind["dict"].components) == (0.25, {"format": 1.0, "length": 3.5})
    assert by_kind["lambda-in-dict"].status is RewardStatus.INVALID
    assert "'fn'" in by_kind["lambda-in-dict"].error
    for reward in rewards:
        if reward.status is not RewardStatus.OK:
            assert reward.score == 0.0 and reward.components == {}


def test_timeout_kills_the_worker_and_the_pool_keeps_working(pool: ScoringPool, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    restarts = pool.restarts
    start = time.monotonic()
    rewards = pool.score([request("1"), request("hang", pid_file=str(pid_file)), request("3")])
    elapsed = time.monotonic() - start

    assert [r.status for r in rewards] == [RewardStatus.OK, RewardStatus.TIMEOUT, RewardStatus.OK]
    assert [rewards[0].score, rewards[2].score] == [1.0, 3.0]
    assert "1 s timeout" in rewards[1].error and rewards[1].seconds >= 1.0
    assert elapsed < 4.0
    assert not pid_alive(int(pid_file.read_text()))
    assert pool.restarts == restarts + 1
    assert [r.score for r in pool.score([request("4"), request("5")])] == [4.0, 5.0]


@pytest.mark.parametrize("kind", ["hang-ignoring-sigterm", "regex-in-c"])  # the second hangs inside C, holding the GIL
def test_a_worker_that_ignores_sigterm_or_hangs_in_c_is_killed(pool: ScoringPool, tmp_path: Path, kind: str) -> None:
    pid_file = tmp_path / "pid"
    (reward,) = pool.score([request(kind, pid_file=str(pid_file))])

    assert reward.status is RewardStatus.TIMEOUT
    assert not pid_alive(int(pid_file.read_text()))
    assert pool.score([request("6")])[0].score == 6.0


def zombie_or_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def all_gone_soon(pids: list[int], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while not all(zombie_or_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return all(zombie_or_gone(pid) for pid in pids)


def test_processes_a_reward_function_leaves_behind_are_killed(pool: ScoringPool, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    (reward,) = pool.score([request("leak", pid_file=str(pid_file))])
    assert reward.status is RewardStatus.OK
    leaked = [int(p) for p in pid_file.read_text().split()]
    assert all_gone_soon(leaked), "a reward function's child outlived its call"


def test_a_burst_of_forks_then_a_hang_is_killed_whole(pool: ScoringPool, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    (reward,) = pool.score([request("fork-burst", pid_file=str(pid_file))])
    assert reward.status is RewardStatus.TIMEOUT
    forked = [int(p) for p in pid_file.read_text().split()]
    assert len(forked) == 40
    assert all_gone_soon(forked)
    assert pool.score([request("7")])[0].score == 7.0


def test_a_huge_return_value_is_invalid_and_cheap(pool: ScoringPool) -> None:
    started = time.monotonic()
    (reward,) = pool.score([request("huge-list")])
    assert reward.status is RewardStatus.INVALID and "list" in reward.error
    assert len(reward.error) <= 200 and time.monotonic() - started < 5


def test_a_dying_worker_is_an_error_and_is_replaced(pool: ScoringPool) -> None:
    rewards = pool.score([request("exit"), request("7"), request("exit")])

    assert [r.status for r in rewards] == [RewardStatus.ERROR, RewardStatus.OK, RewardStatus.ERROR]
    assert "worker process died (exit code 3)" in rewards[0].error
    assert [r.score for r in pool.score([request("8"), request("9")])] == [8.0, 9.0]


def test_a_request_that_cannot_be_pickled_fails_alone(pool: ScoringPool) -> None:
    rewards = pool.score([request("1", callback=lambda: 0), request("2")])

    assert rewards[0].status is RewardStatus.ERROR and "could not be pickled" in rewards[0].error
    assert rewards[1].status is RewardStatus.OK


def test_order_is_kept_and_work_is_spread_over_processes(reward_file: Path) -> None:
    spec = RewardFnSpec(path=str(reward_file), name="index_and_pid")
    # Later items finish first: without reordering the results would come back scrambled.
    items = [
        RewardRequest(prompt="", response=str(i), extra={"sleep": 0.02 * (i % 3)}) for i in range(12)
    ]
    with ScoringPool(spec, num_processes=3, timeout_s=5.0) as pool:
        rewards = pool.score(items)

    assert [r.score for r in rewards] == [float(i) for i in range(12)]
    assert len({r.components["pid"] for r in rewards}) == 3
    assert os.getpid() not in {r.components["pid"] for r in rewards}


def test_close_is_idempotent_and_stops_the_workers(reward_file: Path) -> None:
    pool = ScoringPool(RewardFnSpec(path=str(reward_file), name="index_and_pid"), num_processes=2)
    pids = {int(r.components["pid"]) for r in pool.score([RewardRequest("", str(i)) for i in range(4)])}
    pool.close()
    pool.close()

    assert not any(pid_alive(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="after close"):
        pool.score([RewardRequest("", "1")])


def test_a_function_that_cannot_load_fails_the_pool_at_creation(reward_file: Path) -> None:
    with pytest.raises(ValueError, match='did you mean "by_response"'):
        ScoringPool(RewardFnSpec(path=str(reward_file), name="by_respons"))


def test_an_empty_batch_is_an_empty_list(pool: ScoringPool) -> None:
    assert pool.score([]) == []


@pytest.mark.parametrize(
    "value, status, score",
    [
        (True, "ok", 1.0),
        (3, "ok", 3.0),
        (np.float32(0.5), "ok", 0.5),
        (np.int64(2), "ok", 2.0),
        (np.bool_(True), "ok", 1.0),
        (np.array(1.5), "ok", 1.5),
        ({"score": np.float64(0.75)}, "ok", 0.75),
        (None, "not_applicable", 0.0),
        (math.inf, "invalid", 0.0),
        ([1.0], "invalid", 0.0),
        ({"reward": 1.0}, "invalid", 0.0),
        ({"score": "1"}, "invalid", 0.0),
        ({"score": 1.0, "note": "fine"}, "invalid", 0.0),
        (np.array([1.0, 2.0]), "invalid", 0.0),
    ],
)
def test_judge_accepts_finite_numbers_and_score_dicts_only(value: object, status: str, score: float) -> None:
    verdict = judge(value)

    assert (verdict.status, verdict.score) == (status, score)
    assert (verdict.error is None) == (status in ("ok", "not_applicable"))
