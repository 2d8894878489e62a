"""Run untrusted (model-generated) Python in a separate, locked-down process.

`run_untrusted(code)` never executes `code` in the calling process. It starts a fresh
interpreter (`python -I -S -B`, no `fork` of the caller) running `sandbox_launcher.py` as a *launcher*, in a
new session, with a scrubbed environment and a throw-away working directory. The launcher:

1. joins a fresh pids cgroup when the parent could create one (caps the number of tasks);
2. `unshare`s new mount, pid, IPC and network namespaces (directly when privileged, else inside
   a new user namespace), then forks: the child is pid 1 of the new pid namespace, so when it
   dies the kernel kills every process it left behind;
3. in that child: enters a mount namespace of its own (the launcher keeps an untouched view of
   the filesystem), makes the whole filesystem read-only, hides home directories and the
   caller's working directory (re-exposing the Python installation if it lives there), mounts
   small private `noexec` tmpfs on /tmp, /var/tmp, /dev/shm and the working directory, mounts a
   private /proc; gives up privilege for good (empty capability sets, no_new_privs and, when
   running as root, a uid of its own); sets rlimits (CPU,
   address space, file size, process count, no core dumps, few fds); installs an audit hook (a
   tripwire that ends the program on fork/exec/subprocess, sockets, ctypes and writes outside
   the working directory); and only then compiles and runs the code;
4. waits for the child and reports its exit status and CPU time to the parent.

The parent SIGKILLs the whole process group at the wall-clock deadline, then kills whatever is
left in the cgroup, and removes both temporary directories. Each step that can be unavailable
(no privileges, no user namespaces, no cgroup) is recorded in `SandboxResult.defences`, written
by the launcher before the untrusted code starts, so callers and tests see what actually held.
See docs/sandbox.md for what is and is not contained.

The launcher is `sandbox_launcher.py`, a script of its own that imports only the standard
library: whatever it imports is visible to the untrusted code.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from rlkit.reward import sandbox_launcher
from rlkit.reward.sandbox_launcher import BLOCKED_PREFIX, EXIT_FORBIDDEN, EXIT_MEMORY

STATUSES: tuple[str, ...] = (
    "ok",  # exited 0
    "error",  # raised or exited non-zero: the program's own fault
    "timeout",  # hit the CPU-time or the wall-clock limit
    "memory",  # ran out of its address-space limit (MemoryError)
    "forbidden",  # tried something the audit hook refuses (fork, socket, write outside, ctypes)
    "killed",  # died from a signal not explained by a limit (e.g. SIGSEGV)
    "sandbox_error",  # the sandbox itself failed to start or to report: not the program's fault
)

STDERR_LIMIT = 8 * 1024  # bytes of stderr kept (the tail: tracebacks end there)
LAUNCHER_FILE = os.path.abspath(sandbox_launcher.__file__)


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one run. Defaults fit one test case of a programming task."""

    cpu_seconds: int = 5
    """CPU time (RLIMIT_CPU, rounded up to whole seconds); the kernel SIGKILLs the program when
    it is spent."""
    memory_mb: int = 1024
    """Address space per process (RLIMIT_AS). Python itself needs ~30 MB; 1 GiB stops a
    runaway allocation long before the host notices."""
    file_size_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE); also bounds its stdout and stderr."""
    max_processes: int = 16
    """Tasks allowed (pids cgroup, and RLIMIT_NPROC where the kernel enforces it: not for
    root). Threads and the launcher itself count, so keep room for a few."""
    wall_seconds: float = 10.0
    """Wall-clock deadline, start-up included; the parent SIGKILLs the process group at it."""
    network: bool = False
    """Allow network access (no network namespace, sockets not refused). Off for model code."""
    disk_mb: int = 64
    """Size of the private tmpfs mounted on the working directory (with a mount namespace)."""
    max_output_bytes: int = 1 << 20
    """Bytes of stdout returned; the rest is dropped and `stdout_truncated` is set."""
    python_guard: bool = True
    """Install the audit-hook tripwire. Turn off only to test the kernel-level defences alone."""

    def __post_init__(self) -> None:
        problems = [
            f"{name}={getattr(self, name)!r} must be a positive finite number"
            for name in ("cpu_seconds", "memory_mb", "file_size_mb", "max_processes",
                         "wall_seconds", "disk_mb", "max_output_bytes")
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name)))
        ]
        if problems:
            raise ValueError("invalid SandboxLimits: " + "; ".join(problems))


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one run. `status` is one of STATUSES; `reason` says why in words."""

    status: str
    reason: str
    exit_code: int | None  # None when the program died from a signal or was never reaped
    signal: int | None  # the signal that killed the program, if any
    stdout: str  # first `max_output_bytes` bytes, decoded as UTF-8 (invalid bytes replaced)
    stderr: str  # last STDERR_LIMIT bytes
    stdout_truncated: bool
    wall_seconds: float
    cpu_seconds: float | None  # CPU time of the program, None if the launcher could not say
    defences: dict[str, bool] = field(default_factory=dict)  # what the launcher set up
    session_id: int = 0  # the launcher's pid = process-group and session id, for leak checks
    stray_processes: int = 0  # processes of this run still alive after clean-up (should be 0)
    workdir: str = ""  # the host working directory; removed before this result is returned

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class SandboxError(RuntimeError):
    """The sandbox could not be set up (bad arguments or a broken host), not the code's fault."""


