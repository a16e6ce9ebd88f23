"""Messages a worker held when Redis went away go back on their queue once it is back.

kombu's Redis transport keeps each delivered message in an ``unacked`` hash until it is acked.
When a worker loses the broker, Celery closes the channel, and the close puts the messages it
had delivered but not acked back on their queue, so that another worker (or this one, once
reconnected) runs them. With Redis *down* that put-back cannot happen: kombu gives up, the
messages stay in the hash, and only the visibility timeout (two hours by default) brings them
back. After a Redis restart the backlog then runs, except the few messages the worker held,
which wait hours for no reason.

:class:`RestoringQoS` remembers, in this process, the delivery tags it could not put back, and
the first channel this process opens to the same Redis afterwards (the worker's reconnect opens
several) puts them back, each in one ``WATCH``/``MULTI`` transaction, as kombu's own close does.
A tag whose message was acked meanwhile (its task finished and the ack got through) is gone
from the hash and is skipped, so nothing runs twice that was done; a message restored while its
task still runs does run twice, as with kombu's own put-back, which is what idempotency keys are
for. A worker stopped before Redis returns leaves the messages to the visibility timeout.

kombu takes a message in two steps: ``BRPOP`` takes it off the queue, then a second command
records it in the ``unacked`` hash. Redis dying between the two used to lose the message (its
only copy was in the worker's memory, and kombu dropped it with the failed record). The QoS
keeps that copy with the tag, and the put-back pushes it if the hash does not hold the message.
What stays out of reach is a reply Redis had written to its log but not yet sent when it died.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

log = logging.getLogger(__name__)


#: A message as kombu's unacked hash holds it: the payload, its exchange and routing key.
Copy = tuple[dict[str, Any], str, str]


class StrandedDeliveries:
    """Delivery tags this process could not put back, per Redis (address and unacked key),
    each with the message's copy when the unacked hash may not have it."""

    def __init__(self) -> None:
        self.forget_after_fork()

    def forget_after_fork(self) -> None:
        """A forked child starts empty: the tags belong to the parent's deliveries."""
        self._lock = threading.Lock()
        self._tags: dict[str, dict[str, Copy | None]] = {}

    def add(self, where: str, tags: list[str], copy: Copy | None = None) -> None:
        with self._lock:
            held = self._tags.setdefault(where, {})
            for tag in tags:
                if held.get(tag) is None:
                    held[tag] = copy

    def give_back(self, where: str, tags: dict[str, Copy | None]) -> None:
        with self._lock:
            self._tags.setdefault(where, {}).update(tags)

    def take(self, where: str) -> dict[str, Copy | None]:
        """The tags stranded on ``where``, forgotten here (give back those not restored)."""
        with self._lock:
            return self._tags.pop(where, {})

    def __len__(self) -> int:
        with self._lock:
            return sum(len(tags) for tags in self._tags.values())


#: This process's stranded tags (a module global: Celery's reconnect builds a new transport).
STRANDED = StrandedDeliveries()
os.register_at_fork(after_in_child=STRANDED.forget_after_fork)


def broker_key(channel: Any) -> str:
    """Which Redis and which unacked hash a channel's deliveries live in (no password)."""
    client = channel.connection.client
    return f"{client.as_uri(include_password=False)} {channel.unacked_key}"


class RestoringQoS(kombu_redis.QoS):  # type: ignore[misc]
    """kombu's Redis QoS, remembering the messages it could not put back on a lost broker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read now: once Celery has collected a lost connection, it no longer knows its address.
        self.broker = broker_key(self.channel)

    def append(self, message: Any, delivery_tag: str) -> None:
        try:
            super().append(message, delivery_tag)
        except self.channel.connection_errors:
            # Taken off the queue, not recorded: this copy is the message's only one.
            info = message.delivery_info
            copy = (message._raw, info["exchange"], info["routing_key"])
            STRANDED.add(self.broker, [str(delivery_tag)], copy)
            log.warning(
                "a message taken off queue %s could not be recorded as unacknowledged, the "
                "broker is unreachable; this worker puts it back when it reconnects",
                info["routing_key"],
            )
            raise

    def restore_unacked(self, client: Any = None) -> Any:
        tags = [str(tag) for tag in self._delivered]
        try:
            return super().restore_unacked(client)
        except self.channel.connection_errors as exc:
            # Some may have gone back before the error: putting one back twice finds it gone
            # from the unacked hash the second time, and does nothing.
            STRANDED.add(self.broker, tags)
            self._delivered.clear()
            log.warning(
                "%d unacknowledged message(s) could not be put back on their queue, the broker "
                "is unreachable (%s); this worker puts them back when it reconnects",
                len(tags),
                exc,
            )
            return None


def restore_stranded(channel: Any) -> int:
    """Put back what this process left unacked on ``channel``'s Redis; how many tags it took.

    Called on every new channel, so it costs one dictionary look-up when nothing is stranded.
    A failure keeps the tags for the next channel and does not fail this one.
    """
    if not len(STRANDED):
        return 0
    where = broker_key(channel)
    tags = list(STRANDED.take(where).items())
    for done, (tag, copy) in enumerate(tags):
        try:
            put_back(channel, tag, copy)
        except channel.connection_errors as exc:
            STRANDED.give_back(where, dict(tags[done:]))
            log.warning("could not put back %d message(s) yet: %s", len(tags) - done, exc)
            return done
    if tags:
        log.warning(
            "put back on their queues the message(s) this worker held unacknowledged when it "
            "lost the broker (%d delivery tag(s); any acked since were skipped)",
            len(tags),
        )
    return len(tags)


def put_back(channel: Any, tag: str, copy: Copy | None) -> None:
    """kombu's ``restore_by_tag``, pushing ``copy`` when the unacked hash lacks the message.

    One ``WATCH``/``MULTI`` transaction: the hash's record, if any, wins (and is removed), so a
    message is pushed once whether or not its record reached Redis before the connection died.
    """
    qos = channel.qos

    def transaction(pipe: Any) -> None:
        recorded = pipe.hget(qos.unacked_key, tag)
        pipe.multi()
        qos._remove_from_indices(tag, pipe)
        if recorded:
            payload, exchange, routing_key = loads(bytes_to_str(recorded))
        elif copy is not None:
            payload, exchange, routing_key = copy
        else:
            return  # acked since: nothing to put back
        channel._do_restore_message(payload, exchange, routing_key, pipe, False)

    with channel.conn_or_acquire() as client:
        client.transaction(transaction, qos.unacked_key)
