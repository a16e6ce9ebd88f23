"""The email family's errors, placed in the pack's tree (see :mod:`saas_tasks.exceptions`).

    TransientError
    ├── EmailConnectionError      the server could not be reached, or dropped the connection
    └── EmailTemporaryFailure     the server answered 4xx: try again later
    PermanentError
    └── RecipientRefused          the server answered 5xx for this recipient: never retried

Refused connections and socket timeouts are also raised as the builtin ``ConnectionError`` /
``TimeoutError``, which every retry policy already treats as transient.
"""

from __future__ import annotations

from saas_tasks.exceptions import PermanentError, TransientError


class EmailConnectionError(TransientError):
    """The SMTP server closed the connection, or could not be reached."""


class EmailTemporaryFailure(TransientError):
    """The SMTP server answered with a 4xx code; the same message may pass later."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"SMTP {code}: {message}")
        self.code = code
        self.reply = message

    def __reduce__(self) -> tuple[type[EmailTemporaryFailure], tuple[int, str]]:
        # Celery pickles failures to report them; keep the class rather than fall back to a base.
        return (type(self), (self.code, self.reply))


class RecipientRefused(PermanentError):
    """The SMTP server answered with a 5xx code for one recipient; retrying will not help."""

    def __init__(self, recipient: str, code: int, message: str) -> None:
        super().__init__(f"SMTP {code} for {recipient}: {message}")
        self.recipient = recipient
        self.code = code
        self.reply = message

    def __reduce__(self) -> tuple[type[RecipientRefused], tuple[str, int, str]]:
        return (type(self), (self.recipient, self.code, self.reply))
