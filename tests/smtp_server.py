"""A real SMTP server on loopback (aiosmtpd) that records what it received, for the email tests.

It can be told to answer 550 (or any code) for chosen recipients, and to drop the connection
when a chosen message begins, as a server that crashes or a network that breaks mid-chunk.
"""

from __future__ import annotations

import email
import email.policy
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.services import free_port


@dataclass(frozen=True)
class Received:
    """One message as the server accepted it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    at: float

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    def part(self, content_type: str) -> str:
        for part in self.parsed().walk():
            if part.get_content_type() == content_type:
                return str(part.get_content())  # type: ignore[attr-defined]
        raise AssertionError(f"no {content_type} part in the message")


@dataclass
class Recorder:
    """The aiosmtpd handler: accepts, refuses or drops as the test arranged."""

    received: list[Received] = field(default_factory=list)
    connections: int = 0
    #: recipient address -> SMTP reply, e.g. "550 5.1.1 no such user" (every time)
    refuse: dict[str, str] = field(default_factory=dict)
    #: recipient address -> SMTP reply given once, then the address is accepted
    refuse_once: dict[str, str] = field(default_factory=dict)
    #: drop the connection when the message after this many accepted ones begins (once)
    drop_after: int | None = None
    dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            drop = self.drop_after is not None and len(self.received) >= self.drop_after
            if drop:
                self.drop_after = None
                self.dropped += 1
        if drop:
            server.transport.close()  # the client sees the connection go, mid-conversation
            return "421 4.3.0 going away"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            if address in self.refuse:
                return self.refuse[address]
            if address in self.refuse_once:
                return self.refuse_once.pop(address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, time.time())
            )
        return "250 OK queued"


@dataclass
class SmtpServer:
    """A running server and its recorder."""

    controller: Controller
    recorder: Recorder

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.controller.port}"

    @property
    def received(self) -> list[Received]:
        with self.recorder.lock:
            return list(self.recorder.received)

    def recipients(self) -> list[str]:
        return [rcpt for message in self.received for rcpt in message.rcpt_tos]


@contextmanager
def smtp_server() -> Iterator[SmtpServer]:
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(controller, recorder)
    finally:
        controller.stop()


@contextmanager
def email_settings(**values: str) -> Iterator[None]:
    """Set environment variables the pack's settings read, for this process's workers too."""
    from saas_tasks.settings import get_settings

    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
