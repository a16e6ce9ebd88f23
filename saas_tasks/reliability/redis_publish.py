"""kombu's Redis transport, with one redis-py client a channel instead of one a command.

kombu's Redis channel builds a new ``redis.Redis`` object for every publish (``LPUSH``), every
``task-sent`` event (``PUBLISH``) and every queue binding. The objects share the channel's
connection pool, so nothing is gained by the new object; but since redis-py 6, building one
fills a case-insensitive table of ~170 response callbacks, about a tenth of a millisecond of a
web request's ``.delay()`` each time. A redis-py client is safe to share: every command takes a
connection from the pool and gives it back. The channel also keeps what its publish batches
buffered (:class:`RecordingPublishBatch`), for bulk enqueue's stamp. It is the base of the
pack's Redis channel (:mod:`saas_tasks.reliability.redis_transport`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

from saas_tasks.reliability.unacked_restore import RestoringQoS, restore_stranded


class RecordingPublishBatch(kombu_redis.PublishBatch):  # type: ignore[misc]
    """kombu's publish batch, keeping the Redis commands of each message it buffers: what
    :mod:`saas_tasks.reliability.bulk` reads to stamp further messages like the first."""

    def __init__(self, channel: Any, max_size: int) -> None:
        super().__init__(channel, max_size)
        self.published: list[list[tuple[str, tuple[Any, ...]]]] = []
        self._adding: list[tuple[str, tuple[Any, ...]]] | None = None

    def publish(self, message: Any, **kwargs: Any) -> Any:
        self._adding = []
        try:
            return super().publish(message, **kwargs)
        finally:
            self.published.append(self._adding)
            self._adding = None

    def add(self, name: str, *args: Any) -> None:
        super().add(name, *args)
        if self._adding is not None:
            self._adding.append((name, args))


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = RestoringQoS
    _shared_client: Any = None
    #: The last publish batch this channel made (a producer batch makes one per channel).
    last_batch: RecordingPublishBatch | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # kombu pings Redis here: it answers
        restore_stranded(self)  # what a lost connection left unacked (unacked_restore)

    def create_publish_batch(self, max_size: int) -> RecordingPublishBatch:
        self.last_batch = RecordingPublishBatch(self, max_size)
        return self.last_batch

    @contextmanager
    def pipeline(self, transaction: bool = False) -> Iterator[Any]:
        """A pipeline on the channel's client (a publish batch uses a non-transactional one)."""
        with self.conn_or_acquire() as client, client.pipeline(transaction=transaction) as pipe:
            yield pipe

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._pool is None and self.connection.client is None:
            # The connection was collected (Celery does so when it loses the broker), so no
            # pool can be built: kombu would fail with AttributeError, which stops a worker
            # closing this channel to reconnect (restoring its unacked messages is the call
            # that gets here). A connection error is what Celery expects and ignores there;
            # RestoringQoS keeps the tags, and this process puts them back once reconnected.
            raise RedisConnectionError("the broker connection is closed (collected)")
        shared = self._shared_client
        # A fork or a close drops the pool (``_disconnect_pools``); a client of the old pool
        # would keep its connections, so it is rebuilt on the pool in use.
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()
        yield shared

    def _disconnect_pools(self) -> None:
        self._shared_client = None
        super()._disconnect_pools()
