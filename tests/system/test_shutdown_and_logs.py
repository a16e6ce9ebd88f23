"""SIGTERM to a worker loses nothing; what a task logs names it; JSON logs by a setting;
Sentry initialises from SENTRY_DSN alone (no network needed to initialise)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

from saas_tasks.email import send_email
from tests import sample_tasks
from tests.conftest import wait_for
from tests.system.conftest import QUEUE, ROOT, SystemProcesses, redis_list, subprocess_env


def test_sigterm_lets_running_tasks_finish_and_leaves_the_waiting_ones_for_the_next_worker(
    system_processes: SystemProcesses, redis_client: Any
) -> None:
    first = system_processes.worker("first", concurrency=2)
    markers = [f"job-{n}" for n in range(4)]
    for marker in markers:
        sample_tasks.slow.apply_async(args=(2, marker), queue=QUEUE)
    wait_for(lambda: len(redis_list(redis_client, "test:slow-started")) >= 2, message="2 starts")

    first.process.send_signal(signal.SIGTERM)
    assert first.wait_exit(timeout=20) == 0
    finished_before = redis_list(redis_client, "test:slow-finished")
    assert len(finished_before) == 2, first.log()[-3000:]  # the two it ran, finished
    system_processes.worker("second", concurrency=2)

    done = wait_for(
        lambda: (
            (items := redis_list(redis_client, "test:slow-finished")) and len(items) >= 4 and items
        ),
        timeout=20,
        message="the other two on the next worker",
    )
    assert sorted(done) == markers  # every one exactly once: none lost, none run twice
    assert "Warm shutdown" in first.log() or "warm shutdown" in first.log().lower()


def test_every_line_a_task_logs_names_it_and_json_logs_are_one_object_a_line(
    system_processes: SystemProcesses, redis_client: Any
) -> None:
    text = system_processes.worker("text-worker")
    result = sample_tasks.flaky.apply_async(args=("logs-text", 1), queue=QUEUE)
    assert result.get(timeout=20)["attempts"] == 2
    text_lines = [line for line in text.log().splitlines() if result.id in line]
    assert any("retry 1/" in line for line in text_lines)
    assert all(f"tests.flaky[{result.id}]" in line for line in text_lines)
    # The email service's own line names its key, not the task: the formatter adds the tag.
    email = send_email.apply_async(
        kwargs={"to": "ana@example.com", "template": "welcome", "context": {"name": "A"}},
        queue=QUEUE,
    )
    email.get(timeout=20)
    sent = [line for line in text.log().splitlines() if "sent as" in line]
    assert sent and all(f"saas_tasks.email.send[{email.id}]: email" in line for line in sent)
    text.kill()

    structured = system_processes.worker("json-worker", SAAS_TASKS_LOG_FORMAT="json")
    result = sample_tasks.flaky.apply_async(args=("logs-json", 1), queue=QUEUE)
    assert result.get(timeout=20)["attempts"] == 2
    records = []
    for line in structured.log().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    mine = [r for r in records if r.get("task_id") == result.id]
    assert any("retry 1/" in r["message"] for r in mine), records[-5:]
    assert all(r["task_name"] == "tests.flaky" and r["level"] for r in mine)
    assert any(r["logger"] == "saas_tasks.task" for r in mine)


def test_sentry_initialises_from_sentry_dsn_with_the_celery_integration() -> None:
    code = (
        "import sentry_sdk; from saas_tasks.logs import init_sentry; "
        "print(init_sentry(), sentry_sdk.get_client().is_active(), "
        "sorted(sentry_sdk.get_client().integrations))"
    )
    env = subprocess_env(SENTRY_DSN="http://public@127.0.0.1:9/1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("True True") and "'celery'" in out.stdout, out.stdout
    without = subprocess_env(SENTRY_DSN="")
    out = subprocess.run(
        [sys.executable, "-c", code], env=without, cwd=ROOT, capture_output=True, text=True
    )
    assert out.stdout.startswith("False False"), out.stdout + out.stderr
