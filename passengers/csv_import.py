"""Loading passengers from a CSV file (manage.py loadcsv): parsing and validating every row,
deriving each passenger's stable identity, and writing all the rows or none."""

import csv
import math
import re
import uuid
from array import array
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction

from passengers.models import (
    AGE_MAX,
    FARE_MAX,
    NAME_MAX_LENGTH,
    NAME_RULE,
    SMALLINT_MAX,
    Passenger,
    validate_name_characters,
)

CSV_HEADER = [
    "Survived",
    "Pclass",
    "Name",
    "Sex",
    "Age",
    "Siblings/Spouses Aboard",
    "Parents/Children Aboard",
    "Fare",
]
PASSENGER_NAMESPACE = uuid.UUID("6f1c2a4e-5b0d-4c49-9a3e-2f7d8e1b0c55")
BATCH_SIZE = 2000
MAX_REPORTED_ERRORS = 1000


@dataclass
class RowError:
    line: int
    column: str
    reason: str

    def __str__(self):
        return f"line {self.line}, column {self.column}: {self.reason}"


class InvalidCSV(Exception):
    def __init__(self, errors, total_errors):
        self.errors = errors
        self.total_errors = total_errors
        super().__init__(f"{total_errors} error(s)")


@dataclass
class LoadResult:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    dry_run: bool = False


INTEGER = re.compile(r"\s*-?[0-9]+\s*")
NOT_UTF8 = re.compile("[\udc80-\udcff]")  # undecodable bytes, as the surrogateescape error handler maps them


def _integer(text, minimum, maximum):
    if not INTEGER.fullmatch(text):
        raise ValueError(f"{text!r} is not an integer")
    value = int(text)
    if not minimum <= value <= maximum:
        raise ValueError(f"{value} is not between {minimum} and {maximum}")
    return value


def _number(text, minimum, maximum=math.inf):
    try:
        if not text.isascii() or "_" in text:  # float() also takes "1_0" and non-ASCII digits
            raise ValueError
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    if not minimum <= value <= maximum:
        raise ValueError(f"{text} is not between {minimum} and {maximum}")
    return value


def _choice(text, choices):
    if text not in choices:
        raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
    return text


SEXES = Passenger.Sex.values


def _name(text):
    name = text.strip()
    if not name:
        raise ValueError("must not be empty")
    if len(name) > NAME_MAX_LENGTH:
        raise ValueError(f"longer than {NAME_MAX_LENGTH} characters")
    try:
        validate_name_characters(name)
    except ValidationError:
        raise ValueError(f"must contain {NAME_RULE}") from None
    return name


COLUMNS = [
    ("Survived", "survived", lambda text: _choice(text, ["0", "1"]) == "1"),
    ("Pclass", "passenger_class", lambda text: _integer(text, 1, 3)),
    ("Name", "name", _name),
    ("Sex", "sex", lambda text: _choice(text, SEXES)),
    ("Age", "age", lambda text: _number(text, 0, AGE_MAX)),
    ("Siblings/Spouses Aboard", "siblings_or_spouses_aboard", lambda text: _integer(text, 0, SMALLINT_MAX)),
    ("Parents/Children Aboard", "parents_or_children_aboard", lambda text: _integer(text, 0, SMALLINT_MAX)),
    ("Fare", "fare", lambda text: _number(text, 0, FARE_MAX)),
]


def _not_utf8(text):
    """A reason when the text holds bytes that are not UTF-8, else None."""
    bad = not text.isascii() and NOT_UTF8.search(text)  # isascii() is O(1): clean rows cost next to nothing
    return f"not valid UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02x})" if bad else None


class _SeenNames:
    """The names read so far, as 32-bit fingerprints in an open-addressing table.

    About 8 bytes a name, so a big file streams. A plain set of the same fingerprints, measured on the
    parsing alone (docs/performance.md, "loadcsv at scale"): the same time, but a peak of 16.8 instead
    of 5.2 MiB at 200,000 rows and 67.2 instead of 20.8 MiB at 1,000,000; with it, the 200,000-row
    load grew the process's peak RSS by 31.9 MB instead of 20.9, over the 25 MiB that test_loadcsv's
    streaming test allows. Two different names sharing a fingerprint is harmless: the
    later one is numbered like a repeated name, which is just as unique and stable.
    """

    def __init__(self):
        self._slots = array("I", bytes(4 * 4096))
        self._used = 0

    def add(self, fingerprint):
        """Record a fingerprint (1 to 2**32 - 1: zero marks a free slot); return whether it was there."""
        slots, mask = self._slots, len(self._slots) - 1
        index = fingerprint & mask
        while slots[index]:
            if slots[index] == fingerprint:
                return True
            index = (index + 1) & mask
        slots[index] = fingerprint
        self._used += 1
        if 3 * self._used > 2 * len(slots):  # keep it at most two-thirds full
            old, self._slots, self._used = slots, array("I", bytes(8 * len(slots))), 0
            for kept in old:
                if kept:
                    self.add(kept)
        return False


