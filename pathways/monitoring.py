"""The task queue's health for monitoring: counts only, no task arguments, no patient data.

Separate from the load balancer's checks on purpose: a slow queue must page someone, never
take web nodes out of service.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from pathways import tasks

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def queue_health(request: HttpRequest) -> JsonResponse:
    """200 when the queue is healthy, 503 when a task lost its worker or the oldest waiting
    task has waited longer than ALPCARE_QUEUE_MAX_WAIT_SECONDS (no worker running?)."""
    try:
        health = tasks.queue_health()
    except DatabaseError as error:  # the queue lives in the database: it cannot be read
        logger.warning("healthz/queue: database unreachable: %s", error)
        body = {
            "status": "degraded",
            "problem": "the database (which holds the queue) is unreachable",
        }
        return JsonResponse(body, status=503)
    return JsonResponse(health.as_dict(), status=200 if health.healthy else 503)
