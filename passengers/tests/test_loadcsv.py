"""`manage.py loadcsv` and the service under it: the real file, idempotency, bad rows, big files."""

import csv
import os
import pty
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from passengers.csv_import import CSV_HEADER, InvalidCSV, load_passengers_csv
from passengers.hot_queries import current_stamp
from passengers.models import NAME_RULE, Passenger
from passengers.tests.factories import PassengerFactory

REAL_CSV = settings.BASE_DIR / "fixtures" / "titanic.csv"
HEADER = ",".join(CSV_HEADER)
GOOD_ROWS = [
    "0,3,Mr. Owen Harris Braund,male,22,1,0,7.25",
    "1,1,Mrs. John Bradley (Florence Briggs Thayer) Cumings,female,38,1,0,71.2833",
    "1,3,Miss. Laina Heikkinen,female,26,0,0,7.925",
]


def loadcsv(*args):
    """Run the command; return (stdout, stderr)."""
    out, err = StringIO(), StringIO()
    call_command("loadcsv", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write_csv(directory, rows, *, header=HEADER, newline="\r\n", final_newline=True, bom=False, name="data.csv"):
    text = newline.join([header, *rows]) + (newline if final_newline else "")
    path = directory / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def snapshot():
    """Every stored value of every passenger, plus the dataset version: "exactly as it was"."""
    fields = [field.attname for field in Passenger._meta.concrete_fields]
    return list(Passenger.objects.order_by("uuid").values_list(*fields)), current_stamp()


# --- the real file ---------------------------------------------------------------------------


def test_the_real_file_loads_887_passengers(db):
    out, err = loadcsv()  # default path: fixtures/titanic.csv

    assert Passenger.objects.count() == 887
    assert Passenger.objects.filter(survived=True).count() == 342
    fractional = [age for age in Passenger.objects.values_list("age", flat=True) if not float(age).is_integer()]
    assert len(fractional) == 25
    assert {0.42, 34.5} <= set(fractional)
    braund = Passenger.objects.get(name="Mr. Owen Harris Braund")
    assert (braund.survived, braund.passenger_class, braund.sex, braund.age, braund.fare) == (
        False,
        3,
        "male",
        22,
        7.25,
    )
    assert (braund.siblings_or_spouses_aboard, braund.parents_or_children_aboard) == (1, 0)
    assert out == f"Loaded {REAL_CSV}: 887 rows, 887 created, 0 updated, 0 unchanged\n"
    assert err == ""


def test_the_real_file_is_as_the_product_describes():
    raw = REAL_CSV.read_bytes()
    assert raw.count(b"\r\n") == 887  # CRLF, header + 887 rows, no newline at the end
    assert not raw.endswith(b"\n")


def test_a_second_run_changes_nothing(db):
    loadcsv(REAL_CSV)
    before = snapshot()[0]

    out, _ = loadcsv(REAL_CSV)

    assert out.endswith("887 rows, 0 created, 0 updated, 887 unchanged\n")
    assert Passenger.objects.count() == 887
    assert snapshot()[0] == before  # same uuids, same values, same timestamps


def test_edits_survive_a_second_run_and_overwrite_restores_the_file(db):
    loadcsv(REAL_CSV)
    braund = Passenger.objects.get(name="Mr. Owen Harris Braund")
    braund.fare, braund.age = 99.5, 23
    braund.save()  # as the admin or the API would

    loadcsv(REAL_CSV)
    braund.refresh_from_db()
    assert (braund.fare, braund.age) == (99.5, 23)

    out, _ = loadcsv(REAL_CSV, "--overwrite")
    braund.refresh_from_db()
    assert (braund.fare, braund.age) == (7.25, 22)
    assert out.endswith("887 rows, 0 created, 887 updated, 0 unchanged\n")
    assert Passenger.objects.count() == 887


def test_dry_run_reports_counts_and_changes_nothing(db):
    PassengerFactory.create_batch(3)
    before = snapshot()

    out, _ = loadcsv(REAL_CSV, "--dry-run")

    assert out == f"Dry run: would load {REAL_CSV}: 887 rows, 887 created, 0 updated, 0 unchanged\n"
    assert snapshot() == before


def test_dry_run_counts_passengers_already_loaded(db):
    loadcsv(REAL_CSV)
    out, _ = loadcsv(REAL_CSV, "--dry-run", "--overwrite")
    assert out.endswith("887 rows, 0 created, 887 updated, 0 unchanged\n")


# --- file formats ----------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\r\n", "\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize("final_newline", [True, False], ids=["final-newline", "no-final-newline"])
@pytest.mark.parametrize("bom", [False, True], ids=["no-bom", "bom"])
def test_line_endings_final_newline_and_bom(db, tmp_path, newline, final_newline, bom):
    path = write_csv(tmp_path, GOOD_ROWS, newline=newline, final_newline=final_newline, bom=bom)

    result = load_passengers_csv(path=path)

    assert (result.rows, result.created) == (3, 3)
    rows = Passenger.objects.order_by("name").values_list("name", "age", "fare", "survived")
    assert list(rows) == [
        ("Miss. Laina Heikkinen", 26, 7.925, True),
        ("Mr. Owen Harris Braund", 22, 7.25, False),
        ("Mrs. John Bradley (Florence Briggs Thayer) Cumings", 38, 71.2833, True),
    ]


def test_blank_lines_are_skipped_and_quoted_fields_are_read(db, tmp_path):
    path = write_csv(tmp_path, [GOOD_ROWS[0], "", '1,1,"Mr. Quoted, With Comma",male,40,0,0,30.5'])
    assert load_passengers_csv(path=path).rows == 2
    assert Passenger.objects.filter(name="Mr. Quoted, With Comma").exists()


def test_an_empty_file_is_a_bad_header(db, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(InvalidCSV) as raised:
        load_passengers_csv(path=path)
    assert [(error.line, error.column) for error in raised.value.errors] == [(1, "header")]


def test_a_header_only_file_loads_nothing(db, tmp_path):
    out, _ = loadcsv(write_csv(tmp_path, []))
    assert out.endswith(": 0 rows, 0 created, 0 updated, 0 unchanged\n")


def test_duplicate_names_are_distinct_stable_passengers(db, tmp_path):
    twin = "Mr. Same Name"
    path = write_csv(tmp_path, [f"0,3,{twin},male,20,0,0,7.5", GOOD_ROWS[0], f"1,2,{twin},male,40,0,0,13.0"])

    loadcsv(path)
    first = dict(Passenger.objects.filter(name=twin).values_list("uuid", "age"))
    out, _ = loadcsv(path)

    assert sorted(first.values()) == [20, 40]
    assert dict(Passenger.objects.filter(name=twin).values_list("uuid", "age")) == first
    assert out.endswith("3 rows, 0 created, 0 updated, 3 unchanged\n")
    assert Passenger.objects.count() == 3


# --- bad input -------------------------------------------------------------------------------

NAME_REASON = f"must contain {NAME_RULE}"
BAD_ROWS = {
    # id: (the bad line, column reported, words the reason must contain)
    "wrong-column-count": ("0,3,Mr. Short Row,male,22,1,0", "*", "expected 8 columns, found 7"),
    "too-many-columns": ("0,3,Mr. Long Row,male,22,1,0,7.25,x", "*", "expected 8 columns, found 9"),
    "survived-2": ("2,3,Mr. A,male,22,1,0,7.25", "Survived", "'2' is not one of 0, 1"),
    "survived-word": ("yes,3,Mr. A,male,22,1,0,7.25", "Survived", "'yes' is not one of 0, 1"),
    "survived-true": ("true,3,Mr. A,male,22,1,0,7.25", "Survived", "'true' is not one of 0, 1"),
    "class-4": ("0,4,Mr. A,male,22,1,0,7.25", "Pclass", "4 is not between 1 and 3"),
    "class-0": ("0,0,Mr. A,male,22,1,0,7.25", "Pclass", "0 is not between 1 and 3"),
    "class-not-integer": ("0,1.5,Mr. A,male,22,1,0,7.25", "Pclass", "'1.5' is not an integer"),
    "class-word": ("0,first,Mr. A,male,22,1,0,7.25", "Pclass", "'first' is not an integer"),
    "class-unicode-digit": ("0,\u0661,Mr. A,male,22,1,0,7.25", "Pclass", "'\u0661' is not an integer"),
    "empty-name": ("0,3,,male,22,1,0,7.25", "Name", "must not be empty"),
    "blank-name": ("0,3,   ,male,22,1,0,7.25", "Name", "must not be empty"),
    "long-name": (f"0,3,{'x' * 201},male,22,1,0,7.25", "Name", "longer than 200 characters"),
    "nul-in-name": ("0,3,Mr. \x00,male,22,1,0,7.25", "Name", NAME_REASON),
    "tab-in-name": ("0,3,Mr.\tA,male,22,1,0,7.25", "Name", NAME_REASON),
    "escape-in-name": ("0,3,Mr. \x1b[31mA,male,22,1,0,7.25", "Name", NAME_REASON),
    "c1-control-in-name": ("0,3,Mr. \x85A,male,22,1,0,7.25", "Name", NAME_REASON),
    "line-separator-in-name": ("0,3,Mr. \u2028A,male,22,1,0,7.25", "Name", NAME_REASON),
    "bidi-override-in-name": ("0,3,Mr. \u202eA,male,22,1,0,7.25", "Name", NAME_REASON),
    "bidi-isolate-in-name": ("0,3,Mr. \u2066A,male,22,1,0,7.25", "Name", NAME_REASON),
    "unknown-sex": ("0,3,Mr. A,unknown,22,1,0,7.25", "Sex", "'unknown' is not one of male, female, other"),
    "sex-capitalised": ("0,3,Mr. A,Male,22,1,0,7.25", "Sex", "'Male' is not one of male, female, other"),
    "age-negative": ("0,3,Mr. A,male,-1,1,0,7.25", "Age", "-1 is not between 0 and 150"),
    "age-over-150": ("0,3,Mr. A,male,150.5,1,0,7.25", "Age", "150.5 is not between 0 and 150"),
    "age-not-a-number": ("0,3,Mr. A,male,old,1,0,7.25", "Age", "'old' is not a number"),
    "age-empty": ("0,3,Mr. A,male,,1,0,7.25", "Age", "'' is not a number"),
    "age-nan": ("0,3,Mr. A,male,NaN,1,0,7.25", "Age", "'NaN' is not a finite number"),
    "age-inf": ("0,3,Mr. A,male,inf,1,0,7.25", "Age", "'inf' is not a finite number"),
    "age-underscore": ("0,3,Mr. A,male,2_2,1,0,7.25", "Age", "'2_2' is not a number"),
    "siblings-negative": ("0,3,Mr. A,male,22,-1,0,7.25", "Siblings/Spouses Aboard", "-1 is not between 0 and 32767"),
    "siblings-not-integer": ("0,3,Mr. A,male,22,1.5,0,7.25", "Siblings/Spouses Aboard", "'1.5' is not an integer"),
    "siblings-too-many": (
        "0,3,Mr. A,male,22,40000,0,7.25",
        "Siblings/Spouses Aboard",
        "40000 is not between 0 and 32767",
    ),
    "parents-negative": ("0,3,Mr. A,male,22,1,-2,7.25", "Parents/Children Aboard", "-2 is not between 0 and 32767"),
    "parents-not-integer": ("0,3,Mr. A,male,22,1,two,7.25", "Parents/Children Aboard", "'two' is not an integer"),
    "fare-negative": ("0,3,Mr. A,male,22,1,0,-1", "Fare", "-1 is not between 0 and 10000"),
    "fare-over-10000": ("0,3,Mr. A,male,22,1,0,10000.01", "Fare", "10000.01 is not between 0 and 10000"),
    "fare-1e308": ("0,3,Mr. A,male,22,1,0,1e308", "Fare", "1e308 is not between 0 and 10000"),
    "fare-not-a-number": ("0,3,Mr. A,male,22,1,0,cheap", "Fare", "'cheap' is not a number"),
    "fare-inf": ("0,3,Mr. A,male,22,1,0,1e999", "Fare", "'1e999' is not a finite number"),
    "huge-field": (f"0,3,{'x' * 140_000},male,22,1,0,7.25", "*", "unreadable: field larger than field limit"),
}


@pytest.fixture
def existing(db, tmp_path):
    """Passengers already stored before a bad file comes along, one of them edited since it was loaded."""
    load_passengers_csv(path=write_csv(tmp_path, GOOD_ROWS, name="good.csv"))
    Passenger.objects.filter(name=GOOD_ROWS[0].split(",")[2]).update(fare=1.5)  # --overwrite would undo this
    PassengerFactory.create_batch(2)
    return snapshot()


def assert_rejected(path, *expected_lines):
    """The command fails, stderr names every expected line, and the database is exactly as it was."""
    before = snapshot()
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="nothing was loaded"):
        call_command("loadcsv", str(path), "--overwrite", stdout=out, stderr=err)
    assert snapshot() == before
    assert out.getvalue() == ""
    for line in expected_lines:
        assert f"{path}: {line}" in err.getvalue()
    return err.getvalue()


@pytest.mark.parametrize(("row", "column", "reason"), BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_a_bad_row_is_reported_and_nothing_changes(existing, tmp_path, row, column, reason):
    path = write_csv(tmp_path, [GOOD_ROWS[0], row, GOOD_ROWS[1]])
    err = assert_rejected(path, f"line 3, column {column}: {reason}")
    assert err.count("line ") == 1


def test_a_bad_header_is_reported_and_nothing_changes(existing, tmp_path):
    path = write_csv(tmp_path, GOOD_ROWS, header=HEADER.replace("Pclass", "Class"))
    assert_rejected(path, f"line 1, column header: expected {HEADER!r}, found {HEADER.replace('Pclass', 'Class')!r}")


def test_bytes_that_are_not_utf8_are_reported_on_their_line_and_column(existing, tmp_path):
    rows = [*GOOD_ROWS, *[f"0,3,Mr. Filler {n},male,30,0,0,8.05" for n in range(3000)]]  # past the first read
    path = write_csv(tmp_path, rows)
    data = (
        path.read_bytes()
        .replace(b"Mr. Filler 2500,", b"Mr. Fill\xe9r 2500,")
        .replace(b",30,0,0,8.05\r\n", b",3\xff,0,0,8.05\r\n", 1)
    )
    path.write_bytes(data)
    err = assert_rejected(
        path,
        "line 5, column Age: not valid UTF-8 (byte 0xff)",
        "line 2505, column Name: not valid UTF-8 (byte 0xe9)",
    )
    assert err.count("line ") == 2


def test_a_header_that_is_not_utf8_is_reported(existing, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.replace("Sex", "S\xe9x").encode("latin-1") + b"\r\n" + GOOD_ROWS[0].encode())
    assert_rejected(path, "line 1, column header: not valid UTF-8 (byte 0xe9)")


def test_every_bad_row_is_reported(existing, tmp_path):
    rows = [GOOD_ROWS[0], BAD_ROWS["class-4"][0], GOOD_ROWS[1], "1,3,,female,-4,1,0,7.25", BAD_ROWS["fare-negative"][0]]
    path = write_csv(tmp_path, rows)
    err = assert_rejected(
        path,
        "line 3, column Pclass:",
        "line 5, column Name: must not be empty",
        "line 5, column Age: -4 is not between 0 and 150",
        "line 6, column Fare:",
    )
    assert err.count("line ") == 4


def test_the_report_is_capped_but_counts_every_error(existing, tmp_path):
    path = write_csv(tmp_path, [BAD_ROWS["class-4"][0]] * 1005)
    with pytest.raises(CommandError, match="1005 error"):
        loadcsv(path)


def test_capped_report_says_how_many_more(existing, tmp_path):
    err = assert_rejected(
        write_csv(tmp_path, [BAD_ROWS["class-4"][0]] * 1005), "line 1001, column Pclass: 4 is not between 1 and 3"
    )
    assert err.count("line ") == 1000
    assert err.endswith("... and 5 more\n")


def test_the_service_raises_invalid_csv_with_line_column_and_reason(existing, tmp_path):
    with pytest.raises(InvalidCSV) as raised:
        load_passengers_csv(path=write_csv(tmp_path, [GOOD_ROWS[0], BAD_ROWS["unknown-sex"][0]]))
    [error] = raised.value.errors
    assert (error.line, error.column) == (3, "Sex")
    assert str(error) == "line 3, column Sex: 'unknown' is not one of male, female, other"


def test_a_missing_file_is_a_clear_error(db, tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(CommandError, match=f"^{missing}: no such file"):
        loadcsv(missing)


def test_a_directory_is_a_clear_error(db, tmp_path):
    with pytest.raises(CommandError, match=f"^{tmp_path}: cannot read: Is a directory$"):
        loadcsv(tmp_path)


# --- output ----------------------------------------------------------------------------------


def test_no_progress_bar_when_stdout_is_not_a_terminal(db, tmp_path, capfd):
    out, err = loadcsv(write_csv(tmp_path, GOOD_ROWS))
    assert out == f"Loaded {tmp_path / 'data.csv'}: 3 rows, 3 created, 0 updated, 0 unchanged\n"
    assert err == ""
    assert capfd.readouterr() == ("", "")


def test_a_progress_bar_on_a_terminal(db, tmp_path, capsys):
    controller, terminal = pty.openpty()
    try:
        with os.fdopen(terminal, "w", closefd=False) as tty:
            call_command("loadcsv", str(write_csv(tmp_path, GOOD_ROWS)), stdout=tty)
        summary = os.read(controller, 4096).decode()
    finally:
        os.close(controller)
        os.close(terminal)
    assert "3 rows, 3 created" in summary
    assert "\r3 rows [" in capsys.readouterr().err  # tqdm's bar: "3 rows [00:00, 1234.56 rows/s]"


def test_the_command_line(tmp_path):
    """The real command in its own process, as an operator or a Kubernetes Job runs it (stdout a pipe)."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "PYTHONUNBUFFERED": "1"}

    def manage(*args):
        command = [sys.executable, "manage.py", *map(str, args)]
        return subprocess.run(command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120)

    assert manage("migrate", "--noinput").returncode == 0
    loaded = manage("loadcsv")
    bad = manage("loadcsv", write_csv(tmp_path, [GOOD_ROWS[0], BAD_ROWS["age-nan"][0]]))

    assert loaded.returncode == 0
    assert f"Loaded {REAL_CSV}: 887 rows, 887 created, 0 updated, 0 unchanged" in loaded.stdout.splitlines()
    assert loaded.stderr == ""  # no progress bar: stdout is not a terminal
    assert bad.returncode == 1
    assert f"{tmp_path / 'data.csv'}: line 3, column Age: 'NaN' is not a finite number" in bad.stderr
    assert "1 error(s); nothing was loaded" in bad.stderr
    assert "Traceback" not in bad.stderr


# --- a big file streams ----------------------------------------------------------------------


def write_generated_csv(path, rows):
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(CSV_HEADER)
        for n in range(rows):
            writer.writerow(
                [
                    n % 2,
                    n % 3 + 1,
                    f"Passenger {n}",
                    ("male", "female")[n % 2],
                    n % 80 + 0.5,
                    n % 4,
                    n % 3,
                    n % 500 + 0.25,
                ]
            )
    return path


def _status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


def load_measuring_memory(path):
    """Load the file; return its result and how far the process's peak RSS rose above its RSS before."""
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    before = _status_kib("VmRSS")
    result = load_passengers_csv(path=path)
    return result, (_status_kib("VmHWM") - before) * 1024


# PostgreSQL only: this is the database production loads into, and on SQLite the 200,000 inserts
# would add about a minute to the SQLite pass without telling us anything more about streaming.
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the 200,000-row load runs on PostgreSQL only")
@pytest.mark.slow
def test_a_200000_row_file_loads_completely_and_streams(db, tmp_path, record_property):
    small = write_generated_csv(tmp_path / "20k.csv", 20_000)
    big = write_generated_csv(tmp_path / "200k.csv", 200_000)
    assert big.stat().st_size > 9 * small.stat().st_size

    started = time.monotonic()
    small_result, small_growth = load_measuring_memory(small)
    big_result, big_growth = load_measuring_memory(big)
    elapsed = time.monotonic() - started

    assert (small_result.rows, small_result.created) == (20_000, 20_000)
    assert (big_result.rows, big_result.created, big_result.unchanged) == (200_000, 180_000, 20_000)
    assert Passenger.objects.count() == 200_000
    assert Passenger.objects.filter(name="Passenger 199999").exists()
    # Ten times the rows, yet the peak barely moves: rows are read, checked and written in
    # batches, never all held at once (200,000 model instances would take hundreds of megabytes).
    record_property(
        "figures", f"peak RSS growth: 20k rows {small_growth / 1e6:.1f} MB, 200k rows {big_growth / 1e6:.1f} MB"
    )
    record_property("figures", f"both loads: {elapsed:.0f} s")
    assert big_growth < small_growth + 25 * 1024 * 1024
    assert big_growth < 40 * 1024 * 1024
