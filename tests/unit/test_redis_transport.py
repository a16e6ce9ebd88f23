"""The poison-safe Redis transport stays a one-line change to kombu's, and is picked exactly
where kombu would pick its own Redis transport (the consuming side is tested on a real worker in
tests/integration/test_poison_messages.py and tests/system/test_chaos_poison.py)."""

from __future__ import annotations

import ast
import inspect
import textwrap
import tomllib
from pathlib import Path

import kombu
import pytest
from kombu import Connection
from kombu.transport import redis, virtual

from saas_tasks.reliability.redis_transport import (
    PoisonSafeChannel,
    PoisonSafeConnection,
    PoisonSafeTransport,
)

ROOT = Path(__file__).resolve().parents[2]
#: The line of kombu's ``Channel._brpop_read`` the override changes, and what it became.
UPSTREAM_LINE = "self.connection._deliver(loads(bytes_to_str(item)), dest)"
OVERRIDE_LINE = "self._deliver_entry(item, dest)"


def code_of(function: object) -> str:
    """The function's code without formatting, comments or type comments."""
    return ast.dump(ast.parse(textwrap.dedent(inspect.getsource(function))))


def test_the_brpop_read_override_is_kombus_own_method_but_for_the_delivery_line() -> None:
    upstream = inspect.getsource(redis.Channel._brpop_read)
    assert upstream.count(UPSTREAM_LINE) == 1, (
        f"kombu {kombu.__version__} no longer decodes and delivers BRPOP entries in one line "
        f"({UPSTREAM_LINE}): the override in saas_tasks/reliability/redis_transport.py must be "
        "redone against the new Channel._brpop_read"
    )
    expected = ast.dump(ast.parse(textwrap.dedent(upstream.replace(UPSTREAM_LINE, OVERRIDE_LINE))))
    assert code_of(PoisonSafeChannel._brpop_read) == expected, (
        "PoisonSafeChannel._brpop_read (saas_tasks/reliability/redis_transport.py) is no "
        f"longer kombu {kombu.__version__}'s Channel._brpop_read with one line changed "
        f"({OVERRIDE_LINE}). After a kombu upgrade: copy the new method there, keep that one "
        "change, and read what kombu changed around it; never edit the copy otherwise"
    )


def test_kombu_still_calls_the_methods_the_channel_overrides() -> None:
    assert "'BRPOP': self._brpop_read" in inspect.getsource(redis.Channel.__init__)
    assert "self._deliver_fanout_message(" in inspect.getsource(redis.Channel._receive_one)
    assert "self.Message(raw_message" in inspect.getsource(virtual.Channel.basic_consume)
    assert PoisonSafeTransport.Channel is PoisonSafeChannel
    assert issubclass(PoisonSafeTransport, redis.Transport)


def test_the_tests_run_against_the_kombu_in_uv_lock() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    [locked] = [package["version"] for package in lock["package"] if package["name"] == "kombu"]
    assert kombu.__version__ == locked, (
        f"kombu {kombu.__version__} is installed, uv.lock pins {locked}: run make venv"
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis://:secret@127.0.0.1:6379/3",
        "rediss://cache.example.com:6380/0",
        "rediss://cache.example.com:6380/0?ssl_cert_reqs=required",
        "redis+socket:///run/redis/redis.sock?virtual_host=2",
        "redis://a.example.com:6379/0;redis://b.example.com:6379/0",
    ],
)
def test_a_redis_url_gets_the_poison_safe_transport_and_keeps_all_kombu_reads_from_it(
    url: str,
) -> None:
    ours, kombus = PoisonSafeConnection(url), Connection(url)

    assert kombus.get_transport_cls() is redis.Transport
    assert ours.get_transport_cls() is PoisonSafeTransport
    assert ours.as_uri(include_password=True) == kombus.as_uri(include_password=True)
    for field in ("hostname", "port", "virtual_host", "userid", "password", "ssl"):
        assert getattr(ours, field) == getattr(kombus, field), field
    assert ours.transport.driver_type == "redis"


def test_rediss_keeps_tls_where_an_explicit_transport_would_drop_it() -> None:
    url = "rediss://cache.example.com:6380/0"
    assert PoisonSafeConnection(url).ssl  # kombu's default for rediss://: TLS
    assert not Connection(url, transport=PoisonSafeTransport).ssl  # why not broker_transport


def test_a_failover_switch_to_the_next_redis_keeps_the_poison_safe_transport() -> None:
    connection = PoisonSafeConnection("redis://a.example.com:6379/0;redis://b.example.com:6379/0")
    connection.switch("redis://b.example.com:6379/0")
    assert connection.get_transport_cls() is PoisonSafeTransport
    assert connection.hostname == "b.example.com"


@pytest.mark.parametrize(
    "url",
    ["amqp://guest:guest@127.0.0.1:5672//", "sentinel://127.0.0.1:26379;sentinel://other:26379"],
)
def test_other_brokers_keep_kombus_own_transport(url: str) -> None:
    ours = PoisonSafeConnection(url)
    assert ours.get_transport_cls() is Connection(url).get_transport_cls()
    assert not issubclass(ours.get_transport_cls(), PoisonSafeTransport)


def test_the_app_connects_with_the_poison_safe_connection_class() -> None:
    from saas_tasks import app

    with app.connection_for_read() as reading, app.connection_for_write() as writing:
        assert isinstance(reading, PoisonSafeConnection)
        assert isinstance(writing, PoisonSafeConnection)


def test_pooled_connections_choose_the_same_transport_as_their_pool() -> None:
    """Celery's producer pool (every ``.delay()``, the worker's own publishing) hands out
    kombu ``PooledConnection``s built from the pool's connection: they choose as it does."""
    redis_pool = PoisonSafeConnection("redis://127.0.0.1:6379/0").Pool(limit=2)
    amqp_pool = PoisonSafeConnection("amqp://guest:guest@127.0.0.1:5672//").Pool(limit=2)
    pooled, other = redis_pool.acquire(), amqp_pool.acquire()
    try:
        assert pooled.get_transport_cls() is PoisonSafeTransport
        assert pooled.get_transport_cls().Channel is PoisonSafeChannel
        assert other.get_transport_cls() is Connection("amqp://").get_transport_cls()
    finally:
        pooled.release()
        other.release()
