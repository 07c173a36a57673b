"""RDS IAM database authentication (DATABASE_IAM_AUTH=1): no database password anywhere. The password
of every new connection is an auth token that botocore signs with the process's AWS credentials
(its default chain: EKS Pod Identity in a pod) for the DATABASE_URL's user, host and port. RDS
accepts a token for 15 minutes and checks it only when a connection opens, so connections kept
open (CONN_MAX_AGE) outlive it; each new one gets a new token, made with whatever credentials
botocore holds then (it renews them before they expire). See docs/runbook.md, "Database credentials".
"""

import functools

import psycopg
from django.core.exceptions import ImproperlyConfigured

# The connection option that carries the region to the backend; removed before psycopg sees it.
REGION_OPTION = "rds_iam_region"
# The token travels as a clear-text password inside the connection: only over TLS.
TLS_SSLMODES = ("require", "verify-ca", "verify-full")


def connection_options(database: dict, region: str) -> dict[str, str]:
    """The OPTIONS that turn IAM authentication on for this DATABASES entry; ImproperlyConfigured
    (at startup) naming every problem with the configuration."""
    if database["ENGINE"] != "titanic.postgresql":
        raise ImproperlyConfigured("DATABASE_IAM_AUTH=1: DATABASE_URL must be a PostgreSQL URL.")
    problems = []
    if database.get("PASSWORD"):
        problems.append("DATABASE_URL must have no password (the token is the password)")
    if not database.get("USER") or not database.get("HOST"):
        problems.append("DATABASE_URL must name the user and the host")
    if database.get("OPTIONS", {}).get("sslmode") not in TLS_SSLMODES:
        problems.append(f"DATABASE_URL must set sslmode to one of {', '.join(TLS_SSLMODES)}, e.g. ?sslmode=require")
    if not region:
        problems.append("AWS_REGION must be set (the database's region)")
    if problems:
        raise ImproperlyConfigured("DATABASE_IAM_AUTH=1: " + "; ".join(problems) + ".")
    return {REGION_OPTION: region}


def auth_token(*, host: str, port: int, user: str, region: str) -> str:
    """A new token; psycopg.OperationalError if none can be made (Django answers 503, as for any
    connection that fails)."""
    try:
        return _rds_client(region).generate_db_auth_token(host, port, user, region)
    except Exception as error:  # credentials missing, agent unreachable, expired ...: all mean no connection
        raise psycopg.OperationalError(
            f"cannot make an RDS IAM auth token for {user}@{host}:{port}: {error}"
        ) from error


@functools.cache
def _rds_client(region: str):
    """One botocore client per process; it holds the credentials of the default chain and renews them
    before they expire. Creating it costs about 0.4 s and 12 MB (the RDS service model), once: the
    session keeps the model when creation fails (no credentials yet) and is tried again."""
    return _session().create_client("rds", region_name=region)


@functools.cache
def _session():
    import botocore.session  # type: ignore[import-untyped]  # only processes using IAM auth load botocore

    return botocore.session.get_session()
