"""CSV files people save from spreadsheets (labels, background clicks), read strictly: UTF-8 with or without a
byte-order mark, a header row, and a one-line error naming the file and line for anything else (UTF-16, a
Latin-1 byte, a NUL, an oversized field), with how to save the file as UTF-8."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError

SAVE_AS_UTF8 = "save it as 'CSV UTF-8' (LibreOffice: Save As > Text CSV, character set UTF-8; Excel: CSV UTF-8)"


def _text(path: Path) -> str:
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError("is UTF-16 text (a spreadsheet's 'Unicode text'), not UTF-8", SAVE_AS_UTF8, path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8", SAVE_AS_UTF8, path) from exc


def csv_rows(
    path: Path, required: tuple[str, ...], header_fix: str
) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header's column names (stripped) and the rows as (line number, {column: stripped text}); a header
    without the ``required`` columns is refused with ``header_fix``."""
    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    try:
        columns = [c.strip() for c in reader.fieldnames or []]
    except csv.Error as exc:
        raise DataError(f"line 1: {exc}", SAVE_AS_UTF8, path) from exc
    missing = [name for name in required if name not in columns]
    if missing:
        raise DataError(f"header {columns} lacks {' and '.join(missing)}", header_fix, path)

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        try:
            for row in reader:
                yield reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items() if isinstance(k, str)}
        except csv.Error as exc:
            raise DataError(f"line {reader.line_num + 1}: {exc}", "fix that line, or " + SAVE_AS_UTF8, path) from exc

    return columns, rows()
