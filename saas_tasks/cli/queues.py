"""``saas-tasks queues``: what waits in each queue (the broker's count), what the workers hold
(active, reserved, scheduled with an ETA; ``app.control.inspect()`` with a short timeout) and
how many dead letters are pending.

Workers that do not answer within the timeout are simply absent from the counts: the line
``workers answering`` says how many did.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import click
from kombu.exceptions import ChannelError

from saas_tasks.cli import output
from saas_tasks.reliability import deadletter

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


def waiting_counts(app: Any, names: list[str]) -> dict[str, int]:
    """Messages waiting per queue, by a passive declare (Redis and AMQP alike); a queue the
    broker does not know yet holds nothing. One channel per queue: on AMQP a failed passive
    declare closes its channel."""
    counts: dict[str, int] = {}
    with app.connection_for_read() as connection:
        for name in names:
            channel = connection.channel()
            try:
                counts[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except ChannelError:
                counts[name] = 0
            finally:
                # A channel AMQP closed on a failed declare may refuse to close again.
                with contextlib.suppress(Exception):
                    channel.close()
    return counts


def _queue_of(request: dict[str, Any]) -> str:
    info = request.get("delivery_info") or {}
    return str(info.get("routing_key") or "?")


def held_counts(app: Any, timeout: float) -> tuple[int, dict[str, Counter[str]]]:
    """(workers answering, {active|reserved|scheduled: Counter(queue)})."""
    inspect = app.control.inspect(timeout=timeout)
    held: dict[str, Counter[str]] = {}
    workers: set[str] = set()
    for kind in ("active", "reserved", "scheduled"):
        replies = getattr(inspect, kind)() or {}
        workers.update(replies)
        counter: Counter[str] = Counter()
        for tasks in replies.values():
            for item in tasks:
                counter[_queue_of(item.get("request", item))] += 1
        held[kind] = counter
    return len(workers), held


@click.command("queues")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=30),
    default=1.0,
    show_default=True,
    help="Seconds to wait for workers to answer.",
)
@json_option
def queues_command(timeout: float, as_json: bool) -> None:
    """Each queue: waiting, active, reserved and scheduled tasks; pending dead letters."""
    from saas_tasks.app import app

    names = [queue.name for queue in app.conf.task_queues]
    waiting = waiting_counts(app, names)
    answering, held = held_counts(app, timeout)
    names += sorted({q for counter in held.values() for q in counter} - set(names))
    rows = [
        {
            "queue": name,
            "waiting": waiting.get(name, 0),
            **{kind: held[kind].get(name, 0) for kind in ("active", "reserved", "scheduled")},
        }
        for name in names
    ]
    pending = sum(n for _, _, n in deadletter.stats(deadletter.Filters(status="pending")))
    if as_json:
        output.echo_json(
            {"queues": rows, "workers_answering": answering, "dead_letters_pending": pending}
        )
        return
    output.echo_table(
        ["QUEUE", "WAITING", "ACTIVE", "RESERVED", "SCHEDULED"],
        [list(row.values()) for row in rows],
    )
    click.echo(f"workers answering: {answering}")
    click.echo(f"dead letters pending: {pending}")
