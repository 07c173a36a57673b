"""The database identities of the service (docs/runbook.md, "Database credentials"), set up by
`manage.py dbroles` connected as the administrator (RDS's master user, or a superuser locally):

- the migrator owns the schema: every table, view, sequence and function in schema public, and
  CREATE on it; it runs `migrate` and `loadcsv`;
- the app may SELECT, INSERT, UPDATE and DELETE rows of every table and use the sequences, today's
  and those the migrator creates later (default privileges), and nothing else: no DDL, no TRUNCATE,
  no role management;
- both get `rds_iam` (RDS IAM authentication) where that role exists, i.e. on RDS.

Idempotent, in one transaction. On a database whose tables belong to someone else (the master user
that ran the migrations until now), they are handed to the migrator. An administrator that is not
a superuser must be a member of the migrator to give it objects and set its default privileges:
it is one only inside the transaction, because RDS counts nested grants, and a member of rds_iam,
even through another role, may log in with an IAM token only (its password would stop working). It
keeps the same row privileges as the app, so what still connects as it (the pods, until their
release switches users) keeps working.
"""

import dataclasses

from django.db import connection, transaction

SCHEMA = "public"
# Ownership moves take an ACCESS EXCLUSIVE lock per table until the end: give up rather than queue
# the service's queries behind a long transaction.
LOCK_TIMEOUT = "3s"
OBJECT_KINDS = {
    "r": "TABLE",
    "p": "TABLE",
    "v": "VIEW",
    "m": "MATERIALIZED VIEW",
    "S": "SEQUENCE",
    "function": "ROUTINE",
}
DML = "SELECT, INSERT, UPDATE, DELETE"


@dataclasses.dataclass
class Role:
    name: str
    password: str | None = None  # for databases without IAM authentication (local, compose)


def set_up(*, app: Role, migrator: Role) -> list[str]:
    """Create or update both roles and their privileges; returns what was done, one line each."""
    done: list[str] = []
    quote = connection.ops.quote_name
    app_name, migrator_name = quote(app.name), quote(migrator.name)
    with transaction.atomic(), connection.cursor() as cursor:

        def one(sql, params=()):
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        for role in (migrator, app):
            if not one("SELECT count(*) FROM pg_roles WHERE rolname = %s", [role.name]):
                cursor.execute(f"CREATE ROLE {quote(role.name)} LOGIN")
                done.append(f"created role {role.name}")
            if role.password:
                cursor.execute(f"ALTER ROLE {quote(role.name)} LOGIN PASSWORD %s", [role.password])
                done.append(f"set the password of {role.name}")

        if one("SELECT count(*) FROM pg_roles WHERE rolname = 'rds_iam'"):
            for role in (migrator, app):
                if not one("SELECT pg_has_role(%s, 'rds_iam', 'MEMBER')", [role.name]):
                    cursor.execute(f"GRANT rds_iam TO {quote(role.name)}")
                    done.append(f"granted rds_iam to {role.name}")
        else:
            done.append("no rds_iam role (not RDS): IAM authentication not granted")

        cursor.execute("SELECT rolname, rolsuper FROM pg_roles WHERE rolname = current_user")
        admin, superuser = cursor.fetchone()
        if not superuser:
            cursor.execute(f"GRANT {migrator_name} TO {quote(admin)}")  # until the end of the transaction

        database = quote(connection.settings_dict["NAME"])
        cursor.execute(f"GRANT CONNECT ON DATABASE {database} TO {app_name}, {migrator_name}")
        # PostgreSQL before 15 let every role create objects in public; databases created then keep it.
        cursor.execute(f"REVOKE CREATE ON SCHEMA {SCHEMA} FROM PUBLIC")
        cursor.execute(f"GRANT USAGE, CREATE ON SCHEMA {SCHEMA} TO {migrator_name}")
        cursor.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {app_name}")

        handed = _hand_schema_objects_to(migrator.name, cursor)
        if handed:
            done.append(f"handed {len(handed)} objects to {migrator.name}: {', '.join(handed)}")

        # Exactly DML: first take back anything more (TRUNCATE, REFERENCES, TRIGGER) given earlier.
        cursor.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {SCHEMA} FROM {app_name}")
        cursor.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {SCHEMA} FROM {app_name}")
        _grant_rows(cursor, app_name, migrator_name)
        tables = one(f"SELECT count(*) FROM pg_tables WHERE schemaname = '{SCHEMA}'")
        done.append(f"{app.name}: {DML} on the {tables} tables of schema {SCHEMA} and on those {migrator.name} creates")
        if not superuser:
            _grant_rows(cursor, quote(admin), migrator_name)
            cursor.execute(f"REVOKE {migrator_name} FROM {quote(admin)}")
            done.append(f"{admin}: the same, and no membership in {migrator.name}")
    return done


def _grant_rows(cursor, grantee: str, migrator: str) -> None:
    """DML on every table and use of every sequence of the schema, and of those the migrator creates."""
    cursor.execute(f"GRANT {DML} ON ALL TABLES IN SCHEMA {SCHEMA} TO {grantee}")
    cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {grantee}")
    future = f"ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} IN SCHEMA {SCHEMA}"
    cursor.execute(f"{future} GRANT {DML} ON TABLES TO {grantee}")
    cursor.execute(f"{future} GRANT USAGE, SELECT ON SEQUENCES TO {grantee}")


def _hand_schema_objects_to(owner: str, cursor) -> list[str]:
    """ALTER ... OWNER TO owner for every object of the schema that owner does not own; returns them.

    Sequences that belong to a column (identity, serial) follow their table; objects of extensions
    stay with their extension."""
    kinds = ", ".join(f"'{kind}'" for kind in OBJECT_KINDS if len(kind) == 1)  # pg_class.relkind
    cursor.execute(
        f"""
        SELECT c.relkind::text, format('%%I.%%I', n.nspname, c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind IN ({kinds})
          AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = %s)
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype IN ('a', 'i', 'e'))
        UNION ALL
        SELECT 'function', format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = %s AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = %s)
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')
        ORDER BY 1, 2
        """,
        [SCHEMA, owner, SCHEMA, owner],
    )
    objects = cursor.fetchall()
    for kind, name in objects:
        cursor.execute(f"ALTER {OBJECT_KINDS[kind]} {name} OWNER TO {connection.ops.quote_name(owner)}")
    return [name for _, name in objects]
