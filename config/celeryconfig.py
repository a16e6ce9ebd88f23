"""The deployable Celery settings, loaded by ``saas_tasks.app`` on top of the pack's defaults.

Only lowercase names are Celery settings (helpers start with ``_``). Every value comes from
:func:`saas_tasks.settings.get_settings`, so a bad variable fails at start with its name. This
layer tunes the processes; it never loosens the contract set in ``saas_tasks/celery_config.py``
(JSON only, late acks, reject on worker lost), and the worker refuses to start if it did.
"""

from config.beat_schedule import BEAT_SCHEDULE as _BEAT_SCHEDULE
from saas_tasks.settings import get_settings as _get_settings

_settings = _get_settings()

# --- worker --------------------------------------------------------------------------------
# One message reserved at a time per child: a long export never holds short emails hostage.
worker_prefetch_multiplier = 1
# None means one child per CPU (SAAS_TASKS_WORKER_CONCURRENCY).
worker_concurrency = _settings.worker_concurrency
# A child that grew past this many KiB is replaced after its current task (leaky libraries).
worker_max_memory_per_child = _settings.worker_max_memory_per_child
# Flower and `celery events` see every task; the sent event lets them show queued tasks too.
worker_send_task_events = True
task_send_sent_event = True
# On a lost broker connection, stop the late-acked tasks that can no longer be acked: Redis
# delivers their messages again, so letting them run on would run them twice.
worker_cancel_long_running_tasks_on_connection_loss = True

# --- tasks ---------------------------------------------------------------------------------
# Defaults for every task; a task may declare its own time_limit. The worker checks at start
# that the Redis visibility timeout is above the longest of them.
task_time_limit = _settings.task_time_limit
task_soft_time_limit = _settings.task_soft_time_limit

# --- beat ----------------------------------------------------------------------------------
beat_schedule = _BEAT_SCHEDULE
# RedBeat keeps the schedule and its last-run times in Redis behind one lock: a second beat
# (a deploy's overlap, a replica too many) waits on the lock instead of firing the same slot
# again, and takes over when the first one stops (at once) or dies (after the lock timeout).
beat_scheduler = "redbeat.RedBeatScheduler"
redbeat_redis_url = _settings.redis_url
redbeat_key_prefix = "saas_tasks:beat:"
redbeat_lock_key = "saas_tasks:beat:lock"
redbeat_lock_timeout = _settings.beat_lock_timeout
# Beat wakes at least this often (seconds) and extends the lock each time: well below the
# lock timeout, so a live beat never loses the lock between two ticks.
beat_max_loop_interval = max(1, min(5, _settings.beat_lock_timeout // 3))
