"""Environments run in a child process, so one that raises, hangs or crashes costs its episode,
never the rollout worker.

The host keeps every live episode's environment in one `spawn`ed process and calls it with a
per-call deadline. Past the deadline (or if the process dies) the process is killed and a new one
started; the episode whose call failed ends with an error, and the other live episodes are
rebuilt in the new process by replaying their actions (environments are expected to be
deterministic given their reset arguments and actions).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any

from rlkit.environment import StepResult, build_environment

MESSAGE_LIMIT = 200
STARTUP_ALLOWANCE_S = 30.0  # default extra time for a new process's first answer


def _host_main(conn: Connection) -> None:
    """Child process: hold environments by episode id and answer reset / step / close."""
    live: dict[int, Any] = {}
    while True:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if message is None:
            return
        kind, episode, *args = message
        try:
            if kind == "reset":
                name, options, prompt, ground_truth, extra = args
                environment = build_environment(name, options)
                environment.reset(prompt, ground_truth, extra)
                live[episode] = environment
                stop = getattr(environment, "stop", ()) or ()
                reply: Any = (stop,) if isinstance(stop, str) else tuple(str(s) for s in stop)
            elif kind == "step":
                result = live[episode].step(args[0])
                if not isinstance(result, StepResult):
                    raise TypeError(f"step() returned {type(result).__name__}, expected rlkit.environment.StepResult")
                reply = (str(result.observation), float(result.reward), bool(result.done))
            else:  # close
                live.pop(episode, None)
                reply = None
            conn.send_bytes(pickle.dumps(("ok", reply)))
        except Exception as exc:  # the environment's fault: report it, keep serving the others
            text = f"{type(exc).__name__}: {exc}"
            conn.send_bytes(pickle.dumps(("error", text[:MESSAGE_LIMIT])))


class EnvironmentFailure(Exception):
    """An environment call raised, timed out or killed its process; the message says which."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status  # "error" or "timeout"


@dataclass
class _Episode:
    reset_args: tuple[Any, ...]
    actions: list[str] = field(default_factory=list)


class EnvHost:
    """Environments for one rollout worker, in a killable child process."""

    def __init__(self, name: str, options: dict[str, Any], timeout_s: float, startup_s: float = STARTUP_ALLOWANCE_S) -> None:
        self.name = name
        self.options = dict(options)
        self.timeout_s = timeout_s
        self.startup_s = startup_s  # extra time for a new process's first answer (interpreter, imports)
        self.restarts = 0
        self._context = get_context("spawn")
        self._episodes: dict[int, _Episode] = {}
        self._next_id = 0
        self._start()

    def reset(self, prompt: str, ground_truth: str | None, extra: dict[str, Any]) -> tuple[int, tuple[str, ...]]:
        """Start an episode; returns its id and the environment's stop strings."""
        episode = self._next_id
        self._next_id += 1
        args = (self.name, self.options, prompt, ground_truth, dict(extra))
        stop = self._call(("reset", episode, *args), episode)
        self._episodes[episode] = _Episode(args)
        return episode, stop

    def step(self, episode: int, action: str) -> StepResult:
        """The environment's answer to one turn; EnvironmentFailure ends the episode."""
        if episode not in self._episodes:  # given up when its replay into a new process failed
            raise EnvironmentFailure("error", f"environment {self.name!r}: episode lost when its process was replaced")
        observation, reward, done = self._call(("step", episode, action), episode)
        self._episodes[episode].actions.append(action)
        return StepResult(observation, reward, done)

    def close_episode(self, episode: int) -> None:
        if self._episodes.pop(episode, None) is not None:
            try:
                self._call(("close", episode), episode)
            except EnvironmentFailure:
                pass  # nothing of the episode is needed any more

    def close(self) -> None:
        try:
            self._conn.send_bytes(pickle.dumps(None))
        except OSError:
            pass
        self._process.join(timeout=1.0)
        self._kill()

    # ----------------------------------------------------------------- internals

    def _start(self) -> None:
        parent, child = self._context.Pipe(duplex=True)
        self._process = self._context.Process(target=_host_main, args=(child,), name="rlkit-env-host", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        self._answered = False

    def _kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=5.0)
        self._conn.close()

    def _call(self, message: tuple[Any, ...], episode: int) -> Any:
        status, reply = self._roundtrip(message)
        if status == "ok":
            return reply
        if status == "error":
            raise EnvironmentFailure("error", f"environment {self.name!r}: {reply}")
        # Hung or dead: a fresh process, the other episodes replayed into it.
        self._episodes.pop(episode, None)
        self._restart()
        raise EnvironmentFailure("timeout" if status == "timeout" else "error", f"environment {self.name!r}: {reply}")

    def _roundtrip(self, message: tuple[Any, ...]) -> tuple[str, Any]:
        # The first call of a new process also pays its start-up (interpreter, imports).
        timeout = self.timeout_s + (self.startup_s if not self._answered else 0.0)
        try:
            self._conn.send_bytes(pickle.dumps(message))
            if not self._conn.poll(timeout):
                return "timeout", f"no answer within {self.timeout_s:g} s (killed)"
            reply = pickle.loads(self._conn.recv_bytes())
            self._answered = True
            return reply
        except (EOFError, OSError, pickle.PickleError) as exc:
            return "error_dead", f"its process died ({type(exc).__name__}, exit code {self._process.exitcode})"

    def _restart(self) -> None:
        """A fresh process with every other live episode replayed into it. An episode whose
        replay raises is given up; if the new process hangs or dies too, it is killed and every
        episode not yet replayed is given up (never left waiting on a late reply)."""
        self._kill()
        self.restarts += 1
        self._start()
        for episode, record in list(self._episodes.items()):
            replay = [("reset", episode, *record.reset_args)] + [("step", episode, action) for action in record.actions]
            for message in replay:
                status, _ = self._roundtrip(message)
                if status == "ok":
                    continue
                del self._episodes[episode]
                if status == "error":  # this episode only: drop what the new process holds of it
                    if self._roundtrip(("close", episode))[0] == "ok":
                        break
                # Hung or dead: replies would come out of step. Every episode is given up, the
                # ones already replayed too (they lived in the process now killed).
                self._episodes.clear()
                self._kill()
                self._start()
                return
