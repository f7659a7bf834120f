"""Sets of contact ids as bit masks (segments/analytics/dialect.py), as count_outcomes reads them."""

import pytest
from django.db import connection

from segments.analytics.dialect import has_id, id_word, id_words

pytestmark = pytest.mark.django_db

# word edges (63/64, 127/128), the bit of a bigint's sign (63 mod 64), repeats, a large id
FIRST = [1, 5, 5, 62, 63, 64, 127, 127, 128, 4_000_063]
SECOND = [0, 63, 191, 192, 4_000_000]


def test_each_id_is_found_in_its_own_sets_and_no_other_id_is():
    rows = [(pk, 0) for pk in FIRST] + [(pk, 1) for pk in SECOND]
    source = " UNION ALL ".join("SELECT %s AS id, %s AS part" for _ in rows)
    probes = sorted({*FIRST, *SECOND, *range(0, 260), 4_000_062, 4_000_064, 4_000_001})
    ids = " UNION ALL ".join("SELECT %s AS pk" for _ in probes)
    sql = (
        f"SELECT x.pk, CASE WHEN {has_id('m.b0', 'x.pk')} THEN 1 ELSE 0 END, "
        f"CASE WHEN {has_id('m.b1', 'x.pk')} THEN 1 ELSE 0 END "
        f"FROM ({ids}) x LEFT JOIN ({id_words(source, 2)}) m ON m.w = {id_word('x.pk')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, probes + [v for row in rows for v in row])
        found = {pk: (first, second) for pk, first, second in cursor.fetchall()}

    assert found == {pk: (int(pk in FIRST), int(pk in SECOND)) for pk in probes}
