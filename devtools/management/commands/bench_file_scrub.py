"""Time the rewrite of one export file without erased contacts' rows (activation/file_scrub.py).

    manage.py bench_file_scrub --rows 100000 --erased 1,100

Writes a Meta-format file (eight SHA-256 cells a row, as an export writes them) of --rows rows in
a temporary directory, then for each --erased count removes that many persons' rows with
`scrub_file`, as the erasure's task does, and prints the time and the file's size. Nothing touches
the database or MEDIA_ROOT.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from activation.file_scrub import scrub_file

HEADER = "EMAIL,PHONE,FN,LN,CT,ST,ZIP,COUNTRY\n"


def _row(number: int) -> list[str]:
    return [hashlib.sha256(f"{column}:{number}".encode()).hexdigest() for column in range(8)]


class Command(BaseCommand):
    help = "Time rewriting an export file without erased contacts' rows."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rows", type=int, default=100_000, help="Rows in the file (default 100000)")
        parser.add_argument("--erased", default="1,100", help="Comma-separated counts of persons erased at once")

    def handle(self, *args, rows: int, erased: str, **options) -> None:
        try:
            counts = [int(part) for part in erased.split(",")]
        except ValueError:
            raise CommandError(f"--erased must be comma-separated integers, not {erased!r}") from None
        if rows < 1 or any(count < 1 or count > rows for count in counts):
            raise CommandError("--rows must be positive and each --erased count between 1 and --rows")
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "run-1-meta-custom-audience.csv"
            for count in counts:
                with path.open("w") as out:
                    out.write(HEADER)
                    out.writelines(",".join(_row(number)) + "\n" for number in range(rows))
                before = path.stat().st_size
                step = rows // count
                started = time.perf_counter()
                result = scrub_file(path, [_row(number * step) for number in range(count)])
                seconds = time.perf_counter() - started
                if result is None or result[2] != count:
                    raise CommandError(f"expected {count} rows removed, got {result}")
                self.stdout.write(
                    f"{rows} rows ({before / 1e6:.1f} MB), {count} person(s) erased: rewritten in {seconds:.2f} s"
                )
