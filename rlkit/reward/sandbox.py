"""Run untrusted (model-generated) Python in a separate, locked-down process.

`run_untrusted(code)` never executes `code` in the calling process. It starts a fresh
interpreter (`python -I -S -B`, no `fork` of the caller) running this file as a *launcher*, in a
new session, with a scrubbed environment and a throw-away working directory. The launcher:

1. joins a fresh pids cgroup when the parent could create one (caps the number of tasks);
2. `unshare`s new mount, pid, IPC and network namespaces (directly when privileged, else inside
   a new user namespace), then forks: the child is pid 1 of the new pid namespace, so when it
   dies the kernel kills every process it left behind;
3. in that child: enters a mount namespace of its own (the launcher keeps an untouched view of
   the filesystem), makes the whole filesystem read-only, hides home directories and the
   caller's working directory (re-exposing the Python installation if it lives there), mounts small private `noexec` tmpfs on /tmp, /var/tmp,
   /dev/shm and the working directory, mounts a private /proc; gives up privilege for good (empty
   capability sets, no_new_privs and, when running as root, a uid of its own); sets rlimits (CPU,
   address space, file size, process count, no core dumps, few fds); installs an audit hook (a
   tripwire that ends the program on fork/exec/subprocess, sockets, ctypes and writes outside
   the working directory); and only then compiles and runs the code;
4. waits for the child and reports its exit status and CPU time to the parent.

The parent SIGKILLs the whole process group at the wall-clock deadline, then kills whatever is
left in the cgroup, and removes both temporary directories. Each step that can be unavailable
(no privileges, no user namespaces, no cgroup) is recorded in `SandboxResult.defences`, written
by the launcher before the untrusted code starts, so callers and tests see what actually held.
See docs/sandbox.md for what is and is not contained.

This module is also the launcher script, so it imports only the standard library, and the
parent-only modules (subprocess, tempfile) lazily: whatever the launcher imports is visible to
the untrusted code.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field

STATUSES: tuple[str, ...] = (
    "ok",  # exited 0
    "error",  # raised or exited non-zero: the program's own fault
    "timeout",  # hit the CPU-time or the wall-clock limit
    "memory",  # ran out of its address-space limit (MemoryError)
    "forbidden",  # tried something the audit hook refuses (fork, socket, write outside, ctypes)
    "killed",  # died from a signal not explained by a limit (e.g. SIGSEGV)
    "sandbox_error",  # the sandbox itself failed to start or to report: not the program's fault
)

# Exit codes the launcher uses to tell the parent why the program stopped. A program can exit
# with them on purpose; that only mislabels its own failure, it never lifts a limit.
EXIT_FORBIDDEN = 113
EXIT_MEMORY = 114
EXIT_SETUP = 115

STDERR_LIMIT = 8 * 1024  # bytes of stderr kept (the tail: tracebacks end there)
_BLOCKED_PREFIX = "rlkit-sandbox: blocked "
_SCRATCH_MB = 1  # size of the tmpfs over /tmp, /var/tmp, /dev/shm (TMPDIR is the workdir)
_MAX_OPEN_FILES = 64


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
    import tempfile  # parent-only: see the module docstring

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
    import subprocess

    report_fd = os.open(paths["report"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        config_path = os.path.join(io_dir, "config.json")
        with open(config_path, "w", encoding="utf-8") as f:
            json.dump({**config, "report_fd": report_fd}, f)
        command = [sys.executable, "-I", "-S", "-B", "-X", "utf8", os.path.abspath(__file__),
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
    """Home directories and the caller's working directory: the project, with its data,
    reference answers, checkpoints and runs, which model code has no business reading."""
    candidates = {os.path.expanduser("~"), "/root", os.getcwd()}
    real = {os.path.realpath(path) for path in candidates if os.path.isdir(path)}
    return sorted(real - _SYSTEM_DIRECTORIES)


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
        blocked = [line for line in stderr.splitlines() if line.startswith(_BLOCKED_PREFIX)]
        what = blocked[-1][len(_BLOCKED_PREFIX):] if blocked else "a refused operation"
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


# =========================================================================== launcher side
# Everything below runs in the sandboxed interpreter, started as `python -I -S -B sandbox.py CFG`.

_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
_CLONE_NEWPID, _CLONE_NEWNET = 0x20000000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000
_MNT_DETACH = 0x2
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442  # same number on every arch
_OPEN_TREE_CLONE, _AT_RECURSIVE, _AT_FDCWD = 0x1, 0x8000, -100
_MOVE_MOUNT_F_EMPTY_PATH, _MOUNT_ATTR_RDONLY = 0x4, 0x1
_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 1, 24, 38
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# Root drops to a uid of its own per run (never a real account's): RLIMIT_NPROC then counts only
# this run's tasks, and the program owns nothing outside its working directory.
_SANDBOX_UID_BASE = 0x7F000000

# Audit events that end the program. Fork/exec/spawn cover every way Python starts a process
# except `_posixsubprocess`, whose import is refused instead; ctypes and gc introspection are the
# usual ways to reach interpreter internals and switch this hook off.
_BLOCKED_EVENTS = frozenset({
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.spawn", "os.posix_spawn",
    "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.call_function",
    "ctypes.cdata", "ctypes.cdata/buffer", "ctypes.PyObj_FromPtr", "ctypes.addressof",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.addaudithook",
})
_BLOCKED_IMPORTS = frozenset({"ctypes", "_ctypes", "_posixsubprocess"})
# Events that change the filesystem: positions of their path arguments.
_PATH_EVENTS = {
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
    "os.link": (0, 1), "os.symlink": (1,), "os.chmod": (0,), "os.chown": (0,),
    "os.truncate": (0,), "os.utime": (0,), "os.chflags": (0,), "os.setxattr": (0,),
    "os.removexattr": (0,), "shutil.rmtree": (0,), "shutil.chown": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _launch(config_path: str) -> None:
    """Launcher entry point (outer process): cgroup, namespaces, fork, wait, report.

    Any failure of the launcher itself is reported as a `setup_error` naming the step and the
    exception (traceback on stderr), so the parent's `reason` says what broke rather than only
    that the launcher exited."""
    step, report_fd = "reading the config", None
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        report_fd = config["report_fd"]
        step = "setting PR_SET_PDEATHSIG"
        libc = _libc()
        _prctl(libc, _PR_SET_PDEATHSIG, signal.SIGKILL)  # the caller died: so do we
        if os.getppid() != config["parent_pid"]:  # it died before the line above
            raise RuntimeError("the caller died before the launcher started")
        config["sandbox_uid"] = _SANDBOX_UID_BASE + os.getpid()  # unique while we live
        step = "joining the pids cgroup"
        defences = {"pids_cgroup": _join_cgroup(config["cgroup"])}
        step = "entering namespaces"
        defences.update(_enter_namespaces(libc, network=config["limits"]["network"]))
        del libc
        step = "forking the sandboxed process"
        child = os.fork()
        if child == 0:
            _inner(config, defences)  # never returns
        step = "waiting for the sandboxed process"
        status, usage = _wait_with_deadline(child, config["limits"]["wall_seconds"] + 1.0)
        outcome = {
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_kb": usage.ru_maxrss,
        }
        step = "writing the report"
        os.write(report_fd, (json.dumps({"exit": outcome}) + "\n").encode())
    except BaseException as exc:
        _launcher_failed(report_fd, step, exc)
    os._exit(0)


def _launcher_failed(report_fd: int | None, step: str, exc: BaseException) -> None:
    """Report a launcher failure (step and exception) to the parent and exit EXIT_SETUP: a
    one-line summary to the report, which is what `reason` shows, and the traceback to stderr.
    Imports nothing: whatever broke the launcher may break an import too."""
    if report_fd is not None:
        message = f"{step}: {type(exc).__name__}: {exc}"
        try:
            os.write(report_fd, (json.dumps({"setup_error": message}) + "\n").encode())
        except OSError:  # the parent then shows the stderr tail instead
            pass
    try:
        sys.__excepthook__(type(exc), exc, exc.__traceback__)  # built in: no import
        sys.stderr.flush()
    except BaseException:  # stderr gone: the report above still says it
        pass
    os._exit(EXIT_SETUP)


def _wait_with_deadline(child: int, seconds: float) -> tuple[int, object]:
    """wait4() for `child`, SIGKILLing it after `seconds`: the parent normally kills first, this
    holds if the parent is stuck (its own death is covered by PDEATHSIG)."""
    deadline = time.monotonic() + seconds
    pause = 0.001
    while True:
        pid, status, usage = os.wait4(child, os.WNOHANG)
        if pid:
            return status, usage
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            return os.wait4(child, 0)[1:]
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def _join_cgroup(path: str | None) -> bool:
    if path is None:
        return False
    try:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        return True
    except OSError:
        return False


def _libc():  # -> ctypes.CDLL; imported here so the untrusted code never finds it loaded
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.syscall.restype = ctypes.c_long
    return libc


def _enter_namespaces(libc, network: bool) -> dict[str, bool]:
    """unshare() mount/pid/IPC(/net) namespaces: directly if privileged, else in a user ns."""
    flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC | (0 if network else _CLONE_NEWNET)
    uid, gid = os.getuid(), os.getgid()
    user_ns = False
    if libc.unshare(flags) != 0:
        if libc.unshare(flags | _CLONE_NEWUSER) != 0:
            return {"user_namespace": False, "network_namespace": False,
                    "mount_namespace": False, "pid_namespace": False}
        user_ns = True
        _write_text("/proc/self/setgroups", "deny")
        _write_text("/proc/self/uid_map", f"{uid} {uid} 1")
        _write_text("/proc/self/gid_map", f"{gid} {gid} 1")
    return {"user_namespace": user_ns, "network_namespace": not network,
            "mount_namespace": True, "pid_namespace": True}


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _inner(config: dict, defences: dict[str, bool]) -> None:
    """The sandboxed process: finish the set-up, then run the code. Never returns."""
    code = 1
    try:
        limits, workdir = config["limits"], config["workdir"]
        try:
            defences.update(_set_up(config, defences))
        except Exception as exc:
            os.write(config["report_fd"], (json.dumps({"setup_error": repr(exc)}) + "\n").encode())
            os._exit(EXIT_SETUP)
        os.write(config["report_fd"], (json.dumps({"defences": defences}) + "\n").encode())
        os.close(config["report_fd"])
        _forget_ctypes()
        if limits["python_guard"]:
            sys.addaudithook(_make_guard(workdir, network=limits["network"]))
        code = _run_code(config.pop("code"))
    finally:
        os._exit(code)


def _set_up(config: dict, defences: dict[str, bool]) -> dict[str, bool]:
    """Filesystem view, privileges and rlimits of the sandboxed process; what took effect."""
    os.umask(0o022)
    limits, workdir = config["limits"], config["workdir"]
    libc = _libc()
    done = (_private_filesystem(libc, config) if defences["mount_namespace"]
            else _no_private_filesystem())
    switch = os.getuid() == 0 and not defences["user_namespace"] and _stdlib_readable_by_others()
    if switch:  # the workdir becomes the unprivileged uid's own
        _chown_tree(workdir, config["sandbox_uid"])
    done.update(_drop_privileges(libc, config["sandbox_uid"] if switch else None))
    _prctl(libc, _PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it
    os.chdir(workdir)
    uid = os.getuid()
    # Without a user namespace or an own uid, RLIMIT_NPROC counts *all* the user's tasks.
    others = 0 if defences["user_namespace"] or switch or uid == 0 else _tasks_of(uid)
    _set_rlimits(limits, others)
    done.update(rlimits=True, nproc_rlimit=uid != 0, audit_hook=bool(limits["python_guard"]),
                fresh_interpreter=True)
    return done


def _private_filesystem(libc, config: dict) -> dict[str, bool]:
    """Read-only host filesystem, hidden homes, private scratch space and /proc.

    All of it happens in a mount namespace of this process's own, not the one it shares with the
    launcher: the launcher keeps running Python while this runs (its first `os.wait4` imports
    the `resource` extension module from the interpreter's lib-dynload), and in a shared
    namespace it would see the home masked between the tmpfs mount and the re-exposure of the
    interpreter, then a read-only root, a foreign /proc: a launcher failing at random."""
    workdir = config["workdir"]
    files = _snapshot(workdir)
    _check(libc.unshare(_CLONE_NEWNS), "unshare a mount namespace of its own")
    _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
    homes_masked = all(_mask_dir(libc, home) for home in config["mask"])
    os.makedirs(workdir, exist_ok=True)  # in case a mask hid it; the mount below needs the path
    readonly = _mount_setattr_readonly(libc)
    scratch = f"size={_SCRATCH_MB}m,mode=1777".encode()
    for path in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(path):
            _check(_tmpfs(libc, path, scratch), f"mount tmpfs on {path}")
    os.makedirs(workdir, exist_ok=True)
    size = f"size={config['limits']['disk_mb']}m,mode=0700".encode()
    _check(_tmpfs(libc, workdir, size), "mount tmpfs on the workdir")
    _restore(workdir, files)
    private_proc = libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                              None) == 0
    if not private_proc:  # e.g. a user namespace under a container's masked /proc
        private_proc = _tmpfs(libc, "/proc", b"size=4k,mode=0555") == 0
    return {"readonly_root": readonly, "homes_masked": homes_masked, "private_tmp": True,
            "private_proc": private_proc, "noexec_workdir": True}


def _no_private_filesystem() -> dict[str, bool]:
    return {"readonly_root": False, "homes_masked": False, "private_tmp": False,
            "private_proc": False, "noexec_workdir": False}


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def _tmpfs(libc, path: str, options: bytes) -> int:
    return libc.mount(b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                      options)


def _mask_dir(libc, path: str) -> bool:
    """Hide `path` under an empty tmpfs; re-expose the Python installation if it lives inside."""
    prefix = os.path.realpath(sys.base_prefix)
    inside = prefix == path or prefix.startswith(path.rstrip("/") + "/")
    tree = -1
    if inside:
        tree = _syscall(libc, _SYS_OPEN_TREE, _AT_FDCWD, prefix.encode(),
                        _OPEN_TREE_CLONE | _AT_RECURSIVE | os.O_CLOEXEC)
        if tree < 0:
            return False  # cannot keep Python reachable: leave this home visible
    if _tmpfs(libc, path, b"size=64k,mode=0755") != 0:
        return False
    if inside:
        os.makedirs(prefix, exist_ok=True)
        moved = _syscall(libc, _SYS_MOVE_MOUNT, tree, b"", _AT_FDCWD, prefix.encode(),
                         _MOVE_MOUNT_F_EMPTY_PATH)
        os.close(tree)
        if moved != 0:
            libc.umount2(path.encode(), _MNT_DETACH)
            return False
    return True


def _mount_setattr_readonly(libc) -> bool:
    """Make every mount read-only in one call (mount_setattr, Linux 5.12+)."""
    import ctypes

    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

    attr = MountAttr(_MOUNT_ATTR_RDONLY, 0, 0, 0)
    return _syscall(libc, _SYS_MOUNT_SETATTR, _AT_FDCWD, b"/", _AT_RECURSIVE,
                    ctypes.byref(attr), ctypes.sizeof(attr)) == 0


def _syscall(libc, number: int, *args: object) -> int:
    """syscall(2) with integer arguments widened to a C long (it is variadic)."""
    import ctypes

    return libc.syscall(*(ctypes.c_long(a) if isinstance(a, int) else a for a in (number, *args)))


def _snapshot(workdir: str) -> dict[str, bytes]:
    """The input files, read before the private tmpfs hides the host directory."""
    files = {}
    for root, _, names in os.walk(workdir):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, workdir)] = f.read()
    return files


def _restore(workdir: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = os.path.join(workdir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def _stdlib_readable_by_others() -> bool:
    """Whether an unprivileged uid could still import the standard library (after masking)."""
    import stat

    stdlib = os.path.dirname(os.path.realpath(os.__file__))
    for target in (stdlib, os.path.join(stdlib, "lib-dynload")):
        if not os.path.isdir(target):
            continue
        parts = target.split("/")
        dirs = ["/".join(parts[:i]) or "/" for i in range(1, len(parts) + 1)]
        if not all(os.stat(d).st_mode & stat.S_IXOTH for d in dirs):
            return False
        if not os.stat(target).st_mode & stat.S_IROTH:
            return False
    return True


def _chown_tree(path: str, uid: int) -> None:
    os.chown(path, uid, uid)
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


def _drop_privileges(libc, uid: int | None) -> dict[str, bool]:
    """No way back to privilege: empty bounding set, no_new_privs, `uid` (when given), and no
    capabilities, so a program that escapes the audit hook cannot undo the mounts or rlimits."""
    import ctypes

    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
    except (OSError, ValueError):
        last_cap = 63
    for cap in range(last_cap + 1):
        _prctl(libc, _PR_CAPBSET_DROP, cap)  # needs CAP_SETPCAP; harmless when it fails
    _prctl(libc, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    no_new_privs = _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1) == 0
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    libc.capset(ctypes.byref(Header(_LINUX_CAPABILITY_VERSION_3, 0)), (Data * 2)())
    return {"no_new_privs": no_new_privs, "unprivileged_uid": os.getuid() != 0,
            "capabilities_dropped": _no_capabilities()}


def _prctl(libc, option: int, arg: int = 0) -> int:
    import ctypes

    return libc.prctl(ctypes.c_int(option), *(ctypes.c_ulong(a) for a in (arg, 0, 0, 0)))


def _no_capabilities() -> bool:
    """Read back from the kernel: effective, permitted and bounding sets all empty."""
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    return all(int(status.get(key, "1").strip(), 16) == 0 for key in ("CapEff", "CapPrm", "CapBnd"))


def _set_rlimits(limits: dict, other_tasks: int) -> None:
    """Lower the rlimits; `other_tasks` of the same user already count against RLIMIT_NPROC."""
    import resource

    mb = 1 << 20
    cpu = max(1, math.ceil(limits["cpu_seconds"]))  # whole seconds, at least one
    _lower(resource, resource.RLIMIT_CPU, cpu)  # soft = hard: SIGKILL, not a catchable SIGXCPU
    _lower(resource, resource.RLIMIT_AS, int(limits["memory_mb"]) * mb)
    _lower(resource, resource.RLIMIT_FSIZE, int(limits["file_size_mb"]) * mb)
    _lower(resource, resource.RLIMIT_CORE, 0)
    _lower(resource, resource.RLIMIT_NOFILE, _MAX_OPEN_FILES)
    _lower(resource, resource.RLIMIT_NPROC, other_tasks + int(limits["max_processes"]))


def _lower(resource, which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def _tasks_of(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except (OSError, ValueError):
            continue
        if int(status.get("Uid", "-1 ").split()[0]) == uid:
            count += int(status.get("Threads", "1"))
    return count


def _forget_ctypes() -> None:
    """Drop ctypes and the launcher's libc handles, so the code cannot reuse them."""
    import gc

    for name in [n for n in sys.modules if n == "ctypes" or n.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    gc.collect()  # the CDLL objects sit in reference cycles


def _make_guard(workdir: str, network: bool):
    """The audit hook: ends the program (exit EXIT_FORBIDDEN) on the first refused event."""
    root = os.path.realpath(workdir)
    allowed_imports = tuple(os.path.realpath(p) + "/" for p in {sys.base_prefix, sys.prefix})

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return True  # an fd it already holds
        real = os.path.realpath(os.fsdecode(path))
        return real == root or real.startswith(root + "/") or real == "/dev/null"

    def other_process(path: object) -> bool:
        parts = os.path.realpath(os.fsdecode(path)).split("/")
        return len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit() \
            and int(parts[2]) != os.getpid()

    def guard(event: str, args: tuple) -> None:
        try:
            check(event, args)
        except Exception as exc:  # arguments the checks cannot read: refuse rather than guess
            _deny(f"{event} ({type(exc).__name__} while checking it)")

    def check(event: str, args: tuple) -> None:
        if event in _BLOCKED_EVENTS:
            _deny(event)
        elif event == "import":
            if args[0] in _BLOCKED_IMPORTS:
                _deny(f"import {args[0]}")
            if args[1] and not os.path.realpath(args[1]).startswith(allowed_imports):
                _deny(f"import of native code {args[1]}")
        elif event.startswith("socket.") and not network:
            _deny(event)
        elif event == "open":
            path, flags = args[0], args[2]
            writes = isinstance(flags, int) and flags & _WRITE_FLAGS
            if not inside(path) and (writes or os.path.isdir(os.fsdecode(path))):
                _deny(f"open {path!r} for writing" if writes else f"open directory {path!r}")
            if not isinstance(path, int) and other_process(path):
                _deny(f"open {path!r} (another process's /proc entry)")
        elif event in _PATH_EVENTS:
            for index in _PATH_EVENTS[event]:
                if index < len(args) and not inside(args[index]):
                    _deny(f"{event} {args[index]!r}")

    return guard


def _deny(what: str) -> None:
    try:
        os.write(2, f"\n{_BLOCKED_PREFIX}{what}"[:300].encode(errors="replace") + b"\n")
    except OSError:  # the program closed its stderr; the exit code still says it
        pass
    os._exit(EXIT_FORBIDDEN)


def _run_code(code: str) -> int:
    """Compile and run `code` as `__main__`; the exit code the program ended with."""
    import types

    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    try:
        exec(compile(code, "solution.py", "exec"), main.__dict__)
        status = 0
    except MemoryError:
        sys.stderr.write("MemoryError\n")
        status = EXIT_MEMORY
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:
        exc = exc.with_traceback(exc.__traceback__.tb_next)  # hide the launcher's own frame
        sys.excepthook(type(exc), exc, exc.__traceback__)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # e.g. the file-size limit hit while flushing
            status = status or 1
    return status


def _exit_status(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    sys.stderr.write(f"{exc.code}\n")
    return 1


if __name__ == "__main__":
    _launch(sys.argv[1])
