"""The dependency graph of segments: a segment depends on its parent and on the segments its rule
reads with `in_segment`. Refreshes follow it in topological order (and refresh_contacts level by
level); saves keep it acyclic."""

from __future__ import annotations

from collections.abc import Iterable

from segments.models import Segment
from segments.rules.validation import referenced_slugs

Graph = dict[int, set[int]]


def dependency_graph(segments: Iterable[Segment] | None = None) -> Graph:
    """segment id -> ids of the segments it depends on, read from parents and rules.

    Of every segment (one query), or among just `segments` (their slug, parent and rule loaded; no
    query): a segment outside them is read as stored, so it needs no place in the order.
    """
    read = list(Segment.objects.only("slug", "parent_id", "rule") if segments is None else segments)
    by_slug = {segment.slug: segment.pk for segment in read}
    ids = set(by_slug.values())
    graph: Graph = {}
    for segment in read:
        graph[segment.pk] = {by_slug[slug] for slug in referenced_slugs(segment.rule) if slug in by_slug}
        if segment.parent_id in ids:
            graph[segment.pk].add(segment.parent_id)
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


def levels(segment_ids: list[int], graph: Graph) -> list[list[int]]:
    """`segment_ids` (in topological order) grouped so that each comes one level after all it
    depends on among them: the segments of one level can be refreshed together."""
    depth: dict[int, int] = {}
    for pk in segment_ids:
        depth[pk] = 1 + max((depth[dep] for dep in graph.get(pk, ()) if dep in depth), default=-1)
    grouped: list[list[int]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for pk in segment_ids:
        grouped[depth[pk]].append(pk)
    return grouped
