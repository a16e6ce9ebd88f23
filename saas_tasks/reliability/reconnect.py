"""How soon a worker, beat or the CLI tries the broker again after losing it.

Celery's consumer, beat and ``celery purge`` reconnect through kombu's
``Connection.ensure_connection(errback, max_retries, callback=...)`` and pass no intervals, so
kombu's defaults apply: wait 2 s, then 4, 6, ... up to 30 s between attempts. After an outage
of half a minute the next attempt can be 10 s or more away, and a worker sits idle that long
with Redis already back. The pack promises a worker consumes again within 10 s of the broker
coming back (``tests/system/test_chaos_redis_long_outage.py``), so its connections wait
``SAAS_TASKS_BROKER_RECONNECT_INTERVAL_START`` seconds, growing by ``..._STEP`` up to
``..._MAX`` (0.5, 0.5 and 2 s by default): one cheap connect attempt every 2 s at worst.

Only the *defaults* change: a caller that passes its own intervals gets them. Publishing
(``.delay()``) does not go through here; its bounded retry is ``task_publish_retry_policy``.
"""

from __future__ import annotations

from typing import Any

from saas_tasks.settings import get_settings


def reconnect_intervals() -> tuple[float, float, float]:
    """(start, step, max) seconds between broker connection attempts, from the settings."""
    settings = get_settings()
    return (
        settings.broker_reconnect_interval_start,
        settings.broker_reconnect_interval_step,
        settings.broker_reconnect_interval_max,
    )


class QuickReconnect:
    """A kombu connection mixin whose ``ensure_connection`` defaults to the pack's intervals."""

    def ensure_connection(
        self,
        errback: Any = None,
        max_retries: int | None = None,
        interval_start: float | None = None,
        interval_step: float | None = None,
        interval_max: float | None = None,
        **options: Any,
    ) -> Any:
        start, step, most = reconnect_intervals()
        return super().ensure_connection(  # type: ignore[misc]
            errback,
            max_retries,
            start if interval_start is None else interval_start,
            step if interval_step is None else interval_step,
            most if interval_max is None else interval_max,
            **options,
        )
