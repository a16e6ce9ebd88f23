"""What ``celery beat`` says at start: the jobs it will fire (or that it fires none), and the
lock it waits for.

Beat runs RedBeat (``config/celeryconfig.py``): a second beat blocks on a Redis lock until the
first one stops, so an operator who started two sees one of them "waiting" rather than silence.
This handler is connected when the app is built, before RedBeat's own ``beat_init`` handler
(which blocks on the lock), so these lines come first.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from saas_tasks.settings import get_settings

log = logging.getLogger("saas_tasks.schedules")


def announce_schedule(sender: Any = None, **_: Any) -> None:
    app = sender.app
    entries = dict(app.conf.beat_schedule or {})
    if get_settings().disable_schedules:
        log.warning(
            "beat: SAAS_TASKS_DISABLE_SCHEDULES=true: the schedule is empty, this beat fires "
            "nothing (unset it to run the cron jobs)"
        )
    elif not entries:
        log.warning("beat: the schedule is empty, this beat fires nothing")
    else:
        log.info("beat: %d scheduled jobs: %s", len(entries), ", ".join(sorted(entries)))
    lock_key = getattr(sender.scheduler, "lock_key", None)
    if lock_key:
        log.info(
            "beat: taking the lock %s; if another beat holds it, this one waits and takes "
            "over when it stops (or %ss after it dies)",
            lock_key,
            getattr(sender.scheduler, "lock_timeout", "?"),
        )


# Connected by a call, not the decorator: Celery's signal decorators are untyped (mypy).
signals.beat_init.connect(announce_schedule)
