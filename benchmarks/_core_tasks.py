"""The two no-op tasks of ``benchmarks/core_overhead.py``, in a module of their own: the
benchmark's worker imports it (``-I _core_tasks``), and the benchmark imports it only once its
own Redis and database are in the environment (the app reads them at import)."""

from __future__ import annotations

from pydantic import BaseModel

from saas_tasks import Idempotent, app, task

QUEUE = "bench-core"
PACK, PLAIN = "bench.core.noop_pack", "bench.core.noop_plain"
KEYED = "bench.core.noop_keyed"


class NoopPayload(BaseModel):
    n: int


@task(name=PACK, queue=QUEUE, payload=NoopPayload, retry="default")
def noop_pack(payload: NoopPayload) -> None:
    """Does nothing, through the whole reliability core."""


@app.task(name=PLAIN, queue=QUEUE)  # type: ignore[misc]
def noop_plain(n: int) -> None:
    """Does nothing, as plain Celery runs it."""


@task(
    name=KEYED, queue=QUEUE, payload=NoopPayload, retry="default", idempotent=Idempotent(key=("n",))
)
def noop_keyed(payload: NoopPayload) -> None:
    """Does nothing, through the whole core and an idempotency key (its claim, lease and
    recorded result: two database writes a run)."""
