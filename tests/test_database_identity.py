"""The service's database identities: `manage.py dbroles`, the least-privilege app
user and the migrator, and RDS IAM authentication under credential rotation.

PostgreSQL is a cluster of this module's own (tests/harness/pgcluster.py) set up like RDS: TLS, a
master user `titanic` that creates roles and databases but is no superuser, and an `rds_iam` role.
The privilege tests log the two users in with the passwords dbroles can set; the IAM tests send them
through PAM to a validator that checks each token as RDS does, against a fake EKS Pod Identity agent
that replaces the app's AWS credentials every second (tests/harness/rds_iam.py). The service is
gunicorn with the project's config. Run with -s to see the figures (docs/reliability.md).
"""

import io
import json
import os
import subprocess
import sys
import time
import types
import uuid

import botocore.session  # type: ignore[import-untyped]
import psycopg
import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from psycopg import errors

from tests import contract
from tests.harness import REPO, project_env
from tests.harness.gunicorn import HTTPS, Gunicorn
from tests.harness.pgcluster import PgCluster, _bindir
from tests.harness.rds_iam import (
    PodIdentityAgent,
    Refused,
    decisions,
    pam_service,
    pam_unavailable,
    system_python,
    verify,
)
from tests.test_faults import Load, assert_clear, tally
from titanic.postgresql import iam as iam_auth
from titanic.postgresql.base import DatabaseWrapper

MASTER = "titanic"  # RDS's master user: CREATEROLE and CREATEDB, not a superuser
MASTER_PASSWORD = "master-password-1"  # pragma: allowlist secret
APP, MIGRATOR = "titanic_app", "titanic_migrator"
PASSWORDS = {APP: "app-password-1", MIGRATOR: "migrator-password-1"}  # pragma: allowlist secret
PRODUCTION = "titanic"  # migrated by the master, as production is today, then handed over by dbroles
IAM_DATABASE = "titanic_iam"
REGION = "eu-west-1"
ROTATION_EVERY = 1.0  # seconds between new credentials from the agent
LIFETIME = 5.0  # seconds credentials, and tokens, stay valid (RDS tokens: 900)
ADMIN, ADMIN_PASSWORD = "identity-admin", "an-admin-password-1"  # pragma: allowlist secret


