"""django-prometheus's instrumented PostgreSQL backend, with a connection health check that needs no round trip."""

import select

from django_prometheus.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    health_check_done: bool  # Django's BaseDatabaseWrapper keeps it per request

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