# =========================================================================== parent side


def run_untrusted(
    code: str,
    stdin: str = "",
    limits: SandboxLimits = SandboxLimits(),
    files: dict[str, str] | None = None,
) -> SandboxResult:
    """Run `code` as a Python program in the sandbox, feeding it `stdin`; never raises for
    anything the code does. `files` (relative name → text) are written to its working directory.
    """
    if not sys.platform.startswith("linux"):
        raise SandboxError(f"the sandbox needs Linux (namespaces, rlimits), not {sys.platform}")
    with tempfile.TemporaryDirectory(prefix="rlkit-sandbox-io-") as io_dir:
        with tempfile.TemporaryDirectory(prefix="rlkit-sandbox-") as workdir:
            _write_files(workdir, files or {})
            cgroup = _create_pids_cgroup(limits.max_processes)
            try:
                return _run(code, stdin, limits, io_dir, os.path.realpath(workdir), cgroup)
            finally:
                if cgroup is not None:
                    _empty_cgroup(cgroup)
                    _remove_cgroup(cgroup)


def _run(
    code: str, stdin: str, limits: SandboxLimits, io_dir: str, workdir: str, cgroup: str | None
) -> SandboxResult:
    paths = {name: os.path.join(io_dir, name) for name in ("stdin", "stdout", "stderr", "report")}
    with open(paths["stdin"], "w", encoding="utf-8") as f:
        f.write(stdin)
    config = _launcher_config(code, limits, workdir, cgroup)
    start = time.monotonic()
    pid = _start_launcher(config, paths, io_dir, workdir)
    try:
        timed_out = _wait_until_exit(pid, start + limits.wall_seconds)
    finally:  # also on KeyboardInterrupt: never leave the group running
        _kill_group(pid)  # the leader is alive or a zombie, so the group id is still ours
        if cgroup is not None:
            _empty_cgroup(cgroup)
        status = _reap(pid)
    wall = time.monotonic() - start
    report = _read_report(paths["report"])
    stdout, truncated = _read_head(paths["stdout"], limits.max_output_bytes)
    stderr = _read_tail(paths["stderr"], STDERR_LIMIT)
    verdict = _classify(report, timed_out, status, stderr, limits)
    return SandboxResult(
        status=verdict[0], reason=verdict[1], exit_code=verdict[2], signal=verdict[3],
        stdout=stdout, stderr=stderr, stdout_truncated=truncated, wall_seconds=wall,
        cpu_seconds=report.get("exit", {}).get("cpu_s"), defences=report.get("defences", {}),
        session_id=pid, stray_processes=_stray_processes(pid), workdir=workdir,
    )


