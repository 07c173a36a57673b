import asyncio
import dataclasses
import datetime
import mmap
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.views.decorators.http import require_safe
from django_prometheus.exports import ExportToDjangoView
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

PROBE_TIMEOUT = datetime.timedelta(seconds=1.5)
# Set once the check below has passed in any process forked after this import: gunicorn's master
# imports this module (titanic/gunicorn.conf.py), so the answer is the pod's, not one worker's.
PASSED = mmap.mmap(-1, 1)


@dataclasses.dataclass
class Migrations(HealthCheck):
    """Ready once the pod has seen the database at its code's latest migration.

    Readiness reflects only what is wrong with this pod. Until the check has passed once, the pod
    is not ready: migrations pending (the migrate Job has not run), or a database it cannot reach,
    which may be its own fault (a wrong DATABASE_URL must stop a rollout). Once passed, the answer
    is kept: a database outage later is every pod's problem, and taking them all out of the load
    balancer would only turn clear 503s (titanic.views.server_error) into connection errors and
    lengthen the outage while they re-register. See docs/runbook.md.
    """

    timeout = PROBE_TIMEOUT

    def run(self) -> None:
        if PASSED[0]:
            return
        try:
            with connection.temporary_connection():
                executor = MigrationExecutor(connection)
                pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except Exception as error:
            raise ServiceUnavailable("cannot read migration state") from error
        if pending:
            raise ServiceUnavailable(f"{len(pending)} migration(s) not applied")
        PASSED[0] = 1


class ProbeView(HealthCheckView):
    """django-health-check's checks, answered as JSON with 200 or 503 whatever the Accept header."""

    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
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


@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. It checks nothing else, because a restart would cure nothing
    else; the headers are those of the readiness probe's answer."""
    response = JsonResponse({"status": "ok", "checks": {}})
    patch_vary_headers(response, ["Accept"])
    add_never_cache_headers(response)
    return response


def internal_views() -> dict[str, Callable[[HttpRequest], HttpResponse]]:
    return {
        "/health": health,
        "/ready": async_to_sync(ProbeView.as_view(checks=[Migrations])),
        "/metrics": ExportToDjangoView,
    }
