"""The streaming data store against plain Ray object passing through queue actors.

    python benchmarks/store.py [--quick] [--out benchmarks/results/store.json]

The same three-stage flow runs through each system:
- a producer actor writes samples, each `input_ids` int64[512] and `logprobs` float32[256], in
  batches of 64, in groups of 8;
- a reward actor takes samples as they come, reads `input_ids` and adds a `reward`;
- the learner (the driver) pulls micro-batches of 32 whole-group samples with all three fields
  and reads their values.

`store` is rlkit's DataStore (per-field readiness, whole-group pulls, cleared when consumed).
`plain` is what one would write with Ray alone: one object per sample, references passed through
a `ray.util.queue.Queue` to the reward actor and a second one to the learner, with no readiness
or group logic. Each runs N = 2,048 and 16,384 samples unpaced (samples/s) and paced at 640
samples/s (latency from the producer's put to the learner holding the values, p50/p95), and
records the peak memory of the Ray object store and of the store actor. `--quick` runs N = 512
only (seconds). The headline is the store's unpaced throughput over plain Ray's at the largest N (goal:
within 1.3×, i.e. a ratio ≥ 0.77).
"""

from __future__ import annotations

import argparse
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray

from rlkit.store.query import Query

from report import print_table, write_results

REPO = Path(__file__).resolve().parents[1]
BATCH, GROUP, MICRO = 64, 8, 32
PACED_RATE = 640.0


