"""``saas_tasks.testing`` as a host app uses it: a pytest session of its own (a subprocess,
on its own Redis database and SQLite file) whose conftest loads the plugin, whose tasks are
declared with the pack's decorators, and whose tests use the kit's fixtures and assertions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = 'pytest_plugins = ["saas_tasks.testing"]\n'
HOST_TESTS = """
import os
import time
from datetime import UTC, datetime

import redis

from saas_tasks import idempotent, task
from saas_tasks.testing import (
    assert_dead_lettered, assert_idempotent, assert_no_dead_letters, schedule_runs,
)


def effects():
    return redis.Redis.from_url(os.environ["REDIS_URL"])


@task(name="host.greet")
@idempotent("user_id")
def greet(user_id: int) -> dict:
    effects().incr(f"saas_tasks:host-greets:{user_id}")
    return {"user_id": user_id, "at": time.time()}


@task(name="host.fail")
def fail() -> None:
    raise ValueError("boom")


def test_greet_runs_once_per_user(saas_tasks_worker):
    first = greet.delay(user_id=7).get(timeout=10)
    assert_idempotent(greet, {"user_id": 7}, first=first)
    assert int(effects().get("saas_tasks:host-greets:7")) == 1
    assert_no_dead_letters()


def test_a_failing_task_is_dead_lettered(saas_tasks_worker):
    fail.delay()
    row = assert_dead_lettered("host.fail", "ValueError")
    assert row.exception_message == "boom"


def test_the_schedule_from_a_fixed_clock():
    runs = schedule_runs(datetime(2026, 1, 1, tzinfo=UTC), count=2)
    assert runs["billing-reconcile"] == [
        datetime(2026, 1, 1, 2, 0, tzinfo=UTC), datetime(2026, 1, 2, 2, 0, tzinfo=UTC)
    ]
    assert runs["cleanup-expired-sessions"][0] == datetime(2026, 1, 1, 0, 15, tzinfo=UTC)


def test_the_kit_can_fail(saas_tasks_worker):
    assert_dead_lettered("host.never", timeout=0.5)
"""


def test_a_host_app_tests_its_tasks_and_schedule_with_the_kit_in_a_few_lines(
    redis_url: str, tmp_path: Path
) -> None:
    require("database")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_host.py").write_text(HOST_TESTS)
    env = {
        **os.environ,
        # The host's own services: another Redis database, its own SQLite file.
        "REDIS_URL": redis_url.rsplit("/", 1)[0] + "/3",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'host.db'}",
        "PYTHONPATH": str(ROOT),
        "SAAS_TASKS_ENV": "test",
    }
    env.pop("BROKER_URL", None)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:celery",
            "-W",
            "error",
            "-W",
            "ignore:Call to deprecated setex:DeprecationWarning",
            "test_host.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr
    assert "3 passed" in summary and "1 failed" in summary, out.stdout[-4000:] + out.stderr
    assert "timed out after 0.5s waiting for a dead letter for host.never" in out.stdout
