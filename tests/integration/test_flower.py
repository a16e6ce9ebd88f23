"""A real Flower (``celery flower --conf=config/flowerconfig.py``) over the real broker, with the
in-process worker behind it: the arguments and results it shows are redacted like the logs,
and /metrics serves the pack's counters behind the same login as every other route."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from saas_tasks import app
from saas_tasks.reliability.singleton import OverlapLock
from tests import sample_tasks
from tests.conftest import wait_for
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
LOGIN = "ops:a-long-flower-password"


def get(url: str, auth: str | None = LOGIN) -> tuple[int, str]:
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def sees_events(base: str) -> bool:
    """Flower answers HTTP before its event receiver listens: a warm-up task shows when."""
    probe = sample_tasks.echo.delay("warm-up")
    probe.get(timeout=10)
    status, body = get(f"{base}/api/task/info/{probe.id}")
    return status == 200 and json.loads(body).get("name") == "tests.echo"


@pytest.fixture()
def flower(worker: Any, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "FLOWER_BASIC_AUTH": LOGIN, "PYTHONPATH": str(ROOT)}
    argv = [CELERY, "--app=saas_tasks", "flower", "--conf=config/flowerconfig.py"]
    argv += [f"--port={port}", "--address=127.0.0.1"]
    with (tmp_path / "flower.log").open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/api/workers")[0] == 200, timeout=30, message="Flower")
        wait_for(lambda: sees_events(base), timeout=20, message="Flower to receive events")
        yield base
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def test_flower_shows_task_arguments_and_results_redacted_like_the_logs(
    flower: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = sample_tasks.fixable.delay("flower-key", "hunter2-secret")
    other = sample_tasks.echo.delay({"api_token": "tok-123", "url": "redis://u:pw@host/0"})

    def shown(task_id: str) -> dict[str, Any] | None:
        status, body = get(f"{flower}/api/task/info/{task_id}")
        data = json.loads(body) if status == 200 else None
        return data if data and data.get("state") in ("FAILURE", "SUCCESS") else None

    fixable = wait_for(lambda: shown(result.id), message="Flower to see the failed task")
    echo = wait_for(lambda: shown(other.id), message="Flower to see the echo task")

    assert "hunter2-secret" not in json.dumps(fixable)
    assert fixable["args"] == "('flower-key', '[REDACTED]')"
    wait_for(lambda: "dead letter" in caplog.text, message="the dead-letter alert's log line")
    assert "hunter2-secret" not in caplog.text  # the alert hides it by parameter name too
    assert "tok-123" not in echo["args"] and ":pw@" not in echo["args"]
    assert "'api_token': '[REDACTED]'" in echo["args"]
    # echo returns its argument: the result Flower shows and the worker logs is redacted too,
    # the stored one (what .get() returns) is the real value.
    assert "tok-123" not in echo["result"] and ":pw@" not in echo["result"]
    assert "'api_token': '[REDACTED]'" in echo["result"]
    assert "tok-123" not in caplog.text and f"{other.id}] succeeded" in caplog.text
    assert other.get(timeout=10)["api_token"] == "tok-123"


def test_metrics_count_dead_letters_exhausted_retries_and_skips_behind_the_login(
    flower: str,
) -> None:
    sample_tasks.fixable.delay("metric-key")
    sample_tasks.flaky.delay("metric-flaky", failures=10)
    job = "saas_tasks.cleanup.purge_expired_sessions"
    lock = OverlapLock(job, ttl=30)
    assert lock.acquire()
    try:
        app.send_task(job)
        wanted = [
            'saas_tasks_dead_letters_recorded_total{task="tests.fixable"} 1.0',
            'saas_tasks_dead_letters_recorded_total{task="tests.flaky"} 1.0',
            'saas_tasks_retries_exhausted_total{task="tests.flaky"} 1.0',
            f'saas_tasks_scheduled_runs_skipped_total{{task="{job}"}} 1.0',
        ]
        body = wait_for(
            lambda: (
                (text := get(f"{flower}/metrics")[1]) and all(w in text for w in wanted) and text
            ),
            timeout=20,
            message="the four counters on /metrics",
        )
    finally:
        lock.release()

    assert "# TYPE saas_tasks_scheduled_runs_missed_total counter" in body
    assert get(f"{flower}/metrics", auth=None)[0] == 401
    assert get(f"{flower}/metrics", auth="ops:wrong")[0] == 401
