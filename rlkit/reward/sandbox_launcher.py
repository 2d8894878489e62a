"""The sandbox launcher: the script `rlkit.reward.sandbox.run_untrusted` starts as
`python -I -S -B sandbox_launcher.py CONFIG` to lock itself down and then run untrusted code.

It imports only the standard library, and nothing of rlkit: whatever the launcher imports is
visible to the untrusted code. Steps and what each defends against: rlkit/reward/sandbox.py's
docstring and docs/sandbox.md.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time

# Exit codes the launcher uses to tell the parent why the program stopped. A program can exit
# with them on purpose; that only mislabels its own failure, it never lifts a limit.
EXIT_FORBIDDEN = 113
EXIT_MEMORY = 114
EXIT_SETUP = 115

BLOCKED_PREFIX = "rlkit-sandbox: blocked "  # starts the stderr line naming a refused operation
_SCRATCH_MB = 1  # size of the tmpfs over /tmp, /var/tmp, /dev/shm (TMPDIR is the workdir)
_MAX_OPEN_FILES = 64

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
        os.write(2, f"\n{BLOCKED_PREFIX}{what}"[:300].encode(errors="replace") + b"\n")
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
