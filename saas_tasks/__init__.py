"""saas-tasks: a Celery task pack for SaaS backends.

``celery -A saas_tasks worker`` finds the app here. Host apps import their building blocks
from this module only.
"""

from saas_tasks.app import app
from saas_tasks.exceptions import (
    BrokerUnavailable,
    ConfigurationError,
    DeadLetterNotFound,
    DuplicateInProgress,
    InvalidPayload,
    LockHeld,
    MalformedQueueEntry,
    PermanentError,
    SaasTasksError,
    TransientError,
)
from saas_tasks.reliability.idempotency import enqueue_once
from saas_tasks.reliability.retry import RetryPolicy, register_policy
from saas_tasks.reliability.singleton import OverlapLock
from saas_tasks.reliability.task import Idempotent, Singleton, idempotent, retry, singleton, task

__all__ = [
    "BrokerUnavailable",
    "ConfigurationError",
    "DeadLetterNotFound",
    "DuplicateInProgress",
    "Idempotent",
    "InvalidPayload",
    "LockHeld",
    "MalformedQueueEntry",
    "OverlapLock",
    "PermanentError",
    "RetryPolicy",
    "SaasTasksError",
    "Singleton",
    "TransientError",
    "app",
    "enqueue_once",
    "idempotent",
    "register_policy",
    "retry",
    "singleton",
    "task",
]
