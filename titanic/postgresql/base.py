"""django-prometheus's instrumented PostgreSQL backend, with a connection health check that needs no
round trip, a cursor for queries prepared once per connection, and RDS IAM authentication (iam.py)."""

import contextlib
import functools
import select

from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.backends.postgresql.operations import DatabaseOperations as PostgresOperations
from django_prometheus.db.backends.postgresql import base
from django_prometheus.db.common import ExportingCursorWrapper
from psycopg.errors import DataError

from titanic.postgresql import iam


class DatabaseOperations(PostgresOperations):
    def last_executed_query(self, cursor, sql, params):
        """The SQL, with its parameters, for DEBUG logs and captured queries: psycopg keeps no text of
        a prepared statement's execution."""
        text = super().last_executed_query(cursor, sql, params)
        if text is None:
            with contextlib.suppress(DataError):  # as Django's own, for a query that failed
                text = self.compose_sql(sql, params)
        return text


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
    health_check_done: bool  # Django's BaseDatabaseWrapper keeps it per request

    def get_connection_params(self):
        params = super().get_connection_params()
        # Prepare at the first execution. Only prepared_cursor()'s cursors do: Django's own bind the
        # parameters on the client, which never prepares.
        params["prepare_threshold"] = 0
        if region := params.pop(iam.REGION_OPTION, None):
            # Called for every new connection, and only then: the token is made here, used once, never kept.
            port = int(params.get("port") or 5432)
            params["password"] = iam.auth_token(host=params["host"], port=port, user=params["user"], region=region)
        return params

    def prepared_cursor(self):
        """A cursor (Django's, counted in /metrics) whose statements PostgreSQL parses and plans once
        per connection and then only executes: for the small query that every cached read sends, which
        costs less that way (docs/performance.md)."""
        self.close_if_health_check_failed()
        self.ensure_connection()
        with self.wrap_database_errors:
            return self._prepare_cursor(self._prepared_cursor_class(self.connection))

    @functools.cached_property
    def _prepared_cursor_class(self):
        return ExportingCursorWrapper(ServerBindingCursor, self.alias, self.vendor)

    def close_if_health_check_failed(self):
        """Run Django's health check (a SELECT 1 on every request) only if the server has spoken.

        An idle connection receives nothing unless the server is closing it (a restart or failover,
        pg_terminate_backend, an idle timeout: an error message, then end-of-file) or has a notice to
        give: either makes the socket readable. Otherwise the check would only cost a round trip.
        """
        due = self.connection is not None and self.health_check_enabled and not self.health_check_done
        if due and not self.connection.closed and not self._server_has_spoken():
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _server_has_spoken(self):
        poller = select.poll()  # not select(): a busy worker's sockets can be numbered above FD_SETSIZE
        poller.register(self.connection.fileno(), select.POLLIN)
        return bool(poller.poll(0))  # POLLIN, or POLLHUP/POLLERR: the check decides
