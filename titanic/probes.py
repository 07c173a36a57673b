import asyncio
import dataclasses
import datetime

from asgiref.sync import async_to_sync
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django_prometheus.exports import ExportToDjangoView
from health_check import checks
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

PROBE_TIMEOUT = datetime.timedelta(seconds=1.5)


@dataclasses.dataclass
class Database(checks.Database):
    timeout = PROBE_TIMEOUT


@dataclasses.dataclass
class Migrations(HealthCheck):
    """Ready only when the database schema is at the code's latest migration."""

    timeout = PROBE_TIMEOUT

    def run(self):
        try:
            with connection.temporary_connection():
                executor = MigrationExecutor(connection)
                pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except Exception as error:
            raise ServiceUnavailable("cannot read migration state") from error
        if pending:
            raise ServiceUnavailable(f"{len(pending)} migration(s) not applied")


class ProbeView(HealthCheckView):
    """django-health-check's checks, answered as JSON with 200 or 503 whatever the Accept header."""

    async def get(self, request, *args, **kwargs):
        with self.get_executor() as executor:
            results = await asyncio.gather(*(check.get_result(executor) for check in self.get_checks()))
        healthy = not any(result.error for result in results)
        return JsonResponse(
            {
                "status": "ok" if healthy else "unavailable",
                "checks": {type(r.check).__name__: str(r.error) if r.error else "ok" for r in results},
            },
            status=200 if healthy else 503,
        )


def internal_views():
    return {
        "/health": async_to_sync(ProbeView.as_view(checks=[])),
        "/ready": async_to_sync(ProbeView.as_view(checks=[Database, Migrations])),
        "/metrics": ExportToDjangoView,
    }