def _start_launcher(config: dict, paths: dict[str, str], io_dir: str, workdir: str) -> int:
    """Start the launcher in a new session; its pid (= process-group and session id)."""
    report_fd = os.open(paths["report"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        config_path = os.path.join(io_dir, "config.json")
        with open(config_path, "w", encoding="utf-8") as f:
            json.dump({**config, "report_fd": report_fd}, f)
        command = [sys.executable, "-I", "-S", "-B", "-X", "utf8", LAUNCHER_FILE,
                   config_path]
        with open(paths["stdin"], "rb") as fin, open(paths["stdout"], "wb") as fout, \
                open(paths["stderr"], "wb") as ferr:
            process = subprocess.Popen(
                command, stdin=fin, stdout=fout, stderr=ferr, cwd=workdir, env=_child_env(workdir),
                start_new_session=True, close_fds=True, pass_fds=(report_fd,),
            )
    finally:
        os.close(report_fd)
    # We reap it ourselves (_reap). Left at None, Popen.__del__ would queue the pid for
    # subprocess._cleanup(), which another thread's Popen could use to reap it under us.
    process.returncode = 0
    return process.pid


def _launcher_config(
    code: str, limits: SandboxLimits, workdir: str, cgroup: str | None
) -> dict[str, object]:
    return {
        "code": code,
        "limits": asdict(limits),
        "workdir": workdir,
        "cgroup": cgroup,
        "parent_pid": os.getpid(),
        "mask": _hidden_directories(),
    }


_SYSTEM_DIRECTORIES = frozenset({"/", "/bin", "/dev", "/etc", "/lib", "/lib64", "/opt", "/proc", "/sbin",
                                 "/sys", "/tmp", "/usr", "/var"})


def _hidden_directories() -> list[str]:
    """Home directories, the caller's working directory and the rlkit checkout (when rlkit runs
    from source): the project, with its data, reference answers, checkpoints and runs, which
    model code has no business reading."""
    candidates = {os.path.expanduser("~"), "/root", os.getcwd()}
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.isfile(os.path.join(checkout, "pyproject.toml")):
        candidates.add(checkout)
    real = {os.path.realpath(path) for path in candidates if os.path.isdir(path)} - _SYSTEM_DIRECTORIES
    # One mask per tree: a folder inside another masked one is already hidden (and gone).
    return sorted(path for path in real if not any(path.startswith(other + "/") for other in real))


def _child_env(workdir: str) -> dict[str, str]:
    """A fresh environment: nothing of the caller's (API keys, tokens, proxies) is passed on."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


def _write_files(workdir: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        parts = name.replace("\\", "/").split("/")
        if os.path.isabs(name) or not name or ".." in parts:
            raise SandboxError(f"file name {name!r} must be relative and stay inside the workdir")
        path = os.path.join(workdir, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def _wait_until_exit(pid: int, deadline: float) -> bool:
    """Wait for `pid` to exit without reaping it; True if the deadline came first."""
    pause = 0.001
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return False
        except ChildProcessError:  # reaped behind our back (SIGCHLD set to SIG_IGN)
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.02)


def _reap(pid: int) -> int | None:
    """The launcher's wait status, or None if it was already reaped elsewhere."""
    try:
        return os.wait4(pid, 0)[1]
    except ChildProcessError:
        return None


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _stray_processes(sid: int, settle_s: float = 1.0) -> int:
    """Processes of session `sid` still alive `settle_s` after the group kill; kills them."""
    deadline = time.monotonic() + settle_s
    while True:
        alive = [pid for pid, session, state in _process_table()
                 if session == sid and state not in "ZX"]
        if not alive:
            return 0
        if time.monotonic() > deadline:
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            return len(alive)
        time.sleep(0.01)


def _process_table() -> list[tuple[int, int, str]]:
    """(pid, session id, state) of every process in /proc."""
    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        table.append((int(entry), int(fields[3]), fields[0].decode()))
    return table


def _read_head(path: str, limit: int) -> tuple[str, bool]:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    return data[:limit].decode("utf-8", errors="replace"), len(data) > limit


def _read_tail(path: str, limit: int) -> str:
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - limit))
        return f.read().decode("utf-8", errors="replace")


def _read_report(path: str) -> dict[str, dict]:
    """The launcher's JSON lines: {"defences": ...} before the code ran, {"exit": ...} after."""
    report: dict[str, dict] = {}
    with open(path, "rb") as f:
        for line in f.read(1 << 16).splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                for key in ("defences", "exit", "setup_error"):
                    if key in entry and key not in report:  # first wins: later lines are noise
                        report[key] = entry[key] if isinstance(entry[key], dict) else {
                            "message": str(entry[key])}
    return report


