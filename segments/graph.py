"""The dependency graph of segments: a segment depends on its parent and on the segments its rule
reads with `in_segment`. Refreshes follow it in topological order; saves keep it acyclic."""

from __future__ import annotations

from collections.abc import Iterable

from segments.models import Segment, SegmentReference

Graph = dict[int, set[int]]


def dependency_graph() -> Graph:
    """segment id -> ids of the segments it depends on, for every segment (two queries)."""
    graph: Graph = {pk: set() for pk in Segment.objects.values_list("pk", flat=True)}
    for pk, parent_id in Segment.objects.filter(parent__isnull=False).values_list("pk", "parent_id"):
        graph[pk].add(parent_id)
    for from_id, to_id in SegmentReference.objects.values_list("from_segment_id", "to_segment_id"):
        graph[from_id].add(to_id)
    return graph


def topological_order(graph: Graph, ids: Iterable[int] | None = None) -> list[int]:
    """`ids` (default: all) ordered so that every segment comes after the segments it depends on.

    Ties are broken by id, so the order is stable. The graph is acyclic by construction (saves
    refuse cycles); should one slip in anyway, its members are appended in id order.
    """
    wanted = set(graph if ids is None else ids)
    order: list[int] = []
    done: set[int] = set()
    visiting: set[int] = set()

    def visit(node: int) -> None:
        if node in done or node in visiting:
            return
        visiting.add(node)
        for dependency in sorted(graph.get(node, ())):
            visit(dependency)
        visiting.discard(node)
        done.add(node)
        order.append(node)

    for node in sorted(wanted):
        visit(node)
    return [node for node in order if node in wanted]


def dependants(graph: Graph, segment_id: int) -> list[int]:
    """Every segment that depends on `segment_id`, directly or not, in topological order."""
    reverse: Graph = {}
    for node, dependencies in graph.items():
        for dependency in dependencies:
            reverse.setdefault(dependency, set()).add(node)
    found: set[int] = set()
    stack = [segment_id]
    while stack:
        for node in reverse.get(stack.pop(), ()):
            if node not in found:
                found.add(node)
                stack.append(node)
    return topological_order(graph, found)


def find_cycle(graph: Graph, start: int) -> list[int] | None:
    """A path start -> ... -> start through dependencies, or None. Diamonds are not cycles."""
    path: list[int] = []
    finished: set[int] = set()

    def walk(node: int) -> list[int] | None:
        path.append(node)
        for dependency in sorted(graph.get(node, ())):
            if dependency == start:
                return [*path, start]
            if dependency in finished or dependency in path:
                continue
            cycle = walk(dependency)
            if cycle:
                return cycle
        path.pop()
        finished.add(node)
        return None

    return walk(start)
