"""Per-segment locks: two writers of one segment's membership queue up instead of interleaving.

PostgreSQL: a transaction-scoped advisory lock keyed by the segment id, released at commit or
rollback. SQLite: the connection opens every transaction with BEGIN IMMEDIATE (see settings), so
the transaction already holds the database's single write lock; the touch below makes the first
statement a write all the same, so the transaction never runs as a reader first.
"""

from django.db import connection

# High 32 bits of the advisory lock key, so segment locks never collide with other lock users.
SEGMENT_LOCK_NAMESPACE = 0x5E6_0001
# One key for the whole dependency graph (parents and in_segment references).
GRAPH_LOCK_KEY = 0x5E6_0002 << 32


def lock_key(segment_id: int) -> int:
    return (SEGMENT_LOCK_NAMESPACE << 32) | segment_id


def lock_segment(segment_id: int, *, wait: bool = True) -> bool:
    """Take the segment's lock for the rest of the current transaction; False if busy and not waiting."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(*lock_statement(segment_id, wait=wait))
            acquired = cursor.fetchone()[0]
            return acquired is not False
        cursor.execute("UPDATE segments_segment SET id = id WHERE id = %s", [segment_id])
        return True


def lock_statement(segment_id: int, *, wait: bool = True) -> tuple[str, list]:
    """PostgreSQL: the statement taking the segment's lock; it answers false if busy and not waiting."""
    function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    return f"SELECT {function}(%s)", [lock_key(segment_id)]


def lock_segments(segment_ids: list[int]) -> None:
    """Take several segments' locks in one statement, always in id order (so takers never deadlock)."""
    ids = sorted(set(segment_ids))
    if not ids:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_advisory_xact_lock(k) FROM (SELECT unnest(%s::bigint[]) AS k ORDER BY 1) AS keys",
                [[lock_key(pk) for pk in ids]],
            )
            return
        placeholders = ", ".join(["%s"] * len(ids))
        cursor.execute(f"UPDATE segments_segment SET id = id WHERE id IN ({placeholders})", ids)


def lock_segment_graph() -> None:
    """Serialise changes to the dependency graph for the rest of the current transaction.

    Saving or deleting a segment checks the graph (no cycle, no dependant left behind) and then
    changes it; two such writes checking at once could each pass and together close a cycle.
    On PostgreSQL they queue on one advisory lock; on SQLite every transaction already begins
    with the database's write lock (BEGIN IMMEDIATE), which serialises them the same way.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [GRAPH_LOCK_KEY])
