"""kombu's Redis transport, with queue entries that are not kombu messages dead-lettered.

kombu decodes each entry it pops off a queue list (BRPOP) inside ``Channel._brpop_read``,
before Celery or any hook sees a message. An entry that is not a JSON envelope (someone
``LPUSH``-ed ``garbage``), or one without the body, properties, delivery tag or delivery info
kombu needs, raises out of the worker's event loop: "Unrecoverable error", the worker stops,
and the popped entry is gone. Here the channel catches exactly those failures, records the raw
entry as a dead letter through the pack's usual path (the ``dead_letter`` queue, then the local
spool) and goes on consuming. Entries that are envelopes are delivered as before; a bad *body*
inside a good envelope is Celery's to refuse (see :mod:`saas_tasks.reliability.consumer`).
A broadcast (pub/sub) that is no kombu message is dropped with a warning instead of stopping the
worker, as kombu already does with one that is not JSON.

``_brpop_read`` is kombu's own, copied from the kombu in ``uv.lock``, with one line changed (the
decode-and-deliver); ``tests/unit/test_redis_transport.py`` fails if kombu's method differs
from this copy, so an upgrade cannot silently drop or outdate the override.

:class:`PoisonSafeConnection` (the app's connection class, see
:mod:`saas_tasks.reliability.messaging`) picks this transport wherever kombu would pick its Redis
transport: ``redis://``, ``rediss://``, ``redis+socket://``, failover lists included. The URL
keeps its scheme, so TLS defaults, ``as_uri()`` and Flower's broker view are unchanged; every
other transport (``amqp://``, ``sentinel://``) is kombu's own, untouched.
"""

from __future__ import annotations

import logging
from queue import Empty
from typing import Any

from kombu import Connection
from kombu.connection import ConnectionPool, PooledConnection
from kombu.transport import redis
from kombu.transport.virtual import Message
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from saas_tasks.exceptions import MalformedQueueEntry
from saas_tasks.reliability import redis_publish

log = logging.getLogger(__name__)

#: What decoding a raw entry or building a kombu message from it raises on a malformed one.
DECODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, RecursionError)


class EnvelopeCheckedMessage(Message):  # type: ignore[misc]
    """kombu's message, failing with :class:`MalformedQueueEntry` on an envelope it cannot use.

    kombu reads ``properties``, ``delivery_tag`` and the body encoding here, and Celery needs
    the ``body`` to be there (a string, as kombu writes it: ``null`` stops it); its Redis QoS then
    stores the message under its delivery tag (a Redis hash field: a string or an integer) with
    ``delivery_info``'s exchange and routing key (strings, as every kombu producer writes them),
    to restore it later. Without them the error would stop the worker after the entry had been
    taken off the queue.
    """

    def __init__(self, payload: Any, channel: Any = None, **kwargs: Any) -> None:
        try:
            super().__init__(payload, channel=channel, **kwargs)
        except DECODE_ERRORS as exc:
            raise MalformedQueueEntry(
                f"not a kombu message envelope: {type(exc).__name__}: {exc}"
            ) from exc
        info, tag = self.delivery_info, self.delivery_tag
        if not (
            isinstance(payload.get("body"), str)
            and isinstance(info, dict)
            and isinstance(info.get("exchange"), str)
            and isinstance(info.get("routing_key"), str)
            and isinstance(tag, str | int)
            and not isinstance(tag, bool)  # a Redis hash field: redis-py refuses a bool
        ):
            raise MalformedQueueEntry(
                "not a kombu message envelope: it needs a string 'body', "
                "properties.delivery_info with string 'exchange' and 'routing_key', and "
                "properties.delivery_tag a string or integer"
            )


