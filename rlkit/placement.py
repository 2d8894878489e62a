"""Where each stage runs on a Ray cluster: one placement group per stage, checked before it is asked for.

A recipe states each stage's resources per actor (CPUs, GPUs, custom Ray resources such as a
node label) and how many actors it has. Before anything starts, the whole demand is checked
against the nodes the cluster has: a bundle no single node can hold, a custom resource no node
offers, or more of a resource than the cluster has in total fails at once, naming the stage,
what it asked for, what the cluster has, and the keys that change it. Only then is a placement
group reserved per stage (every actor's resources held together, before any actor starts), and
each actor is scheduled into its own bundle. `describe` reports the node of every bundle, which
the run writes to `placement.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray


class PlacementError(RuntimeError):
    """The cluster cannot hold what the recipe asks for."""


@dataclass(frozen=True)
class StageDemand:
    """`count` actors of one stage, each needing `bundle` (Ray resource name → amount)."""

    stage: str
    count: int
    bundle: dict[str, float]
    keys: str  # the recipe keys that change this demand, for the error message

    def nonzero_bundle(self) -> dict[str, float]:
        return {name: float(amount) for name, amount in self.bundle.items() if amount > 0}


def cluster_has_gpus() -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


def alive_nodes() -> list[dict[str, Any]]:
    """Every live node as {"ip", "id", "resources"} (Ray's totals, not what is free now)."""
    return [{"ip": node["NodeManagerAddress"], "id": node["NodeID"], "resources": dict(node["Resources"])}
            for node in ray.nodes() if node.get("Alive")]


def _node_line(nodes: list[dict[str, Any]], names: set[str]) -> str:
    """Each node's amounts of `names`, named by address (plus its id's start where addresses repeat)."""
    ips = [node["ip"] for node in nodes]
    parts = []
    for node in nodes:
        label = node["ip"] if ips.count(node["ip"]) == 1 else f"{node['ip']} ({node['id'][:8]})"
        held = {name: node["resources"].get(name, 0) for name in sorted(names)}
        parts.append(f"{label}: " + ", ".join(f"{amount:g} {name}" for name, amount in held.items()))
    return "; ".join(parts)


def check_fits(demands: list[StageDemand], nodes: list[dict[str, Any]]) -> list[str]:
    """What the cluster cannot hold (empty = every demand fits by the cluster's totals)."""
    problems = []
    totals: dict[str, float] = {}
    for node in nodes:
        for name, amount in node["resources"].items():
            totals[name] = totals.get(name, 0.0) + amount
    wanted: dict[str, float] = {}
    for demand in demands:
        bundle = demand.nonzero_bundle()
        if demand.count < 1 or not bundle:
            continue
        for name, amount in bundle.items():
            wanted[name] = wanted.get(name, 0.0) + amount * demand.count
        missing = [name for name in bundle if totals.get(name, 0) == 0]
        if missing:
            problems.append(
                f"{demand.stage} asks for {', '.join(missing)}, which no node of the cluster has "
                f"(nodes: {_node_line(nodes, set(bundle))}). Start the nodes with it "
                f"(ray start --resources '{{\"{missing[0]}\": 1}}') or change {demand.keys}"
            )
            continue
        if not any(all(node["resources"].get(name, 0) >= amount for name, amount in bundle.items()) for node in nodes):
            problems.append(
                f"{demand.stage}: no single node can hold one actor's {_format(bundle)} "
                f"(nodes: {_node_line(nodes, set(bundle))}); an actor runs on one node. Change {demand.keys}"
            )
    for name, amount in sorted(wanted.items()):
        if amount > totals.get(name, 0) + 1e-9 and totals.get(name, 0) > 0:
            parts = [f"{d.stage} {d.count} × {d.nonzero_bundle()[name]:g}" for d in demands
                     if name in d.nonzero_bundle() and d.count > 0]
            problems.append(
                f"the stages need {amount:g} {name} in total ({' + '.join(parts)}) but the cluster has "
                f"{totals.get(name, 0):g} ({_node_line(nodes, {name})}). Use fewer actors or less per actor "
                f"({'; '.join(d.keys for d in demands if name in d.nonzero_bundle())}), or add nodes"
            )
    return problems


def _format(bundle: dict[str, float]) -> str:
    return ", ".join(f"{amount:g} {name}" for name, amount in bundle.items())


def reserve(demands: list[StageDemand], strategy: str, timeout_s: float) -> dict[str, Any]:
    """A ready placement group per stage with actors; fails (releasing what it reserved) if the
    demand does not fit or the resources are not free within `timeout_s` (held by other jobs)."""
    from ray.util.placement_group import placement_group, remove_placement_group

    problems = check_fits(demands, alive_nodes())
    if problems:
        raise PlacementError("the recipe's placement does not fit this cluster:\n  - " + "\n  - ".join(problems))
    groups: dict[str, Any] = {}
    try:
        for demand in demands:
            bundle = demand.nonzero_bundle()
            if demand.count < 1 or not bundle:
                continue
            group = placement_group([dict(bundle) for _ in range(demand.count)], strategy=strategy)
            groups[demand.stage] = group
            ready, _ = ray.wait([group.ready()], timeout=timeout_s)
            if not ready:
                raise PlacementError(
                    f"{demand.stage}: {demand.count} × {_format(bundle)} ({strategy}) not free within "
                    f"{timeout_s:g} s; the cluster has {_format(ray.cluster_resources())} of which free now: "
                    f"{_format(ray.available_resources())}. Other jobs may hold them (raise placement.timeout_s), "
                    f"or no layout of the nodes fits the {strategy} strategy (change {demand.keys} or "
                    "placement.strategy)"
                )
    except BaseException:
        for group in groups.values():
            remove_placement_group(group)
        raise
    return groups


def bundle_strategy(groups: dict[str, Any], stage: str, index: int) -> dict[str, Any]:
    """Actor options that put actor `index` of `stage` into its bundle ({} without a group)."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = groups.get(stage)
    if group is None:
        return {}
    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(
        placement_group=group, placement_group_bundle_index=index)}


def describe(groups: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Stage → the node (id and address) of each of its bundles."""
    from ray.util.placement_group import placement_group_table

    addresses = {node["id"]: node["ip"] for node in alive_nodes()}
    placed = {}
    for stage, group in groups.items():
        table = placement_group_table(group)
        nodes = table.get("bundles_to_node_id", {})
        placed[stage] = [{"node_id": nodes.get(index, ""), "node_ip": addresses.get(nodes.get(index, ""), "")}
                         for index in range(len(table.get("bundles", {})))]
    return placed


def release(groups: dict[str, Any]) -> None:
    from ray.util.placement_group import remove_placement_group

    for group in groups.values():
        try:
            remove_placement_group(group)
        except Exception:  # noqa: BLE001 - the cluster may already be gone at shutdown
            pass
