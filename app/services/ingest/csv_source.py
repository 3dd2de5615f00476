"""Reading a CSV export the way a merchant's spreadsheet wrote it.

Four things a hand-edited or Excel-saved export gets wrong, each of which used to
lose rows (or the file): the encoding (Excel on Windows saves Windows-1252, or
UTF-16 with a byte-order mark), the separator (semicolons where the comma is the
decimal mark), the header's spelling (``email``, `` Email ``, ``PHONE NUMBER``) and
a stray quote, which the csv module's lenient mode turns
into one cell holding every row after it. Here the encoding is detected before
the file is read, headers are matched ignoring case and spacing, cells are split
by the separator the header uses (semicolons from a European Excel, tabs), and the
reader runs in strict mode and numbers every record by the file line it starts on.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

CHUNK = 1 << 20
BOMS = (  # UTF-32's little-endian mark starts with UTF-16's: longest first
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", None),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
NOT_ASCII_TEXT = re.compile("[\x80-\ud7ff\ue000-\U0010ffff]")  # a character, not an escaped byte


@dataclass(frozen=True)
class Encoding:
    """How to open the file (``codec``, read with ``surrogateescape``), and what to tell the user."""

    codec: str
    note: str | None = None


def detect_encoding(path: str) -> Encoding:
    """A byte-order mark's encoding; UTF-8 when every byte decodes; else Windows-1252.

    A file that is UTF-8 except for a few bytes (it holds characters UTF-8 encodes, so it
    is no Windows-1252 file) stays UTF-8: the rows with those bytes are refused, not the
    whole file turned into mojibake.
    """
    with open(path, "rb") as fh:
        start = fh.read(4)
        for bom, codec, name in BOMS:
            if start.startswith(bom):
                return Encoding(
                    codec, f"Read as {name} (the file starts with its byte-order mark)." if name else None
                )
        fh.seek(0)
        strict, lenient = (
            codecs.getincrementaldecoder("utf-8")(),
            codecs.getincrementaldecoder("utf-8")("surrogateescape"),
        )
        valid, has_utf8_text = True, False
        while chunk := fh.read(CHUNK):
            if valid:
                try:
                    strict.decode(chunk)
                except UnicodeDecodeError:
                    valid = False
            has_utf8_text = has_utf8_text or bool(NOT_ASCII_TEXT.search(lenient.decode(chunk)))
            if not valid and has_utf8_text:
                break
        if valid:
            try:
                strict.decode(b"", final=True)  # a sequence cut off by the end of the file
            except UnicodeDecodeError:
                valid = False
    if valid:
        return Encoding("utf-8")
    if has_utf8_text:
        return Encoding("utf-8", "Some bytes of the file are not UTF-8: the rows holding them are skipped.")
    return Encoding("cp1252", "The file is not UTF-8: read as Windows-1252.")


@dataclass(frozen=True)
class Record:
    """One CSV record: the file lines it starts and ends on, and its cells or why it cannot be read."""

    line: int
    last: int
    cells: list[str] | None
    error: str | None = None


def records(lines: Iterable[str]) -> Iterator[Record]:
    """Every non-blank record, numbered by the file line it starts on (strict quoting).

    A record the csv module refuses is yielded with the reason and the lines it took;
    reading goes on after it. A quote that never closes took every line to the end.
    The cells are separated as the first line is (``separator``).
    """
    lines = iter(lines)
    first = next(lines, None)
    if first is None:
        return
    reader = csv.reader(itertools.chain([first], lines), delimiter=separator(first), strict=True)
    while True:
        before = reader.line_num
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Record(before + 1, reader.line_num, None, _broken(before + 1, reader.line_num, str(exc)))
            continue
        if cells:
            yield Record(before + 1, reader.line_num, cells)


SEPARATORS = (",", ";", "\t")
QUOTED = re.compile(r'"[^"]*"')


def separator(header: str) -> str:
    """The character a header line separates its cells with: the comma, or the semicolon that Excel
    writes where the comma is the decimal mark, or a tab; whichever the line (outside quotes)
    holds most of, the comma when none."""
    bare = QUOTED.sub("", header)
    return max(SEPARATORS, key=lambda sep: (bare.count(sep), sep == ","))


def _broken(first: int, last: int, error: str) -> str:
    if error == "unexpected end of data":
        return (
            f"a stray quote opens a cell that never closes: lines {first}-{last} (the rest of the file) "
            "were not imported; fix the quote and import them again"
        )
    span = f"line {first}" if first == last else f"lines {first}-{last}"
    return f"its quotes do not pair up ({error}): {span} skipped"


def header_key(name: str) -> str:
    """A header as it is matched: case and spacing ignored (``' PHONE  number'`` is ``phone number``)."""
    return " ".join(name.split()).casefold()


@dataclass
class Header:
    """Where each known column is (by its canonical name), the names found, and what to warn about."""

    index: dict[str, int]
    names: list[str]
    warnings: list[str] = field(default_factory=list)


def read_header(cells: list[str], known: Iterable[str]) -> Header:
    """Map the header's cells to the ``known`` column names; a repeated column is warned about.

    The first of a repeated column is used (a spreadsheet shows the left one first).
    """
    canonical = {header_key(name): name for name in known}
    header = Header({}, [c.strip() for c in cells])
    first_at: dict[str, int] = {}
    for position, cell in enumerate(cells):
        key = header_key(cell)
        if not key:
            continue  # trailing commas: unnamed columns are not columns we read
        if key in first_at:
            columns = f"columns {first_at[key] + 1} and {position + 1}"
            header.warnings.append(
                f"the column {cell.strip()!r} appears twice ({columns}): the first is used"
            )
            continue
        first_at[key] = position
        if key in canonical:
            header.index[canonical[key]] = position
    return header