def _parse_rows(path):
    """Yield (line number, fields or None, errors) for each data row, reading the file as a stream.

    The passenger's identity is derived from its name (and how often that name was seen before in
    the file), so loading the same file again finds the same passengers. Bytes that are not UTF-8
    are kept (as surrogates) and reported on the row and column they are in.
    """
    seen = _SeenNames()
    repeats: dict[uuid.UUID, int] = {}
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header != CSV_HEADER:
            found = ",".join(header or [])
            reason = _not_utf8(found) or f"expected {','.join(CSV_HEADER)!r}, found {found!r}"
            yield 1, None, [RowError(1, "header", reason)]
            return
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:  # the reader carries on with the next line
                yield reader.line_num, None, [RowError(reader.line_num, "*", f"unreadable: {error}")]
                continue
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(CSV_HEADER):
                yield line, None, [RowError(line, "*", f"expected {len(CSV_HEADER)} columns, found {len(row)}")]
                continue
            fields, errors = {}, []
            for (column, name, parse), text in zip(COLUMNS, row, strict=True):
                try:
                    reason = _not_utf8(text)
                    if reason:
                        raise ValueError(reason)
                    fields[name] = parse(text)
                except ValueError as error:
                    errors.append(RowError(line, column, str(error)))
            if errors:
                yield line, None, errors
                continue
            identity = uuid.uuid5(PASSENGER_NAMESPACE, fields["name"])
            if seen.add(identity.int & 0xFFFF_FFFF or 1):
                occurrence = repeats[identity] = repeats.get(identity, 0) + 1
                identity = uuid.uuid5(PASSENGER_NAMESPACE, f"{fields['name']}\n{occurrence}")
            fields["uuid"] = identity
            yield line, fields, []


UPDATABLE_FIELDS = [name for _column, name, _parse in COLUMNS]


@transaction.atomic
def load_passengers_csv(*, path: Path, overwrite: bool = False, dry_run: bool = False, progress=None) -> LoadResult:
    """Load the file in one transaction, all of it or nothing.

    Every row is checked; good rows are written in batches as the file streams by. On any bad row
    writing stops, the rest of the file is still checked, and InvalidCSV (listing every bad row)
    rolls the transaction back. New passengers are created; ones already loaded keep any edits made
    since, unless ``overwrite`` asks for the file's values.
    """
    result = LoadResult(dry_run=dry_run)
    errors: list[RowError] = []
    batch: list[Passenger] = []
    total_errors = 0

    def flush():
        uuids = [passenger.uuid for passenger in batch]
        existing = Passenger.objects.filter(uuid__in=uuids).count()
        if overwrite:
            Passenger.objects.bulk_create(
                batch, update_conflicts=True, unique_fields=["uuid"], update_fields=[*UPDATABLE_FIELDS, "updated_at"]
            )
            result.updated += existing
        else:
            Passenger.objects.bulk_create(batch, ignore_conflicts=True)
            result.unchanged += existing
        result.created += len(batch) - existing
        if progress:
            progress(len(batch))
        batch.clear()

    for _line, fields, row_errors in _parse_rows(path):
        if row_errors:
            total_errors += len(row_errors)
            errors.extend(row_errors[: MAX_REPORTED_ERRORS - len(errors)])
            continue
        result.rows += 1
        if total_errors:  # nothing will be kept: only check the rest
            continue
        batch.append(Passenger(**fields))
        if len(batch) == BATCH_SIZE:
            flush()
    if total_errors:
        raise InvalidCSV(errors, total_errors)  # leaving the atomic block rolls back what was written
    if batch:
        flush()
    if dry_run:
        transaction.set_rollback(True)
    return result