def _classify(
    report: dict[str, dict], timed_out: bool, launcher_status: int | None, stderr: str,
    limits: SandboxLimits,
) -> tuple[str, str, int | None, int | None]:
    """(status, reason, exit code, signal) of the program."""
    if timed_out:
        return "timeout", f"wall-clock limit of {limits.wall_seconds:g} s reached; killed", None, \
            int(signal.SIGKILL)
    if "setup_error" in report:
        return "sandbox_error", "launcher set-up failed: " + report["setup_error"]["message"], \
            None, None
    if "exit" not in report:
        # What the launcher could not report itself (e.g. an interpreter start-up error) is on
        # stderr: its last lines say what went wrong.
        code = None if launcher_status is None else os.waitstatus_to_exitcode(launcher_status)
        tail = " | ".join(stderr.strip().splitlines()[-3:])[-500:]
        return "sandbox_error", f"launcher ended without a report (exit {code})" + (
            f": {tail}" if tail else "; nothing on stderr"), None, None
    exit_code, sig = report["exit"].get("code"), report["exit"].get("signal")
    cpu = report["exit"].get("cpu_s") or 0.0
    if sig is not None:
        # The kernel SIGKILLs at the CPU limit; rusage reads a few percent low (tick sampling).
        if sig in (signal.SIGKILL, signal.SIGXCPU) and cpu >= 0.8 * limits.cpu_seconds:
            return "timeout", f"CPU limit of {limits.cpu_seconds} s reached; killed", None, sig
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return "killed", f"killed by {name}", None, sig
    if exit_code == 0:
        return "ok", "exited 0", 0, None
    if exit_code == EXIT_FORBIDDEN:
        blocked = [line for line in stderr.splitlines() if line.startswith(BLOCKED_PREFIX)]
        what = blocked[-1][len(BLOCKED_PREFIX):] if blocked else "a refused operation"
        return "forbidden", f"blocked: {what}", exit_code, None
    if exit_code == EXIT_MEMORY:
        return "memory", f"MemoryError under the {limits.memory_mb} MB address-space limit", \
            exit_code, None
    last = stderr.strip().splitlines()[-1][:200] if stderr.strip() else ""
    return "error", f"exit code {exit_code}" + (f": {last}" if last else ""), exit_code, None


# --------------------------------------------------------------------------- pids cgroup


def _create_pids_cgroup(max_processes: int) -> str | None:
    """A fresh pids cgroup capped at `max_processes` tasks, or None where we may not make one."""
    for base in _pids_cgroup_bases():
        path = os.path.join(base, f"rlkit-sandbox-{os.getpid()}-{os.urandom(6).hex()}")
        try:
            os.mkdir(path)
        except OSError:
            continue
        try:
            with open(os.path.join(path, "pids.max"), "w") as f:
                f.write(str(max_processes))
            return path
        except OSError:
            _remove_cgroup(path)
    return None


def _pids_cgroup_bases() -> list[str]:
    """Our own cgroup in the pids hierarchy: cgroup v1 'pids' first, then v2."""
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
        with open("/proc/self/cgroup") as f:
            memberships = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return []
    v1 = [m[4] for m in mounts if "-" in m and m[m.index("-") + 1] == "cgroup"
          and "pids" in m[m.index("-") + 3].split(",")]
    v2 = [m[4] for m in mounts if "-" in m and m[m.index("-") + 1] == "cgroup2"]
    bases = []
    for _, controllers, path in (m for m in memberships if len(m) == 3):
        roots = v1 if "pids" in controllers.split(",") else v2 if controllers == "" else []
        bases += [root + path.rstrip("/") for root in roots]
    return [b for b in bases if os.path.isdir(b)]


def _empty_cgroup(path: str, settle_s: float = 2.0) -> None:
    """SIGKILL every task in the cgroup until it is empty (bounded: pids.max caps regrowth)."""
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            return
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)


def _remove_cgroup(path: str) -> None:
    for _ in range(100):  # a just-killed task can keep it busy for a moment
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
