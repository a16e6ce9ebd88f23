"""The SQLAlchemy engine and sessions, safe under Celery's prefork pool.

A connection must never be shared between a parent and its forked children: both would talk
over one socket and corrupt each other's conversations. The engine is created lazily per
process and disposed (without closing the parent's sockets) in every forked child.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from saas_tasks.settings import get_settings

_lock = threading.Lock()
_engine: Engine | None = None
_sessions: sessionmaker[Session] | None = None
_url_override: str | None = None


def normalise_url(url: str) -> str:
    """Accept the usual ``postgresql://`` and ``postgres://`` spellings; use psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def database_url() -> str:
    return normalise_url(_url_override or get_settings().database_url)


def _build_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_size=get_settings().database_pool_size,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (the CLI, the web app) run while a worker writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _session_factory() -> sessionmaker[Session]:
    global _engine, _sessions
    with _lock:
        if _engine is None or _sessions is None:
            _engine = _build_engine(database_url())
            _sessions = sessionmaker(_engine, expire_on_commit=False)
        return _sessions


def get_engine() -> Engine:
    """The engine of this process, created on first use."""
    engine = _session_factory().kw["bind"]
    return engine  # type: ignore[no-any-return]


def configure(url: str | None) -> None:
    """Point this process at another database (tests, the CLI's ``--database-url``)."""
    global _url_override
    dispose()
    _url_override = url


def dispose(close: bool = True) -> None:
    """Forget the engine; with ``close=False`` leave the sockets to the process that owns them."""
    global _engine, _sessions
    with _lock:
        if _engine is not None:
            _engine.dispose(close=close)
        _engine = None
        _sessions = None


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = _session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _after_fork_in_child() -> None:
    if _engine is not None:
        dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)
