"""Run a reward function in worker processes that can be killed, so it can never hurt the trainer.

A reward function is user code: it may hang (math-verify on `\\boxed{10^{10^{10}}}`), raise,
segfault or return garbage. Each worker is a `spawn`ed process (never `fork`: the caller may be a
Ray actor with threads) that loads the function itself and calls it in its *main thread*, where
`signal.alarm`-based timeouts such as math-verify's work. The parent enforces a per-sample
deadline: a worker past it is killed (SIGTERM, then SIGKILL) and replaced, and the other samples
are still scored. Processes stay alive across `score()` calls, so start-up is paid once.

Caveats: the caller's `__main__` module is imported again in each worker (how `spawn` works), so
a script that creates a pool needs an `if __name__ == "__main__":` guard; workers are daemonic,
so a reward function may use `subprocess` but not start `multiprocessing` children of its own.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

from rlkit.reward import contract
from rlkit.reward.contract import RewardRequest, Verdict
from rlkit.reward.loader import LabeledFn, RewardFnSpec, load_reward_fn

if TYPE_CHECKING:
    from rlkit.types import Reward

_KILL_GRACE_S = 0.5  # SIGTERM → SIGKILL delay
_CLOSE_GRACE_S = 2.0  # how long close() lets idle workers exit on their own


# --------------------------------------------------------------------------- worker process side


def _send(conn: Connection, message: Any) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _worker_main(conn: Connection, functions: Sequence[LabeledFn], timeout_s: float | None = None) -> None:
    """Worker process entry point: load the functions, then score requests until told to stop.

    The worker leads a process group of its own, so every process a reward function starts
    (and does not move out of the group) can be found and killed: after each call, and with
    the worker when it is killed. `timeout_s`, the per-sample limit, is published to the
    functions (`contract.time_budget_s`) so their own timeouts can fit inside it."""
    if timeout_s is not None:
        os.environ[contract.TIME_BUDGET_ENV] = repr(float(timeout_s))
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # already a group or session leader: leftovers are then not cleared
    try:
        loaded = []
        for label, weight, spec in functions:
            fn = load_reward_fn(spec)
            loaded.append((label, weight, fn, contract.accepted_keywords(fn)))
    except Exception as exc:
        _send(conn, ("load_error", str(exc)))
        return
    _send(conn, ("ready", None))
    while True:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the parent is gone
        if message is None:
            return
        index, request = message
        helpers = _group_members()  # started before this call (e.g. at load): kept
        verdict = contract.combine(
            [(label, weight, contract.call_and_judge(fn, request, keywords)) for label, weight, fn, keywords in loaded]
        )
        _kill_group_members(keep=helpers)  # a call leaves no process behind
        try:
            payload = pickle.dumps(("result", index, verdict), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            reason = f"result could not be pickled: {contract.describe_exception(exc)}"
            invalid = Verdict(contract.INVALID, error=contract.truncate(reason))
            payload = pickle.dumps(("result", index, invalid))
        conn.send_bytes(payload)


# --------------------------------------------------------------------------- parent side


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    started_at: float
    ready: bool = False
    job: int | None = None  # index (into the current score() call) of the item in flight
    sent_at: float = 0.0


@dataclass
class _Batch:
    """State of one score() call."""

    items: Sequence[RewardRequest]
    results: list[Reward | None] = field(default_factory=list)
    pending: deque[int] = field(default_factory=deque)


class ScoringPool:
    """Runs a reward function in worker processes that can be killed.

    `score()` calls are serialized (a lock), so one pool may be shared by threads.
    """

    def __init__(
        self,
        spec: RewardFnSpec | Sequence[LabeledFn],
        num_processes: int = 1,
        timeout_s: float = 10.0,
        start_timeout_s: float = 120.0,
    ) -> None:
        if num_processes < 1:
            raise ValueError(f"num_processes={num_processes} must be at least 1")
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s={timeout_s} must be a positive number of seconds")
        functions = [(None, 1.0, spec)] if isinstance(spec, RewardFnSpec) else list(spec)
        # Absolute paths: the same files in every worker.
        self.functions = [(label, weight, item.resolved()) for label, weight, item in functions]
        self.timeout_s = float(timeout_s)
        self.start_timeout_s = float(start_timeout_s)
        self.restarts = 0  # workers replaced after a timeout or a crash, for metrics
        self._context = get_context("spawn")
        import rlkit.types  # noqa: F401  # pay its import (torch) now, not inside a deadline
        self._lock = threading.Lock()
        self._workers: list[_Worker] = [self._spawn() for _ in range(num_processes)]
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)
        try:
            self._wait_until_ready()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- public

    def score(self, items: Sequence[RewardRequest]) -> list[Reward]:
        """One Reward per item, in the same order. Never raises for the reward function's faults."""
        with self._lock:
            if not self._finalizer.alive:
                raise RuntimeError("ScoringPool.score() called after close(); create a new pool")
            for worker in list(self._workers):
                if worker.job is not None:  # left busy by a score() call that raised
                    self._replace(worker)
            batch = _Batch(items, [None] * len(items), deque(range(len(items))))
            while batch.pending or any(w.job is not None for w in self._workers):
                self._dispatch(batch)
                self._collect(batch)
                self._enforce_deadlines(batch)
            missing = [i for i, reward in enumerate(batch.results) if reward is None]
            if missing:  # every path above fills a result; this guards the invariant
                raise RuntimeError(f"ScoringPool lost the results of items {missing[:10]}")
            return batch.results  # type: ignore[return-value]  # no None left

    def close(self) -> None:
        """Stop every worker (idempotent; also runs when the pool is garbage-collected)."""
        with self._lock:
            self._finalizer()

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- workers

    def _describe(self) -> str:
        return " + ".join(spec.describe() for _, _, spec in self.functions)

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(child_conn, self.functions, self.timeout_s),
            name="rlkit-reward-worker",
            daemon=True,
        )
        process.start()
        child_conn.close()  # keep only the child's copy, so its death shows up as EOF here
        return _Worker(process, parent_conn, started_at=time.monotonic())

    def _replace(self, worker: _Worker) -> None:
        _kill(worker)
        self._workers[self._workers.index(worker)] = self._spawn()
        self.restarts += 1

    def _wait_until_ready(self) -> None:
        while not all(w.ready for w in self._workers):
            starting = [w for w in self._workers if not w.ready]
            for conn in wait([w.conn for w in starting], timeout=self._seconds_to_next_deadline()):
                self._handle_message(next(w for w in starting if w.conn is conn), None)
            self._check_start_deadlines()

    def _check_start_deadlines(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            if not worker.ready and now - worker.started_at > self.start_timeout_s:
                raise RuntimeError(
                    f"reward worker for {self._describe()} did not start within "
                    f"{self.start_timeout_s:.0f} s; its import may hang or the machine is "
                    "overloaded (raise start_timeout_s if start-up is legitimately slow)"
                )

    # ----------------------------------------------------------------- one score() round

    def _dispatch(self, batch: _Batch) -> None:
        for worker in list(self._workers):
            if not batch.pending:
                return
            if not worker.ready or worker.job is not None:
                continue
            if not worker.process.is_alive():  # died while idle (e.g. the OOM killer)
                self._replace(worker)
                continue
            index = batch.pending.popleft()
            try:
                payload = pickle.dumps((index, batch.items[index]), pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                reason = f"request could not be pickled: {contract.describe_exception(exc)}"
                batch.results[index] = _failed(contract.ERROR, reason)
                continue
            try:
                worker.conn.send_bytes(payload)
            except OSError:  # broken pipe: the worker died between the check and the send
                batch.pending.appendleft(index)
                self._replace(worker)
                continue
            worker.job, worker.sent_at = index, time.monotonic()

    def _collect(self, batch: _Batch) -> None:
        watched = [w for w in self._workers if w.job is not None or not w.ready]
        if not watched:
            return
        for conn in wait([w.conn for w in watched], timeout=self._seconds_to_next_deadline()):
            self._handle_message(next(w for w in watched if w.conn is conn), batch)

    def _handle_message(self, worker: _Worker, batch: _Batch | None) -> None:
        try:
            message = pickle.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            self._on_death(worker, batch)
            return
        except Exception as exc:  # bytes that do not unpickle: treat the worker as broken
            reason = f"worker sent an unreadable result: {contract.describe_exception(exc)}"
            self._finish(worker, batch, _failed(contract.INVALID, reason))
            self._replace(worker)
            return
        kind = message[0] if isinstance(message, tuple) and message else None
        if kind == "ready":
            worker.ready = True
        elif kind == "load_error":
            raise ValueError(str(message[1]))
        elif kind == "result" and len(message) == 3 and message[1] == worker.job:
            self._finish(worker, batch, _to_reward(message[2]))
        else:
            malformed = _failed(contract.INVALID, "worker sent a malformed message")
            self._finish(worker, batch, malformed)
            self._replace(worker)

    def _on_death(self, worker: _Worker, batch: _Batch | None) -> None:
        worker.process.join(timeout=_KILL_GRACE_S)
        code = worker.process.exitcode
        if not worker.ready:
            raise RuntimeError(
                f"reward worker for {self._describe()} died while starting (exit code {code}); "
                "run the reward file on its own to see why"
            )
        reason = f"worker process died (exit code {code}) while scoring this sample; restarted it"
        seconds = time.monotonic() - worker.sent_at
        self._finish(worker, batch, _failed(contract.ERROR, reason, seconds))
        self._replace(worker)

    def _enforce_deadlines(self, batch: _Batch) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.job is not None and now - worker.sent_at > self.timeout_s:
                if worker.conn.poll(0):  # its answer arrived while the parent was busy
                    self._handle_message(worker, batch)
                    continue
                reason = (
                    f"reward function ran past the {self.timeout_s:g} s timeout; "
                    "worker killed and restarted"
                )
                self._finish(worker, batch, _failed(contract.TIMEOUT, reason, now - worker.sent_at))
                self._replace(worker)
        self._check_start_deadlines()

    def _finish(self, worker: _Worker, batch: _Batch | None, reward: Reward) -> None:
        if batch is not None and worker.job is not None:
            batch.results[worker.job] = reward
        worker.job = None

    def _seconds_to_next_deadline(self) -> float:
        now = time.monotonic()
        deadlines = [w.sent_at + self.timeout_s for w in self._workers if w.job is not None]
        deadlines += [w.started_at + self.start_timeout_s for w in self._workers if not w.ready]
        return max(0.0, min(deadlines) - now) + 0.005 if deadlines else 0.0


# --------------------------------------------------------------------------- helpers


def _failed(status: str, error: str, seconds: float = 0.0) -> Reward:
    from rlkit.types import Reward, RewardStatus  # not at module level: keeps torch out of workers

    return Reward(0.0, RewardStatus(status), {}, contract.truncate(error), seconds)


def _to_reward(verdict: object) -> Reward:
    """Re-check what a worker sent: the parent trusts types, not the child."""
    from rlkit.types import Reward, RewardStatus

    if not isinstance(verdict, Verdict):
        return _failed(contract.INVALID, f"worker sent a {type(verdict).__name__}, not a Verdict")
    try:
        status = RewardStatus(verdict.status)
        seconds = float(verdict.seconds)
        score = float(verdict.score) if status is RewardStatus.OK else 0.0
        components = {str(k): float(v) for k, v in dict(verdict.components).items()}
    except (TypeError, ValueError) as exc:
        reason = f"worker sent a malformed verdict: {contract.describe_exception(exc)}"
        return _failed(contract.INVALID, reason)
    if not all(math.isfinite(v) for v in [score, *components.values()]):
        return _failed(contract.INVALID, "worker sent a non-finite score")
    error = None if verdict.error is None else contract.truncate(str(verdict.error))
    return Reward(score, status, components, error, seconds)


def _kill(worker: _Worker) -> None:
    """SIGTERM, then SIGKILL if it is still alive after a grace period; reap it (no zombie);
    then SIGKILL whatever is left in its process group (what its reward function started)."""
    process = worker.process
    if process.is_alive():
        process.terminate()
        process.join(_KILL_GRACE_S)
        if process.is_alive():
            process.kill()
    if process.pid is not None:  # before reaping: until then the worker's zombie holds the group id
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    process.join()
    worker.conn.close()


def _group_members() -> set[int]:
    """Other processes in this process's group, when it leads one (Linux: read from /proc)."""
    me = os.getpid()
    if os.getpgid(0) != me:
        return set()  # not a group leader: the group is not ours to clear
    members = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == me and fields[0] != "Z":  # fields after the name: state, ppid, pgrp, ...
            members.add(int(entry.name))
    return members


def _kill_group_members(keep: set[int]) -> None:
    """SIGKILL the group's processes not in `keep`, and reap this worker's children."""
    for pid in _group_members() - keep:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while True:  # reap this worker's own children, so none lingers as a zombie
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _shutdown(workers: list[_Worker]) -> None:
    """Ask idle workers to exit, kill the rest; runs once, from close() or the finalizer."""
    for worker in workers:
        try:
            _send(worker.conn, None)
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + _CLOSE_GRACE_S
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        _kill(worker)
