"""The registry of delivery tags a worker could not put back when it lost Redis.

Tags are kept per Redis, once each (with the message's copy when kombu's record of it may be
missing), and a forked child (a prefork pool child) starts without
them: they are the parent's deliveries, which the parent puts back.
"""

from __future__ import annotations

import os

from saas_tasks.reliability.unacked_restore import STRANDED, StrandedDeliveries


def test_tags_are_kept_per_broker_once_each_with_any_copy_and_taken_once() -> None:
    stranded = StrandedDeliveries()
    copy = ({"body": "e30="}, "", "default")
    stranded.add("redis://a:6379/0 unacked", ["t1"], copy)  # popped, not recorded
    stranded.add("redis://a:6379/0 unacked", ["t1", "t2"])  # t1 again: its copy is kept
    stranded.add("redis://a:6379/0 unacked", ["t2", "t3"])  # t2 again: restored once is enough
    stranded.add("redis://b:6379/0 unacked", ["t1"])
    assert len(stranded) == 4
    assert stranded.take("redis://a:6379/0 unacked") == {"t1": copy, "t2": None, "t3": None}
    assert stranded.take("redis://a:6379/0 unacked") == {}
    assert len(stranded) == 1


def test_a_forked_child_starts_without_its_parents_tags() -> None:
    where = "redis://fork-test:6379/0 unacked"
    STRANDED.add(where, ["parent-tag"])
    try:
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if it holds no tags
            os._exit(0 if len(STRANDED) == 0 else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert STRANDED.take(where) == {"parent-tag": None}  # the parent keeps them
    finally:
        STRANDED.take(where)