def manage(*args: str, url: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """`manage.py <args>` with DATABASE_URL=url and env; raises with its output if it fails and check."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=project_env(DATABASE_URL=url, **{"LOG_LEVEL": "WARNING", **env}),  # stdout: the command's own lines
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode:
        raise AssertionError(f"manage.py {' '.join(args)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def dbroles(cluster, database, **env):
    return manage("dbroles", url=cluster.url(database, MASTER, MASTER_PASSWORD), **env).stdout.splitlines()


def owners(cluster, database):
    """{object: owner} for every table, sequence and function of schema public."""
    rows = cluster.sql(
        """
        SELECT c.relname, c.relowner::regrole::text FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'S', 'v')
        UNION ALL
        SELECT p.proname, p.proowner::regrole::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
        """,
        database,
    )
    return dict(rows)


def privileges(cluster, database):
    """Everything dbroles decides, as text: owners, grants (in any order), default privileges, memberships."""
    acl = "coalesce((SELECT string_agg(a::text, ' ' ORDER BY a::text) FROM unnest({}) a), '')"
    return cluster.sql(
        f"""
        SELECT 'relation', relname, relowner::regrole::text, {acl.format("relacl")}
        FROM pg_class WHERE relnamespace = 'public'::regnamespace
        UNION ALL SELECT 'function', proname, proowner::regrole::text, {acl.format("proacl")}
        FROM pg_proc WHERE pronamespace = 'public'::regnamespace
        UNION ALL SELECT 'default', defaclobjtype::text, defaclrole::regrole::text, {acl.format("defaclacl")}
        FROM pg_default_acl
        UNION ALL SELECT 'schema', nspname, nspowner::regrole::text, {acl.format("nspacl")}
        FROM pg_namespace WHERE nspname = 'public'
        UNION ALL SELECT 'member', roleid::regrole::text, member::regrole::text, '' FROM pg_auth_members
        ORDER BY 1, 2, 3
        """,
        database,
    )


def scalar(db, sql, params=()):
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def assert_rows_only(user_url):
    """The user reads and writes rows, and is refused every other kind of statement."""
    with psycopg.connect(user_url, autocommit=True) as db:
        stamp = scalar(db, "SELECT stamp FROM passengers_datasetversion")
        db.execute(
            "UPDATE passengers_passenger SET fare = fare WHERE uuid = (SELECT uuid FROM passengers_passenger LIMIT 1)"
        )
        assert scalar(db, "SELECT stamp FROM passengers_datasetversion") != stamp, "the trigger did not run"
        db.execute("INSERT INTO django_session VALUES ('identity-check', 'x', now())")
        db.execute("DELETE FROM django_session WHERE session_key = 'identity-check'")
        refused = [
            "CREATE TABLE identity_t (i int)",
            "CREATE FUNCTION identity_f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE SCHEMA identity_s",
            "ALTER TABLE passengers_passenger ADD COLUMN identity_c int",
            "CREATE INDEX ON passengers_passenger (fare)",
            "DROP TRIGGER passengers_passenger_changed ON passengers_passenger",
            "DROP TABLE django_session",
            "TRUNCATE passengers_passenger",
            "CREATE ROLE identity_r",
            f"ALTER ROLE {MIGRATOR} PASSWORD 'x'",
            f"GRANT {MIGRATOR} TO CURRENT_USER",
            "CREATE DATABASE identity_d",
        ]
        for statement in refused:
            with pytest.raises(errors.InsufficientPrivilege):
                db.execute(statement)


# --- the app's configuration and tokens (no database needed) ---------------------------------------

IAM_DATABASE_SETTINGS = {
    "ENGINE": "titanic.postgresql",
    "USER": APP,
    "PASSWORD": "",
    "HOST": "db.example",
    "PORT": 5432,
    "OPTIONS": {"sslmode": "require"},
}


def test_a_complete_configuration_turns_iam_authentication_on():
    assert iam_auth.connection_options(IAM_DATABASE_SETTINGS, region=REGION) == {iam_auth.REGION_OPTION: REGION}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"ENGINE": "django_prometheus.db.backends.sqlite3"}, "must be a PostgreSQL URL"),
        ({"PASSWORD": "secret"}, "must have no password"),  # pragma: allowlist secret
        ({"HOST": ""}, "must name the user and the host"),
        ({"OPTIONS": {}}, "must set sslmode to one of require"),
        ({"OPTIONS": {"sslmode": "prefer"}}, "must set sslmode to one of require"),
        ({"region": ""}, "AWS_REGION must be set"),
    ],
)
def test_each_misconfiguration_is_named(change, problem):
    region = change.pop("region", REGION)
    with pytest.raises(ImproperlyConfigured, match=problem):
        iam_auth.connection_options({**IAM_DATABASE_SETTINGS, **change}, region=region)


def test_a_misconfigured_service_does_not_start():
    result = manage(
        "check",
        url="postgres://titanic_app:pw@db.example/titanic",  # pragma: allowlist secret
        check=False,
        DATABASE_IAM_AUTH="1",
        AWS_REGION="",
    )
    assert result.returncode == 1
    assert "ImproperlyConfigured: DATABASE_IAM_AUTH=1: DATABASE_URL must have no password" in result.stderr
    assert "AWS_REGION must be set" in result.stderr


def test_every_token_is_made_with_the_credentials_of_its_moment(tmp_path, monkeypatch):
    """The backend's connection parameters carry a new token each time (from the container credentials
    endpoint, Pod Identity's, renewed by botocore); the region option never reaches psycopg."""
    options = {"sslmode": "require", **iam_auth.connection_options(IAM_DATABASE_SETTINGS, region=REGION)}
    backend = DatabaseWrapper({**IAM_DATABASE_SETTINGS, "NAME": "titanic", "OPTIONS": options, "TIME_ZONE": None})
    with PodIdentityAgent(tmp_path, endpoint="db.example:5432", region=REGION, every=3600, lifetime=60) as agent:
        for name, value in agent.env().items():
            monkeypatch.setenv(name, value)
        iam_auth._rds_client.cache_clear()
        try:
            params = backend.get_connection_params()
            first = params["password"]
            agent.rotate()
            second = backend.get_connection_params()["password"]
            monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(tmp_path / "missing"))
            agent.rotate()  # botocore must ask again, and now cannot
            with pytest.raises(psycopg.OperationalError, match=f"cannot make an RDS IAM auth token for {APP}@db"):
                iam_auth.auth_token(host="db.example", port=5432, user=APP, region=REGION)
        finally:
            iam_auth._rds_client.cache_clear()
        state = json.loads(agent.state_file.read_text())
    now = time.time()
    assert [verify(first, APP, state, now), verify(second, APP, state, now)] == agent.issued[:2]
    assert iam_auth.REGION_OPTION not in params and params["sslmode"] == "require"


