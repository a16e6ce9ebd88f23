"""A small FastAPI app in front of the pack: enqueue with ``.delay()``, answer 202 at once,
report the task's state, and let an HTTP cron (Vercel, Render, Cloud Scheduler...) fire a
beat job by name.

    CRON_SECRET=... REDIS_URL=... uvicorn examples.webapp.app:app

Routes (a family's routes exist only if the family is installed; see ``FAMILIES``):

    POST /emails                 send_email.delay(**body)          -> 202 {task_id, status_url}
    POST /exports                request_export(**body)            -> 202 {export_id, status_url}
    GET  /exports/{export_id}    the export's status and link
    GET  /exports/download/...   signed downloads of local exports (the pack's ASGI helper)
    POST /billing/reconcile      reconcile.delay(**body)           -> 202 {task_id, status_url}
    POST /webhooks/events        publish_event(type, payload)      -> 202 {event_id, deliveries}
    GET  /tasks/{task_id}        {state, progress, result, error}
    POST /cron/{job}             Authorization: Bearer $CRON_SECRET -> 202 {job, task, task_id}

Enqueueing imports nothing heavy and waits for no worker: a dead broker is a 503 within the
pack's publish timeout (``BrokerUnavailable``), an invalid payload is refused by the worker
(the task validates it) and lands in the dead-letter queue.
"""

from __future__ import annotations

import hmac
import importlib
import logging
import os
from typing import Any

from celery.result import AsyncResult
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse

from saas_tasks import app as celery_app
from saas_tasks.exceptions import BrokerUnavailable, SaasTasksError
from saas_tasks.reliability.publishing import PublishGuard

log = logging.getLogger("examples.webapp")


def optional(module: str, name: str) -> Any:
    """``module.name``, or None when that family is not installed (or not built yet)."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


send_email = optional("saas_tasks.email", "send_email")
request_export = optional("saas_tasks.exports", "request_export")
export_status = optional("saas_tasks.exports", "status")
download_app = optional("saas_tasks.exports.links", "download_app")
reconcile = optional("saas_tasks.billing.tasks", "reconcile")
publish_event = optional("saas_tasks.webhooks", "publish_event")

app = FastAPI(title="saas-tasks example")


@app.exception_handler(BrokerUnavailable)
async def broker_down(request: Request, exc: BrokerUnavailable) -> JSONResponse:
    return JSONResponse({"error": "the task queue is unavailable, try again"}, status_code=503)


@app.exception_handler(SaasTasksError)
async def refused(request: Request, exc: SaasTasksError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=422)


def accepted(task_id: str) -> JSONResponse:
    return JSONResponse({"task_id": task_id, "status_url": f"/tasks/{task_id}"}, status_code=202)


if send_email is not None:

    @app.post("/emails", status_code=202)
    def enqueue_email(body: dict[str, Any]) -> JSONResponse:
        return accepted(send_email.delay(**body).id)


if request_export is not None:

    @app.post("/exports", status_code=202)
    def enqueue_export(body: dict[str, Any]) -> JSONResponse:
        export_id = request_export(**body)
        return JSONResponse(
            {"export_id": export_id, "status_url": f"/exports/{export_id}"}, status_code=202
        )

    @app.get("/exports/{export_id}")
    def show_export(export_id: str) -> Any:
        return export_status(export_id)


if download_app is not None:
    app.mount("/exports/download", download_app())


if reconcile is not None:

    @app.post("/billing/reconcile", status_code=202)
    def enqueue_reconcile(body: dict[str, Any]) -> JSONResponse:
        return accepted(reconcile.delay(**body).id)


if publish_event is not None:

    @app.post("/webhooks/events", status_code=202)
    def enqueue_event(body: dict[str, Any]) -> JSONResponse:
        return JSONResponse(publish_event(body["type"], body.get("payload", {})), status_code=202)


@app.get("/tasks/{task_id}")
def task_status(task_id: str) -> dict[str, Any]:
    """State as the result backend knows it: PENDING also means "unknown id"."""
    result = AsyncResult(task_id, app=celery_app)
    state, info = result.state, result.info
    body: dict[str, Any] = {"task_id": task_id, "state": state, "progress": None}
    if state == "SUCCESS":
        body["result"] = result.result
    elif state == "FAILURE":
        body["error"] = f"{type(info).__name__}: {info}"
    elif isinstance(info, dict):
        body["progress"] = info  # PROGRESS (exports report rows done and total) or STARTED
    return body


def _bearer_matches(authorization: str | None) -> bool:
    secret = os.environ.get("CRON_SECRET", "")
    if not secret:
        raise HTTPException(503, "CRON_SECRET is not set: /cron is off")
    scheme, _, token = (authorization or "").partition(" ")
    # Constant time: the comparison must not tell an attacker how much of the secret matched.
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), secret.encode())


@app.post("/cron/{job}", status_code=202)
def cron(job: str, authorization: str | None = Header(default=None)) -> JSONResponse:
    """Fire the beat entry ``job`` now, as beat would: its task, args and options."""
    if not _bearer_matches(authorization):
        raise HTTPException(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
    schedule = celery_app.conf.beat_schedule or {}
    if job not in schedule:
        raise HTTPException(404, f"no scheduled job named {job!r}")
    entry = schedule[job]
    with PublishGuard(entry["task"], celery_app):  # a dead broker: BrokerUnavailable, a 503
        sent = celery_app.send_task(
            entry["task"],
            args=list(entry.get("args") or ()),
            kwargs=dict(entry.get("kwargs") or {}),
            **dict(entry.get("options") or {}),
        )
    log.info("cron %s: sent %s[%s]", job, entry["task"], sent.id)
    return JSONResponse({"job": job, "task": entry["task"], "task_id": sent.id}, status_code=202)
