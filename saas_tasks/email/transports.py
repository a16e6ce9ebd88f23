"""Transports: where a built message goes. One setting, ``EMAIL_URL``, chooses:

    smtp://user:pass@host:587?starttls=true   SMTP, STARTTLS upgrade (``timeout=``, ``verify=``)
    smtps://user:pass@host:465                SMTP over implicit TLS
    file://./var/outbox                       one .eml file a message (the default)
    console://                                the message on standard output

A transport is a context manager: entering opens the connection, which every message of a
chunk reuses, and leaving closes it. Errors come out classified:

* refused connections and timeouts: ``ConnectionError`` / ``TimeoutError`` (transient);
* a dropped connection: :class:`EmailConnectionError` (transient);
* a 4xx answer: :class:`EmailTemporaryFailure` (transient);
* a 5xx answer for a recipient: :class:`RecipientRefused` (permanent, for that one recipient).
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import parse_qs, unquote, urlsplit

from saas_tasks.email.errors import EmailConnectionError, EmailTemporaryFailure, RecipientRefused
from saas_tasks.exceptions import ConfigurationError, PermanentError

log = logging.getLogger("saas_tasks.email")
TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Envelope:
    """Who the message is from and to on the wire, and its Message-ID (for file names, logs)."""

    sender: str
    recipient: str
    message_id: str


class Transport(Protocol):
    """Send messages over one connection, opened on ``__enter__`` and closed on ``__exit__``."""

    #: Which account a rate limit applies to (host and port; never the credentials).
    rate_key: str

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def send(self, envelope: Envelope, message: bytes) -> None: ...


class SmtpTransport:
    """smtplib over one connection: plain, STARTTLS or implicit TLS, with optional login."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        implicit_tls: bool = False,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        verify: bool = True,
    ) -> None:
        self.host, self.port = host, port
        self.implicit_tls, self.starttls = implicit_tls, starttls
        self.username, self.password = username, password
        self.timeout = timeout
        self.verify = verify
        self.rate_key = f"smtp:{host}:{port}"
        self._smtp: smtplib.SMTP | None = None

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def __enter__(self) -> Self:
        try:
            if self.implicit_tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self._tls()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.starttls:
                smtp.starttls(context=self._tls())
            if self.username:
                smtp.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(
                f"SMTP login to {self.host}:{self.port} refused ({exc.smtp_code}): "
                "check the user and password in EMAIL_URL"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise _classified(exc, None) from None
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPException) as exc:
            raise EmailConnectionError(f"SMTP {self.host}:{self.port}: {exc}") from None
        self._smtp = smtp
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def send(self, envelope: Envelope, message: bytes) -> None:
        if self._smtp is None:
            raise RuntimeError("SmtpTransport.send outside its 'with' block")
        try:
            self._smtp.sendmail(envelope.sender, [envelope.recipient], message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients.get(envelope.recipient, (550, b"refused"))
            raise _by_code(code, _text(text), envelope.recipient) from None
        except smtplib.SMTPResponseException as exc:
            raise _classified(exc, envelope.recipient) from None
        except smtplib.SMTPServerDisconnected as exc:
            raise EmailConnectionError(
                f"SMTP {self.host}:{self.port} disconnected: {exc}"
            ) from None
        except (ConnectionError, TimeoutError):
            raise
        except OSError as exc:
            raise EmailConnectionError(f"SMTP {self.host}:{self.port}: {exc}") from None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _by_code(code: int, text: str, recipient: str | None) -> Exception:
    if 500 <= code < 600:
        return RecipientRefused(recipient or "?", code, text)
    if code == 421:  # the server is closing the connection: nothing more goes over it
        return EmailConnectionError(f"SMTP 421: {text}")
    return EmailTemporaryFailure(code, text)


def _classified(exc: smtplib.SMTPResponseException, recipient: str | None) -> Exception:
    return _by_code(exc.smtp_code, _text(exc.smtp_error), recipient)


class _Connectionless:
    """For transports with no connection to open or close (files, the console)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class FileTransport(_Connectionless):
    """Writes ``<directory>/<time>-<message id>.eml``: the embedded default for ``make run``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rate_key = "file"

    def __enter__(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def send(self, envelope: Envelope, message: bytes) -> None:
        name = f"{time.time_ns()}-{envelope.message_id.strip('<>').partition('@')[0]}.eml"
        partial = self.directory / f".{name}.part"
        partial.write_bytes(message)
        os.replace(partial, self.directory / name)  # a reader never sees half a message


class ConsoleTransport(_Connectionless):
    """Prints each message to standard output, for a developer watching a worker."""

    rate_key = "console"

    def send(self, envelope: Envelope, message: bytes) -> None:
        sys.stdout.write(
            f"--- email to {envelope.recipient} {envelope.message_id} ---\n"
            f"{message.decode('ascii', 'replace')}\n--- end of email ---\n"
        )
        sys.stdout.flush()


def from_url(url: str, timeout: float = 10.0) -> Transport:
    """The transport ``EMAIL_URL`` names (see the module docstring for the forms)."""
    parts = urlsplit(url)
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if parts.scheme in {"smtp", "smtps"}:
        implicit = parts.scheme == "smtps"
        return SmtpTransport(
            parts.hostname or "localhost",
            parts.port or (465 if implicit else 25),
            implicit_tls=implicit,
            starttls=options.get("starttls", "false").lower() in TRUE,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=float(options.get("timeout", timeout)),
            verify=options.get("verify", "true").lower() in TRUE,
        )
    if parts.scheme == "file":
        return FileTransport(Path(unquote(parts.netloc + parts.path) or "./var/outbox"))
    if parts.scheme == "console":
        return ConsoleTransport()
    raise ConfigurationError(
        f"EMAIL_URL: unsupported scheme {parts.scheme!r}; use smtp://, smtps://, file:// "
        "or console://"
    )
