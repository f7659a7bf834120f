"""The SQL that PostgreSQL and SQLite spell differently: planner settings for a block, packed numbers."""

import pytest
from django.db import connection

from segments.analytics.dialect import packed_numbers, planner_settings, unpack_numbers

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL settings")


def settings_now(*names):
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join("current_setting(%s)" for _ in names), list(names))
        return cursor.fetchone()


@postgres_only
def test_settings_hold_inside_the_block_and_are_put_back_after_it():
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('work_mem', '7MB', true)")  # the caller's own, kept after the block
    before = settings_now("enable_sort", "work_mem", "jit")

    with planner_settings(enable_sort="off", work_mem="64MB"):
        inside = settings_now("enable_sort", "work_mem", "jit")

    assert before == ("on", "7MB", before[2])
    assert inside == ("off", "64MB", before[2])
    assert settings_now("enable_sort", "work_mem", "jit") == before


@postgres_only
def test_settings_are_undone_when_the_block_fails():
    before = settings_now("enable_sort")

    with pytest.raises(RuntimeError), planner_settings(enable_sort="off"):
        raise RuntimeError("the block failed")

    assert settings_now("enable_sort") == before == ("on",)


def test_packed_numbers_come_back_exactly_a_row_each_and_skip_rows_with_a_null():
    rows = [(0.1 + 0.2, 3), (1e-300, -1), (-2.5, 0), (123456.789012, 2**40), (0.0, 7)]
    with_nulls = [*rows, (None, 1), (4.5, None)]
    table = " UNION ALL ".join("SELECT %s AS x, %s AS y" for _ in with_nulls)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {packed_numbers(['x', 'y'])} FROM ({table}) t", [v for row in with_nulls for v in row])
        packed = cursor.fetchone()[0]

    assert sorted(map(tuple, unpack_numbers(packed, 2).tolist())) == sorted(rows)
    assert unpack_numbers(None, 2).shape == (0, 2)
