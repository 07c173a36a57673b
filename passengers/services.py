import csv
import hashlib
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Floor

from passengers.models import AGE_MAX, DatasetVersion, Passenger
from passengers.serializers import SMALLINT_MAX

AGE_BAND_YEARS = 10


# --- statistics -------------------------------------------------------------------------------


def _rate(total, survived):
    return round(survived / total, 4) if total else None


def _survival(row):
    return {"total": row["total"], "survived": row["survived"], "survivalRate": _rate(row["total"], row["survived"])}


def survival_stats(*, queryset):
    """Survival counts and rates overall, by class, by sex and by age band, computed in the database."""
    counts = {"total": Count("pk"), "survived": Count("pk", filter=Q(survived=True))}
    by_class = queryset.values("passenger_class").annotate(**counts).order_by("passenger_class")
    by_sex = queryset.values("sex").annotate(**counts).order_by("sex")
    by_band = (
        queryset.annotate(band=Floor(F("age") / AGE_BAND_YEARS))
        .values("band")
        .annotate(**counts)
        .order_by("band")
    )
    stats = _survival(queryset.aggregate(**counts))
    stats["byClass"] = [{"passengerClass": row["passenger_class"], **_survival(row)} for row in by_class]
    stats["bySex"] = [{"sex": row["sex"], **_survival(row)} for row in by_sex]
    stats["byAgeBand"] = []
    for row in by_band:
        start = int(row["band"]) * AGE_BAND_YEARS
        stats["byAgeBand"].append(
            {"ageBand": f"{start}-{start + AGE_BAND_YEARS - 1}", "ageFrom": start, "ageTo": start + AGE_BAND_YEARS, **_survival(row)}
        )
    return stats


# --- loading the CSV ----------------------------------------------------------------------------

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
        super().__init__(f"{total_errors} bad row(s)")


@dataclass
class LoadResult:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    dry_run: bool = False
    errors: list = field(default_factory=list)


def _integer(text, minimum, maximum):
    if not text.strip().lstrip("-").isdigit():
        raise ValueError(f"{text!r} is not an integer")
    value = int(text)
    if not minimum <= value <= maximum:
        raise ValueError(f"{value} is not between {minimum} and {maximum}")
    return value


def _number(text, minimum, maximum=math.inf):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise ValueError(f"{text} is not between {minimum} and {maximum}")
    return value


def _choice(text, choices):
    if text not in choices:
        raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
    return text


def _name(text):
    name = text.strip()
    if not name:
        raise ValueError("must not be empty")
    if len(name) > Passenger._meta.get_field("name").max_length:
        raise ValueError(f"longer than {Passenger._meta.get_field('name').max_length} characters")
    if "\x00" in name:
        raise ValueError("contains a NUL character")
    return name


COLUMNS = [
    ("Survived", "survived", lambda text: _choice(text, ["0", "1"]) == "1"),
    ("Pclass", "passenger_class", lambda text: _integer(text, 1, 3)),
    ("Name", "name", _name),
    ("Sex", "sex", lambda text: _choice(text, Passenger.Sex.values)),
    ("Age", "age", lambda text: _number(text, 0, AGE_MAX)),
    ("Siblings/Spouses Aboard", "siblings_or_spouses_aboard", lambda text: _integer(text, 0, SMALLINT_MAX)),
    ("Parents/Children Aboard", "parents_or_children_aboard", lambda text: _integer(text, 0, SMALLINT_MAX)),
    ("Fare", "fare", lambda text: _number(text, 0)),
]


def _parse_rows(path):
    """Yield (line number, fields or None, errors) for each data row, reading the file as a stream.

    The passenger's identity is derived from its name (and how often that name was seen before in
    the file), so loading the same file again finds the same passengers.
    """
    seen_names, repeats = set(), {}
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header != CSV_HEADER:
            yield 1, None, [RowError(1, "header", f"expected {','.join(CSV_HEADER)!r}, found {','.join(header or [])!r}")]
            return
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(CSV_HEADER):
                yield line, None, [RowError(line, "*", f"expected {len(CSV_HEADER)} columns, found {len(row)}")]
                continue
            fields, errors = {}, []
            for (column, name, parse), text in zip(COLUMNS, row):
                try:
                    fields[name] = parse(text)
                except ValueError as error:
                    errors.append(RowError(line, column, str(error)))
            if errors:
                yield line, None, errors
                continue
            key = int.from_bytes(hashlib.blake2b(fields["name"].encode(), digest_size=8).digest())
            occurrence = repeats.get(key, 1) if key in seen_names else 0
            if occurrence:
                repeats[key] = occurrence + 1
            seen_names.add(key)
            identity = fields["name"] if occurrence == 0 else f"{fields['name']}\n{occurrence}"
            fields["uuid"] = uuid.uuid5(PASSENGER_NAMESPACE, identity)
            yield line, fields, []


def validate_csv(path):
    """Check every row; return the number of valid rows or raise InvalidCSV listing the bad ones."""
    rows, errors, total_errors, line = 0, [], 0, 1
    try:
        for line, fields, row_errors in _parse_rows(path):
            rows += fields is not None
            total_errors += len(row_errors)
            errors.extend(row_errors[: MAX_REPORTED_ERRORS - len(errors)])
    except (csv.Error, UnicodeDecodeError) as error:
        total_errors += 1
        errors.append(RowError(line + 1, "*", f"unreadable: {error}"))
    if total_errors:
        raise InvalidCSV(errors, total_errors)
    return rows


UPDATABLE_FIELDS = [name for _column, name, _parse in COLUMNS]


@transaction.atomic
def load_passengers_csv(*, path: Path, overwrite: bool = False, dry_run: bool = False, progress=None) -> LoadResult:
    """Validate the whole file, then load it in one transaction.

    New passengers are created; ones already loaded keep any edits made since, unless
    ``overwrite`` asks for the file's values. Raises InvalidCSV (and changes nothing) on any bad row.
    """
    result = LoadResult(rows=validate_csv(path), dry_run=dry_run)
    batch = []

    def flush():
        uuids = [passenger.uuid for passenger in batch]
        existing = Passenger.objects.filter(uuid__in=uuids).count()
        if overwrite:
            Passenger.objects.bulk_create(
                batch, update_conflicts=True, unique_fields=["uuid"], update_fields=UPDATABLE_FIELDS + ["updated_at"]
            )
            result.updated += existing
        else:
            Passenger.objects.bulk_create(batch, ignore_conflicts=True)
            result.unchanged += existing
        result.created += len(batch) - existing
        if progress:
            progress(len(batch))
        batch.clear()

    for _line, fields, _errors in _parse_rows(path):
        batch.append(Passenger(**fields))
        if len(batch) == BATCH_SIZE:
            flush()
    if batch:
        flush()
    DatasetVersion.bump()
    if dry_run:
        transaction.set_rollback(True)
    return result
