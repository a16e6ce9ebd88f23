"""``saas-tasks schedules``: every beat entry's last and next run, outcome and record, and
``schedules run NAME`` to fire one now, under its task name with its arguments, as beat would.

The status is read from the ``task_runs`` table (see :mod:`saas_tasks.schedules.status`), so it
works with beat stopped; what beat itself holds (its lock, its due times) lives in Redis.
"""

from __future__ import annotations

from typing import Any

import click

from saas_tasks.cli import output
from saas_tasks.cli.errors import CliError
from saas_tasks.schedules.status import JobStatus, job_statuses

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


def beat_schedule() -> dict[str, Any]:
    from saas_tasks.app import app

    return dict(app.conf.beat_schedule or {})


def _rate(status: JobStatus) -> str:
    return "-" if status.success_rate is None else f"{status.success_rate:.0%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f}s"


@click.group("schedules", invoke_without_command=True)
@json_option
@click.pass_context
def schedules_group(ctx: click.Context, as_json: bool) -> None:
    """Each scheduled job: last run, outcome, next run, runs, success rate, duration."""
    if ctx.invoked_subcommand is not None:
        return
    statuses = job_statuses(beat_schedule())
    if as_json:
        output.echo_json([status.as_json() for status in statuses])
        return
    if not statuses:
        click.echo("no scheduled jobs (SAAS_TASKS_DISABLE_SCHEDULES=true, or none configured)")
        return
    output.echo_table(
        [
            "JOB",
            "SCHEDULE",
            "LAST RUN",
            "OUTCOME",
            "TOOK",
            "NEXT RUN",
            "RUNS",
            "OK",
            "AVG",
            "ERROR",
        ],
        [
            [
                s.name,
                s.schedule,
                output.short_time(s.last_started_at),
                s.last_outcome or "-",
                _ms(s.last_duration_ms),
                output.short_time(s.next_run_at),
                s.total_runs,
                _rate(s),
                _ms(s.average_duration_ms),
                output.one_line(s.last_error or "", 50),
            ]
            for s in statuses
        ],
    )


@schedules_group.command("run")
@click.argument("name")
def run_command(name: str) -> None:
    """Send the job NAME now, under its task name with its arguments and options."""
    from saas_tasks.app import app
    from saas_tasks.reliability.publishing import PublishGuard

    schedule = beat_schedule()
    if name not in schedule:
        known = ", ".join(sorted(schedule)) or "none"
        raise CliError(f"no scheduled job named {name!r} (known: {known})")
    entry = schedule[name]
    options = dict(entry.get("options") or {})
    with PublishGuard(entry["task"], app):
        sent = app.send_task(
            entry["task"],
            args=list(entry.get("args") or ()),
            kwargs=dict(entry.get("kwargs") or {}),
            **options,
        )
    click.echo(f"sent {name}: {entry['task']}[{sent.id}]")
