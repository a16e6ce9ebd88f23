"""examples/webapp as a real HTTP server (uvicorn in a subprocess on a free port) with the
in-process worker behind it: enqueue answers 202 with a task id whose status the app reports,
and /cron/{job} fires a beat job only for the right bearer token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from saas_tasks.db import session_scope
from saas_tasks.models import TaskRun
from tests import sample_tasks
from tests.conftest import wait_for
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "a-long-cron-secret-for-tests"


def answers(client: httpx.Client) -> bool:
    try:
        return client.get("/tasks/probe").status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def webapp_server(inproc_worker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("webapp")
    port = free_port()
    env = {**os.environ, "CRON_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "uvicorn", "examples.webapp.app:app", "--port", str(port)]
    with (tmp_path / "uvicorn.log").open("wb") as log:
        server = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            wait_for(lambda: answers(client), timeout=30, message="uvicorn to answer")
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


@pytest.fixture()
def webapp(worker: Any, webapp_server: str) -> Iterator[httpx.Client]:
    """The example app's server, the worker behind it, clean state around the test."""
    with httpx.Client(base_url=webapp_server, timeout=5) as client:
        yield client


def finished(client: httpx.Client, task_id: str) -> dict[str, Any] | None:
    body: dict[str, Any] = client.get(f"/tasks/{task_id}").json()
    return body if body["state"] in ("SUCCESS", "FAILURE") else None


def test_an_email_is_accepted_at_once_and_its_status_shows_the_result(
    webapp: httpx.Client,
) -> None:
    response = webapp.post(
        "/emails", json={"to": "ana@example.com", "template": "welcome", "context": {"name": "A"}}
    )
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    assert response.json()["status_url"] == f"/tasks/{task_id}"
    status = wait_for(lambda: finished(webapp, task_id), message="the email task")
    assert status["state"] == "SUCCESS", status
    assert status["result"] and status["progress"] is None


def test_an_unknown_task_id_reads_as_pending(webapp: httpx.Client) -> None:
    body = webapp.get("/tasks/no-such-task").json()

    assert body == {"task_id": "no-such-task", "state": "PENDING", "progress": None}


def test_cron_refuses_a_missing_or_wrong_bearer_token(webapp: httpx.Client) -> None:
    job = "/cron/cleanup-expired-sessions"

    assert webapp.post(job).status_code == 401
    assert webapp.post(job, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert webapp.post(job, headers={"Authorization": f"Basic {SECRET}"}).status_code == 401
    unknown = webapp.post("/cron/no-such-job", headers={"Authorization": f"Bearer {SECRET}"})
    assert unknown.status_code == 404


def test_cron_with_the_secret_fires_the_beat_job_on_the_worker(webapp: httpx.Client) -> None:
    response = webapp.post(
        "/cron/cleanup-expired-sessions", headers={"Authorization": f"Bearer {SECRET}"}
    )

    assert response.status_code == 202
    body = response.json()
    assert body["task"] == "saas_tasks.cleanup.purge_expired_sessions"
    assert wait_for(lambda: finished(webapp, body["task_id"]))["state"] == "SUCCESS"
    with session_scope() as session:
        runs = session.execute(select(TaskRun.status).where(TaskRun.task_id == body["task_id"]))
        assert list(runs.scalars()) == ["succeeded"]


def test_a_task_enqueued_from_another_thread_reaches_the_packs_broker(worker: Any) -> None:
    # Web servers call .delay() from worker threads, where Celery's current app is per thread.
    sent: list[Any] = []
    thread = threading.Thread(target=lambda: sent.append(sample_tasks.echo.delay("threaded")))
    thread.start()
    thread.join()

    assert sent[0].get(timeout=10) == "threaded"