def make_batch(first: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """One producer batch. The first token id carries the put time (µs), so latency needs no
    extra field."""
    rows = []
    for i in range(BATCH):
        ids = rng.integers(0, 32_000, 512, dtype=np.int64)
        ids[0] = int(time.time() * 1e6)
        rows.append({"group": f"g{(first + i) // GROUP}", "input_ids": ids,
                     "logprobs": rng.standard_normal(256).astype(np.float32)})
    return rows


def latency_s(input_ids: np.ndarray) -> float:
    return time.time() - input_ids[0] / 1e6


def pace(started: float, produced: int, rate: float | None) -> None:
    if rate:
        delay = started + produced / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


# --------------------------------------------------------------------------- rlkit's store


@ray.remote(num_cpus=0)
class StoreProducer:
    def run(self, store: Any, n: int, rate: float | None) -> None:
        rng, started = np.random.default_rng(0), time.monotonic()
        for first in range(0, n, BATCH):
            pace(started, first, rate)
            entries = [
                {"group": row["group"], "group_size": GROUP,
                 "fields": {"input_ids": row["input_ids"], "logprobs": row["logprobs"]}}
                for row in make_batch(first, rng)
            ]
            ray.get(store.put.remote(entries))


@ray.remote(num_cpus=0)
class StoreRewarder:
    def run(self, store: Any, n: int) -> None:
        from rlkit.transport import resolve

        done = 0
        while done < n:
            taken = ray.get(store.get.remote(Query("reward", ("input_ids",), BATCH, min_items=1, timeout_s=1.0)))
            if not taken:
                continue
            values = resolve([item.fields["input_ids"] for item in taken])
            rewards = [float(ids[1:9].mean() % 2) for ids in values]
            ray.get(store.set_field.remote([item.entry_id for item in taken], "reward", rewards))
            done += len(taken)


def run_store(n: int, rate: float | None) -> dict[str, Any]:
    from rlkit.store.datastore import DataStore
    from rlkit.transport import resolve

    store = DataStore.remote()
    producer, rewarder = StoreProducer.remote(), StoreRewarder.remote()
    monitor = MemoryMonitor(lambda: ray.get(store.drain_metrics.remote())["store/rss_mb"])
    started = time.monotonic()
    jobs = [producer.run.remote(store, n, rate), rewarder.run.remote(store, n)]
    latencies, received = [], 0
    fields = ["input_ids", "logprobs", "reward"]
    while received < n:
        query = Query("learner", tuple(fields), MICRO // GROUP, whole_groups=True, clear=True, timeout_s=30.0)
        taken = ray.get(store.get.remote(query))
        if not taken:
            raise RuntimeError(f"store: no micro-batch within 30 s after {received} samples")
        values = resolve([item.fields[name] for item in taken for name in fields])
        latencies += [latency_s(values[i]) for i in range(0, len(values), len(fields))]
        received += len(taken)
    seconds = time.monotonic() - started
    ray.get(jobs)
    left = ray.get(store.stats.remote())["entries"]
    memory = monitor.stop()
    for actor in (store, producer, rewarder):
        ray.kill(actor)
    return summary("store", n, rate, seconds, latencies, memory, left)


# --------------------------------------------------------------------------- plain Ray


@ray.remote(num_cpus=0)
class PlainProducer:
    def run(self, queue: Any, n: int, rate: float | None) -> None:
        rng, started = np.random.default_rng(0), time.monotonic()
        for first in range(0, n, BATCH):
            pace(started, first, rate)
            queue.put_nowait_batch([ray.put(row) for row in make_batch(first, rng)])


@ray.remote(num_cpus=0)
class PlainRewarder:
    def run(self, inbox: Any, outbox: Any, n: int) -> None:
        done = 0
        while done < n:
            refs = [inbox.get(block=True)]
            refs += inbox.get_nowait_batch(min(BATCH - 1, inbox.size()))
            rows = ray.get(refs)
            rewards = [float(row["input_ids"][1:9].mean() % 2) for row in rows]
            outbox.put_nowait_batch(list(zip(refs, rewards)))
            done += len(refs)


def run_plain(n: int, rate: float | None) -> dict[str, Any]:
    from ray.util.queue import Queue

    inbox, outbox = Queue(actor_options={"num_cpus": 0}), Queue(actor_options={"num_cpus": 0})
    producer, rewarder = PlainProducer.remote(), PlainRewarder.remote()
    monitor = MemoryMonitor(lambda: 0.0)
    started = time.monotonic()
    jobs = [producer.run.remote(inbox, n, rate), rewarder.run.remote(inbox, outbox, n)]
    latencies, received = [], 0
    while received < n:
        items = [outbox.get(block=True, timeout=30.0)]  # wait for the first, then take the rest at once
        while len(items) < MICRO:
            items += outbox.get_nowait_batch(min(MICRO - len(items), outbox.size())) or [outbox.get(block=True, timeout=30.0)]
        rows = ray.get([ref for ref, _ in items])
        latencies += [latency_s(row["input_ids"]) for row in rows]
        received += len(items)
    seconds = time.monotonic() - started
    ray.get(jobs)
    memory = monitor.stop()
    for actor in (producer, rewarder, inbox.actor, outbox.actor):
        ray.kill(actor)
    return summary("plain", n, rate, seconds, latencies, memory, 0)


# --------------------------------------------------------------------------- measuring


class MemoryMonitor:
    """Peak object-store bytes and peak store-actor RSS, sampled every 0.5 s in a thread."""

    def __init__(self, actor_rss_mb) -> None:
        self.actor_rss_mb, self.peak_store_mb, self.peak_actor_mb = actor_rss_mb, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.peak_store_mb = max(self.peak_store_mb, object_store_mb())
                self.peak_actor_mb = max(self.peak_actor_mb, self.actor_rss_mb())
            except Exception:  # the actor is being killed at the end: keep the peaks so far
                return

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {"object_store_peak_mb": self.peak_store_mb, "store_actor_rss_peak_mb": self.peak_actor_mb}


def object_store_mb() -> float:
    """Bytes in Ray's object store now (from the memory summary), in MiB."""
    from ray._private.internal_api import memory_summary

    text = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    match = re.search(r"Plasma memory usage (\d+) MiB", text)
    return float(match.group(1)) if match else 0.0


def summary(system: str, n: int, rate: float | None, seconds: float, latencies: list[float],
            memory: dict[str, float], left: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "system": system, "n": n, "paced_rate": rate, "seconds": seconds, "samples_per_s": n / seconds,
        "latency_p50_ms": 1000 * statistics.median(ordered), "latency_p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
        "entries_left": left, **memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 512 only (seconds)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "store.json"))
    args = parser.parse_args()
    import sys

    sys.path.insert(0, str(REPO))
    from rlkit.runtime import ray_session

    sizes = [512] if args.quick else [2048, 16384]
    results = []
    with ray_session(None, None):
        for n in sizes:
            for rate in (None, PACED_RATE):
                for run in (run_store, run_plain):
                    results.append(run(n, rate))
    print_table(
        f"{'system':<6} {'N':>6} {'paced':>6} {'samples/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'obj store MB':>12} "
        f"{'store RSS MB':>12} {'left':>5}",
        [
            f"{r['system']:<6} {r['n']:>6} {format(r['paced_rate'], 'g') if r['paced_rate'] else '—':>6} "
            f"{r['samples_per_s']:>10.0f} "
            f"{r['latency_p50_ms']:>8.1f} {r['latency_p95_ms']:>8.1f} {r['object_store_peak_mb']:>12.0f} "
            f"{r['store_actor_rss_peak_mb']:>12.0f} {r['entries_left']:>5}"
            for r in results
        ],
    )
    largest = max(sizes)

    def pick(system: str, rate: float | None) -> dict[str, Any]:
        return next(r for r in results if r["system"] == system and r["n"] == largest and r["paced_rate"] == rate)

    ratio = pick("store", None)["samples_per_s"] / pick("plain", None)["samples_per_s"]
    print(f"store / plain Ray throughput at N={largest}: {ratio:.2f} (goal ≥ 0.77); "
          f"paced p50 {pick('store', PACED_RATE)['latency_p50_ms']:.1f} ms (goal ≤ 25)")
    write_results(
        args.out,
        headline={"metric": f"store throughput / plain Ray queue throughput (N={largest})", "value": ratio, "goal": ">= 0.77"},
        paced_p50_ms={"value": pick("store", PACED_RATE)["latency_p50_ms"], "goal": "<= 25"},
        results=results,
    )


if __name__ == "__main__":
    main()
