"""The code sandbox against hostile programs: real processes, no mocks.

Every hostile program must be contained, reported with the right status, and leave the calling
process alive and responsive with no stray processes. Tests of a kernel-level defence run with the
audit hook off (`python_guard=False`) and only where `defences` says that layer is active, so
they check what actually held on this machine rather than assume it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from collections.abc import Iterator

import pytest

from rewards import code_tests
from rlkit.reward import sandbox, sandbox_launcher
from rlkit.reward.contract import judge, signature_problems
from rlkit.reward.sandbox import SandboxError, SandboxLimits, SandboxResult, run_untrusted

FAST = SandboxLimits(cpu_seconds=2, wall_seconds=4)
KERNEL_ONLY = SandboxLimits(cpu_seconds=2, wall_seconds=4, python_guard=False)
SANDBOX_FILE = sandbox.LAUNCHER_FILE


def run(code: str, limits: SandboxLimits = FAST, **kwargs: object) -> SandboxResult:
    """run_untrusted plus the checks every run must pass: nothing left behind."""
    before = _sandbox_processes()
    result = run_untrusted(textwrap.dedent(code), limits=limits, **kwargs)
    assert result.status in sandbox.STATUSES
    assert result.stray_processes == 0, result
    assert not _session_members(result.session_id), "processes of the run survived"
    assert not (_sandbox_processes() - before), "a launcher process survived"
    assert not os.path.exists(result.workdir), "the working directory was not removed"
    return result


def _session_members(sid: int) -> list[int]:
    return [pid for pid, session, state in sandbox._process_table()
            if session == sid and state not in "ZX"]


def _sandbox_processes() -> set[int]:
    """Live processes running this checkout's launcher (setsid'd escapees included)."""
    found = set()
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if SANDBOX_FILE.encode() in cmdline and state not in (b"Z", b"X"):
            found.add(int(entry))
    return found


def _require(result: SandboxResult, *defences: str) -> None:
    missing = [name for name in defences if not result.defences.get(name)]
    if missing:
        pytest.skip(f"defence(s) {missing} not available on this machine: {result.defences}")


@pytest.fixture(scope="module")
def defences() -> SandboxResult:
    """One benign run, to learn which defences this machine provides."""
    return run("print('probe')")


# ----------------------------------------------------------------------------- normal programs


def test_normal_program_reads_stdin_and_files() -> None:
    result = run(
        """
        import sys
        numbers = list(map(int, sys.stdin.read().split()))
        print(sum(numbers), open("data.txt").read().strip())
        """,
        stdin="1 2 3\n",
        files={"data.txt": "hello\n"},
    )
    assert (result.status, result.exit_code, result.stdout) == ("ok", 0, "6 hello\n")
    assert result.defences["fresh_interpreter"] and result.defences["rlimits"]


def test_program_error_is_reported_with_its_traceback() -> None:
    result = run("print('before')\n1 / 0\n")
    assert result.status == "error" and result.exit_code == 1
    assert result.stdout == "before\n"
    assert "ZeroDivisionError" in result.reason and "solution.py" in result.stderr
    assert SANDBOX_FILE not in result.stderr  # the launcher's frame is not shown


def test_large_output_is_truncated_not_buffered_whole() -> None:
    limits = SandboxLimits(cpu_seconds=2, wall_seconds=4, max_output_bytes=1000)
    result = run("print('x' * 100_000)", limits=limits)
    assert result.status == "ok" and result.stdout_truncated and len(result.stdout) == 1000


def test_bad_arguments_are_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="cpu_seconds"):
        SandboxLimits(cpu_seconds=0)
    with pytest.raises(ValueError, match="wall_seconds"):
        SandboxLimits(wall_seconds=float("inf"))
    with pytest.raises(SandboxError, match="relative"):
        run_untrusted("print(1)", files={"../escape.txt": "x"})


# ----------------------------------------------------------------------------- time limits


def test_infinite_loop_hits_cpu_limit_and_caller_stays_responsive() -> None:
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=20)  # the CPU limit must come first
    results: list[SandboxResult] = []
    worker = threading.Thread(target=lambda: results.append(run("while True: pass", limits)))
    worker.start()
    worst = 0.0
    while worker.is_alive():  # the caller's own loop keeps its pace while the sandbox spins
        start = time.monotonic()
        time.sleep(0.01)
        worst = max(worst, time.monotonic() - start)
    worker.join()
    (result,) = results
    assert result.status == "timeout" and "CPU" in result.reason, result
    assert result.cpu_seconds is not None and result.cpu_seconds >= 0.8
    assert worst < 1.0, f"caller stalled for {worst:.2f} s"


def test_sleeping_program_hits_wall_clock() -> None:
    result = run("import time\ntime.sleep(60)", SandboxLimits(wall_seconds=1.0))
    assert result.status == "timeout" and "wall-clock" in result.reason
    assert 1.0 <= result.wall_seconds < 3.0


# ----------------------------------------------------------------------------- processes

FORK_BOMBS = {
    "os.fork": "import os\nwhile True:\n    os.fork()\n",
    "subprocess": "import subprocess\nwhile True:\n    subprocess.Popen(['sleep', '60'])\n",
    "multiprocessing": "import multiprocessing as mp, time\n"
                       "while True:\n    mp.Process(target=time.sleep, args=(60,)).start()\n",
    "os.system": "import os\nwhile True:\n    os.system('sleep 60 &')\n",
}


@pytest.mark.parametrize("name", sorted(FORK_BOMBS))
def test_fork_bomb_is_blocked(name: str) -> None:
    result = run(FORK_BOMBS[name])
    assert result.status == "forbidden", result
    assert result.exit_code == sandbox.EXIT_FORBIDDEN
    assert result.wall_seconds < 3.0


def test_fork_bomb_without_audit_hook_is_capped_and_cleaned_up(defences: SandboxResult) -> None:
    """The kernel layers alone: a task cap, then nothing survives, even after setsid()."""
    _require(defences, "pids_cgroup")
    limits = SandboxLimits(cpu_seconds=2, wall_seconds=4, max_processes=8, python_guard=False)
    result = run(
        """
        import os, time
        forked = 0
        for _ in range(200):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:  # leave the process group and linger
                os.setsid()
                time.sleep(60)
                os._exit(0)
            forked += 1
        print(forked)
        """,
        limits,
    )
    assert result.status == "ok", result
    assert 0 < int(result.stdout) < limits.max_processes  # the launcher counts too


def test_spinning_fork_bomb_without_audit_hook_ends_at_the_deadline(
    defences: SandboxResult,
) -> None:
    _require(defences, "pids_cgroup")
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=2, max_processes=8, python_guard=False)
    result = run(
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
        limits,
    )
    assert result.status == "timeout", result


CALLER = """
from rlkit.reward.sandbox import SandboxLimits, run_untrusted
run_untrusted("import time\\ntime.sleep(60)", limits=SandboxLimits(wall_seconds=60))
"""


def test_sandbox_dies_with_its_caller(tmp_path: Path) -> None:
    """A caller killed mid-run (a reward worker hitting its own timeout) leaks no sandbox."""
    before = _sandbox_processes()
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER], cwd=Path(__file__).parents[2],
        env={**os.environ, "TMPDIR": str(tmp_path)},  # its temporary directories land here
    )
    try:
        deadline = time.monotonic() + 20
        while len(_sandbox_processes() - before) < 2:  # launcher and program both up
            assert caller.poll() is None and time.monotonic() < deadline, "sandbox never started"
            time.sleep(0.05)
    finally:
        caller.kill()
        caller.wait()
    deadline = time.monotonic() + 5
    while _sandbox_processes() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (_sandbox_processes() - before), "sandbox outlived its caller"
    for base in sandbox._pids_cgroup_bases():  # the dead caller could not remove its cgroup
        for leftover in Path(base).glob(f"rlkit-sandbox-{caller.pid}-*"):
            # A dying task loses its cmdline (so _sandbox_processes stops seeing it) a moment
            # before it leaves its cgroup, which is busy (EBUSY on rmdir) until then.
            deadline = time.monotonic() + 5
            while (leftover / "cgroup.procs").read_text().split() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not (leftover / "cgroup.procs").read_text().split(), "tasks stayed in the cgroup"
            leftover.rmdir()


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize("limits", [FAST, KERNEL_ONLY], ids=["guard", "kernel-only"])
def test_memory_hog_gets_memory_status(limits: SandboxLimits) -> None:
    result = run("data = bytearray(10 * 1024**3)\nprint(len(data))", limits)
    assert result.status == "memory", result
    assert result.stdout == ""


# ----------------------------------------------------------------------------- network


@pytest.fixture
def listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.3)
    yield server
    server.close()


def _assert_no_connection(server: socket.socket) -> None:
    with pytest.raises(socket.timeout):
        connection, _ = server.accept()
        connection.close()


CONNECT = """
import socket
try:
    socket.create_connection(({host!r}, {port}), timeout=2).close()
    print("CONNECTED")
