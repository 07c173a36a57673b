"""manage.py loadcsv timed at growing sizes, each into a fresh migrated database."""

import csv
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import log
from tests.harness import REPO, project_env
from tests.harness.postgres import database_url, drop_database, manage, psql, recreate_database

COLUMNS = ["Survived", "Pclass", "Name", "Sex", "Age", "Siblings/Spouses Aboard", "Parents/Children Aboard", "Fare"]


def generate_csv(path: Path, rows: int) -> None:
    """Valid rows with unique names, the fixture's columns, reproducible for a given size."""
    rng = random.Random(rows)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(COLUMNS)
        for number in range(rows):
            writer.writerow(
                [
                    rng.choice("01"),
                    rng.choice("123"),
                    f"Bench Passenger {number:07d} {rng.choice(['Smith', 'Jones', 'Brown', 'Kelly'])}",
                    rng.choice(["male", "female"]),
                    rng.choice([str(rng.randint(1, 80)), f"{rng.uniform(0.4, 80):.1f}"]),
                    rng.randint(0, 5),
                    rng.randint(0, 4),
                    f"{rng.uniform(0, 512):.4f}",
                ]
            )


def run_loadcsv(path: Path, database: str) -> tuple[float, float]:
    """Wall time and peak RSS in MB (os.wait4's rusage of this one child) of manage.py loadcsv."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "loadcsv", str(path)],
        cwd=REPO,
        env=project_env(DATABASE_URL=database_url(database)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"loadcsv failed: {stderr.decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def time_one_size(rows: int, database: str, template: str, workdir: Path) -> dict[str, Any]:
    path = workdir / f"passengers-{rows}.csv"
    generate_csv(path, rows)
    file_mb = round(path.stat().st_size / 2**20, 2)
    recreate_database(database, template=template)
    seconds, peak_mb = run_loadcsv(path, database)
    path.unlink()
    loaded = int(psql("SELECT count(*) FROM passengers_passenger", database=database))
    if loaded != rows:
        raise RuntimeError(f"loadcsv loaded {loaded} of {rows} rows")
    log(f"  loadcsv {rows:>7} rows: {seconds:6.2f} s, {rows / seconds:8.0f} rows/s, peak RSS {peak_mb:.1f} MB")
    return {
        "rows": rows,
        "file_mb": file_mb,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "peak_rss_mb": round(peak_mb, 1),
    }


def loadcsv_scaling(sizes: list[int], prefix: str, workdir: Path) -> list[dict[str, Any]]:
    template, database = f"{prefix}_load_template", f"{prefix}_load"
    recreate_database(template)
    manage("migrate", "--noinput", url=database_url(template))
    try:
        results = [time_one_size(rows, database, template, workdir) for rows in sizes]
    finally:
        drop_database(database)
        drop_database(template)
    first = results[0]
    for result in results:
        result["time_vs_smallest"] = round(result["seconds"] / first["seconds"], 2)
        result["rows_vs_smallest"] = round(result["rows"] / first["rows"], 2)
    return results
