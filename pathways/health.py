"""Health probes for load balancers and orchestrators: unauthenticated, nothing in the body.

/healthz — the process answers (liveness). /readyz — the database answers and every migration is
applied (readiness: 503 otherwise, so a node with a broken database leaves the pool).
"""

from __future__ import annotations

import logging

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

# Once every migration is applied it stays so for the life of the process: loading the
# migration graph costs tens of milliseconds, so it is checked until it first succeeds.
_migrations_applied = False


def _empty(status: int) -> HttpResponse:
    return HttpResponse(b"", status=status, content_type="text/plain")


@require_safe
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    return _empty(200)


def migrations_pending(alias: str = DEFAULT_DB_ALIAS) -> bool:
    connection = connections[alias]
    executor = MigrationExecutor(connection)
    targets = executor.loader.graph.leaf_nodes()
    return bool(executor.migration_plan(targets))


def database_ready(alias: str = DEFAULT_DB_ALIAS) -> bool:
    global _migrations_applied
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        if not _migrations_applied:
            _migrations_applied = not migrations_pending(alias)
            if not _migrations_applied:
                logger.warning("readyz: migrations are pending")
    except DatabaseError as error:
        logger.warning("readyz: database unreachable: %s", error)
        return False
    return _migrations_applied


@require_safe
@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    return _empty(200 if database_ready() else 503)