except OSError as exc:
    print("refused:", exc)
"""


def test_connect_to_local_listener_is_forbidden(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    result = run(CONNECT.format(host="127.0.0.1", port=port))
    assert result.status == "forbidden" and "socket" in result.reason
    _assert_no_connection(listener)


def test_connect_to_local_listener_fails_in_network_namespace(
    listener: socket.socket, defences: SandboxResult
) -> None:
    _require(defences, "network_namespace")
    port = listener.getsockname()[1]
    result = run(CONNECT.format(host="127.0.0.1", port=port), KERNEL_ONLY)
    assert result.status == "ok" and result.stdout.startswith("refused:"), result
    _assert_no_connection(listener)


@pytest.mark.parametrize("limits", [FAST, KERNEL_ONLY], ids=["guard", "kernel-only"])
def test_connect_to_external_address_fails(limits: SandboxLimits, defences: SandboxResult) -> None:
    if not limits.python_guard:
        _require(defences, "network_namespace")
    result = run(CONNECT.format(host="1.1.1.1", port=53), limits)
    assert "CONNECTED" not in result.stdout
    if limits.python_guard:
        assert result.status == "forbidden", result
    else:
        assert result.status == "ok" and "unreachable" in result.stdout.lower(), result


def test_network_can_be_allowed_explicitly() -> None:
    result = run("import socket\nsocket.socket().close()\nprint('made')",
                 SandboxLimits(network=True))
    assert result.status == "ok" and result.stdout == "made\n"
    assert result.defences["network_namespace"] is False


# ----------------------------------------------------------------------------- filesystem

WRITE = """
for mode in ("w", "a"):
    try:
        with open({path!r}, mode) as f:
            f.write("pwned")
        print("WROTE", mode)
    except OSError as exc:
        print("refused:", exc)
