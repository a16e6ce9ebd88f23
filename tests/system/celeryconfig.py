"""The system tier's deployment layer, loaded by its worker and beat subprocesses through
``SAAS_TASKS_CELERY_CONFIG=tests.system.celeryconfig``: the operator's ``config.celeryconfig``
as deployed, then these test-only changes, which make a killed worker's message come back
within seconds instead of hours:

* every task (``tests.slow`` declares 20 s) gets the environment's short default limits, so
  the Redis visibility timeout can stay a few seconds and still pass the start-up check;
* kombu sweeps for messages past their visibility timeout only every ~100 s by default
  (``unacked_restore_interval`` 10 s times ``unacked_restore_throttle`` 10); here every second;
* a sweep holds the ``unacked_mutex`` lock, which expires after 300 s by default: a worker
  SIGKILLed inside a sweep (a few milliseconds of every second here) would stop every worker
  from restoring anything for five minutes, far past the few seconds these tests wait. Here
  it expires after 5 s. A deployed worker sweeps every ~100 s against a visibility timeout of
  hours, where the default is harmless. The lock only spares Redis duplicate scans: two
  sweeps at once restore each message once (kombu restores under WATCH);
* beat fires one entry, every second, onto the system tier's own queue (never the deployed
  schedule).
"""

from __future__ import annotations

import os
from typing import Any

from saas_tasks.celery_config import celery_defaults, deployment_overrides
from saas_tasks.settings import get_settings

QUEUE = os.environ.get("SAAS_TASKS_SYSTEM_QUEUE", "system-tests")

_settings = get_settings()

globals().update(deployment_overrides("config.celeryconfig"))

broker_transport_options: dict[str, Any] = {
    **celery_defaults(_settings)["broker_transport_options"],
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 5,
}

# Every task (the families' long exports and reconciliations too) runs under the
# environment's short limits here, so the visibility timeout can stay a few seconds.
task_annotations = {
    "*": {
        "time_limit": _settings.task_time_limit,
        "soft_time_limit": _settings.task_soft_time_limit,
    }
}

beat_schedule = {
    "system-tick": {
        "task": "tests.mark",
        "schedule": 1.0,
        "args": ("beat-tick",),
        "options": {"queue": QUEUE, "expires": 30},
    }
}
