"""Chaos: the broker's Redis SIGKILLed and restarted (append-only file on) under a running
worker with a backlog.

The test runs a Redis of its own on a free port (whatever ``REDIS_URL`` says), and points both
sides at it: the ``celery worker`` subprocess, and the producers, which run in fresh
interpreters as a web app's processes would (the pack reads ``REDIS_URL`` once, at import).
The tasks are ``tests.audit``, whose effect is an ``audit_logs`` row committed with its
idempotency record, so the database tells what ran, independently of Redis. What must hold:

* nothing enqueued before the restart is lost: every task of the backlog runs, once;
* ``.delay()`` while Redis is down raises ``BrokerUnavailable`` within 2 s, naming the broker;
* the worker consumes again within 10 s of Redis coming back.
"""

from __future__ import annotations

import contextlib
import time

import pytest
import redis

from saas_tasks.app import app
from tests.conftest import wait_for
from tests.sample_tasks import slow
from tests.services import redis_answers
from tests.system.chaos_support import RestartableRedis, audited, run_python
from tests.system.conftest import QUEUE, SystemProcesses
from tests.system.test_broker_down import SCRIPT as PROBE  # .delay(), timed, as JSON

BACKLOG = 400
ENQUEUE = """
import json
from tests.sample_tasks import audit
for number in range({count}):
    audit.apply_async(kwargs={{"ref": "{prefix}-%d" % number}}, queue="{queue}")
print(json.dumps({{"enqueued": {count}}}))
"""


#: Messages a Redis SIGKILL can take for good: a BRPOP reply logged but not sent.
IN_FETCH_AT_KILL = 1


@pytest.mark.timeout(120)
def test_a_redis_restart_loses_no_enqueued_task_fails_delay_fast_and_the_worker_resumes(
    system_processes: SystemProcesses, private_redis: RestartableRedis
) -> None:
    on_private = private_redis.env
    prefix = f"backlog-{time.monotonic_ns()}"
    # The backlog is enqueued before any worker runs, so that most of it waits in Redis.
    enqueue = ENQUEUE.format(count=BACKLOG, prefix=prefix, queue=QUEUE)
    assert run_python(enqueue, **on_private) == {"enqueued": BACKLOG}
    worker = system_processes.worker("consumer", **on_private)
    wait_for(lambda: audited(prefix)[0] >= 20, timeout=30, message="the worker under way")

    private_redis.kill()
    done_at_kill = audited(prefix)[0]
    assert done_at_kill < BACKLOG - 100, "the backlog drained before the kill"
    probe = run_python(PROBE, **on_private)
    worker.wait_for_log("Connection to broker lost", timeout=15)
    waiting = audited(prefix)[0]

    private_redis.start()  # same port, same data directory: what the AOF kept comes back
    back = time.monotonic()
    assert redis_answers(private_redis.url)
    wait_for(
        lambda: audited(prefix)[0] > waiting,
        timeout=10,
        message="the worker to consume again within 10 s of Redis coming back",
    )
    resumed_after = time.monotonic() - back
    # kombu's Redis transport takes a message in two steps, BRPOP then recording it as
    # unacked; the pack keeps the worker's copy of a message caught between the two and puts
    # it back (reliability/unacked_restore.py). What a SIGKILL can still take is a BRPOP
    # reply Redis had logged but not yet sent: at most one, as the worker has one BRPOP out.
    wait_for(
        lambda: audited(prefix)[1] >= BACKLOG - IN_FETCH_AT_KILL,
        timeout=60,
        message=f"all {BACKLOG} tasks enqueued before the restart to run",
    )
    if audited(prefix)[1] < BACKLOG:  # give the last one the same time to show up
        with contextlib.suppress(pytest.fail.Exception):
            wait_for(lambda: audited(prefix)[1] == BACKLOG, timeout=15)
    rows, refs = audited(prefix)
    print(
        f"\nchaos redis: {BACKLOG} enqueued, {done_at_kill} done at the kill, {waiting} when "
        f"Redis came back; .delay() failed in {probe['elapsed']:.2f}s; consuming again "
        f"{resumed_after:.2f}s after Redis came back; {rows} rows for {refs} refs "
        f"({BACKLOG - refs} lost in a reply the kill cut)"
    )

    assert probe["type"] == "saas_tasks.exceptions.BrokerUnavailable", probe
    assert probe["elapsed"] < 2.0, probe
    assert f"127.0.0.1:{private_redis.port}" in probe["message"]
    assert "nothing was enqueued" in probe["message"]
    assert resumed_after < 10
    assert rows == refs >= BACKLOG - IN_FETCH_AT_KILL  # every task ran, and ran once
    assert worker.alive()


@pytest.mark.timeout(90)
def test_a_late_acked_task_stopped_by_the_redis_loss_runs_again_once_redis_is_back(
    system_processes: SystemProcesses, private_redis: RestartableRedis
) -> None:
    """Celery stops a late-acked task that is running when the broker goes (it can no longer be
    acked) and leaves its message to be delivered again. Its result backend is the same Redis,
    so Celery's record of that stop fails; Celery then took the stopped task for a revoked one
    and acked its message once Redis was back: the task never ran again. (Before the fix this
    was most of the backlog test's "lost in the fetch" count.)"""
    worker = system_processes.worker("consumer", **private_redis.env)
    marker = f"stopped-{time.monotonic_ns()}"
    with app.connection_for_write(private_redis.url) as connection:
        slow.apply_async(
            kwargs={"seconds": 2.0, "marker": marker}, queue=QUEUE, connection=connection
        )

    def noted(kind: str) -> list[str]:
        values = redis.Redis.from_url(private_redis.url).lrange(f"test:{kind}", 0, -1)
        return [value.decode() for value in values if value.decode().startswith(marker)]

    wait_for(lambda: noted("slow-started"), timeout=20, message="the task to start")
    private_redis.kill()
    worker.wait_for_log("Terminating it instead", timeout=15)  # Celery stops the task
    private_redis.start()  # back at once: Celery's ack of a "revoked" task would get through

    wait_for(
        lambda: noted("slow-finished"),
        timeout=45,
        message="the stopped task to be delivered again and run to its end",
    )
    started, finished = noted("slow-started"), noted("slow-finished")
    print(f"\nstopped task: started {len(started)} times, finished {len(finished)}")
    assert len(started) == 2  # the stopped run, then the redelivered one
    assert finished == [marker]
    assert "revoked" not in worker.log().lower()
    assert worker.alive()
