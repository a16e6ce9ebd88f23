"""System tier: real ``celery -A saas_tasks worker`` (prefork) and ``celery beat`` subprocesses
on the real Redis and database, killed with SIGKILL and restarted.

Fixtures here are named ``system_*`` so they cannot be confused with the integration tier's
in-process ``worker`` or with pytest-celery's container-backed ``celery_worker``.

The subprocesses inherit the session's services (``REDIS_URL``, ``DATABASE_URL``: with SQLite
they open the same file) and get short limits (:data:`SHORT_LIMITS`), so a killed worker's
message comes back within seconds. They consume their own queue, :data:`QUEUE`, plus
``dead_letter``: tasks are sent there explicitly, so a session-scoped in-process worker left
running by the integration tier never takes them. Every process runs in its own session and
its whole process group (main process and pool children) is SIGKILLed at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))

#: The system tier's own queue (see tests/system/celeryconfig.py).
QUEUE = "system-tests"
#: Hard and soft time limits and the Redis visibility timeout of the subprocesses, seconds.
TIME_LIMIT, SOFT_TIME_LIMIT, VISIBILITY_TIMEOUT = 4, 3, 6
SHORT_LIMITS = {
    "SAAS_TASKS_TASK_TIME_LIMIT": str(TIME_LIMIT),
    "SAAS_TASKS_TASK_SOFT_TIME_LIMIT": str(SOFT_TIME_LIMIT),
    "SAAS_TASKS_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
    "SAAS_TASKS_EXPORT_TIME_LIMIT": str(TIME_LIMIT),
    "SAAS_TASKS_EXPORT_SOFT_TIME_LIMIT": str(SOFT_TIME_LIMIT),
    "SAAS_TASKS_CELERY_CONFIG": "tests.system.celeryconfig",
    "SAAS_TASKS_SYSTEM_QUEUE": QUEUE,
}
READY_TIMEOUT = 30.0
#: Every system worker: the prefork pool (so a child can be killed), the sample tasks, and no
#: start-up chatter with other workers (mingle, gossip) that only slows the start.
WORKER_OPTIONS = (
    "--pool=prefork",
    "--include=tests.sample_tasks",
    "--loglevel=INFO",
    "--without-mingle",
    "--without-gossip",
)


def subprocess_env(**overrides: str) -> dict[str, str]:
    """This session's environment (its services), the short limits, then ``overrides``."""
    env = {**os.environ, **SHORT_LIMITS, **overrides}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class CeleryProcess:
    """One ``celery`` subprocess, leader of its own process group, logging to ``log_path``."""

    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_for_log(self, text: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if not self.alive():
                pytest.fail(
                    f"{self.name} exited ({self.process.returncode}) before "
                    f"logging {text!r}:\n{self.log()[-4000:]}"
                )
            time.sleep(0.05)
        pytest.fail(f"{self.name} did not log {text!r} within {timeout}s:\n{self.log()[-4000:]}")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout}s:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the whole group (main process and pool children) and reap the leader."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(10)


@dataclass
class SystemProcesses:
    """Starts worker and beat subprocesses; kills every one of them at teardown."""

    directory: Path
    started: list[CeleryProcess] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> CeleryProcess:
        log_path = self.directory / f"{name}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = CeleryProcess(name, argv, log_path, process)
        self.started.append(started)
        return started

    def worker(
        self,
        name: str,
        concurrency: int = 2,
        queues: tuple[str, ...] = (QUEUE, "dead_letter"),
        wait: bool = True,
        **env: str,
    ) -> CeleryProcess:
        """``celery -A saas_tasks worker`` (prefork), ready to consume when ``wait``."""
        hostname = f"{name}-{uuid.uuid4().hex[:8]}@system-tests"
        argv = [CELERY, "--app=saas_tasks", "worker", f"--hostname={hostname}"]
        argv += [f"--concurrency={concurrency}", f"--queues={','.join(queues)}", *WORKER_OPTIONS]
        process = self.start(name, argv, subprocess_env(**env))
        if wait:
            process.wait_for_log(f"{hostname} ready.")
        return process

    def beat(self, name: str = "beat", **env: str) -> CeleryProcess:
        """``celery -A saas_tasks beat`` with its schedule file in this test's directory."""
        argv = [CELERY, "--app=saas_tasks", "beat", "--loglevel=INFO", "--max-interval=1"]
        argv += [f"--schedule={self.directory / 'celerybeat-schedule'}"]
        argv += [f"--pidfile={self.directory / f'{name}.pid'}"]
        process = self.start(name, argv, subprocess_env(**env))
        process.wait_for_log("beat: Starting...")
        return process

    def kill_all(self) -> None:
        for process in self.started:
            process.kill()


def forget_messages(client: Any, queue: str = QUEUE) -> None:
    """Drop ``queue``'s waiting messages and the unacked ones a killed worker left behind
    (kombu keeps those in the ``unacked`` hash until their visibility timeout), so that no
    message of one test is redelivered into the next. Other queues' entries are left alone."""
    from saas_tasks import app

    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)
    for tag, raw in client.hgetall("unacked").items():
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if routing_key == queue:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


@pytest.fixture()
def system_state(clean_state: None, redis_client: Any) -> Iterator[Any]:
    """Clean tables and keys (``clean_state``) and an empty system queue, before and after."""
    import tests.sample_tasks  # noqa: F401 - the tasks the tests send by reference

    forget_messages(redis_client)
    yield redis_client
    forget_messages(redis_client)


@pytest.fixture()
def system_processes(system_state: Any, tmp_path: Path) -> Iterator[SystemProcesses]:
    """Start workers and beat with ``.worker(name)`` / ``.beat()``; all are SIGKILLed after."""
    processes = SystemProcesses(tmp_path)
    try:
        yield processes
    finally:
        processes.kill_all()


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[Any]:
    """A :class:`~tests.system.chaos_support.RestartableRedis` of the test's own, stopped after."""
    from tests.system.chaos_support import RestartableRedis

    server = RestartableRedis(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def system_worker(system_processes: SystemProcesses) -> CeleryProcess:
    """One ready prefork worker (two children) on the system queue and ``dead_letter``."""
    return system_processes.worker("worker")


def redis_list(client: Any, key: str) -> list[str]:
    return [item.decode() for item in client.lrange(key, 0, -1)]


def wait_for_list(client: Any, key: str, length: int, timeout: float = 20) -> list[str]:
    """The Redis list ``key`` once it holds at least ``length`` entries."""

    def long_enough() -> list[str] | None:
        items = redis_list(client, key)
        return items if len(items) >= length else None

    result: list[str] = wait_for(long_enough, timeout=timeout, message=f"{length} entries in {key}")
    return result
