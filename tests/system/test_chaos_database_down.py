"""Chaos: the database goes away under a real ``celery worker`` while tasks fail. Their dead
letters must be kept (the store, ``saas_tasks.deadletter.record``, retries while the database
is down) and stored, once each, when it is back.

How "down" is made, at the very URL the worker uses, with the test's own connection going
straight to the database so that it sees what really got stored:

* PostgreSQL: the worker connects through a loopback TCP proxy (``tests.services.TcpProxy``)
  that the test stops (refusing new connections and cutting the open ones) and starts again
  on the same port. The worker stores one dead letter first, so its pool holds connections
  that the cut breaks.
* SQLite has no server to stop, and a connection already open keeps working whatever happens
  to the path. The worker's URL goes through a symlinked directory; "down" points the link at
  a directory where the database's name is itself a directory, so every attempt to open it
  fails with ``sqlite3.OperationalError: unable to open database file`` (what a vanished
  volume gives), and "back" points it at the real file again. The worker opens its first
  database connection during the outage (no warm-up), since an open one would not notice.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from saas_tasks.db import normalise_url
from saas_tasks.reliability import deadletter
from tests import sample_tasks
from tests.conftest import wait_for
from tests.services import TcpProxy
from tests.system.conftest import QUEUE, SystemProcesses

FAILURES = 5
#: Retries of the store each dead letter must have made before the database comes back.
RETRIES_WHILE_DOWN = 3
RECORD_RETRY = re.compile(r"saas_tasks\.deadletter\.record\[([^\]]+)\] retry (\d+)/\d+ in ")


@dataclass
class Outage:
    """The worker's ``DATABASE_URL``, and how to take that database away and bring it back."""

    url: str
    backend: str
    proxy: TcpProxy | None = None
    link: Path | None = None
    real: Path | None = None
    gone: Path | None = None

    def cut(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        else:
            self._point(self.gone)

    def restore(self) -> None:
        if self.proxy is not None:
            self.proxy.start()
        else:
            self._point(self.real)

    def _point(self, target: Path | None) -> None:
        assert self.link is not None and target is not None
        staged = self.link.with_name(self.link.name + ".new")
        staged.unlink(missing_ok=True)
        staged.symlink_to(target, target_is_directory=True)
        os.replace(staged, self.link)  # atomic: the path is always one or the other


@pytest.fixture()
def outage(database_url: str, tmp_path: Path) -> Iterator[Outage]:
    url = make_url(normalise_url(database_url))
    if url.get_backend_name() == "postgresql":
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
        routed = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
        try:
            yield Outage(routed.render_as_string(hide_password=False), "postgresql", proxy=proxy)
        finally:
            proxy.stop()
        return
    assert url.database, "SQLite in memory cannot be shared with a worker"
    real = Path(url.database).resolve()
    gone = tmp_path / "gone"
    (gone / real.name).mkdir(parents=True)  # the database's name, as a directory
    link = tmp_path / "db"
    link.symlink_to(real.parent, target_is_directory=True)
    yield Outage(f"sqlite:///{link / real.name}", "sqlite", link=link, real=real.parent, gone=gone)


def stored(prefix: str) -> list[Any]:
    return [
        entry
        for entry in deadletter.list_entries(deadletter.Filters(task="tests.broken"))
        if entry.args and str(entry.args[0]).startswith(prefix)
    ]


def retried(log: str, times: int) -> set[str]:
    """Ids of the store tasks that logged retry number ``times`` (or a later one)."""
    return {task_id for task_id, number in RECORD_RETRY.findall(log) if int(number) >= times}


@pytest.mark.timeout(120)
def test_dead_letters_raised_while_the_database_is_down_are_kept_and_stored_once_it_is_back(
    system_processes: SystemProcesses, outage: Outage
) -> None:
    worker = system_processes.worker("worker", DATABASE_URL=outage.url)
    if outage.backend == "postgresql":
        sample_tasks.broken.apply_async(("warm-up",), queue=QUEUE)
        wait_for(lambda: stored("warm-up"), message="the warm-up dead letter, through the proxy")

    outage.cut()
    failed = [
        sample_tasks.broken.apply_async((f"during-{number}",), queue=QUEUE)
        for number in range(FAILURES)
    ]
    for result in failed:
        with pytest.raises(ValueError, match="broken on purpose"):
            result.get(timeout=30)
    wait_for(
        lambda: len(retried(worker.log(), RETRIES_WHILE_DOWN)) >= FAILURES,
        timeout=60,
        message=f"the store of all {FAILURES} dead letters to retry {RETRIES_WHILE_DOWN} times",
    )
    assert stored("during-") == []  # nothing reached the database while it was down

    outage.restore()
    entries = wait_for(
        lambda: (found := stored("during-")) and len(found) >= FAILURES and found,
        timeout=60,
        message=f"the {FAILURES} dead letters stored once the database is back",
    )
    stores = retried(worker.log(), 1)
    print(
        f"\nchaos database ({outage.backend}): {FAILURES} failures during the outage, "
        f"{len(stores)} store tasks retried, {len(entries)} dead letters stored after it"
    )

    assert sorted(entry.task_id for entry in entries) == sorted(r.id for r in failed)
    for entry in entries:
        assert entry.failure_count == 1  # a store retried (or redelivered) counts once
        assert entry.exception_type == "ValueError" and entry.reason == "failure"
        assert entry.queue == QUEUE
    assert deadletter.list_entries(deadletter.Filters(task="saas_tasks.deadletter.record")) == []
    spooled = deadletter.spool_path()
    assert not spooled.exists() or spooled.read_text() == ""  # kept by retries, not spooled
    assert worker.alive()
