"""PostgreSQL for tests and the benchmark: the machine's server on 127.0.0.1:5432, trust auth.

Every database made here is a throw-away one, named by its caller and dropped by it.
"""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

from tests.harness import REPO, project_env


def psql(sql: str, database: str = "postgres") -> str:
    """Run SQL as the postgres user; returns the unaligned, tuples-only output."""
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def database_url(name: str, port: int = 5432) -> str:
    return f"postgres://postgres@127.0.0.1:{port}/{name}"


def recreate_database(name: str, template: str | None = None) -> None:
    drop_database(name)
    psql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))


def drop_database(name: str) -> None:
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def manage(*args: str, url: str) -> str:
    """`manage.py <args>` against the database at url; returns its standard output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=project_env(DATABASE_URL=url),
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def load_dataset(name: str) -> str:
    """A fresh database `name`, migrated and loaded with the 887 passengers; returns its URL."""
    recreate_database(name)
    url = database_url(name)
    manage("migrate", "--noinput", url=url)
    manage("loadcsv", url=url)
    return url


@contextlib.contextmanager
def dataset_database(name: str) -> Iterator[str]:
    """load_dataset(name) for the duration of the block, dropped afterwards even on failure."""
    try:
        yield load_dataset(name)
    finally:
        drop_database(name)


def create_token(url: str, username: str, *permissions: str) -> str:
    """A user holding the given passenger permissions (codenames) and a DRF token; returns the key."""
    script = (
        "from django.contrib.auth.models import Permission, User;"
        "from rest_framework.authtoken.models import Token;"
        f"user = User.objects.create_user({username!r});"
        f"user.user_permissions.add(*Permission.objects.filter(codename__in={list(permissions)!r}));"
        "print(Token.objects.create(user=user).key)"
    )
    return manage("shell", "-c", script, url=url).splitlines()[-1]


def scratch_name(purpose: str) -> str:
    """A database name of its own for one test module: the suite's database name (DATABASE_URL)
    plus the purpose, so that suites run side by side on other databases do not collide."""
    suite = os.environ.get("DATABASE_URL", "")
    base = suite.rsplit("/", 1)[-1] if suite.startswith("postgres") else "titanic"
    return f"{base}_{purpose}"
