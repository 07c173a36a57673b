"""A throw-away PostgreSQL cluster of a test's own: initdb in a temporary directory, its own port.

A test can crash, restart or fill it without touching the machine's shared server on 5432:

    with PgCluster(max_connections=12) as cluster:
        url = cluster.create_dataset("titanic_rel_faults")
        cluster.stop(mode="immediate")   # a crash: WAL recovery at the next start
        cluster.start()

Point-in-time recovery (the restore drill, tests/drill.py): a cluster that archives its WAL, a base
backup of it, and a new cluster recovered from both up to a target:

    with PgCluster(wal_archive=True) as origin:
        backup = origin.base_backup()
        ...                                 # writes, then the damage
        origin.switch_wal()                 # the segment holding the damage reaches the archive
        restored = origin.recover(backup, recovery_target_xid="1234")

The server runs as the `postgres` user when the tests run as root (PostgreSQL refuses root), with
trust authentication on 127.0.0.1 only, until a test adds its own rules (prepend_hba) or TLS
(enable_tls).
"""

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, urlencode

import psycopg

from tests.harness.net import free_port
from tests.harness.postgres import manage


def _bindir() -> Path:
    """The newest installed PostgreSQL's programs (Debian keeps initdb and pg_ctl off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    return Path(shutil.which("initdb") or "initdb").parent


class PgCluster:
    def __init__(self, wal_archive: bool = False, **settings: str | int):
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="titanic-pgcluster-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        # Continuous archiving: each completed WAL segment is copied here, never overwritten.
        self.wal_archive = self.directory / "wal-archive" if wal_archive else None
        if self.wal_archive:
            archive = f"'test ! -f {self.wal_archive}/%f && cp %p {self.wal_archive}/%f'"
            settings = {"wal_level": "replica", "archive_mode": "on", "archive_command": archive, **settings}
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
            self._configure(self.settings)
            if self.wal_archive:
                self._as_owner("mkdir", self.wal_archive)
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

    def reload(self) -> None:
        """Make the server read its configuration files again; returns once new connections see them."""
        loaded = self.sql("SELECT pg_conf_load_time()")[0][0]
        self._run("pg_ctl", "-D", self.data, "reload")
        deadline = time.monotonic() + 30
        while self.sql("SELECT pg_conf_load_time()")[0][0] == loaded:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the configuration was not reloaded:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def configure(self, **settings: str | int) -> None:
        """Set postgresql.conf parameters (those a reload applies) and reload."""
        self._configure(settings)
        self.reload()

    def prepend_hba(self, *lines: str) -> None:
        """Put pg_hba.conf rules before the others (the first that matches a connection decides) and reload."""
        hba = self.data / "pg_hba.conf"
        hba.write_text("".join(f"{line}\n" for line in lines) + hba.read_text())
        self.reload()

    def enable_tls(self) -> None:
        """TLS for the clients that ask for it, with a self-signed certificate (sslmode=require does not
        verify it, as with RDS without its CA bundle)."""
        cert, key = self.directory / "server.crt", self.directory / "server.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        key.chmod(0o600)
        if self._as_postgres:
            for path in (cert, key):
                shutil.chown(path, "postgres")
        self.configure(ssl="on", ssl_cert_file=f"'{cert}'", ssl_key_file=f"'{key}'")

    def running(self) -> bool:
        status = self._run("pg_ctl", "-D", self.data, "status", check=False)
        return status.returncode == 0

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            if self.data.exists() and self.running():
                self.stop(mode="immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres", user: str = "postgres", password: str = "", **query: str) -> str:
        """A DATABASE_URL; query: libpq parameters such as sslmode."""
        credentials = f"{user}:{quote(password, safe='')}" if password else user
        return f"postgres://{credentials}@127.0.0.1:{self.port}/{database}" + (f"?{urlencode(query)}" if query else "")

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

    def base_backup(self) -> Path:
        """pg_basebackup of the running server (plain format, with the WAL it needs to be consistent)."""
        target = self.directory / "base-backup"
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-D", target,
                  "--checkpoint=fast", "--wal-method=stream", "--no-sync")  # fmt: skip
        return target

    def switch_wal(self, timeout: float = 60) -> str:
        """Closes the current WAL segment and returns its name once the archiver has copied it."""
        segment = self.sql("SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        deadline = time.monotonic() + timeout
        while (self.sql("SELECT last_archived_wal FROM pg_stat_archiver")[0][0] or "") < segment:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"WAL segment {segment} not archived within {timeout} s:\n{self.log.read_text()[-2000:]}"
                )
            time.sleep(0.05)
        return segment

    def recover(self, backup: Path, timeout: float = 120, **target: str) -> "PgCluster":
        """Point-in-time recovery into a fresh data directory: a copy of a base backup of this cluster
        replays its archived WAL up to the recovery target (recovery_target_xid=...,
        recovery_target_inclusive=...), then is promoted. Returns the new cluster, running and
        writable; remove() it when done."""
        if self.wal_archive is None:
            raise ValueError("no WAL archive to recover from: PgCluster(wal_archive=True)")
        cluster = PgCluster()
        try:
            cluster._as_owner("cp", "-a", backup, cluster.data)
            recovery = {
                "restore_command": f"'cp {self.wal_archive}/%f %p'",
                **{name: f"'{value}'" for name, value in target.items()},
                "recovery_target_action": "'promote'",
                "archive_mode": "off",  # a new timeline: archive it anew, after a new base backup
                **cluster.settings,  # its own port and socket directory
            }
            cluster._configure(recovery)
            cluster._as_owner("touch", cluster.data / "recovery.signal")
            deadline = time.monotonic() + timeout
            # pg_ctl returns once the copy is consistent (read-only connections); promotion comes after
            # the target. A target the archive never reaches stops the server.
            started = cluster._run(
                "pg_ctl", "-D", cluster.data, "-l", cluster.log, "-w", "-t", "60", "start", check=False
            )
            while started.returncode != 0 or not cluster._promoted():
                if started.returncode != 0 or time.monotonic() > deadline or not cluster.running():
                    raise RuntimeError(f"recovery did not end in promotion:\n{cluster.log.read_text()[-3000:]}")
                time.sleep(0.05)
        except BaseException:
            cluster.remove()
            raise
        return cluster

    def _promoted(self) -> bool:
        with contextlib.suppress(psycopg.OperationalError):  # starting up, or stopped
            return not self.sql("SELECT pg_is_in_recovery()")[0][0]
        return False

    def _configure(self, settings: dict[str, str | int]) -> None:
        """Appended to postgresql.conf: a later line overrides an earlier one."""
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _run(self, program: str, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
        return self._as_owner(_bindir() / program, *args, check=check)

    def _as_owner(self, *command: str | Path, check: bool = True) -> subprocess.CompletedProcess:
        """A command run as the server's user."""
        arguments = [str(part) for part in command]
        if self._as_postgres:
            shutil.chown(self.directory, "postgres")
            arguments = ["runuser", "-u", "postgres", "--", *arguments]
        return subprocess.run(arguments, check=check, capture_output=True, text=True, timeout=120)
