"""Every error the pack raises, under one root.

    SaasTasksError
    ├── ConfigurationError        a setting is missing or wrong; names the variable and the fix
    ├── BrokerUnavailable         .delay() could not reach the broker within the publish timeout
    ├── TransientError            worth retrying: the retry policies retry this family only
    │   └── DuplicateInProgress   another run holds the idempotency key right now
    └── PermanentError            never retried; the task goes to the dead-letter queue at once
        ├── InvalidPayload        the payload does not match the task's schema
        ├── LockHeld              the overlap lock is held by a previous run
        ├── DeadLetterNotFound    no dead letter with that id
        └── MalformedQueueEntry   a Redis queue entry that is not a kombu message at all

Messages name the cause and, where there is one, the fix.
"""

from __future__ import annotations


class SaasTasksError(Exception):
    """Root of every error raised by saas_tasks."""


class ConfigurationError(SaasTasksError):
    """A setting is missing, malformed or unsafe; raised at start, never mid-task."""


class BrokerUnavailable(SaasTasksError):
    """The broker (or result store) did not answer within the publish timeout."""


class TransientError(SaasTasksError):
    """A failure that may succeed later (a network blip, a busy server): retried by policy."""


class DuplicateInProgress(TransientError):
    """Another run holds the idempotency key; this delivery waits and tries again.

    ``retry_after``, when known, is how many seconds the other run's claim still lasts: the
    retry waits at least that long (within the policy's cap) rather than spend its attempts
    on a claim that cannot have lapsed yet.
    """

    def __init__(self, *args: object, retry_after: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after = retry_after


class PermanentError(SaasTasksError):
    """A failure that will not go away by retrying; the task fails for good at once."""


class InvalidPayload(PermanentError):
    """The task's arguments do not match its declared schema."""


class LockHeld(PermanentError):
    """The overlap lock for a job is held by a run that is still going."""


class DeadLetterNotFound(PermanentError):
    """No dead letter has the given id."""


class MalformedQueueEntry(PermanentError):
    """An entry on a Redis queue list is not a kombu message envelope (not JSON, or without the
    ``properties``/``delivery_tag``/``delivery_info`` kombu needs): something wrote to Redis
    behind the pack's back. The worker takes it off the queue, dead-letters it, and goes on."""