@pytest.mark.django_db  # everything dbroles does is rolled back with the test's transaction
def test_dbroles_as_a_superuser(monkeypatch):
    """Local and compose: the suite's own database, its superuser, passwords instead of IAM."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("dbroles needs PostgreSQL")
    app, migrator = f"test_app_{uuid.uuid4().hex[:8]}", f"test_schema_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DATABASE_APP_USER", app)
    monkeypatch.setenv("DATABASE_MIGRATOR_USER", migrator)
    monkeypatch.setenv("DATABASE_APP_PASSWORD", "a-local-password")  # pragma: allowlist secret
    first, again = io.StringIO(), io.StringIO()
    call_command("dbroles", stdout=first)
    call_command("dbroles", stdout=again)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'rds_iam'")
        rds = cursor.fetchone()[0]
        cursor.execute(
            "SELECT array_agg(DISTINCT tableowner), bool_and(has_table_privilege(%s, tablename, 'DELETE')),"
            " bool_or(has_table_privilege(%s, tablename, 'TRUNCATE')), has_schema_privilege(%s, 'public', 'CREATE'),"
            " has_schema_privilege(%s, 'public', 'CREATE'), (SELECT rolpassword IS NOT NULL FROM pg_authid"
            " WHERE rolname = %s) FROM pg_tables WHERE schemaname = 'public'",
            [app, app, app, migrator, app],
        )
        owners, app_deletes, app_truncates, app_creates, migrator_creates, app_password = cursor.fetchone()
    assert f"created role {app}" in first.getvalue() and f"set the password of {app}" in first.getvalue()
    assert ("no rds_iam role (not RDS): IAM authentication not granted" in first.getvalue()) == (not rds)
    assert "postgres:" not in first.getvalue()  # a superuser needs neither membership nor grants
    second = [line.split(":")[0] for line in again.getvalue().splitlines() if "rds_iam" not in line]
    assert second == [f"set the password of {app}", app]  # nothing else to do
    assert owners == [migrator]
    assert (app_deletes, app_truncates, app_creates, migrator_creates, app_password) == (True, False, False, True, True)


def test_dbroles_refuses_one_user_for_both(monkeypatch):
    monkeypatch.setenv("DATABASE_APP_USER", "titanic")
    monkeypatch.setenv("DATABASE_MIGRATOR_USER", "titanic")
    with pytest.raises(CommandError, match="must be different users"):
        call_command("dbroles")


# --- the validator checks what RDS checks (no database needed) ------------------------------------


@pytest.fixture(scope="module")
def signed():
    """A token signed by botocore with known session credentials, the moment it was made, and the
    validator's state in which it is valid."""
    key_id = "ASIAEXAMPLEKEY000001"  # pragma: allowlist secret
    secret, session_token = "example-secret", "example-session-token"
    client = botocore.session.get_session().create_client(
        "rds",
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=session_token,
    )
    made = time.time()
    token = client.generate_db_auth_token("127.0.0.1", 5432, APP, REGION)
    state = {
        "endpoint": "127.0.0.1:5432",
        "region": REGION,
        "token_lifetime": LIFETIME,
        "credentials": {key_id: {"secret": secret, "session_token": session_token, "expires": made + LIFETIME}},
    }
    return types.SimpleNamespace(token=token, made=made, state=state, key_id=key_id)


def test_the_validator_accepts_a_token_botocore_signed(signed):
    assert verify(signed.token, APP, signed.state, signed.made + 1) == signed.key_id
    assert len(signed.token) < 512  # what pam_exec passes on (see tests/harness/rds_iam.py)


def _credentials(state, **changes):
    return {**state, "credentials": {key: {**value, **changes} for key, value in state["credentials"].items()}}


