"""The hand-written SQL of the hot paths: every other query of the app goes through the ORM.

Performance contract (figures and method in docs/performance.md):

- A read answered from the cache costs one database round trip: `current_stamp()` for an anonymous
  read, `stamp_and_token_user(key)` for a read with a DRF token, which checks the token and its
  owner in the same query as the stamp. (A miss renders, then reads the stamp once more.)
- Both run on PostgreSQL as prepared statements (`titanic.postgresql`'s `prepared_cursor()`),
  parsed and planned once per connection: with a psycopg loop one round trip took 115 -> 86 µs for
  the stamp and 204 -> 124 µs for the joined query when prepared. SQLite prepares nothing; they run
  on Django's plain cursor there.
- `person_row(key)` reads one passenger's contract fields for GET /people/{uuid} when the cache
  misses, on Django's plain cursor: one indexed query, 1.0 -> 0.70 ms wall per request against the
  ORM and its filterset.

Raw SQL, not the ORM: building an ORM query costs more than these queries themselves. The table
and column names still come from the models' _meta, so a renamed field changes the SQL with it.
"""

import functools
import uuid
from typing import cast

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Field, Model
from rest_framework.authtoken.models import Token

from passengers.models import PERSON_FIELDS, DatasetVersion, Passenger, PersonRow

# The dataset stamp as the database returns it, a UUID on PostgreSQL and its 32 hex digits on SQLite:
# it is only compared and put into cache keys, so it is not converted.
Stamp = uuid.UUID | str


def current_stamp() -> Stamp | None:
    """The dataset stamp (models.DatasetVersion), or None if its row is gone (deleted by hand;
    migrate or flush restores it): nothing can be cached without it."""
    with _stamp_cursor() as cursor:
        cursor.execute(_current_stamp_sql())
        row = cursor.fetchone()
    return row[0] if row else None


def stamp_and_token_user(key: str) -> tuple[Stamp, User | None] | None:
    """(the dataset stamp, the active owner of the DRF token `key` or None when the token is unknown
    or its owner inactive), or None if the stamp's row is gone. The owner is an unsaved user object
    with its id and username: enough to name the reader, not to check permissions."""
    with _stamp_cursor() as cursor:
        cursor.execute(_stamp_and_token_user_sql(), [key])
        row = cursor.fetchone()
    if row is None:
        return None
    stamp, user_id, username = row
    user = None if user_id is None else get_user_model()(pk=user_id, username=username, is_active=True)
    return stamp, user


def person_row(key: str) -> PersonRow | None:
    """The contract's fields of the passenger whose uuid is `key`, or None (unknown, or not a UUID)."""
    try:
        key_uuid = uuid.UUID(key)
    except ValueError:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_person_row_sql(), [Passenger._meta.pk.get_db_prep_value(key_uuid, connection)])
        row = cursor.fetchone()
    return None if row is None else PersonRow._make((key_uuid, *row))


def _stamp_cursor() -> CursorWrapper:
    """Prepared on PostgreSQL (the project's backend, titanic.postgresql, on that vendor), plain on SQLite."""
    return connection.prepared_cursor() if connection.vendor == "postgresql" else connection.cursor()  # type: ignore[attr-defined]


def _column(model: type[Model], name: str) -> str:
    field = cast(Field, model._meta.get_field(name))  # a concrete field: a column, not a reverse relation
    return f"{model._meta.db_table}.{field.column}"


@functools.cache
def _current_stamp_sql() -> str:
    meta = DatasetVersion._meta
    return f"SELECT {meta.get_field('stamp').column} FROM {meta.db_table} WHERE {meta.pk.column} = 1"


@functools.cache
def _stamp_and_token_user_sql() -> str:
    user = get_user_model()
    return (
        f"SELECT {_column(DatasetVersion, 'stamp')}, {_column(user, 'id')}, {_column(user, 'username')}"
        f" FROM {DatasetVersion._meta.db_table}"
        f" LEFT JOIN {Token._meta.db_table} ON {_column(Token, 'key')} = %s"
        f" LEFT JOIN {user._meta.db_table} ON {_column(user, 'id')} = {_column(Token, 'user')}"
        f" AND {_column(user, 'is_active')}"
        f" WHERE {_column(DatasetVersion, 'id')} = 1"
    )


@functools.cache
def _person_row_sql() -> str:
    column = {field.name: field.column for field in Passenger._meta.concrete_fields if field.column}
    columns = ", ".join(column[name] for name in PERSON_FIELDS[1:])
    return f"SELECT {columns} FROM {Passenger._meta.db_table} WHERE {column['uuid']} = %s"