"""


@pytest.mark.parametrize("limits", [FAST, KERNEL_ONLY], ids=["guard", "kernel-only"])
def test_write_to_callers_tmp_file_is_refused(
    tmp_path: Path, limits: SandboxLimits, defences: SandboxResult
) -> None:
    if not limits.python_guard:
        _require(defences, "mount_namespace", "private_tmp")
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    result = run(WRITE.format(path=str(victim)), limits)
    assert victim.read_text() == "original"
    assert "WROTE" not in result.stdout
    assert result.status == ("forbidden" if limits.python_guard else "ok"), result


@pytest.mark.parametrize("limits", [FAST, KERNEL_ONLY], ids=["guard", "kernel-only"])
def test_write_to_home_is_refused(limits: SandboxLimits, defences: SandboxResult) -> None:
    if not limits.python_guard:
        _require(defences, "readonly_root")
    target = Path.home() / f"rlkit-sandbox-probe-{uuid.uuid4().hex}"
    try:
        result = run(WRITE.format(path=str(target)), limits)
        assert not target.exists()
        assert "WROTE" not in result.stdout
        assert result.status == ("forbidden" if limits.python_guard else "ok"), result
    finally:
        target.unlink(missing_ok=True)


def test_writes_inside_the_working_directory_are_allowed_and_thrown_away() -> None:
    result = run("open('out.txt', 'w').write('kept?')\nprint(open('out.txt').read())")
    assert result.status == "ok" and result.stdout == "kept?\n"


# ----------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("limits", [FAST, KERNEL_ONLY], ids=["guard", "kernel-only"])
def test_parent_secrets_are_not_visible(
    monkeypatch: pytest.MonkeyPatch, limits: SandboxLimits, defences: SandboxResult
) -> None:
    if not limits.python_guard:
        _require(defences, "private_proc")
    sentinel = f"SENTINEL-{uuid.uuid4().hex}"
    monkeypatch.setenv("WANDB_API_KEY", sentinel)
    monkeypatch.setenv("HF_TOKEN", sentinel)
    result = run(
        f"""
        import os
        print(sorted(os.environ.items()))
        try:
            print(open("/proc/{os.getpid()}/environ", "rb").read())
        except OSError as exc:
            print("refused:", exc)
        """,
        limits,
    )
    assert sentinel not in result.stdout + result.stderr
    assert "WANDB_API_KEY" not in result.stdout
    assert result.status in ("ok", "forbidden"), result


# ----------------------------------------------------------------------------- honest defences


@pytest.fixture
def project_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory inside the checkout (not under /tmp, whose tmpfs would hide it anyway)."""
    project = Path(SANDBOX_FILE).parents[2] / f".sandbox-project-{uuid.uuid4().hex}"
    project.mkdir()
    monkeypatch.chdir(project)
    try:
        yield project
    finally:
        shutil.rmtree(project)


