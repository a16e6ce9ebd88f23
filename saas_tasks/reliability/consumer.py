"""The worker's consumer, with undecodable messages dead-lettered instead of only logged.

Celery acks a message it cannot decode (bad JSON, a broken encoding) and writes a CRITICAL log
line, and no signal tells anyone; this subclass records it too, so "nothing is lost" holds for
poison messages as well.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        super().on_decode_error(message, exc)
        from saas_tasks.reliability.hooks import entry_from_message, publish_entry

        publish_entry(self.app, entry_from_message(message, "decode_error", exc))
