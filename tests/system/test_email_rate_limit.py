"""The email rate limit holds for all workers together: two ``celery worker`` processes sharing
SAAS_TASKS_EMAIL_RATE_LIMIT=10 deliver 10 messages a second between them, not 10 each."""

from __future__ import annotations

import uuid
from typing import Any

from saas_tasks.email import send_chunk
from tests.conftest import wait_for
from tests.smtp_server import smtp_server
from tests.system.conftest import QUEUE, SystemProcesses

RATE = 10  # messages per second, for everyone
CHUNKS, PER_CHUNK = 4, 6


def test_the_rate_limit_holds_across_two_worker_processes(
    system_processes: SystemProcesses, redis_client: Any
) -> None:
    with smtp_server() as smtp:
        settings = {"EMAIL_URL": smtp.url, "SAAS_TASKS_EMAIL_RATE_LIMIT": str(RATE)}
        workers = [
            system_processes.worker(name, concurrency=1, queues=(QUEUE,), **settings)
            for name in ("mailer-a", "mailer-b")
        ]
        batch = f"rate-{uuid.uuid4().hex[:8]}"
        for number in range(CHUNKS):
            recipients = [
                {"to": f"r{number}-{i}@example.com", "context": {"name": f"R{i}"}}
                for i in range(PER_CHUNK)
            ]
            send_chunk.apply_async(
                kwargs={"template": "welcome", "batch_key": batch, "recipients": recipients},
                queue=QUEUE,
            )
        total = CHUNKS * PER_CHUNK
        wait_for(lambda: len(smtp.received) >= total, timeout=30, message=f"{total} messages")
        times = sorted(message.at for message in smtp.received)

    assert len(set(smtp.recipients())) == total
    for worker in workers:  # both processes sent, so the limit was shared, not per process
        assert "email chunk of batch" in worker.log(), worker.log()[-2000:]
    # burst 1: the first message goes at once, then one every 1/RATE s, across both workers
    assert times[-1] - times[0] >= (total - 1) / RATE * 0.9
    for index, start in enumerate(times):
        within_a_second = [t for t in times[index:] if t - start < 1.0]
        assert len(within_a_second) <= RATE + 1