def test_reported_defences_match_what_the_program_sees(defences: SandboxResult, project_dir: Path) -> None:
    """Each defence the launcher claims is observable from inside the sandbox."""
    project_file = project_dir / "answers.jsonl"  # the caller's working directory is masked too
    project_file.write_text("{}\n")
    result = run(
        """
        import json, os
        seen = {"pid": os.getpid(), "uid": os.getuid()}
        with open("/proc/net/dev") as f:
            seen["interfaces"] = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
        with open("/proc/self/status") as f:
            status = dict(line.split(":", 1) for line in f)
        seen["cap_eff"] = int(status["CapEff"].strip(), 16)
        try:
            open("/etc/rlkit-sandbox-probe", "w")
            seen["etc_writable"] = True
        except OSError:
            seen["etc_writable"] = False
        seen["home"] = os.listdir("/root") if os.path.isdir("/root") else []
        seen["project"] = os.path.exists(PROJECT_FILE)
        print(json.dumps(seen))
        """.replace("PROJECT_FILE", repr(str(project_file))),
        KERNEL_ONLY,
    )
    assert result.status == "ok", result
    seen = json.loads(result.stdout)
    claimed = result.defences
    assert claimed["audit_hook"] is False and defences.defences["audit_hook"] is True
    assert {**claimed, "audit_hook": True} == defences.defences  # stable from run to run
    if claimed["network_namespace"]:
        assert seen["interfaces"] == ["lo"]
    if claimed["pid_namespace"]:
        assert seen["pid"] == 1
    if claimed["unprivileged_uid"]:
        assert seen["uid"] != 0
    if claimed["capabilities_dropped"]:
        assert seen["cap_eff"] == 0
    if claimed["readonly_root"]:
        assert seen["etc_writable"] is False
    if claimed["homes_masked"] and os.path.realpath(Path.home()) == "/root":
        assert set(seen["home"]) <= {".pyenv"}  # at most the re-exposed interpreter
    if claimed["homes_masked"]:
        assert seen["project"] is False
    assert project_file.exists()  # the mask hid it from the program only


