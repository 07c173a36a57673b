"""A throw-away PostgreSQL cluster of a test's own: initdb in a temporary directory, its own port.

A test can crash, restart or fill it without touching the machine's shared server on 5432:

    with PgCluster(max_connections=12) as cluster:
        url = cluster.create_dataset("titanic_rel_faults")
        cluster.stop(mode="immediate")   # a crash: WAL recovery at the next start
        cluster.start()

The server runs as the `postgres` user when the tests run as root (PostgreSQL refuses root), with
trust authentication on 127.0.0.1 only.
"""

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import psycopg

from tests.support.net import free_port
from tests.support.postgres import manage


def _bindir() -> Path:
    """The newest installed PostgreSQL's programs (Debian keeps initdb and pg_ctl off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    return Path(shutil.which("initdb") or "initdb").parent


class PgCluster:
    def __init__(self, **settings: str | int):
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="titanic-pgcluster-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.settings = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.directory}'",
            "superuser_reserved_connections": 0,  # the tests connect as the superuser
            "shared_buffers": "'32MB'",
            **settings,
        }
        self._as_postgres = os.geteuid() == 0

    def __enter__(self) -> "PgCluster":
        try:
            self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.writelines(f"{name} = {value}\n" for name, value in self.settings.items())
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.remove()

    def start(self) -> None:
        """Returns once the server accepts connections."""
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """mode: smart, fast (rolls back open transactions), immediate (a crash: no checkpoint)."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        status = self._run("pg_ctl", "-D", self.data, "status", check=False)
        return status.returncode == 0

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            if self.data.exists() and self.running():
                self.stop(mode="immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres", **options) -> psycopg.Connection:
        return psycopg.connect(self.url(database), connect_timeout=5, **options)

    def sql(self, statement: str, database: str = "postgres") -> list[tuple]:
        """Run one statement in autocommit; returns the rows (none for a statement without result)."""
        with self.connect(database, autocommit=True) as connection:
            cursor = connection.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def create_dataset(self, database: str) -> str:
        """A new database, migrated and loaded with the 887 passengers; returns its URL."""
        self.sql(f"CREATE DATABASE {database}")
        url = self.url(database)
        manage("migrate", "--noinput", url=url)
        manage("loadcsv", url=url)
        return url

    def _run(self, program: str, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(_bindir() / program), *map(str, args)]
        if self._as_postgres:
            shutil.chown(self.directory, "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)
