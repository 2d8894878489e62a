"""What every benchmark script ends with: a printed table and a JSON file stating the machine."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def print_table(header: str, lines: list[str]) -> None:
    """The header, a rule as wide as it, then one formatted line per result."""
    print(header)
    print("-" * len(header))
    for line in lines:
        print(line)


def write_results(out: str | Path, **payload: Any) -> None:
    """`payload` as JSON at `out` (folders created), with the machine it was measured on."""
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine, **payload}, indent=2))
    print(f"wrote {out}")


def wait_for_result(process: Any, queue: Any, timeout_s: float) -> Any:
    """The one result a measuring child process puts on `queue`; fails at once if it dies first."""
    import queue as queues
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = queue.get(timeout=1.0)
        except queues.Empty:
            if not process.is_alive():
                raise RuntimeError(f"the measuring process died (exit code {process.exitcode}); its error is above") from None
            continue
        process.join()
        return result
    process.kill()
    raise TimeoutError(f"no result within {timeout_s:g} s")
