"""The session guard in tests/conftest.py sees every way a test could write into a checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import changed_paths, checkout_state


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_new_changed_and_ignored_files_are_all_seen(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text("runs/\n")
    (repo / "tracked.txt").write_text("kept\n")
    (repo / "runs").mkdir()
    (repo / "runs" / "old.json").write_text("{}")
    git(repo, "add", ".gitignore", "tracked.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    (repo / "__pycache__").mkdir()
    start = checkout_state(repo)
    assert changed_paths(start, checkout_state(repo)) == []

    (repo / "__pycache__" / "x.pyc").write_bytes(b"")  # Python's own caches are not a test's doing
    assert changed_paths(start, checkout_state(repo)) == []
    (repo / ".victim.txt").write_text("original")  # a stray file at the root
    assert changed_paths(start, checkout_state(repo)) == ["?? .victim.txt"]
    (repo / ".victim.txt").unlink()
    (repo / "runs" / "new.json").write_text("{}")  # into a folder git ignores, which already existed
    assert changed_paths(start, checkout_state(repo)) == ["!! runs/"]
    (repo / "runs" / "new.json").unlink()
    (repo / "tracked.txt").write_text("changed\n")
    assert changed_paths(start, checkout_state(repo)) == [" M tracked.txt"]