def test_launcher_failure_says_what_failed(tmp_path: Path) -> None:
    """A broken launcher names the failed step and exception, in the report or from stderr."""
    report = tmp_path / "report"
    report_fd = os.open(report, os.O_WRONLY | os.O_CREAT, 0o600)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"report_fd": report_fd, "parent_pid": os.getpid(),
                                  "cgroup": None, "limits": {}}))  # no "network": KeyError
    try:
        launcher = subprocess.run([sys.executable, "-I", "-S", "-B", SANDBOX_FILE, str(config)],
                                  pass_fds=(report_fd,), capture_output=True, timeout=30)
    finally:
        os.close(report_fd)
    assert launcher.returncode == sandbox_launcher.EXIT_SETUP
    assert b"KeyError" in launcher.stderr  # the traceback
    status, reason, _, _ = sandbox._classify(
        sandbox._read_report(str(report)), False, 0, "", FAST)
    assert status == "sandbox_error"
    assert reason == "launcher set-up failed: entering namespaces: KeyError: 'network'"
    # No report at all (e.g. the interpreter could not start): the stderr tail is the reason.
    status, reason, _, _ = sandbox._classify(
        {}, False, 1 << 8, "Traceback (most recent call last):\nImportError: boom\n", FAST)
    assert status == "sandbox_error" and reason.endswith("ImportError: boom"), reason
    assert "(exit 1)" in reason


# ----------------------------------------------------------------------------- the reward

SOLUTION = "```python\nimport sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n```"
TESTS = [{"stdin": "1 2\n", "stdout": "3\n"}, {"stdin": "10 -4\n", "stdout": "6"},
         {"stdin": "0 0", "stdout": "0\n\n"}]


def test_code_tests_reward_follows_the_contract() -> None:
    assert signature_problems(code_tests.score) == []


def test_code_tests_reward_scores_a_correct_solution() -> None:
    response = "Here is my solution:\n" + SOLUTION + "\nIt adds the numbers."
    value = code_tests.score(response=response, ground_truth=None, extra={"tests": TESTS})
    assert value == {"score": 1.0, "passed": 3.0, "total": 3.0, "runtime_errors": 0.0,
                     "sandbox_errors": 0.0, "skipped": 0.0}
    assert judge(value).status == "ok"


def test_code_tests_reward_scores_an_incorrect_solution() -> None:
    wrong = SOLUTION.replace("a + b", "a * b")  # right only for 0 0
    value = code_tests.score(response=wrong, ground_truth=json.dumps(TESTS), extra={})
    assert value is not None and value["score"] == pytest.approx(1 / 3)
    assert (value["passed"], value["runtime_errors"]) == (1.0, 0.0)


def test_code_tests_reward_counts_crashes_and_sandbox_stops() -> None:
    crashing = code_tests.score(response="raise SystemExit(3)", extra={"tests": TESTS})
    assert crashing is not None and (crashing["score"], crashing["runtime_errors"]) == (0.0, 3.0)
    hostile = code_tests.score(response="import os\nos.fork()", extra={"tests": TESTS})
    assert hostile is not None and (hostile["score"], hostile["sandbox_errors"]) == (0.0, 3.0)
    looping = code_tests.score(
        response="while True: pass", extra={"tests": TESTS, "time_limit_s": 1}
    )
    assert looping is not None and looping["score"] == 0.0
    assert (looping["sandbox_errors"], looping["skipped"]) == (1.0, 2.0)


def test_code_tests_reward_without_tests_does_not_apply() -> None:
    assert code_tests.score(response=SOLUTION, ground_truth="42", extra={}) is None
    with pytest.raises(ValueError, match="stdin"):
        code_tests.score(response=SOLUTION, extra={"tests": [{"input": "1 2"}]})


def test_code_extraction_prefers_the_last_python_block() -> None:
    response = "```\nnot this\n```\n```python\nfirst\n```\n```py\nsecond\n```"
    assert code_tests.extract_code(response) == "second\n"
    assert code_tests.extract_code("```\nonly\n```") == "only\n"
    assert code_tests.extract_code("print(1)") == "print(1)"