class PoisonSafeChannel(redis_publish.Channel):
    """kombu's Redis channel (one redis-py client a channel, see :mod:`.redis_publish`); an
    entry it cannot turn into a message becomes a dead letter."""

    Message = EnvelopeCheckedMessage

    # kombu 5.7.0's Channel._brpop_read, verbatim but for the marked line (the test compares).
    # fmt: off
    def _brpop_read(self, **options):  # type: ignore[no-untyped-def]
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection,
                                                        'BRPOP',
                                                        **options)
            except self.connection_errors:
                # if there's a ConnectionError, disconnect so the next
                # iteration will reconnect automatically.
                self.client.connection.disconnect()
                raise
            if dest__item:
                dest, item = dest__item
                dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
                self._queue_cycle.rotate(dest)
                self._deliver_entry(item, dest)  # changed: was _deliver(loads(...), dest)
                return True
            else:
                raise Empty()
        finally:
            self._in_poll = None
            # The BRPOP connection is now idle (its reply has been fully
            # consumed and no new BRPOP has been issued yet): this is the
            # safe moment to flush any pending streaming re-auth token.
            self._flush_brpop_reauth()
    # fmt: on

    def _deliver_entry(self, item: bytes, queue: str) -> None:
        """Deliver the popped entry as kombu does, or dead-letter it if it is no message.

        Only the decoding and the message construction are guarded: an error raised by the
        consumer's callback (Celery) still propagates as it would without this transport.
        """
        try:
            payload = loads(bytes_to_str(item))
        except DECODE_ERRORS as exc:
            self._dead_letter(item, queue, MalformedQueueEntry(f"not JSON: {exc}"))
            return
        try:
            self.connection._deliver(payload, queue)
        except MalformedQueueEntry as exc:
            self._dead_letter(item, queue, exc)

    def _deliver_fanout_message(self, message: Any, exchange: str) -> bool:
        """A broadcast (Redis pub/sub: remote control, events) that is not a kombu message is
        dropped with a warning, as kombu drops one that is not JSON: pub/sub keeps nothing a
        dead letter could hold for replay, and no caller waits on it."""
        try:
            return bool(super()._deliver_fanout_message(message, exchange))
        except MalformedQueueEntry as exc:
            log.warning(
                "exchange %s: dropped a broadcast that is not a kombu message (%s): %.500r",
                exchange,
                exc,
                message,
            )
            return False

    def _dead_letter(self, item: bytes, queue: str, exc: MalformedQueueEntry) -> None:
        from saas_tasks.app import app
        from saas_tasks.reliability.hooks import dead_letter_queue_entry

        dead_letter_queue_entry(app, item, queue, exc)


class PoisonSafeTransport(redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with :class:`PoisonSafeChannel`."""

    Channel = PoisonSafeChannel


#: kombu's transport classes and the poison-safe class used in their place.
POISON_SAFE = {redis.Transport: PoisonSafeTransport}


class _PoisonSafeChoice:
    """Picks :class:`PoisonSafeTransport` where kombu resolved its Redis transport."""

    def get_transport_cls(self) -> Any:
        resolved = super().get_transport_cls()  # type: ignore[misc]
        return POISON_SAFE.get(resolved, resolved)


class PoisonSafePooledConnection(_PoisonSafeChoice, PooledConnection):  # type: ignore[misc]
    """A pooled connection (kombu's, closed on error) choosing as :class:`PoisonSafeConnection`."""


class PoisonSafeConnectionPool(ConnectionPool):  # type: ignore[misc]
    #: The class of the connections the pool hands out.
    connection_class: type[PooledConnection] = PoisonSafePooledConnection

    def new(self) -> Any:
        return self.connection_class(self, **dict(self.connection._info(resolve=False)))


class PoisonSafeConnection(_PoisonSafeChoice, Connection):  # type: ignore[misc]
    """kombu's connection, with :class:`PoisonSafeTransport` where kombu picks its Redis one.

    The choice is made on the transport class kombu resolved from the URL, not by passing
    ``transport=`` (Celery's ``broker_transport``): an explicit transport would lose what kombu
    derives from the scheme (``rediss://``'s TLS default, ``redis+socket://``'s prefix, the
    scheme in ``as_uri()`` that Flower reads) and would not survive a failover ``switch()``.
    Its pool's connections (Celery's producer pool: every ``.delay()``) choose the same way.
    """

    #: The pool class :meth:`Pool` builds (a subclass names its own).
    pool_class: type[PoisonSafeConnectionPool] = PoisonSafeConnectionPool

    def Pool(self, limit: int | None = None, **kwargs: Any) -> Any:
        return self.pool_class(self, limit=limit, **kwargs)
