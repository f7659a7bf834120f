"""Reading uploaded CSV and XLSX files row by row, without holding the file in memory.

CSV: any of `,` `;` tab `|` as delimiter (sniffed), UTF-8 with or without BOM; a file that is not
valid UTF-8 is read as Windows-1252 / Latin-1 (the encoding spreadsheets export in western Europe).
XLSX: the first sheet, formulas as the values the spreadsheet computed, dates as ISO dates.
Every row comes with its number as a spreadsheet shows it (the header is row 1).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from zipfile import BadZipFile

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
XLSX_MAGIC = b"PK\x03\x04"


class UnreadableFile(ValueError):
    """The file cannot be imported; the message says why."""


@dataclass
class FileShape:
    file_format: str  # csv or xlsx
    encoding: str
    delimiter: str
    headers: list[str]


@dataclass
class Row:
    number: int
    cells: list[str]
    progress: float  # share of the file read so far


def inspect(path: Path, file_name: str) -> FileShape:
    """Format, encoding, delimiter and header of an uploaded file, or UnreadableFile."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head.strip():
        raise UnreadableFile(f"{file_name} is empty.")
    if head.startswith(XLSX_MAGIC):
        headers = next(_xlsx_rows(path, with_progress=False), None)
        shape = FileShape("xlsx", "", "", _header(headers.cells if headers else [], file_name))
        return shape
    if file_name.lower().endswith((".xlsx", ".xls", ".xlsm")) or b"\x00" in head:
        raise UnreadableFile(f"{file_name} is neither a CSV file nor an Excel workbook (.xlsx).")
    encoding = _encoding(path)
    text = head.decode(encoding, errors="ignore")
    try:
        # Whole lines only: the sample ends mid-line when the file is longer than it.
        sample = "\n".join(text.splitlines()[:50] if len(head) < SNIFF_BYTES else text.splitlines()[:-1][:50])
        delimiter = csv.Sniffer().sniff(sample, DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    with open(path, encoding=encoding, newline="") as handle:
        first = next(csv.reader(handle, delimiter=delimiter), [])
    return FileShape("csv", encoding, delimiter, _header(first, file_name))


def _header(cells: list, file_name: str) -> list[str]:
    headers = [str(cell or "").strip() for cell in cells]
    while headers and not headers[-1]:
        headers.pop()
    if not any(headers):
        raise UnreadableFile(f"{file_name} has no header row: the first row must name the columns.")
    seen: set[str] = set()
    for index, header in enumerate(headers):
        if not header:
            headers[index] = header = f"Column {index + 1}"
        if header in seen:
            raise UnreadableFile(f"{file_name}: the column {header!r} appears twice in the header row.")
        seen.add(header)
    return headers


def _encoding(path: Path) -> str:
    """utf-8-sig (with or without a BOM) when every byte decodes as UTF-8, else cp1252 (Latin-1's superset)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as handle:
        try:
            while chunk := handle.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252"
    return "utf-8-sig"


def rows(path: Path, shape: FileShape) -> Iterator[Row]:
    """The data rows (after the header), each as text cells padded to the header's width."""
    source = _xlsx_rows(path, with_progress=True) if shape.file_format == "xlsx" else _csv_rows(path, shape)
    width = len(shape.headers)
    next(source, None)  # the header
    for row in source:
        cells = row.cells[:width] + [""] * (width - len(row.cells))
        if any(cells):
            yield Row(row.number, cells, row.progress)


def _csv_rows(path: Path, shape: FileShape) -> Iterator[Row]:
    size = max(path.stat().st_size, 1)
    # cp1252 leaves five bytes undefined; Latin-1 reads them, so no byte is refused.
    encoding = shape.encoding
    errors = "strict" if encoding.startswith("utf") else "latin1_fallback"
    with open(path, "rb") as raw:
        handle = io.TextIOWrapper(raw, encoding=encoding, errors=errors, newline="")
        reader = csv.reader(handle, delimiter=shape.delimiter)
        for cells in reader:
            yield Row(reader.line_num, [cell.strip() for cell in cells], min(raw.tell() / size, 1.0))


def _latin1_fallback(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return bad.decode("latin-1"), error.end


codecs.register_error("latin1_fallback", _latin1_fallback)


def _xlsx_rows(path: Path, *, with_progress: bool) -> Iterator[Row]:
    """Rows of the first sheet. Formula cells give the value the spreadsheet stored when it last
    computed them; a formula never computed (no stored value) is an empty cell and is reported."""
    try:
        values = load_workbook(path, read_only=True, data_only=True)
        formulas = load_workbook(path, read_only=True, data_only=False)
    except (InvalidFileException, BadZipFile, KeyError, OSError, ValueError) as error:
        raise UnreadableFile(f"The workbook cannot be read: {error}") from None
    try:
        sheet, formula_sheet = values.worksheets[0], formulas.worksheets[0]
        total = max(sheet.max_row or 1, 1)
        pairs = zip(sheet.iter_rows(values_only=True), formula_sheet.iter_rows(values_only=True), strict=False)
        for number, (row, formula_row) in enumerate(pairs, start=1):
            cells = []
            for value, formula in zip(row, formula_row, strict=False):
                if value is None and isinstance(formula, str) and formula.startswith("="):
                    cells.append(UNCOMPUTED_FORMULA)
                else:
                    cells.append(_cell_text(value))
            yield Row(number, cells, min(number / total, 1.0) if with_progress else 0.0)
    finally:
        values.close()
        formulas.close()


# A marker no typed cell can hold; the import reports it as an error in that cell.
UNCOMPUTED_FORMULA = "\x00formula"


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