# case: (token, user, state, now) -> the same, changed; and why it must be refused
REFUSALS = {
    "another database user": (lambda t, u, s, n: (t, MIGRATOR, s, n), "signed for database user"),
    "another server": (lambda t, u, s, n: (t, u, {**s, "endpoint": "127.0.0.1:5433"}, n), "signed for 127.0.0.1:5432"),
    "another region": (lambda t, u, s, n: (t, u, {**s, "region": "us-east-1"}, n), "scope"),
    "older than its lifetime": (lambda t, u, s, n: (t, u, s, n + LIFETIME), "expired: "),
    "dated ahead": (lambda t, u, s, n: (t, u, s, n - 60), "in the future"),
    "credentials expired": (lambda t, u, s, n: (t, u, _credentials(s, expires=n - 0.5), n), "expired 0.5 s ago"),
    "unknown access key": (lambda t, u, s, n: (t, u, {**s, "credentials": {}}, n), "unknown access key"),
    "another session token": (lambda t, u, s, n: (t, u, _credentials(s, session_token="x"), n), "session token"),
    "signature altered": (lambda t, u, s, n: (t[:-1] + ("1" if t[-1] == "0" else "0"), u, s, n), "signature"),
    "user altered": (lambda t, u, s, n: (t.replace(f"={APP}&", f"={MIGRATOR}&"), MIGRATOR, s, n), "signature"),
    # what pam_exec passes of a token longer than 511 bytes: its beginning
    "cut at pam_exec's limit": (lambda t, u, s, n: (t[:-20], u, s, n), "signature mismatch"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_the_validator_refuses_what_rds_refuses(signed, case):
    change, reason = REFUSALS[case]
    token, user, state, now = change(signed.token, APP, signed.state, signed.made + 1)
    with pytest.raises(Refused, match=reason):
        verify(token, user, state, now)


# --- the cluster -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    with PgCluster(max_connections=40) as cluster:
        cluster.enable_tls()
        cluster.sql(f"CREATE ROLE {MASTER} LOGIN CREATEROLE CREATEDB PASSWORD '{MASTER_PASSWORD}'")
        cluster.sql("CREATE ROLE rds_iam")  # as on RDS
        cluster.prepend_hba("host all postgres 127.0.0.1/32 trust", "host all all 127.0.0.1/32 scram-sha-256")
        yield cluster


@pytest.fixture(scope="module")
def production(cluster):
    """Production as it is today: the master user created, migrated and loaded the database; then
    the administrator runs dbroles (with passwords, for the tests that do not use IAM)."""
    cluster.sql(f"CREATE DATABASE {PRODUCTION} OWNER {MASTER}")
    master = cluster.url(PRODUCTION, MASTER, MASTER_PASSWORD)
    manage("migrate", "--noinput", url=master)
    manage("loadcsv", url=master)
    before = owners(cluster, PRODUCTION)
    output = dbroles(
        cluster, PRODUCTION, DATABASE_APP_PASSWORD=PASSWORDS[APP], DATABASE_MIGRATOR_PASSWORD=PASSWORDS[MIGRATOR]
    )
    return types.SimpleNamespace(before=before, output=output)


def url(cluster, database, user, **query):
    return cluster.url(database, user, PASSWORDS.get(user, ""), **query)


@pytest.mark.e2e
def test_dbroles_hands_the_masters_database_to_the_migrator_once(cluster, production):
    assert set(production.before.values()) == {MASTER}
    assert f"created role {MIGRATOR}" in production.output and f"created role {APP}" in production.output
    assert f"granted rds_iam to {APP}" in production.output
    handed = next(line for line in production.output if line.startswith("handed ")).split(": ", 1)[1].split(", ")
    tables = [
        row[0]
        for row in cluster.sql("SELECT 'public.' || tablename FROM pg_tables WHERE schemaname = 'public'", PRODUCTION)
    ]
    assert sorted(handed) == sorted([*tables, "public.passengers_renew_dataset_stamp()"])  # sequences follow tables
    assert set(owners(cluster, PRODUCTION).values()) == {MIGRATOR}
    memberships = cluster.sql(
        f"SELECT pg_has_role('{APP}', 'rds_iam', 'MEMBER'), pg_has_role('{MIGRATOR}', 'rds_iam', 'MEMBER'),"
        f" pg_has_role('{MASTER}', 'rds_iam', 'MEMBER'), pg_has_role('{APP}', '{MIGRATOR}', 'MEMBER')"
    )
    # The master in rds_iam, even through the migrator, could log in on RDS with IAM tokens only.
    assert memberships == [(True, True, False, False)]

    before = privileges(cluster, PRODUCTION)
    again = dbroles(cluster, PRODUCTION)
    assert [line.split(":")[0] for line in again] == [APP, MASTER]  # no change, only the privileges
    assert privileges(cluster, PRODUCTION) == before

    # Whatever still connects as the master (today's pods, until their new release) keeps working.
    with psycopg.connect(cluster.url(PRODUCTION, MASTER, MASTER_PASSWORD), autocommit=True) as master:
        assert master.execute("UPDATE passengers_passenger SET fare = fare").rowcount == 887


@pytest.mark.e2e
def test_the_migrator_migrates_the_handed_over_database_and_new_tables_reach_the_app(cluster, production):
    migrator = url(cluster, PRODUCTION, MIGRATOR)
    # A migration backwards and forwards: drops and recreates the stamp trigger and its function.
    assert "Unapplying passengers.0002" in manage("migrate", "passengers", "0001", url=migrator).stdout
    assert "Applying passengers.0002" in manage("migrate", "--noinput", url=migrator).stdout
    assert "887 unchanged" in manage("loadcsv", url=migrator).stdout
    # A future migration's DDL: a new table and a new column, then the app uses both.
    with psycopg.connect(migrator, autocommit=True) as db:
        db.execute("CREATE TABLE passengers_future (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text)")
        db.execute("ALTER TABLE passengers_passenger ADD COLUMN future_note text")
    try:
        with psycopg.connect(url(cluster, PRODUCTION, APP), autocommit=True) as app:
            new = scalar(app, "INSERT INTO passengers_future (note) VALUES ('a') RETURNING id")
            assert app.execute("UPDATE passengers_future SET note = 'b' WHERE id = %s", [new]).rowcount == 1
            assert app.execute("UPDATE passengers_passenger SET future_note = 'c'").rowcount == 887
            assert app.execute("DELETE FROM passengers_future").rowcount == 1
            with pytest.raises(errors.InsufficientPrivilege):
                app.execute("DROP TABLE passengers_future")
    finally:
        with psycopg.connect(migrator, autocommit=True) as db:
            db.execute("DROP TABLE passengers_future")
            db.execute("ALTER TABLE passengers_passenger DROP COLUMN future_note")
    assert_rows_only(url(cluster, PRODUCTION, APP))


@pytest.mark.e2e
def test_the_migrator_migrates_a_new_database_from_nothing(cluster, production):
    cluster.sql(f"CREATE DATABASE titanic_new OWNER {MASTER}")
    output = dbroles(cluster, "titanic_new")
    assert not [line for line in output if line.startswith(("created", "handed"))], output  # roles exist already
    migrator = url(cluster, "titanic_new", MIGRATOR)
    manage("migrate", "--noinput", url=migrator)
    assert "887 created" in manage("loadcsv", url=migrator).stdout
    assert set(owners(cluster, "titanic_new").values()) == {MIGRATOR}
    assert_rows_only(url(cluster, "titanic_new", APP))


@pytest.mark.e2e
def test_the_app_user_serves_everything_the_service_does(cluster, production, tmp_path):
    app = url(cluster, PRODUCTION, APP)
    script = (
        "from django.contrib.auth.models import Permission, User;"
        "from rest_framework.authtoken.models import Token;"
        "writer = User.objects.create_user('identity-writer');"
        "writer.user_permissions.add(*Permission.objects.filter(codename__endswith='_passenger'));"
        f"User.objects.create_superuser({ADMIN!r}, password={ADMIN_PASSWORD!r});"
        "print(Token.objects.create(user=writer).key)"
    )
    token = manage("shell", "-c", script, url=app).stdout.splitlines()[-1]
    insecure_cookies = {"DJANGO_CSRF_COOKIE_SECURE": "0", "DJANGO_SESSION_COOKIE_SECURE": "0"}
    env = {"TITANIC_TRUSTED_PROXIES": "1", **insecure_cookies}
    with Gunicorn(tmp_path, database_url=app, workers=2, env=env) as server:
        client = contract.Client(server.url, token=token)
        client.session.headers.update(HTTPS)
        contract.contract(client)  # reads, create, update, delete, bad input: the whole contract
        assert client("GET", "/people/stats").status_code == 200
        assert server.request("GET", "/ready")[0] == 200

        https = {**HTTPS, "Origin": f"https://127.0.0.1:{server.port}"}

        def admin_session(password, client_address):
            session = requests.Session()
            session.headers.update({**https, "X-Forwarded-For": client_address})
            page = session.get(server.url + "/admin/login/", timeout=10)
            assert "csrftoken" in session.cookies, (page.status_code, page.headers, page.text[:300])
            form = {"username": ADMIN, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]}
            answer = session.post(
                server.url + "/admin/login/?next=/admin/", data=form, allow_redirects=False, timeout=10
            )
            return session, answer.status_code

        session, status = admin_session(ADMIN_PASSWORD, "198.51.100.1")
        assert status == 302  # logged in: a session row
        edited = cluster.sql("SELECT uuid FROM passengers_passenger ORDER BY name LIMIT 1", PRODUCTION)[0][0]
        change = f"/admin/passengers/passenger/{edited}/change/"
        assert session.get(server.url + change, timeout=10).status_code == 200
        form = {
            "survived": "on",
            "passenger_class": "2",
            "name": "Edited through the admin",
            "sex": "other",
            "age": "40",
            "siblings_or_spouses_aboard": "0",
            "parents_or_children_aboard": "0",
            "fare": "10.5",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "_save": "Save",
        }
        saved = session.post(server.url + change, data=form, allow_redirects=False, timeout=10)
        assert saved.status_code == 302, saved.text[:500]

        lockout = [admin_session("wrong", "198.51.100.2")[1] for _ in range(5)]
        assert lockout == [200, 200, 200, 200, 429]
    assert cluster.sql(f"SELECT name FROM passengers_passenger WHERE uuid = '{edited}'", PRODUCTION) == [
        ("Edited through the admin",)
    ]
    counts = cluster.sql(
        "SELECT (SELECT count(*) FROM django_admin_log), (SELECT count(*) FROM django_session),"
        " (SELECT count(*) FROM axes_accessattempt)",
        PRODUCTION,
    )
    assert counts[0][0] >= 1 and counts[0][1] >= 1 and counts[0][2] >= 1
    manage("axes_reset_username", ADMIN, url=app)  # the runbook's unlock, as the app user
    assert cluster.sql(f"SELECT count(*) FROM axes_accessattempt WHERE username = '{ADMIN}'", PRODUCTION) == [(0,)]
    assert_rows_only(app)


# --- RDS IAM authentication ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iam(cluster, production):
    """A copy of the handed-over database whose two users log in only with IAM tokens, over TLS."""
    unavailable = pam_unavailable(_bindir() / "pg_config")
    if unavailable:
        pytest.skip(f"PAM is not available: {unavailable}")
    python = system_python(as_postgres=os.geteuid() == 0)
    if python is None:
        pytest.fail("no Python 3.11+ that PostgreSQL's user can run, for the token validator")
    cluster.sql(f"CREATE DATABASE {IAM_DATABASE} TEMPLATE {PRODUCTION} OWNER {MASTER}")
    endpoint = f"127.0.0.1:{cluster.port}"
    with (
        PodIdentityAgent(cluster.directory, endpoint=endpoint, region=REGION, every=ROTATION_EVERY, lifetime=LIFETIME)
        as agent,
        pam_service(cluster.directory, python) as (service, log),
    ):  # fmt: skip
        cluster.prepend_hba(
            f"hostnossl {IAM_DATABASE} all 127.0.0.1/32 reject",  # RDS: rds.force_ssl
            f"hostssl {IAM_DATABASE} {APP},{MIGRATOR} 127.0.0.1/32 pam pamservice={service}",
        )
        yield types.SimpleNamespace(agent=agent, log=log)


def iam_env(agent, **env):
    return {**agent.env(), "DATABASE_IAM_AUTH": "1", "AWS_REGION": REGION, **env}


def iam_url(cluster, user):
    return cluster.url(IAM_DATABASE, user, sslmode="require")


def accepted(log, since=0, user=APP):
    return [d for d in decisions(log)[since:] if d["decision"] == "accept" and d["user"] == user]


@pytest.mark.e2e
def test_the_cluster_checks_tokens_as_rds_does(cluster, iam):

    current = json.loads(iam.agent.state_file.read_text())["credentials"]
    key_id, credentials = list(current.items())[-1]
    client = botocore.session.get_session().create_client(
        "rds",
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=credentials["secret"],
        aws_session_token=credentials["session_token"],
    )
    token = client.generate_db_auth_token("127.0.0.1", cluster.port, APP, REGION)
    seen = len(decisions(iam.log))
    with psycopg.connect(iam_url(cluster, APP), password=token) as db:
        assert db.execute("SELECT current_user").fetchone() == (APP,)
    with pytest.raises(psycopg.OperationalError, match="PAM authentication failed"):
        psycopg.connect(iam_url(cluster, MIGRATOR), password=token)  # signed for another user
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(cluster.url(IAM_DATABASE, APP, sslmode="disable"), password=token)
    with pytest.raises(psycopg.OperationalError, match="PAM authentication failed"):
        psycopg.connect(iam_url(cluster, APP), password=PASSWORDS[APP])  # its password no longer works there
    outcome = [(d["decision"], d["user"], d.get("reason", "")[:24]) for d in decisions(iam.log)[seen:]]
    assert outcome == [
        ("accept", APP, ""),
        ("refuse", MIGRATOR, "signed for database user"),
        ("refuse", APP, "not a presigned request"),
    ]


@pytest.mark.e2e
def test_credentials_rotating_every_second_fail_no_request(cluster, iam, tmp_path, record_property):
    """gunicorn (3 workers, each connection kept at most 1 s) serves reads and writes as titanic_app while
    the agent replaces the AWS credentials every second; meanwhile the migrate Job's `migrate` runs as the
    migrator and the master user's password is rotated. The Job's `loadcsv` runs after the load: its one
    transaction holds the dataset stamp row, so writes would wait for it, whatever the credentials."""
    agent, log = iam.agent, iam.log
    token = create_writer(cluster)
    uuids = [str(row[0]) for row in cluster.sql("SELECT uuid FROM passengers_passenger", IAM_DATABASE)]
    env = iam_env(agent, DATABASE_CONN_MAX_AGE="1", TITANIC_WRITE_THROTTLE_RATE="100000/min")
    seen, served, issued = len(decisions(log)), agent.served, len(agent.issued)
    jobs = []

    def job(*command):
        started = time.monotonic()
        result = manage(*command, url=iam_url(cluster, MIGRATOR), check=False, **iam_env(agent))
        jobs.append((command[0], time.monotonic() - started, result))

    try:
        with (
            Gunicorn(tmp_path, database_url=iam_url(cluster, APP), workers=3, env=env) as server,
            Load(server, uuids, token, readers=2, writers=2, tag="rotation", max_seconds=90) as load,
        ):
            time.sleep(2)
            job("migrate", "--noinput")
            # RDS rotates the master user's password: nothing of the service uses it.
            cluster.sql(f"ALTER ROLE {MASTER} PASSWORD 'master-password-2'")
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                psycopg.connect(cluster.url(PRODUCTION, MASTER, MASTER_PASSWORD))
            time.sleep(5)
    finally:
        cluster.sql(f"ALTER ROLE {MASTER} PASSWORD '{MASTER_PASSWORD}'")
    job("loadcsv")
    answers = load.answers
    decided = decisions(log)[seen:]
    app_keys = [d["key"] for d in accepted(log, seen)]
    migrator_keys = [d["key"] for d in accepted(log, seen, MIGRATOR)]
    seconds = max(a.ended for a in answers) - min(a.started for a in answers)

    assert [result.returncode for *_, result in jobs] == [0, 0], [result.stderr[-2000:] for *_, result in jobs]
    assert_clear(answers)
    assert {a.status for a in answers} == {200, 201}, tally(answers)  # zero failed requests
    assert [d for d in decided if d["decision"] == "refuse"] == []
    # No credentials outlive LIFETIME: opening connections throughout takes at least this many.
    assert len(set(app_keys)) >= seconds / LIFETIME, "the app did not follow the rotation"
    assert len(set(migrator_keys)) >= 2, "each of the Job's commands signs with the credentials of its time"
    stored = cluster.sql("SELECT name FROM passengers_passenger WHERE name LIKE 'Fault rotation %'", IAM_DATABASE)
    assert sorted(name for (name,) in stored) == sorted(a.name for a in answers if a.kind == "write")
    record_property(
        "figures",
        f"credential rotation: {seconds:.1f} s, {len(answers)} requests {tally(answers)}; "
        f"{len(app_keys)} app connections opened, signed with {len(set(app_keys))} different credentials "
        f"(issued: {len(agent.issued) - issued}, one every {ROTATION_EVERY} s, each valid {LIFETIME} s; "
        f"{agent.served - served} requests to the agent); migrate Job: "
        f"{', '.join(f'{name} {took:.1f} s' for name, took, _ in jobs)}, {len(set(migrator_keys))} credentials; "
        f"master password rotated; 0 tokens refused, longest {max(int(d['length']) for d in decided)} bytes",
    )


def create_writer(cluster):
    """A user holding add_passenger, and its DRF token (made as the superuser: setup, not the service)."""
    script = (
        "from django.contrib.auth.models import Permission, User;"
        "from rest_framework.authtoken.models import Token;"
        f"user = User.objects.create_user('writer-{uuid.uuid4().hex[:8]}');"
        "user.user_permissions.add(Permission.objects.get(codename='add_passenger'));"
        "print(Token.objects.create(user=user).key)"
    )
    return manage("shell", "-c", script, url=cluster.url(IAM_DATABASE)).stdout.splitlines()[-1]


@pytest.mark.e2e
def test_kept_connections_outlive_their_credentials_and_lost_ones_reopen_with_new_tokens(
    cluster, iam, tmp_path, record_property
):
    """CONN_MAX_AGE 60 with health checks, anonymous reads answered from the cache after the prepared
    stamp query: RDS checks a token only when a connection opens."""
    log, state_file = iam.log, iam.agent.state_file
    path = "/people/" + cluster.sql("SELECT uuid FROM passengers_passenger LIMIT 1", IAM_DATABASE)[0][0].hex
    seen = len(decisions(log))
    env = iam_env(iam.agent, DATABASE_CONN_MAX_AGE="60")
    with Gunicorn(tmp_path, database_url=iam_url(cluster, APP), workers=2, env=env) as server:
        answers = server.get_from_every_worker(path)
        opened = accepted(log, seen)
        assert len(opened) == 2  # one connection per worker
        credentials = json.loads(state_file.read_text())["credentials"]
        expired = max(credentials[d["key"]]["expires"] for d in opened)
        time.sleep(max(0.0, expired - time.time()) + 2)
        answers += server.get_from_every_worker(path)
        outlived = time.time() - expired
        assert accepted(log, seen) == opened, "a kept connection was replaced"

        cluster.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{APP}'")
        while cluster.sql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{APP}'") != [(0,)]:
            time.sleep(0.05)
        answers += server.get_from_every_worker(path)
        reopened = accepted(log, seen)[len(opened) :]
    assert {status for _, status, _ in answers} == {200}
    assert len(reopened) == 2
    assert not {d["key"] for d in reopened} & {d["key"] for d in opened}, "a new connection reused old credentials"
    record_property(
        "figures",
        f"kept connections: {len(answers)} reads, 2 connections opened, still serving "
        f"{outlived:.1f} s after their credentials expired; after pg_terminate_backend, "
        f"2 new connections with new credentials",
    )


@pytest.mark.e2e
def test_without_a_valid_token_the_service_answers_503_and_logs_why(cluster, iam, tmp_path, record_property):
    wrong = tmp_path / "not-the-pod-identity-token"
    wrong.write_text("not-the-token")
    causes = {
        "refused by the database": (
            {"AWS_REGION": "us-east-1"},
            'PAM authentication failed for user \\"titanic_app\\"',
        ),
        "no credentials": ({"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(wrong)}, "cannot make an RDS IAM auth token"),
    }
    path = "/people/" + cluster.sql("SELECT uuid FROM passengers_passenger LIMIT 1", IAM_DATABASE)[0][0].hex
    for name, (overrides, logged) in causes.items():
        env = iam_env(iam.agent, **overrides)
        with Gunicorn(tmp_path, database_url=iam_url(cluster, APP), workers=1, name=name.split()[0], env=env) as server:
            started = time.monotonic()
            answer = requests.get(server.url + path, headers=HTTPS, timeout=30)
            seconds = time.monotonic() - started
            health = requests.get(server.url + "/health", timeout=10)
            time.sleep(0.5)
            log = server.log_path.read_text()
        assert (answer.status_code, answer.headers.get("Retry-After"), health.status_code) == (503, "5", 200), name
        assert logged in log, (name, log[-2000:])
        record_property("figures", f"{name}: 503 after {seconds:.2f} s; logged: {logged}")
