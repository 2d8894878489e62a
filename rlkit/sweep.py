"""`rlkit sweep`: the same recipe once per method (and seed), named and grouped for comparison.

Each run is the recipe plus the method's block from `recipes/math_<method>.yaml` (one place
for a method's settings), a seed, and names that line the runs up in W&B: project from the
recipe, group = the sweep, tags = [method, seed<N>, sweep], run name `<sweep>-<method>-s<N>`.
Seed N sets every seed a run has (`seed_overrides`).
Runs go to `<out>/<method>/seed<N>/`, and `<out>/sweep.json` records each one's method, seed,
folder and outcome, which `rlkit compare <out>` reads.

Locally the runs go one after another, each in its own `python -m rlkit.train` process (its own
Ray, nothing shared). With `--submit ADDRESS` each run is a Ray job on that cluster
(`ray job submit` semantics: the working directory travels with it), `--parallel` at a time
(default 1: each run reserves its stages' resources, and runs the cluster cannot hold at once
would time out waiting); the cluster's nodes then need a shared filesystem at `--out` for
`rlkit compare` to read the runs afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rlkit.config.load import ConfigError, load_config
from rlkit.config.methods import method_names, method_overrides

MANIFEST = "sweep.json"


@dataclass
class SweepRun:
    """One method × seed of a sweep."""

    method: str
    seed: int
    run_dir: str
    overrides: list[str]
    status: str = "pending"  # pending | ok | failed
    exit_code: int | None = None
    seconds: float | None = None
    log: str | None = None


def seed_overrides(seed: int) -> list[str]:
    """Seed N of a sweep seeds everything random in a run: data order, sampling, the learner's
    initial torch state and the loss's own draws (Clip-Cov), and RISE's choices."""
    return [f"run.seed={seed}", f"rollout.sampling.seed={seed}", f"learner.seed={seed}", f"algorithm.seed={seed}",
            f"rise.seed={seed}"]


def plan_sweep(recipe: str, methods: list[str], seeds: int, name: str, out: Path, extra: list[str]) -> list[SweepRun]:
    """Every run of the sweep, each configuration checked before any starts: a typo in one
    method's settings fails the sweep at once, not an hour in."""
    known = method_names()
    unknown = [method for method in methods if method not in known]
    if unknown:
        raise ConfigError("--methods", [f"no recipe for method(s) {', '.join(unknown)}; "
                                        f"methods with a recipe: {', '.join(known)}"])
    if seeds < 1:
        raise ConfigError("--seeds", [f"--seeds {seeds}: need at least one seed"])
    runs = []
    for method in methods:
        for seed in range(seeds):
            run_dir = out / method / f"seed{seed}"
            overrides = [
                *method_overrides(method),
                *seed_overrides(seed),
                f"run.name={name}-{method}-s{seed}",
                f"run.output_dir={run_dir}",
                f"logging.wandb_group={name}",
                f"logging.wandb_tags=[{method},seed{seed},{name}]",
                *extra,
            ]
            load_config(recipe, overrides)  # raises ConfigError naming every problem
            runs.append(SweepRun(method=method, seed=seed, run_dir=str(run_dir), overrides=overrides))
    return runs


def write_manifest(out: Path, recipe: str, name: str, runs: list[SweepRun]) -> Path:
    path = out / MANIFEST
    path.write_text(json.dumps({"sweep": name, "recipe": recipe, "runs": [asdict(run) for run in runs]}, indent=2))
    return path


def read_manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / MANIFEST).read_text())


def run_local(recipe: str, run: SweepRun) -> SweepRun:
    """One run in its own process; its output goes to `<run_dir>.log`."""
    log = Path(f"{run.run_dir}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run([sys.executable, "-m", "rlkit.train", recipe, *run.overrides],
                              stdout=handle, stderr=subprocess.STDOUT)
    run.exit_code, run.seconds, run.log = done.returncode, time.monotonic() - started, str(log)
    run.status = "ok" if done.returncode == 0 else "failed"
    return run


def run_ray_jobs(recipe: str, runs: list[SweepRun], address: str, working_dir: str, parallel: int,
                 on_change: Any = None, poll_s: float = 5.0) -> None:
    """Run every run as a Ray job, at most `parallel` at a time: each job reserves its stages'
    resources when it starts, and jobs beyond what the cluster holds would time out waiting."""
    import shlex

    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    waiting, jobs = list(runs), {}
    while waiting or jobs:
        while waiting and len(jobs) < parallel:
            run = waiting.pop(0)
            entrypoint = shlex.join(["python", "-m", "rlkit.train", recipe, *run.overrides])
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": working_dir})
            jobs[job_id] = (run, time.monotonic())
            run.status, run.log = "submitted", f"ray job logs {job_id}"
            print(f"submitted {run.method} seed {run.seed} as {job_id}", flush=True)
        time.sleep(poll_s)
        for job_id, (run, started) in list(jobs.items()):
            status = client.get_job_status(job_id)
            if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                run.status = "ok" if status == JobStatus.SUCCEEDED else "failed"
                run.seconds = time.monotonic() - started
                print(f"    {run.method} seed {run.seed}: {run.status} in {run.seconds:.0f} s", flush=True)
                del jobs[job_id]
                if on_change:
                    on_change()


def sweep(recipe: str, methods: list[str], seeds: int, name: str | None, out: str | None, extra: list[str],
          submit: str | None = None, working_dir: str = ".", parallel: int = 1) -> int:
    """Run the sweep; returns the process exit code (1 if any run failed)."""
    if parallel < 1:
        raise ConfigError("--parallel", [f"--parallel {parallel}: need at least 1"])
    name = name or f"{Path(recipe).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    # Absolute: a Ray job runs in a copy of the working directory, and `rlkit compare` may run elsewhere.
    out_dir = Path(out or Path("runs") / "sweeps" / name).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = plan_sweep(recipe, methods, seeds, name, out_dir, extra)
    manifest = write_manifest(out_dir, recipe, name, runs)
    print(f"sweep {name}: {len(runs)} runs ({', '.join(methods)} × {seeds} seed(s)) → {out_dir}")
    if submit:
        run_ray_jobs(recipe, runs, submit, working_dir, parallel, lambda: write_manifest(out_dir, recipe, name, runs))
    else:
        for index, run in enumerate(runs, 1):
            print(f"[{index}/{len(runs)}] {run.method} seed {run.seed} ...", flush=True)
            run_local(recipe, run)
            print(f"    {run.status} in {run.seconds:.0f} s (log: {run.log})", flush=True)
            write_manifest(out_dir, recipe, name, runs)  # progress survives an interrupted sweep
    write_manifest(out_dir, recipe, name, runs)
    failed = [run for run in runs if run.status != "ok"]
    for run in failed:
        how = f"exit {run.exit_code}" if run.exit_code is not None else run.status
        print(f"failed: {run.method} seed {run.seed} ({how}); see {run.log}", file=sys.stderr)
    print(f"manifest: {manifest}\ncompare with: rlkit compare {out_dir}")
    return 1 if failed else 0