HOSTILE_PROGRAMS = {
    "infinite loop": "while True:\n    pass",
    "fork bomb": "import os\nwhile True:\n    os.fork()",
    "memory hog": "data = bytearray(10 * 1024**3)",
    "network": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)",
    "write outside": "open(PLANTED, 'w').write('pwned')",
    "kill the caller": "import os\nos.kill(os.getppid(), 9)",
}


def test_hostile_programs_through_the_scoring_pool_score_zero_and_the_pool_lives(
    defences: SandboxResult, project_dir: Path
) -> None:
    """The code reward as the trainer runs it (in the killable scoring pool): every hostile
    program is contained and scored 0, no worker has to be replaced, and a correct solution
    scored afterwards still gets 1."""
    from rlkit.reward.contract import RewardRequest
    from rlkit.reward.isolation import ScoringPool
    from rlkit.reward.loader import RewardFnSpec
    from rlkit.types import RewardStatus

    _require(defences, *code_tests.REQUIRED_DEFENCES)
    planted = project_dir / "planted.txt"
    extra = {"tests": TESTS[:1], "time_limit_s": 1}
    programs = {name: code.replace("PLANTED", repr(str(planted))) for name, code in HOSTILE_PROGRAMS.items()}
    requests = [RewardRequest(prompt="", response=f"```python\n{code}\n```", extra=extra) for code in programs.values()]
    spec = RewardFnSpec(path=str(Path(code_tests.__file__)), name="score")
    with ScoringPool(spec, num_processes=1, timeout_s=30.0) as pool:
        rewards = pool.score(requests + [RewardRequest(prompt="", response=SOLUTION, extra=extra)])
        restarts = pool.restarts
    outcomes = {name: (r.status, r.score, r.components.get("sandbox_errors"), r.components.get("runtime_errors"))
                for name, r in zip(list(programs) + ["correct"], rewards)}
    for name in programs:
        status, score, stopped, crashed = outcomes[name]
        assert status == RewardStatus.OK and score == 0.0, (name, outcomes[name], rewards)
        assert stopped + crashed == 1.0, (name, outcomes[name])  # contained: stopped by the sandbox or failed
    assert outcomes["correct"][:2] == (RewardStatus.OK, 1.0)
    assert restarts == 0 and not planted.exists()


def test_hidden_directories_are_homes_the_working_directory_and_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    hidden = sandbox._hidden_directories()
    assert str(tmp_path.resolve()) in hidden and os.path.realpath(Path.home()) in hidden
    assert str(Path(SANDBOX_FILE).parents[2]) in hidden  # running from a source checkout
    monkeypatch.chdir(Path(SANDBOX_FILE).parent)
    assert str(Path(SANDBOX_FILE).parent) not in sandbox._hidden_directories()  # inside the checkout: one mask
    monkeypatch.chdir("/usr")
    assert "/usr" not in sandbox._hidden_directories()  # a system directory is never masked


def test_code_reward_refuses_before_running_model_code_where_namespaces_are_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    weak = {name: False for name in code_tests.REQUIRED_DEFENCES}
    monkeypatch.setattr(code_tests, "probe_defences", lambda: weak)  # a host without namespaces
    ran = []
    monkeypatch.setattr(code_tests, "run_untrusted", lambda *args, **kwargs: ran.append(args))
    monkeypatch.delenv(code_tests.ALLOW_WEAK_ENV, raising=False)
    with pytest.raises(RuntimeError, match=code_tests.ALLOW_WEAK_ENV):
        code_tests.score(response=SOLUTION, extra={"tests": TESTS})
    assert ran == []  # the program never started


def test_code_reward_probes_the_sandbox_once(defences: SandboxResult) -> None:
    _require(defences, *code_tests.REQUIRED_DEFENCES)
    code_tests.probe_defences.cache_clear()
    assert code_tests.score(response=SOLUTION, extra={"tests": TESTS})["score"] == 1.0
    assert code_tests.probe_defences.cache_info().misses == 1
    assert code_tests.score(response=SOLUTION, extra={"tests": TESTS})["score"] == 1.0
    assert code_tests.probe_defences.cache_info().misses == 1
